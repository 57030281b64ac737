// The network model: per-link one-way latency (a base by region pair plus lognormal jitter),
// packet loss, per-node bandwidth, partitions (sides that cannot talk) and NAT-only members
// that other NAT-only members reach through a relay (two hops).
//
// Bandwidth: bulk messages (push-pull syncs, BULK_BYTES and up) queue FIFO on the sender's
// uplink and the receiver's downlink; small ones (probes, gossip) pay only their own
// transmission time, as per-flow fair queueing (Linux fq_codel) lets them past a bulk transfer
// on another connection.
//
// Loss, by default, is packet loss under TCP, as libp2p runs here: a lost segment delays the
// message by a retransmission timeout (small messages) or a round trip (fast retransmit in a
// larger transfer); it never drops it. `lossMode: 'datagram'` drops the message instead.
// A partition drops everything across the cut; under TCP the caller may hold connection
// traffic (gossip) and deliver it when the cut heals, as a surviving TCP connection would.
import { lognormal, type Rng, randInt } from './rng.js'

export type LatencyName = 'loopback' | 'lan' | 'wan'

export interface LatencyModel {
  regions: number
  /** one-way base latency in ms between regions */
  baseMs: number[][]
  jitterMedianMs: number
  jitterSigma: number
}

export const LATENCY: Record<LatencyName, LatencyModel> = {
  // processes on one machine
  loopback: { regions: 1, baseMs: [[0.05]], jitterMedianMs: 0.05, jitterSigma: 1 },
  // one data centre
  lan: { regions: 1, baseMs: [[0.25]], jitterMedianMs: 0.1, jitterSigma: 1 },
  // four regions (think us-east, us-west, eu, asia), one-way
  wan: {
    regions: 4,
    baseMs: [
      [2, 32, 40, 90],
      [32, 2, 70, 55],
      [40, 70, 2, 110],
      [90, 55, 110, 2],
    ],
    jitterMedianMs: 1,
    jitterSigma: 1,
  },
}

export interface NetworkOptions {
  latency: LatencyName
  /** probability that a packet is lost */
  loss: number
  lossMode: 'tcp' | 'datagram'
  /** per-node uplink */
  bandwidthMbps: number
  /** fraction of members that are NAT-only */
  nat: number
  /** relay reservations each NAT-only member keeps */
  relaysPerNat: number
}

export const NETWORK_DEFAULTS: NetworkOptions = {
  latency: 'wan',
  loss: 0,
  lossMode: 'tcp',
  bandwidthMbps: 100,
  nat: 0,
  relaysPerNat: 2,
}

/** send() results that are not arrival times */
export const DROPPED = -1
/** cut by a partition: connection traffic may be held until the cut heals */
export const HELD = -2

const MSS = 1448
export const BULK_BYTES = 16 * 1024
const RTO_MIN_MS = 200

export class Network {
  readonly opts: NetworkOptions
  readonly model: LatencyModel
  readonly region: number[] = []
  readonly nat: boolean[] = []
  readonly relays: number[][] = []
  private readonly side: number[] = []
  private readonly txFree: number[] = []
  private readonly rxFree: number[] = []
  private cut = false
  readonly bytesPerMs: number
  /** which nodes are running; set by the simulator */
  up: (i: number) => boolean = () => true
  /** where the last send() started on the sender's uplink */
  lastTxStart = 0
  /** relay reservations moved because a relay was gone */
  relayMoves = 0

  constructor(
    opts: Partial<NetworkOptions>,
    private readonly rng: Rng,
  ) {
    this.opts = { ...NETWORK_DEFAULTS, ...opts }
    this.model = LATENCY[this.opts.latency]
    if (this.model === undefined)
      throw new Error(`unknown latency model '${this.opts.latency}' (loopback, lan, wan)`)
    this.bytesPerMs = (this.opts.bandwidthMbps * 1e6) / 8 / 1000
  }

  get size(): number {
    return this.region.length
  }

  /** Place a node: a random region; NAT-only with probability opts.nat unless `nat` says. */
  addNode(i: number, nat?: boolean): void {
    this.region[i] = randInt(this.rng, this.model.regions)
    this.nat[i] = nat ?? this.rng() < this.opts.nat
    this.relays[i] = []
    this.side[i] = 0
    this.txFree[i] = 0
    this.rxFree[i] = 0
  }

  /** Split: nodes with different sides cannot talk. */
  setPartition(sideOf: (i: number) => number): void {
    for (let i = 0; i < this.region.length; i++) this.side[i] = sideOf(i)
    this.cut = true
  }

  heal(): void {
    this.side.fill(0)
    this.cut = false
  }

  get partitioned(): boolean {
    return this.cut
  }

  sideOf(i: number): number {
    return this.side[i] ?? 0
  }

  canTalk(a: number, b: number): boolean {
    return !this.cut || this.side[a] === this.side[b]
  }

  baseMs(a: number, b: number): number {
    return this.model.baseMs[this.region[a]][this.region[b]]
  }

  /** One trip a -> b on the wire: base plus jitter. */
  oneWay(a: number, b: number): number {
    return this.baseMs(a, b) + lognormal(this.rng, this.model.jitterMedianMs, this.model.jitterSigma)
  }

