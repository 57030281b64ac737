/**
 * SWIM failure detection as a sans-IO state machine, with memberlist's LAN defaults and the two
 * Lifeguard refinements memberlist ships (local health scaling of probe timing, and suspicion
 * timeouts that start long and shrink as other members independently confirm).
 *
 * One probe per interval, round-robin over a shuffled member list (every member is probed once
 * per round). A probe is a direct ping; if no ack within the probe timeout, k random alive
 * members are asked to ping the target for us; if still no ack by the end of the interval the
 * target becomes suspect. A suspicion times out into 'dead' unless the suspect refutes it by
 * announcing a higher incarnation.
 *
 * The driver (the libp2p adapter or the simulator) calls tick(now) at nextWakeup(), feeds in
 * acks, nacks, probe requests and gossip, and carries out the returned actions. Every input can
 * move nextWakeup() earlier, so re-arm the timer after each call. Timing is measured from when
 * things were actually done, so a late tick (a busy event loop) delays a verdict instead of
 * skipping the indirect probe.
 */
import { MEMBERSHIP_DEFAULTS } from './defaults.js'

export type Action =
  /** send a ping carrying `seq` to `to`; report its ack with onAck(to, seq, now) */
  | { type: 'probe'; to: string; seq: number }
  /** ask `via` to ping `target` for us; `via` answers with ack or nack carrying `seq` */
  | { type: 'probe-req'; via: string; target: string; seq: number }
  /** as a relay: tell `to` its target answered (forward an ack) */
  | { type: 'ack'; to: string; seq: number }
  /** as a relay: tell `to` its target did not answer us in time (we, at least, are alive) */
  | { type: 'nack'; to: string; seq: number }
  /** sign and spread a suspicion claim about `peer` at `incarnation` */
  | { type: 'suspect'; peer: string; incarnation: number }
  /** the suspicion timed out: sign and spread a death claim. The peer is no longer probed. */
  | { type: 'dead'; peer: string; incarnation: number }

export interface SwimOptions {
  /** our peer ID; never probed, ignored in member lists */
  self: string
  /** uniform in [0, 1); the only source of randomness, so a seeded one makes runs repeatable */
  rng: () => number
  /** our current incarnation (default 0) */
  incarnation?: number
  probeIntervalMs?: number
  probeTimeoutMs?: number
  indirectK?: number
  suspicionMult?: number
  /** Lifeguard: the first suspicion lasts this many times the minimum until confirmed (default 4; memberlist: 6) */
  suspicionMaxMult?: number
  /** Lifeguard: independent confirmations that shrink a suspicion to the minimum (default 2) */
  suspicionConfirmations?: number
  /** override the computed minimum suspicion timeout */
  suspicionMinMs?: number
  /** override the computed maximum suspicion timeout */
  suspicionMaxMs?: number
  /** Lifeguard local health and suspicion confirmations (default on) */
  lifeguard?: boolean
  /** Lifeguard: probe timing stretches up to this factor while we look unhealthy (memberlist: 8) */
  awarenessMax?: number
  /** at most this many probe requests relayed for others at once */
  maxRelays?: number
  /**
   * Lifeguard: a tick this much later than it was due means our own event loop was starved
   * (default: half the probe timeout)
   */
  starvedLateMs?: number
  /**
   * A small unique number >= 0 for every peer we will be given (the simulator's member number):
   * members are then found by it in an array instead of a hash map. Same behaviour; for a
   * driver that holds millions of members. Default: a map by peer ID.
   */
  index?: (peer: string) => number
}

/**
 * Lifeguard's defaults here (protocols/membership.md argues them with the simulator's figures):
 * an unconfirmed suspicion lasts SUSPICION_MAX_MULT x the minimum, and SUSPICION_CONFIRMATIONS
 * independent suspectors shrink it to the minimum (memberlist: 6 and SuspicionMult - 2 = 2).
 */
