/**
 * How large the packets on one direct UDP session may be (protocols/overlay.md, "Packet size
 * on the direct UDP carrier"), sans-IO. Node pays per datagram, not per byte, so large packets
 * move 2.5-3x the bytes of 1280-byte ones on a clean path; but a datagram larger than the path's
 * 1500 bytes travels as IP fragments and is lost when any one of them is (or is reordered far
 * enough that the receiver's kernel gives up reassembling it: ipfrag_max_dist), and past a few percent
 * of lost packets the TCP inside stalls in retransmission timeouts (measured: 4000-byte packets
 * at 1% loss per fragment moved 0.06x of direct TCP, 1280-byte ones 0.89x). So the member tells
 * us how many of our datagrams it got (loss reports), and we send the largest packets whose
 * predicted loss stays under LOSS_TARGET.
 */

// on a 1500-byte path a fragment carries 1480 bytes of the UDP datagram (header included) under
// IPv4's 20-byte header; under IPv6's 40 and its 8-byte Fragment header, 1448 (a multiple of 8),
// and a datagram that is not fragmented has no Fragment header: up to 1452 bytes
const PATH_MTU = 1500
const FRAGMENT_PAYLOAD = { 4: 1480, 6: 1448 } as const
const IP_HEADER = { 4: 20, 6: 40 } as const
const UDP_HEADER = 8
// a sealed datagram is the packet plus key id, counter and tag (udp-crypto.ts OVERHEAD)
const SEAL_OVERHEAD = 28
// the loss per packet we accept: below it TCP inside keeps its speed (overlay.md has the figures)
export const LOSS_TARGET = 0.01
// an estimate says enough to act on once it counts this many lost datagrams (a path that loses
// everything shows that within a report or two) or this many fragments (a clean one)
const MIN_LOST = 8
const MIN_FRAGMENTS = 5000
// each report keeps this share of the weight of what came before (a few seconds of history):
// a size lowered on noise would stick, since the kernel keeps a lowered path MTU for 10 minutes
const DECAY = 0.75
// loss per packet this many times the target is where TCP inside collapses (measured: fine at
// 1.5%, 0.06x of direct TCP at 3%; and 6 s at 2% under the high impairment cost half the run)
const COLLAPSE = 1.5
// a report alone says enough about a transfer, not about a few keepalives that met congestion
const MIN_REPORT_FRAGMENTS = 1000
// the last size changes kept for `mesh status`
const HISTORY = 8
// after going down, stay down this long before going up (a path that lost packets once may again;
// the kernel keeps a lowered path MTU for 10 minutes anyway)
export const RAISE_AFTER_MS = 60_000

/** The underlay's IP version: its headers decide how many fragments a datagram is. */
export type IpVersion = 4 | 6

/** How many IP fragments a datagram carrying a packet of `packet` bytes is on a 1500-byte path. */
export function fragmentsOf(packet: number, ip: IpVersion = 4): number {
  const udp = packet + SEAL_OVERHEAD + UDP_HEADER
  if (udp + IP_HEADER[ip] <= PATH_MTU) return 1
  return Math.ceil(udp / FRAGMENT_PAYLOAD[ip])
}

/** The largest packet that fits in `k` fragments. */
function packetFor(k: number, ip: IpVersion): number {
  const udp = k === 1 ? PATH_MTU - IP_HEADER[ip] : k * FRAGMENT_PAYLOAD[ip]
  return udp - UDP_HEADER - SEAL_OVERHEAD
}

export interface DatagramSizeLimits {
  /** the floor: one datagram, one fragment (overlay.datagramMtu) */
  min: number
  /** the largest packet ever sent, and the size a session starts at (overlay.udpMtuMax) */
  max: number
  /** the underlay (default 4); it can change when the member roams */
  ip?: IpVersion
}

export class DatagramSizer {
  /** the largest packet to send now */
  size: number
  /** the underlay the datagrams cross (the member's endpoint's family) */
  ip: IpVersion
  /** decayed sums over the member's reports: fragments it should have got, datagrams it lost */
  private fragments = 0
  private lost = 0
  /** what we sent since the last report: datagrams and their fragments */
  private sentDatagrams = 0
  private sentFragments = 0
  private loweredAt = Number.NEGATIVE_INFINITY
  /** the totals of the member's last report */
  private reported = { expected: 0, received: 0 }
  /** the last size changes: when (ms), to what, on what loss per fragment */
  readonly changes: Array<{ at: number; size: number; fragmentLoss: number }> = []

