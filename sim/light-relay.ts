/**
 * Which news a light member passes on about a member outside its sample (MODEL.md, Light
 * members that relay). It holds no row for that member, so its core cannot tell news from old news; a
 * member of a real cluster holds every row and passes on an item only when it changed the row
 * (or, for a suspicion, when it is a new confirmation). This filter answers the same question
 * from what each light member heard before, per subject, in bits instead of rows:
 *
 * - records: the newest (incarnation, left) heard about the subject and which members heard it;
 * - claims: the newest (incarnation, dead over suspect) likewise; a claim older than a record a
 *   member heard is stale for it;
 * - suspicions at the newest claim's rank: each suspector's claim once per member (Lifeguard
 *   confirmations travel apart).
 *
 * An item older than the newest is passed on by a member that never heard the newest (it would
 * change that member's row), once. About 1.25 kB per subject with news at 10,000 members.
 */
import type { News } from '../src/membership/core.js'

interface Slot {
  /** precedence of the newest item heard (see rank) */
  p: number
  /** members that heard an item of that precedence */
  bits: Uint32Array
}

/** Incarnation first, then a record's 'left' over 'alive', a claim's 'dead' over 'suspect'. */
const rank = (inc: number, outranks: boolean): number => inc * 2 + (outranks ? 1 : 0)

export class LightRelayFilter {
  private readonly records = new Map<number, Slot>()
  private readonly claims = new Map<number, Slot>()
  /** suspicions: which members heard this very claim */
  private readonly heard = new WeakMap<News, Uint32Array>()

  /** `size`: the most members the run holds (bit positions) */
  constructor(private readonly size: number) {}

  /** Whether member `node` passes on `x`, news about member `subject`; marks it heard. */
  first(x: News, subject: number, node: number): boolean {
    // a member past the run's size would be told nothing is new, ever: it passes nothing on
    if (node >= this.size) return false
    if ('info' in x) {
      const p = rank(x.info.incarnation, x.info.status === 'left')
      return this.slotFirst(this.records, subject, p, node, x)
    }
    // a claim below a record this member heard is refuted already
    const r = this.records.get(subject)
    if (r !== undefined && r.p >= rank(x.incarnation + 1, false) && has(r.bits, node)) return false
    const p = rank(x.incarnation, x.status === 'dead')
    const s = this.claims.get(subject)
    if (x.status === 'suspect' && s !== undefined && s.p === p) {
      // another suspector's claim: a confirmation, passed on once per claim
      if (!this.firstOf(x, node)) return false
      set(s.bits, node)
      return true
    }
    if (!this.slotFirst(this.claims, subject, p, node, x)) return false
    if (x.status === 'suspect') this.firstOf(x, node)
    return true
  }

  private slotFirst(map: Map<number, Slot>, subject: number, p: number, node: number, x: News): boolean {
    let s = map.get(subject)
    if (s === undefined || p > s.p) {
      if (s === undefined) {
        s = { p, bits: new Uint32Array((this.size + 31) >>> 5) }
        map.set(subject, s)
      } else {
        s.p = p
        s.bits.fill(0)
      }
      set(s.bits, node)
      return true
    }
    if (has(s.bits, node)) return false
    if (p === s.p) {
      set(s.bits, node)
      return true
    }
    // older news, from a member that never heard the newest: it would change its row, once
    return this.firstOf(x, node)
  }

  private firstOf(x: News, node: number): boolean {
    let bits = this.heard.get(x)
    if (bits === undefined) {
      bits = new Uint32Array((this.size + 31) >>> 5)
      this.heard.set(x, bits)
    }
    if (has(bits, node)) return false
    set(bits, node)
    return true
  }
}

function has(bits: Uint32Array, i: number): boolean {
  const w = i >>> 5
  return w < bits.length && (bits[w] & (1 << (i & 31))) !== 0
}

function set(bits: Uint32Array, i: number): void {
  const w = i >>> 5
  if (w < bits.length) bits[w] |= 1 << (i & 31)
}