export const SUSPICION_MAX_MULT = 4
export const SUSPICION_CONFIRMATIONS = 2
/** The minimum suspicion never goes below this many probe intervals, however small the cluster. */
export const SUSPICION_FLOOR_INTERVALS = 3
/**
 * A skipped probe (see heard()) still gives way to a real one when our own last answered probe
 * of the target is this many intervals old: the round trip and the clock offset we report
 * (`mesh members -v`, `mesh doctor`) come only from answers to our own probes, so without it the
 * side of a pair that skips would never measure the other.
 */
export const SKIP_REFRESH_ROUNDS = 10
/**
 * When the connection to a member closes, about this many of the members that lose it probe it
 * out of turn (see closed()): the first suspicion and the Lifeguard confirmations it needs
 * (SUSPICION_CONFIRMATIONS), plus one spare.
 */
export const CLOSE_PROBERS = 4
/**
 * Of the members refused within one CLOSE_BURST_MS window, those after the first CLOSE_BURST (a
 * bad deploy, a rack's processes) are probed in turn, not early: early probes of all of them
 * would start their suspicions, and so their death claims, in the same second, one burst that
 * spreads slower than claims staggered by the probe order (simulator, 1,000 members, 10 % killed
 * at once, seed 7: detection p99 9.3 s in turn, 12.0 s with every refusal early, 9.5 s with this).
 */
export const CLOSE_BURST = 2
export const CLOSE_BURST_MS = 10_000

/**
 * Minimum suspicion timeout for a cluster of n members:
 * max(3, mult * max(1, log10 n)) * interval (memberlist's shape, with a floor for small clusters).
 */
export function suspicionTimeoutMs(mult: number, n: number, probeIntervalMs: number): number {
  const intervals = Math.max(SUSPICION_FLOOR_INTERVALS, mult * Math.max(1, Math.log10(Math.max(1, n))))
  return Math.round(intervals * probeIntervalMs)
}

/** A small seeded PRNG (mulberry32) for tests and the simulator. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const NONE: readonly Action[] = Object.freeze([])
const NO_PEERS: readonly string[] = Object.freeze([])

interface Suspicion {
  incarnation: number
  /** who raised it first; not counted as a confirmation */
  from: string
  start: number
  deadline: number
  k: number
  min: number
  max: number
  confirmers: Set<string> | undefined
  /** Lifeguard: the timeout as confirmations have shrunk it */
  timeout: number
  /** extra wait while we only heard of the failure and did not see it ourselves */
  backup: number
  /** Lifeguard: already given one more wait because we were starved (once: a slow member still decides) */
  stretched: boolean
}

/**
 * A member's numbers live in columns (one Float64Array, W numbers per slot) instead of an object
 * per member: the simulator holds ~8 million of them, and an object plus a boxed incarnation
 * was ~100 bytes each. NaN means "not yet" (and compares false, as the checks need).
 */
const W = 4
const INC = 0
const RTT = 1
/** when our own direct probe of the peer was last answered */
const ACKED = 2
/** when the peer last proved on its own initiative that it is alive (a probe of its, a sync) */
const HEARD = 3

/** Where a peer's slot is kept: a Map by peer ID, or IndexedSlots. */
interface Slots {
  get(peer: string): number | undefined
  has(peer: string): boolean
  set(peer: string, slot: number): void
  delete(peer: string): void
}

/** Slots in an array by the driver's index of each peer (slot + 1; 0 means absent). */
class IndexedSlots implements Slots {
  private a = new Int32Array(16)

  constructor(private readonly index: (peer: string) => number) {}

  get(peer: string): number | undefined {
    const i = this.index(peer)
    const v = i >= 0 && i < this.a.length ? this.a[i] : 0
    return v === 0 ? undefined : v - 1
  }

  has(peer: string): boolean {
    return this.get(peer) !== undefined
  }

  set(peer: string, slot: number): void {
    const i = this.index(peer)
    if (!(i >= 0)) throw new Error(`no index for ${peer}`)
    if (i >= this.a.length) {
      const a = new Int32Array(Math.max(i + 1, this.a.length * 2))
      a.set(this.a)
      this.a = a
    }
    this.a[i] = slot + 1
  }

