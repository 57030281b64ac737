import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { autoNAT } from '@libp2p/autonat'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { gossipsub } from '@libp2p/gossipsub'
import { identify, identifyPush } from '@libp2p/identify'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { AddressManager, ConnectionManager } from '@libp2p/interface-internal'
import { type KadDHT, kadDHT, passthroughMapper, type SingleKadDHT } from '@libp2p/kad-dht'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import type { Multiaddr } from '@multiformats/multiaddr'
import { LevelDatastore } from 'datastore-level'
import { createLibp2p } from 'libp2p'
import type { ComponentReporter } from '../kernel/reporter.js'
import { type AdmissionInit, admission } from './admission.js'
import { type Cluster, deriveKey, protocolPrefix } from './cluster.js'
import { coalescedWrites, tcpBulkOptions } from './coalesced-writes.js'
import type { NodeConfig } from './config.js'
import { connectDeadline } from './connect-deadline.js'
import { ConnectionLiveness } from './connection-liveness.js'
import { dialable } from './dialable.js'
import { INBOUND_LIMITS, PendingInbound } from './inbound-limits.js'
import { decryptInPieces, noiseCrypto } from './noise-pieces.js'
import { OneConnectionPerPeer } from './one-connection.js'
import { quietPeerStore } from './quiet-peer-store.js'
import { relayPolicy } from './relays.js'
import { libp2pLogger } from './silent-logger.js'
import { deferYamuxWindowUpdates } from './yamux-window.js'

export interface NodeOptions {
  config: NodeConfig
  cluster: Cluster
  privateKey: PrivateKey
  datastorePath: string
  reporter: ComponentReporter
  trust: AdmissionInit['trust'] & { isRevoked(peerId: string): boolean }
  /** ICE servers for each new WebRTC connection (the cluster's own STUN); never public ones */
  iceServers?: () => Array<{ urls: string }>
  /**
   * An address on the mesh's own interface (mesh0): never announced and never dialed, since a
   * member path through the overlay would carry the overlay itself (it loops and collapses)
   */
  insideOverlay?: (addr: Multiaddr) => boolean
  /**
   * A handshake deadline as it stands now: stretched while this process's event loop runs late
   * (local-lag.ts), so an overloaded agent does not cut its own handshakes off. As is without.
   */
  stretch?: (ms: number) => number
}

/** how long a TCP dial may take to connect (the upgrade after it has the rest of the dial budget) */
const TCP_CONNECT_MS = 1_500
/** every connection is pinged this often (a muxer ping, see connection-liveness.ts) ... */
const LIVENESS_INTERVAL_MS = 30_000
/** ... and closed when the ping goes unanswered this long (libp2p's monitor allowed 5-60 s) */
const LIVENESS_TIMEOUT_MS = 20_000
/** concurrent ping streams per connection, each way (see the ping service below) */
const PING_STREAMS = 8

/** The cluster's private kad-dht protocol id. */
export function dhtProtocol(cluster: Cluster): string {
  return `${protocolPrefix(cluster)}/kad/1.0.0`
}

/** The DHT routing table's size (the single DHT built here has one; the KadDHT type omits it). */
export function routingTableSize(dht: KadDHT | undefined): number {
  return (dht as Partial<SingleKadDHT> | undefined)?.routingTable?.size ?? 0
}

/**
 * Whether the DHT's routing table holds this peer. The published RoutingTable type shows only
 * its size; the class has find(). Without find(), any non-empty table counts as holding it.
 */
export async function inRoutingTable(dht: KadDHT, peer: PeerId): Promise<boolean> {
  const table = (dht as Partial<SingleKadDHT>).routingTable as
    | { size: number; find?: (p: PeerId) => Promise<PeerId | undefined> }
    | undefined
  if (table === undefined) return false
  if (typeof table.find !== 'function') return table.size > 0
  return (await table.find(peer).catch(() => undefined)) !== undefined
}

export type MeshLibp2p = Awaited<ReturnType<typeof createMeshNode>>

