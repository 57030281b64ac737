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
// a member that has just started may not know yet which member answers STUN
const ICE_WAIT_MS = 1_000
const ALLOW_CACHE_MS = 1_000

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
  private readonly metrics

  constructor(
    private readonly deps: {
      node: NodeComponent
      membership: MembershipComponent
      config: NatConfig
      webrtc: WebrtcConfig
      /** the agent's listen addresses (the STUN port defaults to the first TCP one) */
      listen: string[]
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
    if (this.deps.webrtc.enabled && config.webrtcUpgrade) {
      node.addEventListener('connection:open', this.onOpen)
      this.lifecycle.add(() => node.removeEventListener('connection:open', this.onOpen))
      this.lifecycle.every(RETRY_TICK_MS, () => this.retryRound())
    }
    this.running = true
  }

  async stop(): Promise<void> {
    this.running = false
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
    const p = this.inflight.get(peer.toString())
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

  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    // the side that dialled the relayed connection starts the upgrade, so only one does
    if (pathKind(conn.remoteAddr) !== 'relayed' || conn.direction !== 'outbound') return
    void this.upgrade(conn)
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
      void this.upgrade(relayed)
    }
    // members reached only through a relay with no attempt on record (the upgrade on open was
    // skipped: a stale WebRTC connection was still listed, or the other side dialled): one side
    // starts one, the one that dialled the relayed connection, or else the lower peer ID
    const self = node.peerId.toString()
    const byPeer = new Map<string, Connection[]>()
    for (const c of node.getConnections()) {
      if (c.status !== 'open' || !node.services.admission.connectionAdmitted(c)) continue
      const id = c.remotePeer.toString()
      byPeer.set(id, [...(byPeer.get(id) ?? []), c])
    }
    for (const [peer, conns] of byPeer) {
      if (this.failures.has(peer) || this.inflight.has(peer)) continue
      if (conns.some((c) => pathKind(c.remoteAddr) !== 'relayed')) continue
      const mine = conns.find((c) => c.direction === 'outbound') ?? (self < peer ? conns[0] : undefined)
      if (mine !== undefined) void this.upgrade(mine)
    }
  }

  private upgrade(relayed: Connection): Promise<Connection | undefined> {
    const peer = relayed.remotePeer
    const id = peer.toString()
    const existing = this.inflight.get(id)
    if (existing !== undefined) return existing
    const p = this.tryUpgrade(relayed).finally(() => this.inflight.delete(id))
    this.inflight.set(id, p)
    return p
  }

  private async tryUpgrade(relayed: Connection): Promise<Connection | undefined> {
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
        { peer: id, ms: Date.now() - started, addr: conn.remoteAddr.toString() },
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