  delete(peer: string): void {
    const i = this.index(peer)
    if (i >= 0 && i < this.a.length) this.a[i] = 0
  }
}

interface Relay {
  origin: string
  target: string
  seq: number
  nackAt: number
  expireAt: number
  nacked: boolean
}

/** seq < 0: a suspicion deadline for `peer`; otherwise a relayed probe */
interface Timer {
  at: number
  peer: string
  seq: number
}

/** Binary min-heap on `at`. Entries are never removed early: stale ones are skipped on pop. */
class TimerHeap {
  private readonly a: Timer[] = []

  get size(): number {
    return this.a.length
  }

  peek(): Timer | undefined {
    return this.a[0]
  }

  push(t: Timer): void {
    const a = this.a
    let i = a.length
    a.push(t)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (a[p].at <= t.at) break
      a[i] = a[p]
      i = p
    }
    a[i] = t
  }

  pop(): Timer | undefined {
    const a = this.a
    const top = a[0]
    const last = a.pop()
    if (a.length > 0 && last !== undefined) {
      let i = 0
      const n = a.length
      for (;;) {
        let c = 2 * i + 1
        if (c >= n) break
        if (c + 1 < n && a[c + 1].at < a[c].at) c++
        if (a[c].at >= last.at) break
        a[i] = a[c]
        i = c
      }
      a[i] = last
    }
    return top
  }
}

export class Swim {
  readonly self: string
  private readonly rng: () => number
  private readonly interval: number
  private readonly timeout: number
  private readonly k: number
  private readonly mult: number
  private readonly maxMult: number
  private readonly confirmations: number
  private readonly minOverride: number | undefined
  private readonly maxOverride: number | undefined
  private readonly lifeguard: boolean
  private readonly awarenessMax: number
  private readonly maxRelays: number
  private readonly starvedLateMs: number
  /** the latest `now` any input brought: a deadline that passed before it is not a late tick */
  private seen = 0
  /** refused members since burstStart, a window of CLOSE_BURST_MS (see closed()) */
  private closes = 0
  private burstStart = Number.NEGATIVE_INFINITY
  private inc: number

  /** peer -> slot: its position in `list` and in `cols` */
  private readonly members: Slots
  /** the members in a dense array, for O(1) random picks */
  private readonly list: string[] = []
  /** per slot: incarnation, rtt, acked, heard (see W) */
  private cols = new Float64Array(W * 8)
  /** the members under suspicion (few), by peer */
  private readonly suspects = new Map<string, Suspicion>()
  /** this round's probe order; may hold removed or repeated peers, skipped lazily */
  private order: string[] = []
  private orderIdx = 0
  private readonly timers = new TimerHeap()
  private readonly relays = new Map<number, Relay>()
  private seq = 0
  private skips = 0
  private started = false
  private nextProbeAt = 0
  private score = 0
  private out: Action[] | undefined

  // the probe in flight; phase 0 none, 1 direct, 2 indirect
  private phase: 0 | 1 | 2 = 0
  private pTarget = ''
  private pSeq = -1
  private pSent = 0
  private pDeadline = 0
  private pRelays: readonly string[] = NO_PEERS
  private pNacks = 0
  /** this stage of the probe was already stretched once because we were starved */
  private pStretched = false

  constructor(o: SwimOptions) {
    this.self = o.self
    this.rng = o.rng
    this.inc = o.incarnation ?? 0
    this.interval = o.probeIntervalMs ?? MEMBERSHIP_DEFAULTS.probeIntervalMs
    this.timeout = o.probeTimeoutMs ?? MEMBERSHIP_DEFAULTS.probeTimeoutMs
    this.k = o.indirectK ?? MEMBERSHIP_DEFAULTS.indirectProbes
    this.mult = o.suspicionMult ?? MEMBERSHIP_DEFAULTS.suspicionMult
    this.maxMult = o.suspicionMaxMult ?? SUSPICION_MAX_MULT
    this.confirmations = o.suspicionConfirmations ?? SUSPICION_CONFIRMATIONS
    this.minOverride = o.suspicionMinMs
    this.maxOverride = o.suspicionMaxMs
    this.lifeguard = o.lifeguard ?? true
    this.awarenessMax = o.awarenessMax ?? 8
    this.maxRelays = o.maxRelays ?? 256
    this.starvedLateMs = o.starvedLateMs ?? Math.floor(this.timeout / 2)
    this.members = o.index !== undefined ? new IndexedSlots(o.index) : new Map<string, number>()
    if (!(this.timeout > 0 && this.timeout < this.interval))
      throw new Error('probe timeout must be positive and below the probe interval')
  }