/**
 * libp2p reads its dial deadlines and the inbound upgrade deadline from fields of its dial
 * queue and upgrader at each dial and each inbound connection: make those fields read the
 * stretched value. They are internals (test/integration/libp2p-quirks.test.ts notices a change);
 * if they are gone, the deadlines stay fixed and the log says so.
 */
function stretchDeadlines(
  node: object,
  config: NodeConfig,
  stretch: (ms: number) => number,
  reporter: ComponentReporter,
): void {
  const components = (node as { components?: Record<string, unknown> }).components
  const upgrader = components?.upgrader as Record<string, unknown> | undefined
  const dialQueue = (components?.connectionManager as { dialQueue?: Record<string, unknown> } | undefined)
    ?.dialQueue
  const fields: Array<[Record<string, unknown> | undefined, string, number]> = [
    [upgrader, 'inboundUpgradeTimeout', INBOUND_LIMITS.upgradeTimeoutMs],
    [dialQueue, 'dialTimeout', config.dialTimeoutMs],
    [dialQueue, 'addressDialTimeout', config.dialTimeoutMs],
  ]
  for (const [owner, field, base] of fields) {
    if (owner === undefined || typeof owner[field] !== 'number') {
      reporter.log.warn(
        { field },
        'cannot stretch a libp2p deadline (libp2p internals changed?): it stays fixed',
      )
      continue
    }
    Object.defineProperty(owner, field, { get: () => stretch(base), configurable: true })
  }
}

/**
 * The libp2p node: TCP, circuit relay v2 and WebRTC transports; Noise with a cluster-bound
 * prologue (a peer without the cluster key fails the handshake on TCP and relayed connections)
 * and member admission on every connection, on every transport (see admission.ts); identify,
 * ping, kad-dht and AutoNAT on cluster-private protocol ids; gossipsub; a relay server
 * without the public-network limits (it serves admitted members only).
 */
