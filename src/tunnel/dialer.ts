import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { Circuit, WebRTC } from '@multiformats/multiaddr-matcher'
import type { MeshLibp2p } from '../node/libp2p.js'
import { type PathKind, pathKind } from '../node/paths.js'

// how long a failed direct dial makes the relay go first for that member
const DIRECT_FAILURE_MEMORY_MS = 60_000
const MAX_OUTBOUND_STREAMS = 1024

export interface DialerOptions {
  protocol: string
  /** opening a stream on an existing connection; longer means the connection is dead */
  streamTimeoutMs: number
  /** the direct phase of a fresh dial */
  directDialTimeoutMs: number
  /** the relay phase of a fresh dial */
  dialTimeoutMs: number
  /** the member's round-trip time in ms, if measured (sizes the window of an existing connection) */
  rttOf?: (peer: string) => number | undefined
  /** a WebRTC upgrade under way for this peer, if any (the NAT component's) */
  pendingUpgrade?: (peer: PeerId, waitMs: number) => Promise<Connection | undefined>
}

// how long a tunnel over a fresh relayed connection waits for its WebRTC upgrade (~0.2 s in the lab)
const UPGRADE_WAIT_MS = 600
// the window an open connection gets before other paths race it: 4 RTTs, at least this
const QUICK_MIN_MS = 750
const QUICK_DEFAULT_MS = 1_000

const sleep = (ms: number) =>
  new Promise<void>((r) => {
    setTimeout(r, ms).unref()
  })

/**
 * The first attempt that yields a stream; undefined when none does. A stream that arrives
 * after another won is closed at once.
 */
async function firstStream(
  attempts: Array<Promise<Omit<Opened, 'dropped' | 'errors'> | undefined>>,
): Promise<Omit<Opened, 'dropped' | 'errors'> | undefined> {
  let won = false
  const wrapped = attempts.map((p) =>
    p.then((got) => {
      if (got === undefined) throw new Error('no stream')
      if (won) {
        got.stream.abort(new Error('another path was faster'))
        throw new Error('late')
      }
      won = true
      return got
    }),
  )
  try {
    return await Promise.any(wrapped)
  } catch (err) {
    // every attempt failed; an abort (the caller's signal) is the one to report
    const errors = (err as AggregateError).errors ?? []
    const telling = errors.find((e) =>
      ['AbortError', 'UnsupportedProtocolError'].includes((e as Error)?.name),
    )
    if (telling !== undefined) throw telling
    return undefined
  }
}

export interface Opened {
  stream: Stream
  connection: Connection
  path: PathKind
  /** connections found dead (and aborted) on the way */
  dropped: number
  /** what failed on the way, for the log */
  errors: string[]
}

const RANK: Record<PathKind, number> = { direct: 0, 'webrtc-direct': 1, webrtc: 1, relayed: 2 }

const CLOSED_WHILE_OPENING = /closed connection during opening|connection (was )?closed/i

/** Addresses of a member record split into direct ones and plain relay circuits (not WebRTC). */
export function splitAddrs(
  peer: string,
  addrs: readonly string[],
  self: string,
): { direct: Multiaddr[]; relayed: Multiaddr[] } {
  const direct: Multiaddr[] = []
  const relayed: Multiaddr[] = []
  for (const a of addrs) {
    let ma: Multiaddr
    try {
      ma = multiaddr(a)
    } catch {
      continue
    }
    const comps = ma.getComponents()
    const last = comps[comps.length - 1]
    if (last?.name !== 'p2p') ma = ma.encapsulate(`/p2p/${peer}`)
    else if (last.value !== peer) continue // someone else's address
    if (WebRTC.matches(ma)) continue // signalled over a relay; libp2p dials these itself
    if (Circuit.matches(ma)) {
      // a circuit through ourselves or through the target itself leads nowhere
      const relay = comps.find((c) => c.name === 'p2p')?.value
      if (relay === self || relay === peer) continue
      relayed.push(ma)
    } else if (!comps.some((c) => c.name === 'p2p-circuit')) {
      direct.push(ma)
    }
  }
  return { direct, relayed }
}

const isTimeout = (err: unknown): boolean => ['AbortError', 'TimeoutError'].includes((err as Error)?.name)

/**
 * Opens tunnel streams to members over the best connection there is: an existing direct one,
 * then WebRTC, then relayed; a connection that cannot open a stream in time is dead (a
 * firewall drops its packets) and is aborted, so everything re-dials. A fresh dial tries the
 * member's direct addresses first with a short budget, then its relay circuits; after a
 * recent direct failure the relay goes first (NAT-LAB.md: a firewalled direct address
 * otherwise costs the whole dial timeout).
 */
export class TunnelDialer {
  private readonly directFailedAt = new Map<string, number>()
  /** when a stream last opened on a connection: a slow attempt does not make it dead */
  private readonly openedAt = new WeakMap<Connection, number>()

  constructor(
    private readonly node: () => MeshLibp2p,
    private readonly opts: DialerOptions,
  ) {}