  // ---- state --------------------------------------------------------------------------------

  get incarnation(): number {
    return this.inc
  }

  /** Members we probe (alive or suspect), not counting ourselves. */
  get memberCount(): number {
    return this.list.length
  }

  /** Lifeguard local health: 0 is healthy; probe timing is stretched by (health + 1). */
  get health(): number {
    return this.score
  }

  has(peer: string): boolean {
    return this.members.has(peer)
  }

  isSuspect(peer: string): boolean {
    return this.suspects.has(peer)
  }

  /** When the current suspicion of `peer` will turn into 'dead', if it is suspect. */
  suspicionDeadline(peer: string): number | undefined {
    return this.suspects.get(peer)?.deadline
  }

  /** Probes not sent because the target had just proved itself alive (see heard()). */
  get skippedProbes(): number {
    return this.skips
  }

  /** Round trip of the last direct probe the peer answered. */
  rttOf(peer: string): number | undefined {
    const slot = this.members.get(peer)
    if (slot === undefined) return undefined
    const rtt = this.cols[W * slot + RTT]
    return Number.isNaN(rtt) ? undefined : rtt
  }

  /** Suspicion timeouts for a cluster of `n` members (default: the current size, self included). */
  suspicionBounds(n = this.list.length + 1): { minMs: number; maxMs: number; k: number } {
    const minMs = this.minOverride ?? suspicionTimeoutMs(this.mult, n, this.interval)
    const maxMs = this.maxOverride ?? (this.lifeguard ? this.maxMult * minMs : minMs)
    // expected confirmations: none when there are too few others to give them (as memberlist)
    let k = this.lifeguard ? this.confirmations : 0
    if (n - 2 < k) k = 0
    return { minMs, maxMs: Math.max(minMs, maxMs), k }
  }

  // ---- membership ---------------------------------------------------------------------------

  /** Replace the member set: drop the ones not listed, add or update the rest. */
  setMembers(members: Iterable<{ peerId: string; incarnation: number }>): void {
    const keep = new Set<string>()
    for (const m of members) keep.add(m.peerId)
    for (const p of [...this.list]) if (!keep.has(p)) this.removeMember(p)
    for (const m of members) this.addMember(m.peerId, m.incarnation)
  }

  /** Start probing a member (alive or suspect), or update its incarnation (which may refute). */
  addMember(peer: string, incarnation: number): void {
    if (peer === this.self) return
    if (this.members.has(peer)) {
      this.onRefute(peer, incarnation)
      return
    }
    const slot = this.list.length
    if (W * (slot + 1) > this.cols.length) {
      // grow by half, not double: a light member's few hundred slots stay tight
      const cols = new Float64Array(W * Math.ceil((slot + 1) * 1.5))
      cols.set(this.cols)
      this.cols = cols
    }
    const c = W * slot
    this.cols[c + INC] = incarnation
    this.cols[c + RTT] = Number.NaN
    this.cols[c + ACKED] = Number.NaN
    this.cols[c + HEARD] = Number.NaN
    this.members.set(peer, slot)
    this.list.push(peer)
    // a random slot in the rest of this round, as memberlist does: probed soon, not predictably
    const n = this.order.length
    const j = this.orderIdx + Math.floor(this.rng() * (n - this.orderIdx + 1))
    if (j >= n) this.order.push(peer)
    else {
      this.order.push(this.order[j])
      this.order[j] = peer
    }
  }

