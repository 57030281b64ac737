import type { Connection, PeerId } from '@libp2p/interface'
import { type PathKind, pathKind } from './paths.js'

/**
 * One connection per pair of members. When two agents dial each other at the same moment (a
 * join storm, both sides' reconnect ticks), both dials succeed and libp2p keeps both: after a
 * 20-agent storm each agent held about 25 connections for 19 peers, and every extra one costs
 * its own liveness pings, yamux and Noise state and about half a MiB of heap (issue 18). libp2p
 * only prunes above its connection limit, so the pair settles here, without talking: both sides
 * keep the connection dialled by the smaller peer ID (several from that peer: its first) and
 * the redundant one is closed once it carries nothing but streams whose users open a new one
 * on the kept connection (probe links, gossipsub); a request in flight is waited for up to a
 * grace, anything else on it (a tunnel, an overlay stream, a block transfer, a relayed
 * circuit) for as long as it lasts.
 * A relayed connection beside a direct one is drained the same way (both ends drop it). It was
 * left alone at first as libp2p's business (DCUtR), but DCUtR closes a relayed connection only
 * after a direct connection it dialled itself, to a public address: never on a LAN or loopback,
 * nor when the direct connection came from our own dials; and a cluster's relays set no limits,
 * so libp2p does not see these as limited either. In a 50-agent fleet 4 pairs kept one beside
 * their direct connection for the whole idle window, each holding a hop on a third member.
 * Beside a WebRTC connection (no direct one) a relayed one stays: the NAT component parks an
 * idle WebRTC path and signals the next one through it. TCP beside WebRTC is left alone too.
 *
 * Its own module, beside the assembly, because it needs libp2p's connections and admission
 * (lower layers) but knows nothing of membership or gossipsub beyond their protocol names.
 */

/** One connection as the rule sees it. */
export interface ConnectionView {
  id: string
  /** who dialled it */
  dialer: 'self' | 'remote'
  /** when it opened (only compared among connections that we dialled ourselves) */
  openedAt: number
  kind: PathKind
}

/**
 * Which of a pair's connections to keep and which to drop. Both sides reach the same verdict
 * for crossed dials (one each way): the smaller peer ID's dial is kept. Several connections
 * dialled by the same side: only the dialer knows their order for sure, so only it drops all
 * but its first; the other side keeps them all and waits for the dialer's close.
 * Connections of different kinds are judged apart, except relayed ones, all dropped while a
 * direct one is there (kept: the direct one settle keeps).
 */
export function settle(
  self: string,
  remote: string,
  conns: ConnectionView[],
): { keep: ConnectionView[]; drop: ConnectionView[] } {
  const keep: ConnectionView[] = []
  const drop: ConnectionView[] = []
  const preferred: ConnectionView['dialer'] = self < remote ? 'self' : 'remote'
  const kinds = new Set(conns.map((c) => c.kind))
  for (const kind of kinds) {
    const group = conns.filter((c) => c.kind === kind)
    if (kind === 'relayed') {
      if (kinds.has('direct')) drop.push(...group)
      else keep.push(...group)
      continue
    }
    if (group.length < 2) {
      keep.push(...group)
      continue
    }
    const byPreferred = group.filter((c) => c.dialer === preferred)
    const byOther = group.filter((c) => c.dialer !== preferred)
    // the dials of one side: the side that made them keeps its first (oldest) one
    const winners = byPreferred.length > 0 ? byPreferred : byOther
    if (byPreferred.length > 0) drop.push(...byOther)
    const sorted = [...winners].sort((a, b) => a.openedAt - b.openedAt || (a.id < b.id ? -1 : 1))
    if (sorted[0].dialer === 'self') {
      keep.push(sorted[0])
      drop.push(...sorted.slice(1))
    } else keep.push(...sorted)
  }
  return { keep, drop }
}

export interface OneConnectionDeps {
  self: PeerId
  /** libp2p's connections to a peer (the array it picks a connection for a new stream from) */
  connections(peer: PeerId): Connection[]
  /** whether this very connection finished member admission */
  admitted(conn: Connection): boolean
  /**
   * what cutting a stream of this protocol does: 'reopen', its user opens a new one on another
   * connection (cut at once); 'bounded', a request and its reply under their own deadline
   * (waited for up to graceMs: one that outlives it is stuck); 'wait', anything else (a tunnel,
   * an overlay stream, a block transfer, a relayed circuit: waited for as long as it lasts)
   */
  streamKind(protocol: string): 'reopen' | 'bounded' | 'wait'
  /** how long bounded streams are waited for */
  graceMs?: number
  /** how often a redundant connection that still carries other streams is looked at again */
  recheckMs?: number
  log?: (msg: string, fields: Record<string, unknown>) => void
  /** a redundant connection is being closed */
  closed?: () => void
}