  directFailedRecently(peer: string, now = Date.now()): boolean {
    const t = this.directFailedAt.get(peer)
    return t !== undefined && now - t < DIRECT_FAILURE_MEMORY_MS
  }

  noteDirect(peer: string, ok: boolean): void {
    if (ok) this.directFailedAt.delete(peer)
    else this.directFailedAt.set(peer, Date.now())
  }

  /** Open connections to `peer`, best path first. */
  connections(peer: PeerId): Connection[] {
    const admission = this.node().services.admission
    return (
      this.node()
        .getConnections(peer)
        .filter((c) => c.status === 'open')
        .map((c) => ({ c, admitted: admission.connectionAdmitted(c) ? 0 : 1 }))
        // admitted ones first (one still in its handshake may never finish it), then by path
        .sort(
          (a, b) =>
            a.admitted - b.admitted || RANK[pathKind(a.c.remoteAddr)] - RANK[pathKind(b.c.remoteAddr)],
        )
        .map(({ c }) => c)
    )
  }

  /**
   * A stream to `peer`. The best open connection gets a short window (a few RTTs); if it has
   * not opened a stream by then, the path may be dead (a firewall now drops it), so the other
   * ways (other connections, a fresh dial, relay first when a direct path looked dead) race it
   * and the first stream wins. A connection that misses the full stream timeout is aborted.
   */
  async open(peer: PeerId, addrs: readonly string[], signal: AbortSignal): Promise<Opened> {
    const state = { dropped: 0, errors: [] as string[] }
    const [best, ...rest] = this.connections(peer)
    if (best !== undefined) {
      const first = this.streamOn(best, peer, signal, state)
      const quick = await Promise.race([first, sleep(this.quickMs(peer)).then(() => 'slow' as const)])
      if (quick !== 'slow' && quick !== undefined)
        return { ...quick, dropped: state.dropped, errors: state.errors }
      if (quick === 'slow') {
        state.errors.push(
          `${pathKind(best.remoteAddr)} connection: no stream within ${this.quickMs(peer)} ms`,
        )
        const slowKind = pathKind(best.remoteAddr)
        if (slowKind === 'direct') this.noteDirect(peer.toString(), false)
        // other connections of the same kind share its network path: a firewall drops them too
        const other = this.openFresh(
          peer,
          addrs,
          rest.filter((c) => pathKind(c.remoteAddr) !== slowKind),
          signal,
          state,
        )
        const won = await firstStream([first, other])
        if (won !== undefined) return { ...won, dropped: state.dropped, errors: state.errors }
        throw new Error(state.errors.join('; ') || 'no path to the member')
      }
    }
    const opened = await this.openFresh(peer, addrs, rest, signal, state)
    if (opened !== undefined) return { ...opened, dropped: state.dropped, errors: state.errors }
    throw new Error(state.errors.join('; ') || 'no path to the member')
  }

  /** How long the best connection gets before the other ways race it: ~4 RTTs, within bounds. */
  private quickMs(peer: PeerId): number {
    const rtt = this.opts.rttOf?.(peer.toString())
    const ms = rtt === undefined ? QUICK_DEFAULT_MS : 4 * rtt + QUICK_MIN_MS
    return Math.min(this.opts.streamTimeoutMs, Math.max(QUICK_MIN_MS, ms))
  }

  /** A stream on one connection, or undefined (why is in state.errors); aborts a connection found dead. */
  private async streamOn(
    conn: Connection,
    peer: PeerId,
    signal: AbortSignal,
    state: { dropped: number; errors: string[] },
  ): Promise<Omit<Opened, 'dropped' | 'errors'> | undefined> {
    const started = Date.now()
    try {
      return await this.newStream(conn, signal)
    } catch (err) {
      if ((err as Error).name === 'UnsupportedProtocolError') throw err
      if (signal.aborted) throw err
      state.errors.push(`${pathKind(conn.remoteAddr)} connection: ${(err as Error).message}`)
      // a stream opened on it since this attempt began (a later tunnel, once this attempt had
      // lost its race to another path): slow once, not dead; aborting it would cut that tunnel
      if (isTimeout(err) && (this.openedAt.get(conn) ?? -1) < started) {
        // cannot open a stream in time: dead for everyone, not just us
        conn.abort(new Error('connection unresponsive (a tunnel stream could not open)'))
        state.dropped++
        if (pathKind(conn.remoteAddr) === 'direct') this.noteDirect(peer.toString(), false)
      }
      return undefined
    }
  }