  /**
   * Give back the columns' spare room (up to half of them after a growth): for a driver that
   * holds millions of members once they are all added (the simulator's formed cluster).
   */
  compact(): void {
    const used = W * Math.max(1, this.list.length)
    if (this.cols.length > used) this.cols = this.cols.slice(0, used)
  }

  /** Stop probing a member (dead, left, revoked). Its suspicion, if any, is dropped. */
  removeMember(peer: string): boolean {
    const slot = this.members.get(peer)
    if (slot === undefined) return false
    this.members.delete(peer)
    this.suspects.delete(peer)
    const lastSlot = this.list.length - 1
    const last = this.list.pop()!
    if (last !== peer) {
      // the last member moves into the freed slot
      this.list[slot] = last
      this.members.set(last, slot)
      this.cols.copyWithin(W * slot, W * lastSlot, W * lastSlot + W)
    }
    if (this.phase !== 0 && this.pTarget === peer) this.phase = 0
    return true
  }

  // ---- inputs -------------------------------------------------------------------------------

  /**
   * An authenticated message from `peer` sent on its own initiative (its probe of us, a sync,
   * an ack to a probe we relayed) proves it alive now. When its turn to be probed comes within
   * one probe interval of this, that evidence counts as the round's ack and no probe is sent
   * (in a pair about half the probes), unless our own last answered probe of it is
   * SKIP_REFRESH_ROUNDS old. Not for acks to our own probes: those answer a round we
   * already counted, and counting them again would let two members stop probing each other.
   */
  heard(peer: string, now: number): void {
    if (now > this.seen) this.seen = now
    const slot = this.members.get(peer)
    if (slot !== undefined) this.cols[W * slot + HEARD] = now
  }

  /**
   * Our last connection to `peer` closed and a redial was refused (the agent's driver dials
   * first; a dial that timed out, as a busy member's does, never gets here). A kill -9 closes the
   * process's sockets at once and its port then refuses, so this is often the first sign of a
   * crash, long before the peer's turn in the round-robin (up to ~5 s away at 50 members). It only
   * says where to look: evidence heard on it is stale now, and with probability CLOSE_PROBERS /
   * members the peer is probed next (unless it is one of a burst, see CLOSE_BURST); the verdict
   * still takes a failed direct and indirect probe. The probability keeps a crash's early probes,
   * and the suspicions they sign, about CLOSE_PROBERS whatever N.
   */
  closed(peer: string, now: number): void {
    const slot = this.members.get(peer)
    if (slot === undefined) return
    this.cols[W * slot + HEARD] = Number.NaN
    if (now - this.burstStart >= CLOSE_BURST_MS) {
      this.burstStart = now
      this.closes = 0
    }
    if (++this.closes > CLOSE_BURST) return
    if (this.rng() * this.list.length >= CLOSE_PROBERS) return
    // next in this round's order; its regular slot later in the round stays (one extra probe)
    this.order.splice(this.orderIdx, 0, peer)
  }

  /** An ack for `seq` arrived from `from` (the target itself, or a relay forwarding it). */
  onAck(from: string, seq: number, now: number): readonly Action[] {
    if (now > this.seen) this.seen = now
    const r = this.relays.get(seq)
    if (r !== undefined) {
      if (from !== r.target) return NONE
      this.relays.delete(seq)
      this.heard(from, now)
      return [{ type: 'ack', to: r.origin, seq: r.seq }]
    }
    if (this.phase === 0 || seq !== this.pSeq) return NONE
    if (from !== this.pTarget && !this.pRelays.includes(from)) return NONE
    if (from === this.pTarget) {
      const slot = this.members.get(from)
      if (slot !== undefined) {
        this.cols[W * slot + RTT] = now - this.pSent
        this.cols[W * slot + ACKED] = now
      }
    }
    this.phase = 0
    this.adjust(-1)
    return NONE
  }

