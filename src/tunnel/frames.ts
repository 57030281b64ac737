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
 */
export class FrameDecoder extends Transform {
  private buf: Buffer = Buffer.alloc(0)
  private ended = false

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    while (this.buf.length >= HEADER && !this.ended) {
      const type = this.buf[0]
      const len = this.buf.readUInt32BE(1)
      if (type === FRAME.end) {
        this.ended = true
        this.buf = this.buf.subarray(HEADER)
        break
      }
      if (this.buf.length < HEADER + len) break
      const payload = this.buf.subarray(HEADER, HEADER + len)
      this.buf = this.buf.subarray(HEADER + len)
      if (type === FRAME.data) this.push(payload)
      else if (type === FRAME.error) {
        done(new TunnelResetError(payload.toString('utf8')))
        return
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
