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
  /** each connection's last answered ping: its round-trip time (ms), for `mesh status` */
  private readonly rtts = new WeakMap<Connection, number>()
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
   * between two processes, sim/bench/foundation.ts). Its deadline is the liveness timeout (see
   * refresh for why never shorter); the RTT is recorded; a failure here closes nothing.
   */
  async measure(conn: Connection): Promise<void> {
    const muxer = (conn as unknown as Pingable).muxer
    if (conn.status !== 'open' || typeof muxer?.ping !== 'function') return
    try {
      this.rtts.set(
        conn,
        await muxer.ping({
          signal: AbortSignal.any([
            this.stopped.signal,
            AbortSignal.timeout(this.opts.stretch?.(this.opts.timeoutMs) ?? this.opts.timeoutMs),
          ]),
        }),
      )
    } catch {}
  }

  /** The connection's round-trip time (ms) as its last answered ping measured it. */
  rtt(conn: Connection): number | undefined {
    return this.rtts.get(conn)
  }

  /** Whether the connection has a muxer ping (yamux: TCP and relayed; not WebRTC). */
  static pingable(conn: Connection): boolean {
    return typeof (conn as unknown as Pingable).muxer?.ping === 'function'
  }

  /**
   * Measure these connections' round-trip times now, each with a muxer ping (12 bytes, no
   * stream), waiting at most waitMs for the answers. `mesh status` used to open a ping stream per
   * peer for this (multistream-select, a peer store merge on both ends): in a 20-agent join
   * storm, with the bench reading every agent's connections every 10 s, half of all streams.
   * The pings themselves are not cut at waitMs: yamux forgets a ping whose caller gave up and
   * then takes its late answer for a protocol error, closing the connection (test/integration/
   * connection-liveness.test.ts). They run to the liveness timeout, and a late answer still
   * counts as the RTT.
   */
  async refresh(conns: Connection[], waitMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs)
    })
    try {
      await Promise.race([waited, Promise.allSettled(conns.map((conn) => this.measure(conn)))])
    } finally {
      clearTimeout(timer)
    }
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
            (ms) => {
              this.rtts.set(conn, ms)
              return false
            },
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