  /** A relay reports our target did not answer it: evidence that we ourselves are healthy. */
  onNack(from: string, seq: number): void {
    if (
      this.phase === 2 &&
      seq === this.pSeq &&
      this.pRelays.includes(from) &&
      this.pNacks < this.pRelays.length
    ) {
      this.pNacks++
    }
  }

  /** `origin` asks us to ping `target`: returns the probe to send; the ack or nack follows. */
  onProbeReq(origin: string, target: string, seq: number, now: number): readonly Action[] {
    if (now > this.seen) this.seen = now
    if (target === this.self) return [{ type: 'ack', to: origin, seq }]
    if (this.relays.size >= this.maxRelays) return NONE
    const local = ++this.seq
    // nack a little before the origin gives up, so the nack still counts there
    const nackAt = now + Math.floor(this.timeout * 0.8)
    this.relays.set(local, { origin, target, seq, nackAt, expireAt: now + this.timeout, nacked: false })
    this.timers.push({ at: nackAt, peer: target, seq: local })
    return [{ type: 'probe', to: target, seq: local }]
  }

  /**
   * Someone (`by`) claims `peer` is suspect at `incarnation`: start our own suspicion timer or,
   * with Lifeguard, count an independent confirmation that shortens it. True when it started a
   * suspicion or counted a new confirmation: news worth passing on (as memberlist re-broadcasts).
   */
  onSuspect(peer: string, incarnation: number, by: string, now: number): boolean {
    if (now > this.seen) this.seen = now
    if (peer === this.self) return false
    const slot = this.members.get(peer)
    if (slot === undefined || incarnation < this.cols[W * slot + INC]) return false
    if (incarnation > this.cols[W * slot + INC]) {
      this.cols[W * slot + INC] = incarnation
      this.suspects.delete(peer)
    }
    const s = this.suspects.get(peer)
    if (s === undefined) {
      this.startSuspicion(peer, incarnation, by, now)
      return true
    }
    return this.confirm(peer, s, by)
  }

  /** `peer` announced `incarnation`; a higher one than suspected clears the suspicion. */
  onRefute(peer: string, incarnation: number): boolean {
    const slot = this.members.get(peer)
    if (slot === undefined || incarnation <= this.cols[W * slot + INC]) return false
    this.cols[W * slot + INC] = incarnation
    const s = this.suspects.get(peer)
    if (s !== undefined && s.incarnation < incarnation) {
      this.suspects.delete(peer)
      return true
    }
    return false
  }

  /**
   * Someone claims we are suspect or dead at `claimIncarnation`. Returns the incarnation to
   * announce: higher than the claim when it is current (a refutation), unchanged when stale.
   */
  selfSuspected(claimIncarnation: number): number {
    if (claimIncarnation < this.inc) return this.inc
    this.inc = claimIncarnation + 1
    // being suspected hints that we are the slow one (Lifeguard)
    this.adjust(1)
    return this.inc
  }

  /** Raise our incarnation for a change to our own record. */
  bumpIncarnation(): number {
    return ++this.inc
  }

  // ---- time ---------------------------------------------------------------------------------

  /** When tick() must next run. A value at or before now means: now. */
  nextWakeup(): number {
    if (!this.started) return 0
    let t = this.phase === 0 ? this.nextProbeAt : this.pDeadline
    const top = this.timers.peek()
    if (top !== undefined && top.at < t) t = top.at
    return t
  }

  tick(now: number): readonly Action[] {
    this.out = undefined
    let starved = false
    if (!this.started) {
      this.started = true
      // stagger, so members started together do not probe in lockstep
      this.nextProbeAt = now + Math.floor(this.rng() * this.interval)
    } else if (this.lifeguard && now - Math.max(this.nextWakeup(), this.seen) > this.starvedLateMs) {
      // Our own event loop was starved: the answers we wait for may be sitting unread behind
      // this very tick (timers run before I/O). We are the slow one: stretch our timing, and
      // give the probe in flight and any expiring suspicion one more (stretched) wait instead
      // of accusing anyone on a verdict we cannot trust.
      starved = true
      this.adjust(1)
    }
    if (now > this.seen) this.seen = now
    this.runTimers(now, starved)
    if (starved && this.phase !== 0 && now >= this.pDeadline && !this.pStretched) {
      this.pStretched = true
      this.pDeadline = now + this.timeout * this.scale()
    } else if (this.phase === 1 && now >= this.pDeadline) this.goIndirect(now)
    else if (this.phase === 2 && now >= this.pDeadline) this.probeFailed(now)
    if (this.phase === 0 && now >= this.nextProbeAt) this.startProbe(now)
    const out = this.out
    this.out = undefined
    return out ?? NONE
  }

