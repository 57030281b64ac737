/**
 * The stream carrier: the packets for one member go on one outbound libp2p stream (our own; the
 * member sends its packets on its own stream to us), on the best connection we have to it.
 * When a better connection comes up (relay -> WebRTC -> direct), a new stream opens there and
 * the old one is closed once its buffered packets have gone: the TCP connections inside only
 * see a short reordering, never a reset. Packets are IP: when the stream cannot keep up they
 * are dropped (the senders' TCP backs off), never queued without bound.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { type PathKind, pathKind } from '../node/paths.js'
import { encodePackets } from './frames.js'

// what may wait in a stream's write buffer before packets are dropped: enough for a window
// of a fast link, small enough not to add seconds of queueing delay (bufferbloat)
export const MAX_BUFFERED = 4 << 20
// packets held while the stream opens
const MAX_PENDING = 512 << 10

// the receive window a member grants our packets on its inbound carrier stream (see widenReceiveWindow)
export const RECEIVE_WINDOW = 4 << 20

/**
 * Give the member credit for RECEIVE_WINDOW bytes in flight on this inbound stream at once.
 * yamux starts every stream at 256 KiB and doubles it only once its keep-alive ping has measured
 * an RTT (30 s into the connection) and a window is used up within 4 RTTs; until then one carrier
 * stream could move at most 256 KiB per round trip through both agents (protocols/overlay.md,
 * Performance). Needs the yamux stream's fields; any other muxer is left as it is.
 */
export function widenReceiveWindow(stream: Stream, bytes = RECEIVE_WINDOW): boolean {
  const y = stream as unknown as {
    recvWindow?: unknown
    maxStreamWindowSize?: unknown
    sendWindowUpdate?: unknown
  }
  if (typeof y.recvWindow !== 'number' || typeof y.sendWindowUpdate !== 'function') return false
  if (y.recvWindow >= bytes) return true
  y.recvWindow = bytes
  if (typeof y.maxStreamWindowSize === 'number' && y.maxStreamWindowSize < bytes)
    y.maxStreamWindowSize = bytes
  ;(y.sendWindowUpdate as () => void).call(stream)
  return true
}

const RANK: Record<PathKind, number> = { direct: 0, 'webrtc-direct': 1, webrtc: 1, relayed: 2 }
export const rankOf = (c: Connection): number => RANK[pathKind(c.remoteAddr)]

export interface CarrierDeps {
  peer: string
  protocol: string
  /** the member's open, admitted connections */
  connections(): Connection[]
  /** dial the member when there is no connection */
  dial(signal: AbortSignal): Promise<Connection>
  onDrop(reason: 'congested' | 'no-path', packets: number): void
  onPath?(path: PathKind): void
}

export class StreamCarrier {
  private stream: Stream | undefined
  private conn: Connection | undefined
  private opening: Promise<void> | undefined
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  private lastFailure = 0
  sentPackets = 0
  sentBytes = 0

  constructor(private readonly deps: CarrierDeps) {}

  /** the connection the stream is on */
  connection(): Connection | undefined {
    return this.conn
  }

  get path(): PathKind | undefined {
    return this.conn === undefined ? undefined : pathKind(this.conn.remoteAddr)
  }

  /** Send a burst of packets for this member. */
  send(packets: Uint8Array[]): void {
    const s = this.stream
    if (s !== undefined && s.status === 'open' && s.writeStatus === 'writable') {
      if (s.writeBufferLength > MAX_BUFFERED) {
        this.deps.onDrop('congested', packets.length)
        return
      }
      const data = encodePackets(packets)
      s.send(data)
      this.sentPackets += packets.length
      this.sentBytes += data.byteLength
      return
    }
    this.stream = undefined
    for (const p of packets) {
      if (this.pendingBytes + p.byteLength > MAX_PENDING) {
        this.deps.onDrop('no-path', 1)
        continue
      }
      this.pending.push(p)
      this.pendingBytes += p.byteLength
    }
    // a member we just failed to reach is not dialled again on every packet
    if (this.opening === undefined && Date.now() - this.lastFailure > 1_000) this.opening = this.open()
  }

  /** Move to a better connection if the member has one now (called periodically). */
  async followPath(): Promise<void> {
    if (this.stream === undefined || this.conn === undefined || this.opening !== undefined) return
    const best = this.best()
    if (best === undefined || best === this.conn || rankOf(best) >= rankOf(this.conn)) return
    this.opening = this.open(best)
    await this.opening
  }

  close(): void {
    const s = this.stream
    this.stream = undefined
    this.conn = undefined
    if (s !== undefined) void s.close().catch(() => s.abort(new Error('overlay carrier closed')))
    this.dropPending('no-path')
  }

  private best(): Connection | undefined {
    let best: Connection | undefined
    for (const c of this.deps.connections()) if (best === undefined || rankOf(c) < rankOf(best)) best = c
    return best
  }

  private async open(on?: Connection): Promise<void> {
    try {
      const signal = AbortSignal.timeout(10_000)
      const conn = on ?? this.best() ?? (await this.deps.dial(signal))
      const stream = await conn.newStream(this.deps.protocol, { signal, runOnLimitedConnection: true })
      stream.inactivityTimeout = 0
      const old = this.stream
      this.stream = stream
      this.conn = conn
      this.deps.onPath?.(pathKind(conn.remoteAddr))
      stream.addEventListener('close', () => {
        if (this.stream === stream) {
          this.stream = undefined
          this.conn = undefined
        }
      })
      // we only write on our stream; the member's packets come on its own
      if (old !== undefined) void old.close().catch(() => old.abort(new Error('moved to a better path')))
      if (this.pending.length > 0) {
        const held = this.pending
        this.pending = []
        this.pendingBytes = 0
        this.send(held)
      }
    } catch {
      this.lastFailure = Date.now()
      this.dropPending('no-path')
    } finally {
      this.opening = undefined
    }
  }

  private dropPending(reason: 'no-path'): void {
    if (this.pending.length > 0) this.deps.onDrop(reason, this.pending.length)
    this.pending = []
    this.pendingBytes = 0
  }
}
