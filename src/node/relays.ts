import type { ComponentLogger, Logger, PeerId, PeerRouting, Startable } from '@libp2p/interface'
import type { ConnectionManager, TransportManager } from '@libp2p/interface-internal'
import type { ComponentReporter } from '../kernel/reporter.js'
import { Backoff } from './backoff.js'
import { pathKind } from './paths.js'

/** The hop protocol a relay server speaks (identify lists it for members with relay.server on). */
export const RELAY_HOP = '/libp2p/circuit/relay/0.2.0/hop'

export interface RelayPolicyInit {
  reporter: ComponentReporter
  /** first pause after a search that found no relay to reserve on; doubles up to maxBackoffMs */
  minBackoffMs?: number
  maxBackoffMs?: number
}

export interface RelayPolicyComponents {
  transportManager: TransportManager
  connectionManager: ConnectionManager
  peerRouting: PeerRouting
  peerStore: { get(peer: PeerId): Promise<{ protocols: string[] }> }
  logger: ComponentLogger
}

/** The parts of @libp2p/circuit-relay-v2's transport this service drives (see start()). */
interface RelayTransport {
  reservationStore: {
    addRelay(peer: PeerId, type: 'discovered' | 'configured'): Promise<unknown>
    hasReservation(peer: PeerId): boolean
    reservationCount(): number
  }
  discovery?: { startDiscovery(): void; stopDiscovery(): void }
}

/**
 * Relay reservations from members only, searched for with back-off.
 *
 * @libp2p/circuit-relay-v2 looks for relays by a DHT random walk that runs until every wanted
 * reservation is made. A cluster has at most as many relays as members that are reachable with
 * relay.server on, often fewer than relay.reservations (two members on one machine: one relay
 * each), and the walk then never ends: about 45 DHT searches per 5 s, 80% of a core and a
 * growing heap on an idle agent (issue 20). Here the walk is replaced: the candidates are the
 * members we hold a direct connection to that speak the hop protocol; a member that connects is
 * tried at once (the transport's own topology), and a search that finds nothing waits
 * 5 s, 10 s, ... up to 5 min before the next one.
 */
export class RelayPolicy implements Startable {
  readonly [Symbol.toStringTag] = 'mesh/relay-policy'
  private readonly log: Logger
  private readonly backoff: Backoff
  private transport: RelayTransport | undefined
  private timer: NodeJS.Timeout | undefined
  private wanted = false
  private readonly metrics

  constructor(
    private readonly components: RelayPolicyComponents,
    init: RelayPolicyInit,
  ) {
    this.log = components.logger.forComponent('mesh:relay-policy')
    this.backoff = new Backoff({ minMs: init.minBackoffMs ?? 5_000, maxMs: init.maxBackoffMs ?? 300_000 })
    const r = init.reporter
    this.metrics = {
      searches: r.counter('relay_searches_total', 'searches for a member to hold a relay reservation on', [
        'result',
      ]),
      lookups: r.counter(
        'dht_closest_peer_lookups_total',
        'closest-peer lookups through the peer routing (a random walk shows here)',
      ),
      dials: r.counter(
        'transport_dials_total',
        'addresses dialled by any part of the node, by path and result',
        ['path', 'result'],
      ),
    }
    const transport = () => this.transport
    r.gauge('relay_reservations', 'relay reservations this member holds', [], function () {
      this.set(transport()?.reservationStore.reservationCount() ?? 0)
    })
  }

  start(): void {
    this.countLookupsAndDials()
    const transport = this.components.transportManager
      .getTransports()
      .find((t) => t[Symbol.toStringTag] === '@libp2p/circuit-relay-v2-transport') as unknown as
      | RelayTransport
      | undefined
    if (transport === undefined) return
    this.transport = transport
    const discovery = transport.discovery
    if (discovery === undefined || typeof discovery.startDiscovery !== 'function') {
      // a new circuit-relay-v2 moved its discovery: fail loudly rather than spin silently
      throw new Error('@libp2p/circuit-relay-v2 has no relay discovery to replace; check the relay policy')
    }
    discovery.startDiscovery = () => this.want()
    discovery.stopDiscovery = () => this.enough()
  }

  stop(): void {
    this.enough()
  }

  /** The reservation store has fewer reservations than listeners: search now or after the back-off. */
  private want(): void {
    this.wanted = true
    if (this.timer !== undefined) return
    const delay = this.backoff.due()
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.search()
    }, delay)
    this.timer.unref()
  }

  private enough(): void {
    this.wanted = false
    clearTimeout(this.timer)
    this.timer = undefined
    this.backoff.reset()
  }

  private async search(): Promise<void> {
    const transport = this.transport
    if (!this.wanted || transport === undefined) return
    const store = transport.reservationStore
    const candidates = await this.candidates()
    const fresh = candidates.filter((p) => !store.hasReservation(p))
    const results = await Promise.allSettled(fresh.map((p) => store.addRelay(p, 'discovered')))
    const made = results.filter((r) => r.status === 'fulfilled').length
    this.metrics.searches.inc({ result: made > 0 ? 'reserved' : 'none' })
    this.log('relay search: %d candidates, %d reservations made', fresh.length, made)
    if (made > 0) this.backoff.reset()
    else this.backoff.failed()
    // still short (the store says so through want()), or nothing to try: the next search waits
    if (this.wanted) this.want()
  }

  /** Members we hold a direct (TCP) connection to that serve relay reservations; dialled first. */
  private async candidates(): Promise<PeerId[]> {
    const byPeer = new Map<string, { peer: PeerId; outbound: boolean }>()
    for (const c of this.components.connectionManager.getConnections()) {
      if (c.status !== 'open' || pathKind(c.remoteAddr) !== 'direct') continue
      const key = c.remotePeer.toString()
      const seen = byPeer.get(key)
      byPeer.set(key, {
        peer: c.remotePeer,
        outbound: (seen?.outbound ?? false) || c.direction === 'outbound',
      })
    }
    const out: Array<{ peer: PeerId; outbound: boolean }> = []
    for (const entry of byPeer.values()) {
      const known = await this.components.peerStore.get(entry.peer).catch(() => undefined)
      if (known?.protocols.includes(RELAY_HOP) === true) out.push(entry)
    }
    return out.sort((a, b) => Number(b.outbound) - Number(a.outbound)).map((e) => e.peer)
  }

  /** Counters on the node's own dials and DHT lookups, whoever makes them: an idle agent makes few. */
  private countLookupsAndDials(): void {
    const routing = this.components.peerRouting
    const closest = routing.getClosestPeers.bind(routing)
    const lookups = this.metrics.lookups
    routing.getClosestPeers = (key, options) => {
      lookups.inc()
      return closest(key, options)
    }
    // every real dial of an address goes through the transport manager (openConnection also
    // returns connections that are already open, so it is no measure of dialling)
    const tm = this.components.transportManager
    const dial = tm.dial.bind(tm)
    const dials = this.metrics.dials
    tm.dial = async (addr, options) => {
      try {
        const conn = await dial(addr, options)
        dials.inc({ path: pathKind(addr), result: 'ok' })
        return conn
      } catch (err) {
        dials.inc({ path: pathKind(addr), result: 'error' })
        throw err
      }
    }
  }
}

export function relayPolicy(init: RelayPolicyInit): (components: RelayPolicyComponents) => RelayPolicy {
  return (components) => new RelayPolicy(components, init)
}