  // ---- internals ----------------------------------------------------------------------------

  private emit(a: Action): void {
    if (this.out === undefined) this.out = [a]
    else this.out.push(a)
  }

  private scale(): number {
    return this.lifeguard ? this.score + 1 : 1
  }

  private adjust(delta: number): void {
    if (!this.lifeguard) return
    this.score = Math.min(this.awarenessMax - 1, Math.max(0, this.score + delta))
  }

  private runTimers(now: number, starved: boolean): void {
    for (let t = this.timers.peek(); t !== undefined && t.at <= now; t = this.timers.peek()) {
      this.timers.pop()
      if (t.seq < 0) {
        const s = this.suspects.get(t.peer)
        if (s === undefined || s.deadline > now) continue
        if (starved && !s.stretched) {
          s.stretched = true
          // a refutation may be waiting unread: look again after a stretched probe interval
          s.deadline = now + this.interval * this.scale()
          this.timers.push({ at: s.deadline, peer: t.peer, seq: -1 })
          continue
        }
        this.emit({ type: 'dead', peer: t.peer, incarnation: s.incarnation })
        this.removeMember(t.peer)
        continue
      }
      const r = this.relays.get(t.seq)
      if (r === undefined) continue
      if (!r.nacked && now >= r.nackAt) {
        r.nacked = true
        this.emit({ type: 'nack', to: r.origin, seq: r.seq })
        // keep forwarding a late ack until the origin gives up anyway
        this.timers.push({ at: r.expireAt, peer: r.target, seq: t.seq })
      } else if (r.nacked && now >= r.expireAt) this.relays.delete(t.seq)
    }
  }

  private startProbe(now: number): void {
    const target = this.nextTarget()
    if (target === undefined) {
      // nobody to probe, so nobody to be slow for: an on-time period heals a step (an agent
      // alone would otherwise keep a start-up stall's awareness for good)
      this.adjust(-1)
      this.nextProbeAt = now + this.interval
      return
    }
    const scale = this.scale()
    const c = W * this.members.get(target)!
    // a NaN (never heard, never acked) compares false
    if (
      !this.suspects.has(target) &&
      now - this.cols[c + HEARD] < this.interval &&
      now - this.cols[c + ACKED] < this.interval * SKIP_REFRESH_ROUNDS
    ) {
      // fresh evidence from the target: this round's ack without a probe (see heard())
      this.skips++
      this.adjust(-1)
      this.nextProbeAt = now + this.interval * scale
      return
    }
    this.phase = 1
    this.pTarget = target
    this.pSeq = ++this.seq
    this.pSent = now
    this.pDeadline = now + this.timeout * scale
    this.pRelays = NO_PEERS
    this.pNacks = 0
    this.pStretched = false
    this.nextProbeAt = now + this.interval * scale
    this.emit({ type: 'probe', to: target, seq: this.pSeq })
  }

  private nextTarget(): string | undefined {
    for (let round = 0; round < 2; round++) {
      while (this.orderIdx < this.order.length) {
        const p = this.order[this.orderIdx++]
        if (this.members.has(p)) return p
      }
      if (this.list.length === 0) return undefined
      // a new round: a fresh shuffle of the current members
      this.order = this.list.slice()
      shuffle(this.order, this.order.length, this.rng)
      this.orderIdx = 0
    }
    return undefined
  }

