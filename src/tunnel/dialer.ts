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
}

export interface Opened {
  stream: Stream
  connection: Connection
  path: PathKind
  /** connections found dead (and aborted) on the way */
  dropped: number
}

const RANK: Record<PathKind, number> = { direct: 0, 'webrtc-direct': 1, webrtc: 1, relayed: 2 }

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
    return this.node()
      .getConnections(peer)
      .filter((c) => c.status === 'open')
      .sort((a, b) => RANK[pathKind(a.remoteAddr)] - RANK[pathKind(b.remoteAddr)])
  }

  async open(peer: PeerId, addrs: readonly string[], signal: AbortSignal): Promise<Opened> {
    let dropped = 0
    const errors: string[] = []
    for (const conn of this.connections(peer)) {
      signal.throwIfAborted()
      try {
        return { ...(await this.newStream(conn, signal)), dropped }
      } catch (err) {
        if ((err as Error).name === 'UnsupportedProtocolError') throw err
        if (signal.aborted) throw err
        errors.push(`${pathKind(conn.remoteAddr)} connection: ${(err as Error).message}`)
        if (isTimeout(err)) {
          // cannot open a stream in time: dead for everyone, not just us
          conn.abort(new Error('connection unresponsive (a tunnel stream could not open)'))
          dropped++
          if (pathKind(conn.remoteAddr) === 'direct') this.noteDirect(peer.toString(), false)
        }
      }
    }
    const conn = await this.dial(peer, addrs, signal, errors)
    return { ...(await this.newStream(conn, signal)), dropped }
  }

  private async newStream(conn: Connection, outer: AbortSignal): Promise<Omit<Opened, 'dropped'>> {
    const signal = AbortSignal.any([outer, AbortSignal.timeout(this.opts.streamTimeoutMs)])
    const stream = await conn.newStream(this.opts.protocol, {
      signal,
      runOnLimitedConnection: true,
      maxOutboundStreams: MAX_OUTBOUND_STREAMS,
    })
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
      outer.throwIfAborted()
      const signal = AbortSignal.any([outer, AbortSignal.timeout(phase.timeoutMs)])
      try {
        const conn = await node.dial(phase.addrs, { signal })
        if (phase.kind === 'direct' && pathKind(conn.remoteAddr) === 'direct') this.noteDirect(id, true)
        return conn
      } catch (err) {
        if (outer.aborted) throw err
        if (phase.kind === 'direct') this.noteDirect(id, false)
        errors.push(`${phase.kind} dial: ${(err as Error).message}`)
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