export async function createMeshNode(opts: NodeOptions) {
  const { config, cluster } = opts
  const prefix = protocolPrefix(cluster)
  const selfId = peerIdFromPrivateKey(opts.privateKey).toString()
  const datastore = new LevelDatastore(opts.datastorePath)
  await datastore.open()

  const stretch = opts.stretch ?? ((ms: number) => ms)
  const admit = admission({
    cluster,
    timeoutMs: config.authTimeoutMs,
    stretch,
    reporter: opts.reporter,
    trust: opts.trust,
  })
  const pending = new PendingInbound(INBOUND_LIMITS.maxPendingPerHost)
  // The gater needs the admission service, which exists only once libp2p builds it.
  let gater: ReturnType<ReturnType<typeof admit>['gater']> | undefined

  // asked per connection, so members that start answering STUN are used at once; an empty
  // list (never undefined) keeps libp2p from falling back to public STUN servers
  // ICE gathers IPv4 candidates only (node-datachannel's bindAddress, passed to libjuice): with
  // IPv6 it offered the mesh0 overlay address too, and a WebRTC connection between two members
  // behind NAT came up *through* the overlay, which then moved its own packets onto it (a loop
  // that collapsed every few seconds; test/system/overlay-netns.test.ts)
  const rtcConfiguration = () => ({
    iceServers: opts.iceServers?.() ?? config.webrtc.iceServers.map((urls) => ({ urls })),
    bindAddress: '0.0.0.0',
  })

  const listen = [...config.listen]
  // one '/p2p-circuit' listener per wanted reservation; relayPolicy (not a DHT walk) finds them
  for (let i = 0; i < config.relay.reservations; i++) listen.push('/p2p-circuit')
  if (config.webrtc.enabled) listen.push('/webrtc')

  deferYamuxWindowUpdates()
  const logger = libp2pLogger()
  const node = await createLibp2p({
    start: false, // the node component starts it, after wiring its event listeners
    privateKey: opts.privateKey,
    ...(logger === undefined ? {} : { logger }),
    datastore,
    addresses: {
      listen,
      announce: config.announce,
      // never hand out a bare '/webrtc/p2p/..' (see dialable.ts): a relay that did crashed its clients
      announceFilter: (addrs) => addrs.filter((a) => dialable(a) && opts.insideOverlay?.(a) !== true),
    },
    transports: [
      connectDeadline(tcp(tcpBulkOptions), () => stretch(Math.min(TCP_CONNECT_MS, config.dialTimeoutMs))),
      circuitRelayTransport({ reservationCompletionTimeout: config.dialTimeoutMs }),
      ...(config.webrtc.enabled
        ? [
            webRTC({ rtcConfiguration }),
            // dials webrtc-direct; listens only where a listen address asks for it
            webRTCDirect({ rtcConfiguration }),
          ]
        : []),
    ],
    connectionEncrypters: [
      coalescedWrites(
        decryptInPieces(noise({ prologueBytes: deriveKey(cluster, 'noise prologue'), crypto: noiseCrypto })),
      ),
    ],
    // yamux's keepalive pings but never acts on a missing answer: the liveness check replaces it
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionGater: {
      // one address cannot hold every pending slot (see inbound-limits.ts)
      denyInboundConnection: (maConn) => pending.deny(maConn),
      // never dial a revoked member; one that dials us is refused by admission, which
      // tells it why (so its operator sees 'revoked', not a mysterious dial failure).
      // Once we are revoked ourselves, dial nobody: every member would refuse us anyway.
      denyDialPeer: (p) => opts.trust.isRevoked(p.toString()) || opts.trust.isRevoked(selfId),
      denyDialMultiaddr: (ma) => opts.trust.isRevoked(selfId) || opts.insideOverlay?.(ma) === true,
      denyOutboundEncryptedConnection: (p) => opts.trust.isRevoked(p.toString()),
      denyInboundRelayReservation: (p) => gater?.denyInboundRelayReservation?.(p) ?? true,
      denyOutboundRelayedConnection: (s, d) => gater?.denyOutboundRelayedConnection?.(s, d) ?? true,
      denyInboundRelayedConnection: (r, p) => gater?.denyInboundRelayedConnection?.(r, p) ?? true,
    },
    // libp2p's monitor pinged each connection on a new stream every 30 s from both sides
    // (stream negotiation: a tenth of an idle agent's CPU in a 20-agent fleet); a muxer ping
    // finds a dead connection as well without a stream (connection-liveness.ts, started below)
    connectionMonitor: { enabled: false },
    connectionManager: {
      // raised to fit the cluster once members are known (connection-limit.ts)
      maxConnections: config.maxConnections,
      // deliberate limits for peers that have not finished their upgrade (inbound-limits.ts)
      inboundUpgradeTimeout: INBOUND_LIMITS.upgradeTimeoutMs,
      maxIncomingPendingConnections: INBOUND_LIMITS.maxPending,
      inboundConnectionThreshold: INBOUND_LIMITS.newPerHostPerSecond,
      dialTimeout: config.dialTimeoutMs,
      // per address the whole budget: a TCP connect still gives up after TCP_CONNECT_MS
      // (connect-deadline.ts), but an upgrade that is slow on a busy machine is not cut off,
      // nor a WebRTC dial while ICE gathers
      addressDialTimeout: config.dialTimeoutMs,
      // libp2p redials a lost keep-alive peer (a relay) by itself: 3 tries at 2 s, 6 s, 18 s, then
      // the node's own per-member back-off takes over (the default, 5 tries from 1 s, doubled the
      // dials of an agent whose relay was gone for good)
      reconnectRetries: 3,
      reconnectRetryInterval: 2_000,
      reconnectBackoffFactor: 3,
    },
    services: {
      admission: admit,
      // no LevelDB write per negotiated stream (see quiet-peer-store.ts)
      quietPeerStore: quietPeerStore(),
      // a window on libp2p's own address manager, for `mesh status` (observed addresses)
      addresses: (components: { addressManager: AddressManager }) => components.addressManager,
      // libp2p's connection limit, raised as the cluster grows (connection-limit.ts)
      connectionLimit: (components: { connectionManager: ConnectionManager }) => components.connectionManager,
      // dead connections closed, and each connection's RTT, by muxer pings (libp2p starts and stops it)
      liveness: (components: { connectionManager: ConnectionManager }) =>
        new ConnectionLiveness({
          connections: () => components.connectionManager.getConnections(),
          intervalMs: LIVENESS_INTERVAL_MS,
          timeoutMs: LIVENESS_TIMEOUT_MS,
          stretch,
        }),
      identify: identify({ protocolPrefix: prefix.slice(1), runOnLimitedConnection: true }),
      identifyPush: identifyPush({ protocolPrefix: prefix.slice(1), runOnLimitedConnection: true }),
      // More than one ping at a time per connection (the defaults are 1 out, 2 in): kad-dht pings
      // every new contact before it enters the routing table, and a connection that opens is
      // pinged at that same moment by the node component (RTT) and the other side. With one
      // outbound ping stream allowed, the DHT's ping failed with TooManyOutboundProtocolStreams,
      // the peer was dropped and never retried: the routing table stayed empty and every
      // provide waited for a peer until it timed out (protocols/blocks.md, 'The DHT').
      ping: ping({
        protocolPrefix: prefix.slice(1),
        runOnLimitedConnection: true,
        maxOutboundStreams: PING_STREAMS,
        maxInboundStreams: PING_STREAMS,
      }),
      autonat: autoNAT({ protocolPrefix: prefix.slice(1) }),
      dcutr: dcutr(),
      relays: relayPolicy({ reporter: opts.reporter }),
      ...(config.relay.server
        ? {
            relay: circuitRelayServer({
              // members only (the gater), so the public-network data/time limits are off
              reservations: { applyDefaultLimit: false, maxReservations: 128 },
            }),
          }
        : {}),
      ...(config.dht.enabled
        ? {
            dht: kadDHT({
              protocol: dhtProtocol(cluster),
              clientMode: false,
              peerInfoMapper: passthroughMapper,
            }),
          }
        : {}),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // Every peer here is an admitted member, so gossipsub's Sybil defence by IP only hurts:
        // its default (-5 per peer over 10 on one IP, squared) graylists members that share an
        // address — 20 agents on one host, an office behind one NAT, members reached through
        // one relay — and their gossip is then ignored (detection took 40 s instead of 6).
        // Scores are refreshed every decayInterval (1 s by default): a timer wake-up a second in
        // every agent for scores that, among admitted members, only ever hold a rare behaviour
        // penalty (issue 20). Every 10 s, that penalty decays ten times slower; nothing else changes.
        scoreParams: { IPColocationFactorWeight: 0, decayInterval: 10_000 },
      }),
    },
  })
  stretchDeadlines(node, config, stretch, opts.reporter)
  gater = node.services.admission.gater()
  node.addEventListener('connection:open', (evt) => pending.upgraded(evt.detail))
  guardObservedAddrs(node.services.addresses)
  // yamux's windows grow only once a connection's round-trip time is known (connection-liveness.ts)
  node.addEventListener('connection:open', (evt) => void node.services.liveness.measure(evt.detail))
  settleOnOneConnection(node, prefix, opts.reporter)
  reopenOnRemainingConnection(node)
  stores.set(node, datastore)
  return node
}

