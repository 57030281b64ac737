import type { Connection, PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { Circuit } from '@multiformats/multiaddr-matcher'
import { Certificate, Statement } from '../../protocols/trust.js'
import type { Component } from '../kernel/component.js'
import { dataPaths } from '../kernel/datadir.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import { BackoffMap } from './backoff.js'
import type { Cluster } from './cluster.js'
import type { NodeConfig } from './config.js'
import { connectionLimit } from './connection-limit.js'
import { ConnectionLiveness } from './connection-liveness.js'
import { loadIdentity } from './identity.js'
import { InviteStore } from './invites.js'
import { Joiner } from './join.js'
import { createMeshNode, dhtProtocol, inRoutingTable, type MeshLibp2p, stopMeshNode } from './libp2p.js'
import { LocalLag } from './local-lag.js'
import { type PathKind, pathKind } from './paths.js'
import { LABELLED_PEERS, PeerTraffic } from './peer-traffic.js'
import { TrustStore } from './trust.js'

const MEMBER_TAG = 'mesh-member'
const RECONNECT_EVERY_MS = 10_000
const RECONNECT_BATCH = 8
/** a member that did not answer is tried again after 10 s, 20 s, ... at most every 5 min */
const REDIAL_MAX_MS = 300_000
/**
 * ... but a member with no connection at all tries at least once a minute: cut off, it hears
 * nothing (no sync brings news), and after a join storm a member whose only known peer was its
 * busy inviter stayed alone for 11 minutes behind a 5-minute back-off (bench:fleet, 15 agents).
 * A dial that fails costs little; an orphan whose cluster is gone makes one round a minute.
 */
const ISOLATED_REDIAL_MAX_MS = 60_000
/** the members known to the peer store are read anew this often (events keep them current between) */
const MEMBERS_REFRESH_MS = 300_000

export interface ConnectionInfo {
  peerId: string
  remoteAddr: string
  direction: 'inbound' | 'outbound'
  path: PathKind
  admitted: boolean
  openedAt: number
  rttMs?: number
  /** the protocols of its open streams, each as 'in PROTOCOL' or 'out PROTOCOL' (who opened it) */
  streams: string[]
}

/**
 * Owns the libp2p node: builds it on start, dials the cluster (seeds and every member
 * it has met before, from the persistent peer store), keeps reconnecting to known
 * members, and stops it on stop.
 */
export class NodeComponent implements Component {
  readonly name = 'node'
  private libp2p: MeshLibp2p | undefined
  private joiner: Joiner | undefined
  trust!: TrustStore
  invites!: InviteStore
  private key: PrivateKey | undefined
  private timer: NodeJS.Timeout | undefined
  private readonly rtt = new Map<string, number>()
  private readonly redials = new BackoffMap({ minMs: RECONNECT_EVERY_MS, maxMs: REDIAL_MAX_MS })
  /** per member the DHT lacks: the first retry on the next tick, then less and less often */
  private readonly refills = new BackoffMap({ minMs: RECONNECT_EVERY_MS / 2, maxMs: REDIAL_MAX_MS })
  /**
   * When the DHT refill should look at the connections next: at once after something that can
   * leave a member out of the table (a member connection admitted, a peer identified, a peer
   * dropped from the table), then only when a missing member's back-off is due. Scanning every
   * connection every tick regardless was 4 % of an idle agent's CPU in a 20-agent fleet.
   */
  private refillAt = 0
  /** counts refillSoon() calls, so one during a scan is not lost when the scan ends */
  private refillAsks = 0
  private readonly metrics
  /** bytes in and out per member (see peer-traffic.ts) */
  readonly traffic = new PeerTraffic()
  /** how late our timers run: handshake deadlines stretch by it (local-lag.ts) */
  readonly lag = new LocalLag()
  /**
   * The member-tagged peers of the peer store, for reconnect(). Reading them with peerStore.all()
   * decodes every record the store holds, every 10 s (a twentieth of an idle agent's
   * allocations, issue 20); 'peer:update' keeps this current, a full read every 5 min bounds
   * what a deletion (which has no event) leaves behind.
   */
  private members: { at: number; ids: Map<string, PeerId> } | undefined

  constructor(
    private readonly deps: {
      config: NodeConfig
      cluster: Cluster
      dataDir: string
      seeds: string[]
      reporter: ComponentReporter
      /** ICE servers for WebRTC (the NAT component's choice) */
      iceServers?: () => Array<{ urls: string }>
      /** addresses on the mesh's own interface: never announced or dialed (see NodeOptions) */
      insideOverlay?: (addr: Multiaddr) => boolean
      /** called once when an admin's revocation of this member arrives (the agent exits) */
      onRevoked?: (err: RevokedError) => void
      /** members' display names by peer ID, for the per-peer traffic metric's label */
      peerNames?: () => ReadonlyMap<string, string>
    },
  ) {
    const r = deps.reporter
    this.metrics = {
      connections: r.gauge('connections', 'open connections by path kind', ['path'], () => {
        const g = this.metrics.connections
        g.reset()
        for (const c of this.libp2p?.getConnections() ?? []) g.inc({ path: pathKind(c.remoteAddr) })
      }),
      dials: r.counter('dials_total', 'dials to known members by result', ['result']),
      lag: r.gauge(
        'event_loop_lag_ms',
        "how late this agent's timers run (the largest lateness, decayed); handshake deadlines stretch by 1 + (this - 50 ms) / 200 ms, at most 8x",
        [],
        (): void => this.metrics.lag.set(Math.round(this.lag.ms)),
      ),
      peerBytes: r.counter(
        'peer_bytes_total',
        `bytes with each member by direction; the first ${LABELLED_PEERS} members counted have their own series, the rest add up in peer="others"`,
        ['peer', 'direction'],
        () => {
          const g = this.metrics.peerBytes
          g.reset()
          const names = this.deps.peerNames?.()
          for (const [peer, t] of this.traffic.series((id) => names?.get(id))) {
            g.inc({ peer, direction: 'in' }, t.in)
            g.inc({ peer, direction: 'out' }, t.out)
          }
        },
      ),
    }
    r.health(() => {
      const revoked = this.revoked
      if (revoked !== undefined) return { ok: false, detail: revoked.message }
      return { ok: this.libp2p?.status === 'started', detail: this.libp2p?.status ?? 'not created' }
    })
  }

  /** Set when an admin revoked this member: it dials nobody any more (see libp2p.ts's gater). */
  get revoked(): RevokedError | undefined {
    const self = this.libp2p?.peerId.toString()
    const r = self === undefined ? undefined : this.trust?.revocationOf(self)
    return r === undefined ? undefined : new RevokedError(r.issuer, r.issued)
  }

  private onSelfRevoked(): void {
    const err = this.revoked
    if (err === undefined || this.revokedSeen) return
    this.revokedSeen = true
    this.deps.reporter.log.error({ by: err.issuer, at: new Date(err.issued).toISOString() }, err.message)
    clearInterval(this.timer)
    this.timer = undefined
    for (const c of this.libp2p?.getConnections() ?? []) void c.close().catch(() => {})
    this.deps.onRevoked?.(err)
  }

  private revokedSeen = false

  get privateKey(): PrivateKey {
    if (this.key === undefined) throw new Error('the node identity is not loaded')
    return this.key
  }

  get node(): MeshLibp2p {
    if (this.libp2p === undefined) throw new Error('the libp2p node is not started')
    return this.libp2p
  }

  async start(): Promise<void> {
    const { config, cluster, dataDir, reporter } = this.deps
    const privateKey = await loadIdentity(dataDir, { create: false })
    this.key = privateKey
    const trust = TrustStore.load(dataDir, cluster.id, cluster.admins ?? [])
    this.trust = trust
    // revoked before this start (the statement is in the data dir): say so instead of dialing
    const earlier = trust.revocationOf(peerIdFromPrivateKey(privateKey).toString())
    if (earlier !== undefined && config.exitWhenRevoked)
      throw new RevokedError(earlier.issuer, earlier.issued)
    this.invites = new InviteStore(dataDir)
    const empty = new Uint8Array(0)
    this.lag.start()
    this.libp2p = await createMeshNode({
      stretch: (ms) => this.lag.stretch(ms),
      config,
      cluster,
      privateKey,
      datastorePath: dataPaths(dataDir).datastore,
      reporter,
      iceServers: this.deps.iceServers,
      insideOverlay: this.deps.insideOverlay,
      trust: {
        ours: () => (trust.certificate === undefined ? empty : Certificate.encode(trust.certificate)),
        standing: (peer, cert) => trust.standing(peer, cert),
        isRevoked: (peer) => trust.isRevoked(peer),
        learn: (statement) => void trust.learn(statement),
      },
    })
    const node = this.libp2p
    this.joiner = new Joiner({
      node,
      cluster,
      dataDir,
      key: privateKey,
      trust,
      invites: this.invites,
      reporter,
    })
    await this.joiner.handle()
    // a revoked member is cut off everywhere at once
    const self = node.peerId.toString()
    trust.onStatement((st) => {
      if (st.kind !== Statement.Kind.REVOKE) return
      if (st.peerId === self) this.onSelfRevoked()
      else {
        this.traffic.forget(st.peerId)
        void node.services.admission.cutOff(st.peerId, node.getConnections())
      }
    })
    node.addEventListener('connection:open', (evt) => void this.onConnection(evt.detail))
    node.addEventListener('peer:update', (evt) => {
      const { peer } = evt.detail
      if (peer.tags.has(MEMBER_TAG)) this.members?.ids.set(peer.id.toString(), peer.id)
      else this.members?.ids.delete(peer.id.toString())
    })
    node.addEventListener('peer:identify', () => this.refillSoon())
    routingTableEvents(node.services.dht)?.addEventListener('peer:remove', () => this.refillSoon())
    node.addEventListener('connection:close', (evt) => {
      if (node.getConnections(evt.detail.remotePeer).length === 0)
        this.rtt.delete(evt.detail.remotePeer.toString())
    })
    try {
      await node.start()
    } catch (err) {
      await Promise.resolve(node.stop()).catch(() => {})
      throw explainListenError(err as Error, config.listen)
    }
    reporter.log.info(
      { peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) },
      'listening',
    )
    if (trust.certificate === undefined) {
      if (cluster.invite === undefined) {
        throw new Error(
          `this node has no member certificate and no invite to redeem; join with 'mesh agent --join TOKEN' ` +
            "using a fresh token from 'mesh invite' on an admin",
        )
      }
      reporter.log.info('redeeming the join token with the inviter')
      await this.joiner.redeem(cluster.invite, this.deps.seeds, config.name, () =>
        this.lag.stretch(config.dialTimeoutMs * 2),
      )
      reporter.log.info('joined: this node holds a member certificate')
    }
    if (this.revoked !== undefined) {
      this.onSelfRevoked()
      return
    }
    const tick = () => {
      void this.reconnect()
      if (Date.now() >= this.refillAt) void this.refillDht()
    }
    tick()
    this.timer = setInterval(tick, RECONNECT_EVERY_MS)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.lag.stop()
    if (this.libp2p !== undefined) await stopMeshNode(this.libp2p)
  }

  /** Remember admitted peers in the persistent peer store, so a restart can find them again. */
  private async onConnection(conn: Connection): Promise<void> {
    const node = this.libp2p
    if (node === undefined) return
    if (!(await node.services.admission.admitted(conn))) return
    this.traffic.count(conn)
    this.refillSoon()
    try {
      const known = await node.peerStore.get(conn.remotePeer).catch(() => undefined)
      if (known?.tags.has(MEMBER_TAG) !== true) {
        await node.peerStore.merge(conn.remotePeer, { tags: { [MEMBER_TAG]: { value: 50 } } })
      }
      // a yamux connection's RTT comes from liveness's muxer ping at open; others need a ping stream
      if (ConnectionLiveness.pingable(conn)) return
      const rtt = await node.services.ping.ping(conn.remotePeer, { signal: AbortSignal.timeout(2000) })
      this.rtt.set(conn.remotePeer.toString(), rtt)
    } catch {}
  }

  /** Have the next tick look for members the DHT lacks. */
  private refillSoon(): void {
    this.refillAt = 0
    this.refillAsks++
  }

  /**
   * kad-dht takes a peer into its routing table once, when identify shows it speaks the DHT
   * protocol, and only if a ping answers right then; a failed ping is not retried. A member
   * missing from the table is never asked, and with an empty table every DHT query (provide,
   * findProviders) waits for a peer until it times out. So every tick, identify again the
   * admitted DHT members the table lacks: the DHT hears of them anew and retries (see
   * protocols/blocks.md, 'The DHT'). A member that stays out of the table (its DHT keeps
   * refusing it) is asked less and less often, down to once per REDIAL_MAX_MS. Returns how many
   * were identified again.
   */
  async refillDht(): Promise<number> {
    const node = this.libp2p
    const dht = node?.services.dht
    if (node === undefined || node.status !== 'started' || dht === undefined) return 0
    const kad = dhtProtocol(this.deps.cluster)
    const now = Date.now()
    const asks = this.refillAsks
    const missing = new Set<string>()
    const byPeer = new Map<string, Connection>()
    for (const c of node.getConnections()) {
      if (byPeer.size >= RECONNECT_BATCH) break
      if (c.status !== 'open' || c.limits !== undefined || !node.services.admission.isAdmitted(c.remotePeer))
        continue
      const key = c.remotePeer.toString()
      if (missing.has(key) || byPeer.has(key)) continue
      if (await inRoutingTable(dht, c.remotePeer)) continue
      // members that run the DHT (identify listed its protocol; dht.enabled may be off elsewhere)
      const peer = await node.peerStore.get(c.remotePeer).catch(() => undefined)
      if (peer?.protocols.includes(kad) !== true) continue
      missing.add(key)
      if (this.refills.ready(key, now)) byPeer.set(key, c)
    }
    // a member now in the table, or gone, starts afresh next time it goes missing
    this.refills.retain(missing)
    for (const key of byPeer.keys()) this.refills.failed(key, now)
    // a scan cut short by the batch goes on next tick; else wait for the first back-off due
    if (asks === this.refillAsks)
      this.refillAt =
        byPeer.size >= RECONNECT_BATCH ? now : (this.refills.earliest() ?? Number.POSITIVE_INFINITY)
    const batch = [...byPeer.values()]
    const results = await Promise.allSettled(
      batch.map((c) =>
        node.services.identify.identify(c, {
          signal: AbortSignal.timeout(this.lag.stretch(this.deps.config.dialTimeoutMs)),
        }),
      ),
    )
    return results.filter((r) => r.status === 'fulfilled').length
  }

  /**
   * Dial seeds and known members we are not connected to; bounded per round, and each target
   * backs off on its own (10 s doubling to 5 min, with jitter), so members that are gone cost
   * a dial every few minutes, not every tick.
   */
  async reconnect(): Promise<{ tried: number; connected: number }> {
    const node = this.libp2p
    if (node === undefined || node.status !== 'started') return { tried: 0, connected: 0 }
    const now = Date.now()
    const targets: Array<{ key: string; target: PeerId | ReturnType<typeof multiaddr> }> = []
    const connected = new Set(node.getConnections().map((c) => c.remotePeer.toString()))
    for (const s of this.deps.seeds) {
      const ma = multiaddr(s)
      const pid = ma.getComponents().findLast((c) => c.name === 'p2p')?.value
      if (pid === node.peerId.toString()) continue
      if (pid === undefined || !connected.has(pid)) targets.push({ key: pid ?? s, target: ma })
    }
    // a seed that is also a known member is dialed once: a second dial to the same address
    // counts against its per-address limit on new connections
    const seen = new Set(targets.map((t) => t.key))
    for (const [key, id] of await this.knownMembers(node, now)) {
      if (!connected.has(key) && !seen.has(key) && !id.equals(node.peerId)) targets.push({ key, target: id })
    }
    this.redials.retain(new Set(targets.map((t) => t.key)))
    const cap = connected.size === 0 ? ISOLATED_REDIAL_MAX_MS : undefined
    const batch = targets.filter((t) => this.redials.ready(t.key, now, cap)).slice(0, RECONNECT_BATCH)
    const results = await Promise.allSettled(
      // libp2p's dial budget is dialTimeoutMs, stretched while we run late (libp2p.ts)
      batch.map((t) => node.dial(t.target as never)),
    )
    let ok = 0
    results.forEach((r, i) => {
      this.metrics.dials.inc({ result: r.status === 'fulfilled' ? 'ok' : 'error' })
      if (r.status === 'fulfilled') {
        ok++
        this.redials.succeeded(batch[i].key)
      } else this.redials.failed(batch[i].key, Date.now())
    })
    return { tried: batch.length, connected: ok }
  }

  private async knownMembers(node: MeshLibp2p, now: number): Promise<Map<string, PeerId>> {
    if (this.members === undefined || now - this.members.at >= MEMBERS_REFRESH_MS) {
      // in place first, so a 'peer:update' during the read is kept
      const members = { at: now, ids: new Map<string, PeerId>() }
      this.members = members
      const known = await node.peerStore.all({ filters: [(p) => p.tags.has(MEMBER_TAG)] })
      for (const p of known) members.ids.set(p.id.toString(), p.id)
      return members.ids
    }
    return this.members.ids
  }

  /**
   * Room for a connection to each of `members` members (connection-limit.ts): libp2p would
   * otherwise refuse inbound connections past its limit in a cluster larger than it.
   */
  fitConnectionLimit(members: number): void {
    const cm = this.libp2p?.services.connectionLimit
    if (cm === undefined) return
    const now = cm.getMaxConnections()
    const limit = connectionLimit(members, now)
    if (limit === now) return
    cm.setMaxConnections(limit)
    this.deps.reporter.log.info({ members, maxConnections: limit }, 'connection limit raised for the cluster')
  }

  connections(): ConnectionInfo[] {
    const node = this.libp2p
    if (node === undefined) return []
    return node.getConnections().map((c) => ({
      peerId: c.remotePeer.toString(),
      remoteAddr: c.remoteAddr.toString(),
      direction: c.direction,
      path: pathKind(c.remoteAddr),
      admitted: node.services.admission.connectionAdmitted(c),
      openedAt: c.timeline.open,
      rttMs: node.services.liveness.rtt(c) ?? this.rtt.get(c.remotePeer.toString()),
      streams: c.streams.map((st) => `${st.direction === 'outbound' ? 'out' : 'in'} ${st.protocol ?? ''}`),
    }))
  }

  /**
   * Measure RTT on every connection now (bounded by a short timeout): a muxer ping where the
   * connection has one, a ping stream only to peers reached over WebRTC alone.
   */
  async refreshRtt(timeoutMs = 1500): Promise<void> {
    const node = this.libp2p
    if (node === undefined) return
    const conns = node.getConnections()
    const muxerPinged = new Set(conns.filter(ConnectionLiveness.pingable).map((c) => c.remotePeer.toString()))
    const streamOnly = new Map<string, PeerId>()
    for (const c of conns)
      if (!muxerPinged.has(c.remotePeer.toString())) streamOnly.set(c.remotePeer.toString(), c.remotePeer)
    await Promise.allSettled([
      node.services.liveness.refresh(conns, timeoutMs),
      ...[...streamOnly.values()].map(async (p) => {
        const rtt = await node.services.ping.ping(p, { signal: AbortSignal.timeout(timeoutMs) })
        this.rtt.set(p.toString(), rtt)
      }),
    ])
  }

  /** Addresses a joiner can reach us at: listen/announce addresses that are not relay circuits. */
  reachableAddrs(): string[] {
    return this.node
      .getMultiaddrs()
      .filter(
        (ma) =>
          !Circuit.matches(ma) &&
          ['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(ma.getComponents()[0]?.name ?? ''),
      )
      .map(String)
  }
}

/** libp2p reports a busy port deep in its stack; say which address and what to do. */
function explainListenError(err: Error, listen: string[]): Error {
  const text = `${err.message} ${(err as { cause?: Error }).cause?.message ?? ''}`
  if (/EADDRINUSE|address already in use/i.test(text)) {
    return new Error(
      `cannot listen on ${listen.join(', ')}: the address is already in use (another mesh agent or program ` +
        'holds the port). Stop it, or choose another address with --listen or the listen key in config.yaml.',
    )
  }
  if (/EADDRNOTAVAIL|EACCES/i.test(text)) {
    return new Error(
      `cannot listen on ${listen.join(', ')}: ${err.message}. Check the address belongs to this machine.`,
    )
  }
  return err
}

/** The DHT routing table's events (the published KadDHT type omits its routingTable). */
function routingTableEvents(dht: unknown): EventTarget | undefined {
  const table = (dht as { routingTable?: Partial<EventTarget> } | undefined)?.routingTable
  return typeof table?.addEventListener === 'function' ? (table as EventTarget) : undefined
}

/** This member was revoked by an admin: it stops (exit code 4) unless told to stay. */
export class RevokedError extends Error {
  override name = 'RevokedError'
  readonly exitCode = 4

  constructor(
    readonly issuer: string,
    readonly issued: number,
  ) {
    super(
      `this member was revoked by admin ${issuer} at ${new Date(issued).toISOString()}: the cluster ` +
        'refuses it for good. To come back, ask an admin for a new invite (mesh invite) and join with ' +
        "a fresh data dir (mesh agent --join TOKEN --data-dir NEW); set 'exitWhenRevoked: false' to " +
        'keep a revoked agent running (it dials nobody)',
    )
  }
}
