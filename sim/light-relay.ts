/**
 * Which news a light member passes on about a member outside its sample (MODEL.md, Light
 * members that relay). It holds no row for that member, so its core cannot tell news from old news; a
 * member of a real cluster holds every row and passes on an item only when it changed the row
 * (or, for a suspicion, when it started its suspicion or was one of the `k` confirmations its
 * Lifeguard timer counts). This filter answers the same question from what each light member
 * heard before, per subject, in bits and small tags instead of rows:
 *
 * - records: the newest (incarnation, left) heard about the subject and which members heard it;
 * - claims: the newest (incarnation, dead over suspect) likewise; a claim older than a record a
 *   member heard is stale for it;
 * - suspicions at one incarnation: per member the first suspector and up to `k` confirmers
 *   (swim.ts confirm(): memberlist re-broadcasts only counted confirmations). Passing every
 *   suspector's claim once per member instead cost a bitset per claim object: ~800 suspectors
 *   per crash at 10,000 members, 1.25 kB each, which ran the 10,000 crash out of memory.
 *
 * An item older than the newest is passed on by a member that never heard the newest (it would
 * change that member's row), once. About 1.25 kB per subject with news at 10,000 members, and
 * 60 kB more per subject suspected.
 */
import type { News } from '../src/membership/core.js'
import { SUSPICION_CONFIRMATIONS } from '../src/membership/swim.js'

interface Slot {
  /** precedence of the newest item heard (see rank) */
  p: number
  /** members that heard an item of that precedence */
  bits: Uint32Array
}

interface Suspicion {
  incarnation: number
  /** per member 1 + k tags of the suspectors it passed on (0: none) */
  tags: Uint16Array
}

/** Incarnation first, then a record's 'left' over 'alive', a claim's 'dead' over 'suspect'. */
const rank = (inc: number, outranks: boolean): number => inc * 2 + (outranks ? 1 : 0)

/** A suspector as a tag: its member number + 1, exact below 65,535 members. */
const tagOf = (i: number): number => (i % 0xffff) + 1

export class LightRelayFilter {
  private readonly records = new Map<number, Slot>()
  private readonly claims = new Map<number, Slot>()
  private readonly suspicions = new Map<number, Suspicion>()
  /** older news passed on by members that never heard the newest: which members, per item */
  private readonly heard = new WeakMap<News, Uint32Array>()
  private readonly width: number

  /**
   * `size`: the most members the run holds (bit positions); `idxOf`: a member's number;
   * `k`: the confirmations a suspicion counts (swim.ts suspicionBounds)
   */
  constructor(
    private readonly size: number,
    private readonly idxOf: (peer: string) => number,
    k = SUSPICION_CONFIRMATIONS,
  ) {
    this.width = 1 + k
  }

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
    if (x.status === 'dead') return this.slotFirst(this.claims, subject, p, node, x)
    const s = this.claims.get(subject)
    // a death or a higher incarnation heard: the suspicion changes nothing
    if (s !== undefined && s.p > p && has(s.bits, node)) return false
    if (s === undefined || p > s.p) this.slotFirst(this.claims, subject, p, node, x)
    else if (p === s.p) set(s.bits, node)
    return this.suspectFirst(x.incarnation, subject, node, x)
  }

  /** A suspicion: the first this member heard at its incarnation, or a counted confirmation. */
  private suspectFirst(
    incarnation: number,
    subject: number,
    node: number,
    x: News & { by: string },
  ): boolean {
    let s = this.suspicions.get(subject)
    if (s === undefined || incarnation > s.incarnation) {
      if (s === undefined) {
        s = { incarnation, tags: new Uint16Array(this.size * this.width) }
        this.suspicions.set(subject, s)
      } else {
        s.incarnation = incarnation
        s.tags.fill(0)
      }
    } else if (incarnation < s.incarnation) return this.firstOf(x, node)
    const tag = tagOf(this.idxOf(x.by))
    const at = node * this.width
    for (let i = at; i < at + this.width; i++) {
      const t = s.tags[i]
      if (t === tag) return false
      if (t === 0) {
        s.tags[i] = tag
        return true
      }
    }
    // its timer counted k confirmations already
    return false
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
