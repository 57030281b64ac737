import type { Connection, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { Circuit } from '@multiformats/multiaddr-matcher'
import { type Component, Lifecycle } from '../kernel/component.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import type { MembershipComponent } from '../membership/service.js'
import type { WebrtcConfig } from '../node/config.js'
import type { NodeComponent } from '../node/node-component.js'
import { pathKind } from '../node/paths.js'
import type { NatConfig } from './config.js'
import { Reachability } from './reachability.js'
import { StunServer } from './stun-server.js'

/** The tag a member sets on its own record when it answers STUN: the UDP port. */
export const STUN_TAG = 'mesh.stun'
const UPGRADE_TIMEOUT_MS = 10_000
// a failed upgrade is tried again after 2 s (a transient: the peer had just restarted), then
// after 10 s, doubling up to 5 min
const RETRY_FIRST_MS = 2_000
const RETRY_MS = 10_000
const BACKOFF_MAX_MS = 5 * 60_000
const RETRY_TICK_MS = 1_000
// with no relayed or WebRTC connection, no upgrade owed and libdatachannel released there is
// nothing to retry, park or release: the tick slows down (a new connection speeds it up at once)
const QUIET_TICK_MS = 30_000
// a member that has just started may not know yet which member answers STUN
const ICE_WAIT_MS = 1_000
const ALLOW_CACHE_MS = 1_000
// a member is in use while a data stream to it is open or mesh0 packets went to or came from it
// this recently: a parked path is upgraded again, an open one is not parked
const IN_USE_MS = 5_000
// libdatachannel is released this long after its last connection closed (its close is async)
const RELEASE_AFTER_MS = 5_000
/**
 * Streams that make a member "in use": bytes a user moves (mesh0's carrier reports its own).
 * Not the datasets control protocol: it carries requests (holds, replicate) and the tag sync
 * every member runs with a random member every 30 s and on every connection it dials, so a
 * parked path came back by itself whenever a tick saw one of those open (on a loaded machine a
 * sync stays open for a second or more); the bytes a replicate request moves go on blocks.
 */
const DATA_PROTOCOLS = /\/(tunnel|blocks)\//
const HAD_WEBRTC_MAX = 10_000
// the side that did not dial the relayed connection waits this long for the dialler's upgrade
const INBOUND_GRACE_MS = 3_000
/**
 * What started an upgrade (in its log line): the relayed connection we dialled opened, a retry
 * after a failure, a relayed-only member with no attempt on record, a parked path in use again.
 */
type UpgradeWhy = 'relayed-open' | 'retry' | 'unattempted' | 'in-use'

export interface NatStatus {
  reachable: boolean
  reachableNetworks: readonly string[]
  /** the UDP port this member answers STUN on, if it does */
  stunPort?: number
  /** what this member's WebRTC would use now */
  iceServers: string[]
}

/** The circuit address of a relayed connection with /webrtc inserted: WebRTC signalled through that relay. */
export function webrtcAddrThrough(relayed: Multiaddr, peer: string): Multiaddr | undefined {
  const comps = relayed.getComponents()
  const at = comps.findIndex((c) => c.name === 'p2p-circuit')
  if (at < 0) return undefined
  const base = comps
    .slice(0, at + 1)
    .map((c) => `/${c.name}${c.value === undefined ? '' : `/${c.value}`}`)
    .join('')
  return multiaddr(`${base}/webrtc/p2p/${peer}`)
}

function ipOf(ma: Multiaddr): string | undefined {
  const first = ma.getComponents()[0]
  return first?.name === 'ip4' || first?.name === 'ip6' ? first.value : undefined
}

const stunUrl = (ip: string, port: number) =>
  ip.includes(':') ? `stun:[${ip}]:${port}` : `stun:${ip}:${port}`

/**
 * Direct paths between members behind NAT (NAT-LAB.md): reachable members answer STUN for
 * members, every member uses one of them as its ICE server (no public STUN service), and a
 * relayed connection is followed at once by a WebRTC connection signalled through the same
 * relay, which libp2p and the tunnel dialer then prefer. Where WebRTC cannot connect (a
 * symmetric NAT), the relay keeps working and the upgrade is retried with back-off.
 */
export class NatComponent implements Component {
  readonly name = 'nat'
  readonly lifecycle = new Lifecycle()
  private running = false
  readonly reachability: Reachability
  private stun: StunServer | undefined
  private reachable = false
  private readonly inflight = new Map<string, Promise<Connection | undefined>>()
  private readonly failures = new Map<string, { count: number; retryAt: number }>()
  private allowCache: { at: number; ips: Set<string> } | undefined
  /** a relay we reach directly, as a STUN server guess while the member table knows none yet */
  private relayHint: string | undefined
  /** last time a data stream to a member was seen open */
  private readonly lastData = new Map<string, number>()
  /**
   * Members we have had a WebRTC path with in this process: from then on their path is upgraded
   * only when in use, also after their relayed connection broke and came back (a restarted
   * member upgrades from its own side, which starts with an empty set). Bounded, oldest out.
   */
  private readonly hadWebrtc = new Set<string>()
  /** members only the other side dialled a relayed connection to, owing an upgrade: since when */
  private readonly dialerOwes = new Map<string, number>()
  /** libdatachannel was used in this process and not released since; when its last connection went */
  private native: { lastConnAt: number } | undefined
  private tickTimer: { timer: NodeJS.Timeout; due: number } | undefined
  /** node-datachannel, loaded at start (already loaded by @libp2p/webrtc): cleanup() runs with no await before it */
  private ndc: { cleanup(): void } | undefined
  private readonly metrics

  constructor(
    private readonly deps: {
      node: NodeComponent
      membership: MembershipComponent
      config: NatConfig
      webrtc: WebrtcConfig
      /** the agent's listen addresses (the STUN port defaults to the first TCP one) */
      listen: string[]
      /** when mesh0 last carried packets to or from a member */
      lastPacketAt?: (peer: string) => number | undefined
      /** something besides libp2p holds a libdatachannel connection (mesh0's datagram channel) */
      nativeInUse?: () => boolean
      reporter: ComponentReporter
    },
  ) {
    this.reachability = new Reachability(deps.config.reachableNetworks)
    const r = deps.reporter
    this.metrics = {
      stun: r.counter('stun_requests_total', 'STUN binding requests, by outcome', ['outcome']),
      upgrades: r.counter('webrtc_upgrades_total', 'relayed -> WebRTC upgrade attempts, by result', [
        'result',
      ]),
      parked: r.counter(
        'webrtc_parked_total',
        'idle WebRTC paths closed (the member stays on its relayed or direct connection)',
      ),
      released: r.counter(
        'webrtc_released_total',
        "libdatachannel's threads released with no WebRTC path left",
      ),
    }
    r.health(() => ({
      ok: this.running,
      detail: `${this.reachable ? 'reachable' : 'not reachable'}; STUN ${this.stun === undefined ? 'not answered here' : `on udp/${this.stun.port}`}`,
    }))
  }

  async start(): Promise<void> {
    const { config } = this.deps
    const node = this.deps.node.node
    this.reachable = this.deps.node.reachableAddrs().some((a) => this.reachability.addr(multiaddr(a)))
    const serve = config.stun === 'on' || (config.stun === 'auto' && this.reachable)
    if (serve) {
      const port = config.stunPort !== 0 ? config.stunPort : this.tcpPort()
      const stun = new StunServer({
        port,
        allow: (ip) => this.isMemberIp(ip),
        onRequest: (outcome, ip, reason) => {
          this.metrics.stun.inc({ outcome })
          if (outcome === 'malformed') this.deps.reporter.log.debug({ ip, reason }, 'malformed STUN request')
        },
      })
      try {
        await stun.start()
        this.stun = stun
        this.deps.reporter.log.info({ port: stun.port }, 'answering STUN for members')
      } catch (err) {
        // without STUN here, members behind NAT use another member's or stay relayed: not fatal
        this.deps.reporter.log.warn(
          { port, err: (err as Error).message },
          'cannot answer STUN on this UDP port; set nat.stunPort to a free port, or nat.stun: off',
        )
      }
    }
    this.running = true
    if (this.deps.webrtc.enabled && config.webrtcUpgrade) {
      if (config.parkIdleMs > 0) {
        try {
          this.ndc = await import('node-datachannel')
        } catch {}
      }
      node.addEventListener('connection:open', this.onOpen)
      this.lifecycle.add(() => node.removeEventListener('connection:open', this.onOpen))
      this.lifecycle.add(() => clearTimeout(this.tickTimer?.timer))
      this.scheduleTick(RETRY_TICK_MS)
    }
  }

  async stop(): Promise<void> {
    this.running = false
    clearTimeout(this.tickTimer?.timer)
    this.tickTimer = undefined
    await this.stun?.stop()
    this.stun = undefined
  }

  /** Tags for our own member record. */
  tags(): Record<string, string> {
    return this.stun !== undefined ? { [STUN_TAG]: String(this.stun.port) } : {}
  }

  /**
   * The ICE servers for a new WebRTC connection: the admin's, when configured; else one
   * member that answers STUN, preferring one we hold a direct connection to (its address as
   * we reach it proves it reachable). One, because libdatachannel uses a single STUN server.
   */
  iceServers(): Array<{ urls: string }> {
    const configured = this.deps.webrtc.iceServers
    if (configured.length > 0) return configured.map((urls) => ({ urls }))
    const membership = this.deps.membership
    const node = this.deps.node.node
    const self = node.peerId.toString()
    const viaRecord: string[] = []
    for (const row of membership.rows()) {
      if (row.peerId === self || row.status !== 'alive') continue
      const port = Number(row.entry.signed.info.tags[STUN_TAG])
      if (!Number.isInteger(port) || port <= 0 || port > 65_535) continue
      for (const c of node.getConnections(peerIdFromString(row.peerId))) {
        if (c.status !== 'open' || pathKind(c.remoteAddr) !== 'direct') continue
        const ip = ipOf(c.remoteAddr)
        if (ip !== undefined) return [{ urls: stunUrl(ip, port) }]
      }
      for (const a of row.entry.signed.info.addrs) {
        try {
          const ma = multiaddr(a)
          const ip = ipOf(ma)
          if (ip !== undefined && !Circuit.matches(ma) && this.reachability.addr(ma))
            viaRecord.push(stunUrl(ip, port))
        } catch {}
      }
    }
    if (viaRecord.length > 0) return [{ urls: viaRecord[0] }]
    return this.relayHint !== undefined ? [{ urls: this.relayHint }] : []
  }

  status(): NatStatus {
    return {
      reachable: this.reachable,
      reachableNetworks: this.reachability.networks,
      stunPort: this.stun?.port,
      iceServers: this.iceServers().map((s) => s.urls),
    }
  }

  /** Resolves with the WebRTC connection an upgrade in flight to `peer` makes, or undefined after `waitMs`. */
  async pendingUpgrade(peer: PeerId, waitMs: number): Promise<Connection | undefined> {
    const id = peer.toString()
    // a member whose idle path was parked: a tunnel to it is the use that brings it back
    if (!this.inflight.has(id) && this.hadWebrtc.has(id) && this.running) {
      this.lastData.set(id, Date.now())
      this.retryRound()
    }
    const p = this.inflight.get(id)
    if (p === undefined) return undefined
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), waitMs)
    })
    try {
      return await Promise.race([p, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  private tcpPort(): number {
    for (const ma of this.deps.node.node.getMultiaddrs()) {
      const tcp = ma.getComponents().find((c) => c.name === 'tcp')
      if (tcp?.value !== undefined && !Circuit.matches(ma)) return Number(tcp.value)
    }
    const fromConfig = this.deps.listen.map((l) =>
      multiaddr(l)
        .getComponents()
        .find((c) => c.name === 'tcp'),
    )
    return Number(fromConfig.find((c) => c !== undefined)?.value ?? 4701)
  }

  /** IPs an admitted member is connected from directly: the only ones STUN answers. */
  private isMemberIp(ip: string): boolean {
    const now = Date.now()
    if (this.allowCache === undefined || now - this.allowCache.at > ALLOW_CACHE_MS) {
      const node = this.deps.node.node
      const ips = new Set<string>()
      for (const c of node.getConnections()) {
        if (c.status !== 'open' || pathKind(c.remoteAddr) !== 'direct') continue
        if (!node.services.admission.isAdmitted(c.remotePeer)) continue
        const a = ipOf(c.remoteAddr)
        if (a !== undefined) ips.add(a.startsWith('::ffff:') ? a.slice(7) : a)
      }
      this.allowCache = { at: now, ips }
    }
    return this.allowCache.ips.has(ip)
  }

  /** Run the tick in `ms` (or sooner if one is already due sooner). */
  private scheduleTick(ms: number): void {
    if (!this.running) return
    const due = Date.now() + ms
    if (this.tickTimer !== undefined) {
      if (this.tickTimer.due <= due) return
      clearTimeout(this.tickTimer.timer)
    }
    const timer = setTimeout(() => {
      this.tickTimer = undefined
      this.tick()
    }, ms)
    timer.unref()
    this.tickTimer = { timer, due }
  }

  private tick(): void {
    if (!this.running) return
    this.retryRound()
    const paths = this.parkIdle()
    this.releaseNative()
    const busy = paths || this.failures.size > 0 || this.inflight.size > 0 || this.native !== undefined
    this.scheduleTick(busy ? RETRY_TICK_MS : QUIET_TICK_MS)
  }

  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    const kind = pathKind(conn.remoteAddr)
    if (kind === 'relayed' || kind === 'webrtc') this.scheduleTick(RETRY_TICK_MS)
    if (kind === 'webrtc') {
      this.hadWebrtc.add(conn.remotePeer.toString())
      this.native = { lastConnAt: Date.now() }
      return
    }
    // the side that dialled the relayed connection starts the upgrade, so only one does
    if (kind !== 'relayed' || conn.direction !== 'outbound') return
    if (this.hadWebrtc.has(conn.remotePeer.toString()) && !this.inUse(conn.remotePeer.toString(), Date.now()))
      return
    void this.upgrade(conn, this.hadWebrtc.has(conn.remotePeer.toString()) ? 'in-use' : 'relayed-open')
  }

  /** A data stream is open to the member, or mesh0 moved its packets, within IN_USE_MS. */
  private inUse(peer: string, now: number): boolean {
    const last = Math.max(this.lastData.get(peer) ?? 0, this.deps.lastPacketAt?.(peer) ?? 0)
    return now - last < IN_USE_MS
  }

  /**
   * Close WebRTC paths that carried nothing for nat.parkIdleMs while a relayed or a direct
   * connection to the same member is open: an idle WebRTC connection costs libdatachannel's
   * threads (usrsctp ticks every 10 ms), a relayed one costs the hub a few hundred bytes a second
   * of probes. (A relayed connection beside a direct one is closed by one-connection.ts, so
   * after a WebRTC upgrade raced a direct connection only the direct one may be left beside it.)
   */
  private parkIdle(): boolean {
    const parkAfter = this.deps.config.parkIdleMs
    const node = this.deps.node.node
    const admission = node.services.admission
    const now = Date.now()
    const byPeer = new Map<string, { webrtc: Connection[]; relayed: boolean; direct: boolean }>()
    for (const c of node.getConnections()) {
      const id = c.remotePeer.toString()
      const kind = pathKind(c.remoteAddr)
      if (kind === 'webrtc') this.native = { lastConnAt: now }
      if (c.status !== 'open' || !admission.connectionAdmitted(c)) continue
      if (c.streams.some((st) => DATA_PROTOCOLS.test(st.protocol ?? ''))) this.lastData.set(id, now)
      const e = byPeer.get(id) ?? { webrtc: [], relayed: false, direct: false }
      byPeer.set(id, e)
      if (kind === 'webrtc') e.webrtc.push(c)
      else if (kind === 'relayed') e.relayed = true
      else if (kind === 'direct') e.direct = true
    }
    let paths = false
    for (const e of byPeer.values()) paths ||= e.relayed || e.webrtc.length > 0
    for (const peer of this.lastData.keys()) if (!byPeer.has(peer)) this.lastData.delete(peer)
    for (const peer of this.hadWebrtc) {
      if (this.hadWebrtc.size <= HAD_WEBRTC_MAX) break
      this.hadWebrtc.delete(peer)
    }
    if (parkAfter === 0) return paths
    for (const [peer, e] of byPeer) {
      if (e.webrtc.length === 0 || !(e.relayed || e.direct)) continue
      const opened = Math.max(...e.webrtc.map((c) => c.timeline.open))
      const last = Math.max(opened, this.lastData.get(peer) ?? 0, this.deps.lastPacketAt?.(peer) ?? 0)
      if (now - last < parkAfter) continue
      this.hadWebrtc.add(peer)
      for (const c of e.webrtc) void c.close().catch(() => {})
      this.metrics.parked.inc()
      this.deps.reporter.log.info(
        { peer, idleS: Math.round((now - last) / 1000), on: e.direct ? 'direct' : 'relayed' },
        'idle WebRTC path parked; the member stays on its other connection until it is used',
      )
    }
    return paths
  }

  /**
   * node-datachannel's cleanup() once no WebRTC connection, upgrade or signalling is left: it
   * ends libdatachannel's threads (usrsctp's 10 ms timer among them), and the next WebRTC
   * connection starts them again. It closes every libdatachannel connection of the process, so
   * it waits for mesh0's datagram channels too, and never runs where a webrtc-direct listener is.
   */
  private releaseNative(): void {
    const native = this.native
    if (native === undefined || this.ndc === undefined || this.deps.config.parkIdleMs === 0) return
    const now = Date.now()
    if (now - native.lastConnAt < RELEASE_AFTER_MS || this.inflight.size > 0) return
    const node = this.deps.node.node
    if (node.getMultiaddrs().some((ma) => ma.toString().includes('/webrtc-direct'))) return
    for (const c of node.getConnections()) {
      if (pathKind(c.remoteAddr) === 'webrtc') return
      if (c.streams.some((st) => (st.protocol ?? '').includes('webrtc-signaling'))) return
    }
    if (this.deps.nativeInUse?.() === true) return
    this.native = undefined
    try {
      const t0 = performance.now()
      this.ndc.cleanup()
      this.metrics.released.inc()
      this.deps.reporter.log.info(
        { ms: Math.round(performance.now() - t0) },
        "no WebRTC path left: libdatachannel's threads released",
      )
    } catch (err) {
      this.deps.reporter.log.warn({ err: (err as Error).message }, 'releasing libdatachannel failed')
    }
  }

  /** Relayed-only members whose upgrade failed earlier get another try, with back-off. */
  private retryRound(): void {
    const node = this.deps.node.node
    const now = Date.now()
    for (const [peer, f] of this.failures) {
      if (f.retryAt > now || this.inflight.has(peer)) continue
      const conns = node
        .getConnections(peerIdFromString(peer))
        .filter((c) => c.status === 'open' && node.services.admission.connectionAdmitted(c))
      const relayed = conns.find((c) => pathKind(c.remoteAddr) === 'relayed')
      if (relayed === undefined || conns.some((c) => pathKind(c.remoteAddr) !== 'relayed')) {
        this.failures.delete(peer)
        continue
      }
      void this.upgrade(relayed, 'retry')
    }
    // members reached only through a relay with no attempt on record (the upgrade on open was
    // skipped: a stale WebRTC connection was still listed, or a parked path is in use again):
    // the side that dialled the relayed connection starts one (the lower peer ID when both
    // did). The other side stepped in too when its peer ID was the lower, so a use both sides
    // saw at once made two WebRTC connections (one-connection.ts then closed one); now it waits
    // INBOUND_GRACE_MS for the dialler (a signalling stream on the connection: it is at it) and
    // only then starts one itself (a restarted member whose dialler, which knew it, waits for a use)
    const self = node.peerId.toString()
    const byPeer = new Map<string, Connection[]>()
    for (const c of node.getConnections()) {
      if (c.status !== 'open' || !node.services.admission.connectionAdmitted(c)) continue
      const id = c.remotePeer.toString()
      byPeer.set(id, [...(byPeer.get(id) ?? []), c])
    }
    const waiting = new Set<string>()
    for (const [peer, conns] of byPeer) {
      if (this.failures.has(peer) || this.inflight.has(peer)) continue
      if (conns.some((c) => pathKind(c.remoteAddr) !== 'relayed')) continue
      // a parked (or lost) WebRTC path comes back when the member is used, not by itself
      if (this.hadWebrtc.has(peer) && !this.inUse(peer, now)) continue
      const why = this.hadWebrtc.has(peer) ? 'in-use' : 'unattempted'
      const out = conns.filter((c) => c.direction === 'outbound')
      if (out.length > 0) {
        if (out.length === conns.length || self < peer) void this.upgrade(out[0], why)
        continue
      }
      waiting.add(peer)
      // the dialler at it: its signalling stream on the relayed connection, or its WebRTC
      // connection open and not admitted yet
      const atIt =
        conns.some((c) => c.streams.some((st) => (st.protocol ?? '').includes('webrtc-signaling'))) ||
        node
          .getConnections(conns[0].remotePeer)
          .some((c) => c.status === 'open' && pathKind(c.remoteAddr) === 'webrtc')
      const since = this.dialerOwes.get(peer)
      if (since === undefined || atIt) this.dialerOwes.set(peer, now)
      else if (now - since >= INBOUND_GRACE_MS) {
        this.dialerOwes.delete(peer)
        void this.upgrade(conns[0], why)
      }
    }
    for (const peer of this.dialerOwes.keys()) if (!waiting.has(peer)) this.dialerOwes.delete(peer)
  }

  private upgrade(relayed: Connection, why: UpgradeWhy): Promise<Connection | undefined> {
    const peer = relayed.remotePeer
    const id = peer.toString()
    const existing = this.inflight.get(id)
    if (existing !== undefined) return existing
    const p = this.tryUpgrade(relayed, why).finally(() => this.inflight.delete(id))
    this.inflight.set(id, p)
    return p
  }

  private async tryUpgrade(relayed: Connection, why: UpgradeWhy): Promise<Connection | undefined> {
    const node = this.deps.node.node
    const peer = relayed.remotePeer
    const id = peer.toString()
    const log = this.deps.reporter.log
    if (!(await node.services.admission.admitted(relayed))) return undefined
    // a WebRTC connection already open: nothing to do (a direct TCP one may be why we are relayed: a firewall)
    const admission = node.services.admission
    if (
      node
        .getConnections(peer)
        .some(
          (c) =>
            c.status === 'open' && pathKind(c.remoteAddr) === 'webrtc' && admission.connectionAdmitted(c),
        )
    )
      return undefined
    const target = webrtcAddrThrough(relayed.remoteAddr, id)
    if (target === undefined) return undefined
    const started = Date.now()
    this.native = { lastConnAt: started }
    // without a STUN server only host candidates are offered, which cannot cross a NAT; right
    // after a start the member table may not say yet who answers STUN: wait a little for it
    for (let i = 0; i < ICE_WAIT_MS / 250 && this.iceServers().length === 0; i++) {
      await new Promise((r) => setTimeout(r, 250))
    }
    if (this.iceServers().length === 0) {
      // still none: the relay is reachable, and a member answers STUN on its TCP port number
      // by default, so ask it (no answer costs nothing more than having no STUN server)
      const relay = relayed.remoteAddr
      const ip = ipOf(relay)
      const port = relay.getComponents().find((c) => c.name === 'tcp')?.value
      if (ip !== undefined && port !== undefined) this.relayHint = stunUrl(ip, Number(port))
    }
    try {
      const signal = AbortSignal.timeout(UPGRADE_TIMEOUT_MS)
      let conn: Connection | undefined
      // libp2p joins a dial to a peer with one still in its queue (the relayed dial that opened
      // this connection may not have returned yet) and hands back its relayed connection; and
      // without force it returns any existing unlimited connection: force, and try again
      for (let i = 0; i < 4 && (conn === undefined || pathKind(conn.remoteAddr) === 'relayed'); i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 250))
        conn = await node.dial(target, { signal, force: true })
      }
      if (conn === undefined || pathKind(conn.remoteAddr) === 'relayed')
        throw new Error('libp2p kept returning the relayed connection')
      // connected means admitted: the member handshake ran over the new path
      if (!(await node.services.admission.admitted(conn))) {
        conn.abort(new Error('the WebRTC connection was not admitted'))
        throw new Error('the WebRTC connection opened but its member handshake did not complete')
      }
      this.failures.delete(id)
      this.metrics.upgrades.inc({ result: 'webrtc' })
      log.info(
        { peer: id, ms: Date.now() - started, addr: conn.remoteAddr.toString(), why },
        'path upgraded: relayed -> webrtc',
      )
      return conn
    } catch (err) {
      const f = this.failures.get(id) ?? { count: 0, retryAt: 0 }
      f.count++
      f.retryAt =
        Date.now() +
        (f.count === 1 ? RETRY_FIRST_MS : Math.min(BACKOFF_MAX_MS, RETRY_MS * 2 ** (f.count - 2)))
      this.failures.set(id, f)
      this.metrics.upgrades.inc({ result: 'failed' })
      log.info(
        {
          peer: id,
          why,
          attempt: f.count,
          err: (err as Error).message,
          iceServers: this.iceServers().map((s) => s.urls),
        },
        'WebRTC upgrade failed; staying relayed',
      )
      return undefined
    }
  }
}