/** a connection's streams as 'in PROTOCOL' / 'out PROTOCOL' (who opened each) */
const protocols = (c: Connection) =>
  c.streams.map((s) => `${s.direction === 'outbound' ? 'out' : 'in'} ${s.protocol ?? ''}`)

const RECHECK_MS = 5_000
/** a request with a reply (identify, a sync) ends within 10 s here; one that has not by then is stuck */
const GRACE_MS = 30_000

export class OneConnectionPerPeer {
  /** redundant connections waiting for their other streams to end: the kept one, since when */
  private readonly waiting = new Map<Connection, { kept: Connection; since: number }>()
  private timer: NodeJS.Timeout | undefined
  private stopped = false

  constructor(private readonly deps: OneConnectionDeps) {}

  stop(): void {
    this.stopped = true
    clearInterval(this.timer)
    this.timer = undefined
    this.waiting.clear()
  }

  /** Look at a peer's connections (call it when one of them finished admission). */
  check(peer: PeerId): void {
    if (this.stopped) return
    // a relayed connection may be limited (a relay outside this cluster's config): still one to drop
    const conns = this.deps
      .connections(peer)
      .filter(
        (c) =>
          c.status === 'open' &&
          (c.limits === undefined || pathKind(c.remoteAddr) === 'relayed') &&
          this.deps.admitted(c),
      )
    if (conns.length < 2) return
    const byId = new Map(conns.map((c) => [c.id, c]))
    const { keep, drop } = settle(
      this.deps.self.toString(),
      peer.toString(),
      conns.map((c) => ({
        id: c.id,
        dialer: c.direction === 'outbound' ? 'self' : 'remote',
        openedAt: c.timeline.open,
        kind: pathKind(c.remoteAddr),
      })),
    )
    if (drop.length === 0) return
    for (const d of drop) {
      // the kept one of the same kind (settle keeps one of every kind it drops from); for a
      // relayed one, the direct one
      const k = keep.find((c) => c.kind === (d.kind === 'relayed' ? 'direct' : d.kind))
      const conn = byId.get(d.id)
      const kept = k === undefined ? undefined : byId.get(k.id)
      if (conn === undefined || kept === undefined || this.waiting.has(conn)) continue
      this.deps.log?.('two connections to one member: keeping one, closing the other when it is free', {
        peer: peer.toString(),
        keep: { direction: kept.direction, path: k?.kind, streams: protocols(kept) },
        drop: { direction: conn.direction, path: d.kind, streams: protocols(conn) },
      })
      this.preferForNewStreams(peer, kept)
      this.waiting.set(conn, { kept, since: Date.now() })
    }
    this.sweep()
  }

  /**
   * libp2p opens a new stream on one of the peer's open connections, found in its list for the
   * peer; libp2p 3.3 sorts that list with a comparator that puts every direct connection before
   * the others by always answering -1, which V8's sort turns into the reverse order: the last
   * direct connection is the one used. Put the kept one last, so nothing new lands on the one
   * being drained (test/integration/one-connection.test.ts notices a change). The list is
   * libp2p's own array (getConnections returns it); if a later libp2p returns a copy, this does
   * nothing and the drain just waits longer for streams to end.
   */
  private preferForNewStreams(peer: PeerId, kept: Connection): void {
    const list = this.deps.connections(peer)
    const at = list.indexOf(kept)
    if (at >= 0 && at < list.length - 1) {
      list.splice(at, 1)
      list.push(kept)
    }
  }

  /** Close the redundant connections that carry nothing to wait for; look again later for the rest. */
  private sweep(): void {
    const now = Date.now()
    for (const [conn, { kept, since }] of this.waiting) {
      if (conn.status !== 'open' || kept.status !== 'open') {
        // gone, or the kept one went first: nothing to drop (the next open looks again)
        this.waiting.delete(conn)
        continue
      }
      const overdue = now - since >= (this.deps.graceMs ?? GRACE_MS)
      const busy = conn.streams.filter((s) => {
        const kind = this.deps.streamKind(s.protocol ?? '')
        return kind === 'wait' || (kind === 'bounded' && !overdue)
      })
      if (busy.length > 0) continue
      this.waiting.delete(conn)
      this.deps.closed?.()
      // what rode it is re-opened on the kept one by the assembly's connection:close rule, on
      // both ends (the other end did not close it and must re-open its streams too)
      void conn.close().catch((err: Error) => conn.abort(err))
    }
    if (this.waiting.size > 0 && this.timer === undefined && !this.stopped) {
      this.timer = setInterval(() => this.sweep(), this.deps.recheckMs ?? RECHECK_MS)
      this.timer.unref()
    } else if (this.waiting.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }
}