  /** Can a reach b at all right now (up, same side, a relay when both are NAT-only)? */
  reachable(a: number, b: number): boolean {
    if (!this.up(a) || !this.up(b) || !this.canTalk(a, b)) return false
    return !(this.nat[a] && this.nat[b]) || this.relayFor(b, a) >= 0
  }

  /** Queue `bytes` on a's uplink at `now` (bulk); returns when the last byte leaves. */
  transmit(a: number, bytes: number, now: number): number {
    const start = Math.max(now, this.txFree[a])
    this.lastTxStart = start
    const done = start + bytes / this.bytesPerMs
    this.txFree[a] = done
    return done
  }

  /** Drop what a had queued but not sent (it crashed); returns the bytes never sent. */
  flush(a: number, now: number): number {
    const left = Math.max(0, this.txFree[a] - now) * this.bytesPerMs
    this.txFree[a] = now
    return left
  }

  /**
   * When `bytes` sent by a to b at `now` arrive, or DROPPED / HELD. Bulk messages queue on a's
   * uplink and b's downlink; `after` delays a small one (its place in a burst of copies).
   */
  send(a: number, b: number, bytes: number, now: number, after = 0): number {
    const bulk = bytes >= BULK_BYTES
    const left = bulk ? this.transmit(a, bytes, now) : now + after + bytes / this.bytesPerMs
    if (!bulk) this.lastTxStart = now + after
    let t: number
    if (this.nat[a] && this.nat[b]) {
      const r = this.relayFor(b, a)
      if (r < 0) return this.cut && !this.canTalk(a, b) ? HELD : DROPPED
      const t1 = this.hop(a, r, bytes)
      if (t1 < 0) return t1
      const t2 = this.hop(r, b, bytes)
      if (t2 < 0) return t2
      t = t1 + t2
    } else {
      if (!this.canTalk(a, b)) return HELD
      t = this.hop(a, b, bytes)
      if (t < 0) return t
    }
    let at = left + t
    if (bulk) {
      at = Math.max(at, this.rxFree[b] + bytes / this.bytesPerMs)
      this.rxFree[b] = at
    }
    return at
  }

  /**
   * A cheap send for gossip forwarding: base latency only (the caller adds one jitter sample per
   * receiver), unless loss or a relay needs the full path.
   */
  quickSend(a: number, b: number, bytes: number, now: number, after: number): number {
    if (this.opts.loss > 0 || (this.nat[a] && this.nat[b]))
      return this.send(a, b, bytes, now, after) - this.model.jitterMedianMs
    if (!this.canTalk(a, b)) return HELD
    return now + after + bytes / this.bytesPerMs + this.baseMs(a, b)
  }

  /** One jitter sample. */
  jitter(): number {
    return lognormal(this.rng, this.model.jitterMedianMs, this.model.jitterSigma)
  }

  /** Latency of one hop including loss, or DROPPED (datagram loss). */
  private hop(a: number, b: number, bytes: number): number {
    const lat = this.oneWay(a, b)
    const loss = this.opts.loss
    if (loss <= 0) return lat
    const packets = Math.max(1, Math.ceil(bytes / MSS))
    const pHit = 1 - (1 - loss) ** packets
    if (this.opts.lossMode === 'datagram') return this.rng() < pHit ? DROPPED : lat
    // each loss costs an RTO (doubling) for a short message, a round trip in a long transfer
    let extra = 0
    const rtt = 2 * this.baseMs(a, b)
    let rto = RTO_MIN_MS + rtt
    for (let k = 0; k < 8 && this.rng() < pHit; k++) {
      extra += packets <= 3 ? rto : rtt + 1
      rto *= 2
    }
    return lat + extra
  }

  /**
   * A relay that NAT-only node b can be reached through from a: one of b's reservations that is
   * up and on the same side as both. A reservation on a node that is gone moves to another
   * public member at once (the agent re-reserves within seconds; this is the optimistic case).
   */
  relayFor(b: number, a: number): number {
    const rs = this.relays[b]
    for (let k = 0; k < rs.length; k++) {
      const r = rs[k]
      if (this.up(r) && this.canTalk(r, b) && this.canTalk(a, r)) return r
    }
    // replace reservations that are gone, then try once more
    let moved = false
    for (let k = 0; k < this.opts.relaysPerNat; k++) {
      if (rs[k] !== undefined && this.up(rs[k]) && this.canTalk(rs[k], b)) continue
      const r = this.pickRelay(b)
      if (r < 0) break
      rs[k] = r
      moved = true
      this.relayMoves++
    }
    if (!moved) return -1
    for (const r of rs) if (this.up(r) && this.canTalk(r, b) && this.canTalk(a, r)) return r
    return -1
  }

  private pickRelay(b: number): number {
    const n = this.region.length
    for (let tries = 0; tries < 64; tries++) {
      const r = randInt(this.rng, n)
      if (r !== b && !this.nat[r] && this.up(r) && this.canTalk(r, b) && !this.relays[b].includes(r)) return r
    }
    return -1
  }
}