/** each node's LevelDB store: libp2p neither opens nor closes the datastore it is given */
const stores = new WeakMap<object, LevelDatastore>()

/**
 * Stop the node and close its store, so the same data dir can be opened again in this process
 * (an in-process restart; LevelDB holds a lock on its directory while open).
 */
export async function stopMeshNode(node: MeshLibp2p): Promise<void> {
  await node.stop()
  await stores.get(node)?.close()
  stores.delete(node)
}

/**
 * Crossed dials leave a pair of members with two connections; keep one (see one-connection.ts).
 * A relayed connection beside a direct one goes the same way (DCUtR never closes it on a LAN).
 * Cut without waiting: the persistent probe links (their prober opens a new one with its next
 * probe) and gossipsub's streams (reopenOnRemainingConnection identifies the kept connection
 * again, and gossipsub opens its stream to a peer when identify reports it). Requests with a
 * reply get a grace; everything else (tunnels, overlay, blocks, relay) is waited for.
 */
function settleOnOneConnection(node: MeshLibp2p, prefix: string, reporter: ComponentReporter): void {
  const links = new Set([`${prefix}/members/probe/2.0.0`, `${prefix}/members/probe/3.0.0`])
  const requests = [
    'id/',
    'ping/',
    'kad/',
    'autonat/',
    'auth/',
    'members/sync/',
    'members/probe/1.',
    'elections/sync/',
  ]
  const closedCounter = reporter.counter(
    'duplicate_connections_closed_total',
    'second connections to a member closed (crossed dials: the smaller peer ID dial is kept)',
  )
  const one = new OneConnectionPerPeer({
    self: node.peerId,
    connections: (peer) => node.getConnections(peer),
    admitted: (conn) => node.services.admission.connectionAdmitted(conn),
    streamKind: (protocol) => {
      if (links.has(protocol) || protocol.startsWith('/meshsub/') || protocol.startsWith('/floodsub/'))
        return 'reopen'
      // still negotiating, or one request and its reply, each with a deadline of its own (an
      // election sync stream was seen to outlive it and held a pair's second connection open)
      if (protocol === '' || requests.some((r) => protocol.startsWith(`${prefix}/${r}`))) return 'bounded'
      return 'wait'
    },
    // once per crossed dial (a join storm, a partition healing): what rode the pair's two connections
    log: (msg, fields) => reporter.log.info(fields, msg),
    closed: () => closedCounter.inc(),
  })
  node.addEventListener('connection:open', (evt) => {
    const conn = evt.detail
    void node.services.admission.admitted(conn).then(
      (ok) => ok && one.check(conn.remotePeer),
      () => {},
    )
  })
  node.addEventListener('stop', () => one.stop())
}

