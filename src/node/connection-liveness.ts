import { setMaxListeners } from 'node:events'
import type { Connection } from '@libp2p/interface'

/**
 * Finds dead connections with the muxer's own ping (a yamux PING frame: 12 bytes, no stream),
 * in place of libp2p's connection monitor, which opened a new stream per connection and side
 * every 30 s (multistream-select, yamux open and close; on a cluster-prefixed agent even
 * refused, since it asks for /ipfs/ping). In a 20-agent fleet stream negotiation was a tenth
 * of each idle agent's CPU (issue 18). yamux's own keepalive pings too, but ignores a missing
 * answer; this one closes the connection, so a dead connection is closed within
 * intervalMs + timeoutMs. Connections without a muxer ping (WebRTC) are left to their
 * transport's own liveness (ICE consent checks).
 */

/** the libp2p 3.3 Connection field used here (not part of @libp2p/interface) */
interface Pingable {
  muxer?: { ping?: (options: { signal: AbortSignal }) => Promise<number> }
}

export interface LivenessOptions {
  /** the connections to check (libp2p's open connections) */
  connections(): Connection[]
  intervalMs: number
  /** how long a ping may go unanswered before the connection is closed */
  timeoutMs: number
  /**
   * the timeout as it stands now: stretched while our own event loop runs late (local-lag.ts),
   * since an answer that sat unread behind our own backlog is not a dead connection
   */
  stretch?: (ms: number) => number
}

export class ConnectionLiveness {
  private timer: NodeJS.Timeout | undefined
  private readonly inFlight = new WeakSet<Connection>()
  private stopped = new AbortController()

  constructor(private readonly opts: LivenessOptions) {}

  start(): void {
    if (this.timer !== undefined) return
    this.stopped = new AbortController()
    this.timer = setInterval(() => void this.check(), this.opts.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.stopped.abort()
  }

  /**
   * One ping on a new connection, for its round-trip time: yamux grows a stream's receive window
   * (256 KiB up to 16 MiB) only once it knows the RTT, which its own keepalive measured at once
   * and nothing else does. Without it one stream moved 25% less (156-173 against 215-225 MB/s
   * between two processes, sim/bench/foundation.ts). A failure here closes nothing.
   */
  measure(conn: Connection): void {
    const muxer = (conn as unknown as Pingable).muxer
    if (conn.status !== 'open' || typeof muxer?.ping !== 'function') return
    muxer
      .ping({ signal: AbortSignal.any([this.stopped.signal, AbortSignal.timeout(this.opts.timeoutMs)]) })
      .catch(() => {})
  }

  /** One round: ping every open connection; settles when every ping has (how many, how many closed). */
  async check(): Promise<{ pinged: number; closed: number }> {
    // one deadline for the whole round: a timer per round, not per ping
    const round = new AbortController()
    const signal = AbortSignal.any([this.stopped.signal, round.signal])
    // one listener per connection's ping, by design: past 10, Node would print a leak warning
    setMaxListeners(0, signal)
    const timeoutMs = this.opts.stretch?.(this.opts.timeoutMs) ?? this.opts.timeoutMs
    const deadline = setTimeout(() => round.abort(), timeoutMs)
    deadline.unref()
    const pings: Array<Promise<boolean>> = []
    for (const conn of this.opts.connections()) {
      const muxer = (conn as unknown as Pingable).muxer
      if (conn.status !== 'open' || typeof muxer?.ping !== 'function' || this.inFlight.has(conn)) continue
      this.inFlight.add(conn)
      pings.push(
        muxer
          .ping({ signal })
          .then(
            () => false,
            (err: Error) => {
              if (this.stopped.signal.aborted || conn.status !== 'open') return false
              conn.abort(new Error(`no answer to a ping within ${timeoutMs} ms`, { cause: err }))
              return true
            },
          )
          .finally(() => this.inFlight.delete(conn)),
      )
    }
    const closed = (await Promise.all(pings)).filter(Boolean).length
    clearTimeout(deadline)
    return { pinged: pings.length, closed }
  }
}
