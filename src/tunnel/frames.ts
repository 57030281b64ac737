import type { Socket } from 'node:net'
import { Transform, type TransformCallback } from 'node:stream'

// The agent -> CLI half of an upgraded control-socket tunnel is framed, so that the CLI can
// tell a clean end from a reset: a unix socket has no RST, and a tunnel cut in the middle
// would otherwise look like a complete transfer to `mesh proxy` and to a `mesh forward` client.
// Frame: type (1 byte), length (4 bytes, big endian), payload. CLI -> agent stays raw.

export const FRAME = { data: 0, end: 1, error: 2 } as const
const HEADER = 5
const MAX_ERROR = 4096

function header(type: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER)
  h[0] = type
  h.writeUInt32BE(length, 1)
  return h
}

/** Write one data frame; returns what socket.write returned for the payload (backpressure). */
export function writeData(socket: Socket, data: Uint8Array): boolean {
  if (data.byteLength === 0) return true
  // two writes, no cork: an upgraded http socket may hold corks of its own
  socket.write(header(FRAME.data, data.byteLength))
  return socket.write(data)
}

/** The clean end of the agent -> CLI direction. */
export function writeEnd(socket: Socket): void {
  if (!socket.destroyed && !socket.writableEnded) socket.write(header(FRAME.end, 0))
}

/** Why the tunnel failed; the CLI turns it into an error (and an RST for a TCP client). */
export function writeError(socket: Socket, message: string): void {
  if (socket.destroyed || socket.writableEnded) return
  const text = Buffer.from(message.slice(0, MAX_ERROR))
  socket.write(Buffer.concat([header(FRAME.error, text.length), text]))
}

/**
 * Turns the framed bytes back into the plain stream. Ends after an end frame; fails with the
 * agent's message after an error frame, and with "cut off" when the bytes stop without either.
 * A data frame's payload is passed on as views of the chunks it arrives in, piece by piece: a
 * frame rarely ends where a socket read does, and joining the rest of one read to the next
 * copied every byte of the tunnel once more.
 */
export class FrameDecoder extends Transform {
  private readonly head = Buffer.alloc(HEADER)
  private headLen = 0
  /** payload bytes of the current data frame not yet passed on */
  private dataLeft = 0
  /** the current error frame's payload, gathered whole */
  private error: { want: number; got: Buffer[]; len: number } | undefined
  private ended = false

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let at = 0
    while (at < chunk.length && !this.ended) {
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, chunk.length - at)
        this.push(n === chunk.length ? chunk : chunk.subarray(at, at + n))
        this.dataLeft -= n
        at += n
        continue
      }
      if (this.error !== undefined) {
        const e = this.error
        const n = Math.min(e.want - e.len, chunk.length - at)
        e.got.push(chunk.subarray(at, at + n))
        e.len += n
        at += n
        if (e.len < e.want) break
        done(new TunnelResetError(Buffer.concat(e.got).toString('utf8')))
        return
      }
      const n = Math.min(HEADER - this.headLen, chunk.length - at)
      chunk.copy(this.head, this.headLen, at, at + n)
      this.headLen += n
      at += n
      if (this.headLen < HEADER) break
      this.headLen = 0
      const type = this.head[0]
      const len = this.head.readUInt32BE(1)
      if (type === FRAME.data) this.dataLeft = len
      else if (type === FRAME.end) this.ended = true
      else if (type === FRAME.error && len <= MAX_ERROR * 4) {
        // utf8: the agent sends at most MAX_ERROR characters
        this.error = { want: len, got: [], len: 0 }
        if (len === 0) {
          done(new TunnelResetError('the agent reset the tunnel'))
          return
        }
      } else {
        done(new TunnelResetError(`bad frame type ${type} from the agent`))
        return
      }
    }
    done()
  }

  override _flush(done: TransformCallback): void {
    if (!this.ended) {
      done(new TunnelResetError('the agent closed the tunnel without finishing it'))
      return
    }
    done()
  }
}

export class TunnelResetError extends Error {
  override name = 'TunnelResetError'
}