/**
 * A connection closed while the peer still has another (the redundant one of a crossed dial,
 * closed by either end; a relayed one after a direct upgrade): the long-lived streams that rode
 * it are gone, and their users do not notice, since libp2p only reports a peer whose last
 * connection closed. Gossipsub kept a dead outbound stream's slot empty and never sent to the
 * peer again (one end of a crossed dial, under load). Identifying the remaining connection
 * tells every topology the peer is there (gossipsub opens its stream to it again), on both ends.
 */
function reopenOnRemainingConnection(node: MeshLibp2p): void {
  node.addEventListener('connection:close', (evt) => {
    const peer = evt.detail.remotePeer
    // the one libp2p opens new streams on: the last direct one in its list (one-connection.ts)
    const remaining = node
      .getConnections(peer)
      .filter(
        (c) => c.status === 'open' && c.limits === undefined && node.services.admission.connectionAdmitted(c),
      )
      .at(-1)
    if (remaining === undefined) return
    void node.services.identify.identify(remaining, { signal: AbortSignal.timeout(10_000) }).catch(() => {})
  })
}

/**
 * A relay reservation made over a WebRTC connection lists that connection's remote address, a
 * bare `/webrtc/p2p/<relay>`, among the relay's addresses, and libp2p 3.3.11 then throws from
 * an event handler in confirmObservedAddr (the process exits). Addresses that do not start at
 * a network address are not dialable by anyone: skip them here.
 */
function guardObservedAddrs(am: AddressManager): void {
  const confirm = am.confirmObservedAddr.bind(am)
  am.confirmObservedAddr = (addr, options) => {
    if (dialable(addr)) confirm(addr, options)
  }
  const remove = am.removeObservedAddr.bind(am)
  am.removeObservedAddr = (addr) => {
    if (dialable(addr)) remove(addr)
  }
}