  /** The other open connections in turn, then a fresh dial (waiting briefly for a WebRTC upgrade of a relayed one). */
  private async openFresh(
    peer: PeerId,
    addrs: readonly string[],
    others: Connection[],
    signal: AbortSignal,
    state: { dropped: number; errors: string[] },
  ): Promise<Omit<Opened, 'dropped' | 'errors'> | undefined> {
    for (const conn of others) {
      signal.throwIfAborted()
      const got = await this.streamOn(conn, peer, signal, state)
      if (got !== undefined) return got
    }
    let conn: Connection
    try {
      conn = await this.dial(peer, addrs, signal, state.errors)
    } catch (err) {
      if (signal.aborted) throw err
      return undefined
    }
    if (pathKind(conn.remoteAddr) === 'relayed' && this.opts.pendingUpgrade !== undefined) {
      const upgraded = await this.opts.pendingUpgrade(peer, UPGRADE_WAIT_MS)
      if (upgraded !== undefined && upgraded.status === 'open' && pathKind(upgraded.remoteAddr) !== 'relayed')
        conn = upgraded
    }
    return this.streamOn(conn, peer, signal, state)
  }

  private async newStream(conn: Connection, outer: AbortSignal): Promise<Omit<Opened, 'dropped' | 'errors'>> {
    const signal = AbortSignal.any([outer, AbortSignal.timeout(this.opts.streamTimeoutMs)])
    const stream = await conn.newStream(this.opts.protocol, {
      signal,
      runOnLimitedConnection: true,
      maxOutboundStreams: MAX_OUTBOUND_STREAMS,
    })
    this.openedAt.set(conn, Date.now())
    return { stream, connection: conn, path: pathKind(conn.remoteAddr) }
  }

  /**
   * Circuits through every member we hold a direct connection to. A member that announces
   * fixed addresses (`--announce`) lists no circuit in its record, although it keeps
   * reservations; and relays come and go faster than records spread. A relay without a
   * reservation for the target answers NO_RESERVATION at once, so trying them is cheap.
   */
  private viaConnectedRelays(peer: PeerId, known: Multiaddr[]): Multiaddr[] {
    const node = this.node()
    const have = new Set(known.map((ma) => ma.getComponents().find((c) => c.name === 'p2p')?.value))
    const out: Multiaddr[] = []
    for (const conn of node.getConnections()) {
      const relay = conn.remotePeer
      const rid = relay.toString()
      if (
        relay.equals(peer) ||
        have.has(rid) ||
        conn.status !== 'open' ||
        pathKind(conn.remoteAddr) !== 'direct'
      )
        continue
      if (!node.services.admission.isAdmitted(relay)) continue
      have.add(rid)
      let base = conn.remoteAddr
      const last = base.getComponents().at(-1)
      if (last?.name !== 'p2p') base = base.encapsulate(`/p2p/${rid}`)
      out.push(base.encapsulate(`/p2p-circuit/p2p/${peer.toString()}`))
    }
    return out
  }

  /** A fresh connection: direct then relay, or relay then direct after a recent direct failure. */
  async dial(
    peer: PeerId,
    addrs: readonly string[],
    outer: AbortSignal,
    errors: string[] = [],
  ): Promise<Connection> {
    const node = this.node()
    const id = peer.toString()
    const { direct, relayed } = splitAddrs(id, addrs, node.peerId.toString())
    relayed.push(...this.viaConnectedRelays(peer, relayed))
    const phases: Array<{ kind: 'direct' | 'relayed'; addrs: Multiaddr[]; timeoutMs: number }> = []
    const directPhase = { kind: 'direct' as const, addrs: direct, timeoutMs: this.opts.directDialTimeoutMs }
    const relayPhase = { kind: 'relayed' as const, addrs: relayed, timeoutMs: this.opts.dialTimeoutMs }
    if (this.directFailedRecently(id)) phases.push(relayPhase, directPhase)
    else phases.push(directPhase, relayPhase)
    for (const phase of phases) {
      if (phase.addrs.length === 0) continue
      // a relayed connection closed while it opened is transient (a crossing dial through the
      // same relay, a WebRTC upgrade closing its signalling): one more try, not a failed tunnel
      for (let attempt = 1; attempt <= (phase.kind === 'relayed' ? 2 : 1); attempt++) {
        outer.throwIfAborted()
        const signal = AbortSignal.any([outer, AbortSignal.timeout(phase.timeoutMs)])
        try {
          // force: libp2p would hand back an open connection (perhaps the dead one we are avoiding)
          const conn = await node.dial(phase.addrs, { signal, force: true })
          if (phase.kind === 'direct' && pathKind(conn.remoteAddr) === 'direct') this.noteDirect(id, true)
          return conn
        } catch (err) {
          if (outer.aborted) throw err
          if (phase.kind === 'direct') this.noteDirect(id, false)
          errors.push(`${phase.kind} dial: ${(err as Error).message}`)
          if (!CLOSED_WHILE_OPENING.test((err as Error).message)) break
          await new Promise((r) => setTimeout(r, 100))
        }
      }
    }
    if (direct.length === 0 && relayed.length === 0) {
      // nothing in the record: let libp2p use whatever its peer store knows
      try {
        return await node.dial(peer, {
          signal: AbortSignal.any([outer, AbortSignal.timeout(this.opts.dialTimeoutMs)]),
        })
      } catch (err) {
        if (outer.aborted) throw err
        errors.push(`dial: ${(err as Error).message}`)
      }
    }
    throw new Error(errors.length > 0 ? errors.join('; ') : 'no address to dial')
  }
}