  constructor(private readonly limits: DatagramSizeLimits) {
    // start large: a path that drops fragments shows up in the first report (a second or two)
    this.size = limits.max
    this.ip = limits.ip ?? 4
  }

  /** One datagram sent, with `bytes` of plaintext. */
  sent(bytes: number): void {
    this.sentDatagrams++
    this.sentFragments += fragmentsOf(bytes, this.ip)
  }

  /** The loss per fragment the reports say (0 until enough was reported). */
  get fragmentLoss(): number {
    return this.known() ? this.lost / this.fragments : 0
  }

  private known(): boolean {
    return this.fragments > 0 && (this.lost >= MIN_LOST || this.fragments >= MIN_FRAGMENTS)
  }

  /**
   * The member's report: since the session began it got `receivedTotal` of the `expectedTotal`
   * datagrams we sent it (both mod 2^32). Returns the size to send now.
   */
  report(expectedTotal: number, receivedTotal: number, now: number): number {
    const expected = (expectedTotal - this.reported.expected) >>> 0
    const received = (receivedTotal - this.reported.received) >>> 0
    // a report older than the last one (reordered): nothing new in it
    if (expected === 0 || expected >= 2 ** 31) return this.size
    this.reported = { expected: expectedTotal, received: receivedTotal }
    // late datagrams of the last interval count here: more received than expected is no loss
    const lost = received >= 2 ** 31 ? 0 : Math.max(0, expected - received)
    // a datagram of k fragments is lost when any of them is: spread its loss over its fragments
    const k = this.sentDatagrams > 0 ? this.sentFragments / this.sentDatagrams : 1
    this.sentDatagrams = 0
    this.sentFragments = 0
    this.fragments = this.fragments * DECAY + expected * k
    this.lost = this.lost * DECAY + lost
    // loss in the zone where TCP collapses (1.5x the target and more) is acted on from this report
    // alone (if it counts a transfer's worth of fragments), out of that zone only: one second
    // says little (a TCP start-up burst can double the loss; 24 keepalives that met another
    // flow's queue lost 16), and the decayed history would hold a size in the zone for seconds
    const latest = lost >= MIN_LOST && expected * k >= MIN_REPORT_FRAGMENTS ? lost / (expected * k) : 0
    if (latest * fragmentsOf(this.size, this.ip) > COLLAPSE * LOSS_TARGET) {
      const out = this.fit(latest, COLLAPSE * LOSS_TARGET)
      if (out < this.size) {
        this.set(out, latest, now)
        this.loweredAt = now
      }
    }
    if (!this.known()) {
      // too little traffic to estimate from (a few hundred datagrams a second), and none of it
      // lost lately (one datagram lost weighs 0.1 after 8 reports): a size lowered long enough
      // ago goes back to where a session starts (a path that still loses shows it again)
      if (this.size < this.limits.max && this.lost < 0.1 && now - this.loweredAt >= RAISE_AFTER_MS)
        this.set(this.limits.max, 0, now)
      return this.size
    }
    const q = this.lost / this.fragments
    const fit = this.fit(q, LOSS_TARGET)
    if (fit < this.size) {
      this.set(fit, q, now)
      this.loweredAt = now
    } else if (now - this.loweredAt >= RAISE_AFTER_MS) {
      // going up needs a margin, so that a path at the edge does not flap
      const up = this.fit(q, LOSS_TARGET / 1.5)
      if (up > this.size) this.set(up, q, now)
    }
    return this.size
  }

  private set(size: number, q: number, now: number): void {
    this.size = size
    this.changes.push({ at: now, size, fragmentLoss: q })
    if (this.changes.length > HISTORY) this.changes.shift()
  }

  /** The largest size within the limits whose packets would be lost less than `target`. */
  private fit(q: number, target: number): number {
    const { min, max } = this.limits
    if (q <= 0) return max
    const k = Math.floor(target / q)
    if (k < 2) return min
    return Math.max(min, Math.min(max, packetFor(k, this.ip)))
  }
}