  private goIndirect(now: number): void {
    const relays = this.pickRelays(this.pTarget)
    for (const via of relays) this.emit({ type: 'probe-req', via, target: this.pTarget, seq: this.pSeq })
    this.pRelays = relays
    this.pNacks = 0
    this.pStretched = false
    this.phase = 2
    // the direct ack still counts until the end of the (scaled) interval
    this.pDeadline = now + (this.interval - this.timeout) * this.scale()
  }

  private probeFailed(now: number): void {
    this.phase = 0
    // no ack at all: the target is down or we are. Missing nacks point at us (Lifeguard).
    const expected = this.pRelays.length
    this.adjust(expected > 0 ? expected - this.pNacks : 1)
    const peer = this.pTarget
    const slot = this.members.get(peer)
    if (slot === undefined) return
    const incarnation = this.cols[W * slot + INC]
    const s = this.suspects.get(peer)
    if (s === undefined) {
      this.startSuspicion(peer, incarnation, this.self, now)
      this.emit({ type: 'suspect', peer, incarnation })
    } else if (this.confirm(peer, s, this.self)) {
      // spread our independent confirmation so others' timers shrink too
      this.emit({ type: 'suspect', peer, incarnation })
    }
  }

  private pickRelays(target: string): readonly string[] {
    const k = this.k
    const n = this.list.length
    if (k <= 0 || n === 0) return NO_PEERS
    const ok = (p: string): boolean => p !== target && !this.suspects.has(p)
    if (n <= 4 * k + 2) {
      // few members: take a random k of all eligible ones
      const c = this.list.filter(ok)
      const take = Math.min(k, c.length)
      shuffle(c, take, this.rng)
      c.length = take
      return c
    }
    const out: string[] = []
    for (let tries = 0; out.length < k && tries < 8 * k; tries++) {
      const p = this.list[Math.floor(this.rng() * n)]
      if (ok(p) && !out.includes(p)) out.push(p)
    }
    return out
  }

  private startSuspicion(peer: string, incarnation: number, from: string, now: number): void {
    const { minMs, maxMs, k } = this.suspicionBounds()
    const timeout = k > 0 ? maxMs : minMs
    // Members that only heard of the failure wait a little longer, so that in a big cluster
    // the few that saw it declare the death and the rest learn it from them instead of all
    // publishing the same verdict at once. They still declare it if nobody else does.
    const backup = from === this.self ? 0 : Math.floor(this.interval * (1 + 2 * this.rng()))
    const s: Suspicion = {
      incarnation,
      from,
      start: now,
      deadline: now + timeout + backup,
      k,
      min: minMs,
      max: maxMs,
      confirmers: undefined,
      timeout,
      backup,
      stretched: false,
    }
    this.suspects.set(peer, s)
    this.timers.push({ at: s.deadline, peer, seq: -1 })
  }

  /**
   * Count a confirmation. Returns true when it was a new, counted one (worth spreading when
   * it is ours). Our own failed probe also ends any backup wait.
   */
  private confirm(peer: string, s: Suspicion, by: string): boolean {
    let counted = false
    if (s.k > 0 && by !== s.from) {
      if (s.confirmers === undefined) s.confirmers = new Set()
      if (s.confirmers.size < s.k && !s.confirmers.has(by)) {
        s.confirmers.add(by)
        // Lifeguard: from max down to min, logarithmically in the number of confirmations
        const frac = Math.log(s.confirmers.size + 1) / Math.log(s.k + 1)
        s.timeout = Math.max(s.min, Math.floor(s.max - frac * (s.max - s.min)))
        counted = true
      }
    }
    if (by === this.self) s.backup = 0
    const deadline = s.start + s.timeout + s.backup
    if (deadline !== s.deadline) {
      s.deadline = deadline
      this.timers.push({ at: deadline, peer, seq: -1 })
    }
    return counted
  }
}

/** Fisher-Yates for the first `count` slots of `a`. */
export function shuffle<T>(a: T[], count: number, rng: () => number): void {
  for (let i = 0; i < count && i < a.length - 1; i++) {
    const j = i + Math.floor(rng() * (a.length - i))
    const t = a[i]
    a[i] = a[j]
    a[j] = t
  }
}
