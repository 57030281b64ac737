/**
 * The dissemination queue: what a member still has to tell others, memberlist-style
 * (TransmitLimitedQueue). Sans-IO: the driver enqueues every record or claim that changed its
 * table through gossip or its own detector, and takes a byte-bounded batch to piggyback on each
 * probe, probe reply and fan-out message it sends.
 *
 * Why: gossipsub's cost per member grows with N (IHAVE to a quarter of all connections, flood
 * publish to every connection); here each member sends each update at most
 * retransmitMult * ceil(log10(N + 1)) times (at least RETRANSMIT_MIN) whatever N is, which is
 * enough for an epidemic to reach everyone with high probability (SWIM, section 4.1);
 * anti-entropy repairs the rest.
 *
 * A newer item about the same key (a record or a claim about one member) replaces the queued
 * one, so a dead claim supersedes the suspect claim and a refutation its own older record.
 * Items sent fewest times go first, newest first among equals (fresh news spreads fastest).
 */

export interface BroadcastOptions {
  /** lambda in lambda * ceil(log10(N + 1)) transmissions per item (memberlist: 4) */
  retransmitMult: number
  /** at most this many items held; the most-sent are dropped first */
  maxItems: number
  /**
   * A small unique number >= 0 per member (the simulator's member number; -1 for one it does
   * not know): skip lists then hold numbers, compared without loading peer-ID strings (a take
   * checks every item it passes against its recipient). Same behaviour. Default: peer IDs.
   */
  index?: (peer: string) => number
}

/** A member in a skip list: its index when the queue has one, else its peer ID. */
type Who = string | number

/**
 * lambda = 2, not memberlist's 4: in the simulator (1,000 members, 10% crash, WAN) 4 cost 3.1 kB/s
 * per member and 2 cost 2.2 kB/s, detection the same (p99 18 s): protocols/membership.md
 */
export const BROADCAST_DEFAULTS: BroadcastOptions = { retransmitMult: 2, maxItems: 4096 }

/**
 * How the agent and the simulator piggyback: bytes of records and claims per probe, reply or
 * fan-out message (1,200 delayed detection by 4 s at 1,000 members: a crash of 100 queues more
 * than a few messages carry), and while anything is queued, a fan-out to `fanout` random members
 * every `intervalMs` (memberlist's LAN GossipNodes and GossipInterval).
 */
export const PIGGYBACK = { budget: 4000, fanout: 3, fanoutMax: 12, intervalMs: 200 } as const

/**
 * Members per fan-out round for `queuedBytes` of news: `fanout`, or one message's budget per
 * member when more is queued, up to `fanoutMax`. Each item is still sent its limited number of
 * times, so a burst costs the same bytes and leaves sooner: with 3 a round, 300 of 3,000 members
 * crashing took p99 13.2 s to spread from the first death claim to every observer, 3.6 s with
 * this (sim/MODEL.md, Light members that relay).
 */
export function fanoutWidth(queuedBytes: number): number {
  return Math.min(PIGGYBACK.fanoutMax, Math.max(PIGGYBACK.fanout, Math.ceil(queuedBytes / PIGGYBACK.budget)))
}

interface Item<T> {
  key: string
  value: T
  bytes: number
  sent: number
  /** false once replaced or dropped: buckets skip it lazily */
  live: boolean
  /** members it is not sent to: who told us, whom a record is of, whom we sent it to already */
  skip: Who[]
  /** items dropped together when news outdates them (dropGroup) */
  group: string | undefined
}

/**
 * Transmissions per item never fall below this (what lambda 2 gives at 1,000 members): with
 * 4 sends each at 50 members an epidemic misses a member about once per update (a fraction
 * e^-4 is never reached), which then waits for its own timers or a sync; in the simulator (50
 * members, LAN, one kill -9, 30 seeds) spreading a death took up to 3.3 s with 4 and 0.9 s with 8.
 */
export const RETRANSMIT_MIN = 8

/** Transmissions per item for a cluster of `n` members. */
export function retransmitLimit(mult: number, n: number): number {
  return Math.max(RETRANSMIT_MIN, mult * Math.ceil(Math.log10(Math.max(1, n) + 1)))
}

export class BroadcastQueue<T> {
  private readonly opts: BroadcastOptions
  /** buckets[s]: items sent s times, oldest first */
  private buckets: Item<T>[][] = []
  private readonly byKey = new Map<string, Item<T>>()
  /** bytes of the live items */
  private liveBytes = 0
  /** items no longer live still held in buckets (compact() drops them) */
  private stale = 0
  /** live items by group */
  private readonly groups = new Map<string, Set<Item<T>>>()
  /** the smallest item ever queued: once less budget than this is left, nothing more fits */
  private minBytes = Number.POSITIVE_INFINITY
  /** bytes of the items the last take() returned (the simulator counts them without re-sizing each) */
  lastTakeBytes = 0

  /** how a member appears in skip lists (an index keeps unknown members apart by peer ID) */
  private readonly who: (peer: string) => Who

  constructor(opts: Partial<BroadcastOptions> = {}) {
    this.opts = { ...BROADCAST_DEFAULTS, ...opts }
    const index = opts.index
    this.who =
      index === undefined
        ? (peer) => peer
        : (peer) => {
            const i = index(peer)
            return i >= 0 ? i : peer
          }
  }

  /** Items still to send. */
  get size(): number {
    return this.byKey.size
  }

  /** Bytes of the items still to send. */
  get bytes(): number {
    return this.liveBytes
  }

  /**
   * Queue `value` under `key` (replacing what was queued under it), `bytes` on the wire, never
   * to be sent to the members in `skip`; in `group`, if given (see dropGroup).
   */
  enqueue(key: string, value: T, bytes: number, skip?: readonly string[], group?: string): void {
    const old = this.byKey.get(key)
    if (old !== undefined) {
      this.unGroup(old)
      this.stale++
    }
    const item: Item<T> = {
      key,
      value,
      bytes,
      sent: 0,
      live: true,
      skip: skip === undefined ? [] : this.skipList(skip),
      group,
    }
    if (bytes < this.minBytes) this.minBytes = bytes
    this.liveBytes += bytes
    this.byKey.set(key, item)
    if (group !== undefined) {
      let g = this.groups.get(group)
      if (g === undefined) {
        g = new Set()
        this.groups.set(group, g)
      }
      g.add(item)
    }
    this.bucket(0).push(item)
    if (this.byKey.size > this.opts.maxItems) this.dropMostSent()
    this.compactIfStale()
  }

  /**
   * Drop the items of `group` that `outdated` says no member needs any more (a member's
   * suspicions once it is held dead: memberlist's dead message invalidates the queued suspect
   * one). How many were dropped.
   */
  dropGroup(group: string, outdated: (value: T) => boolean): number {
    const g = this.groups.get(group)
    if (g === undefined) return 0
    let n = 0
    for (const it of g) {
      if (!outdated(it.value)) continue
      this.retire(it)
      n++
    }
    this.stale += n
    this.compactIfStale()
    return n
  }

  /**
   * Up to `budget` bytes of items for one outgoing message in a cluster of `members`, counted as
   * sent once. Items at their transmission limit leave the queue. `to`: the message's recipient;
   * an item goes to each member at most once and never back to whoever told us: at 5 members
   * an item was sent twice, often straight back or twice to one member, and a re-signed record
   * missed 62 of 80 members in the simulator (test/unit/membership-small-cluster-spread.test.ts).
   */
  take(budget: number, members: number, peer?: string): T[] {
    this.lastTakeBytes = 0
    if (this.byKey.size === 0) return []
    const to = peer === undefined ? undefined : this.who(peer)
    const limit = retransmitLimit(this.opts.retransmitMult, members)
    const out: T[] = []
    const moved: Item<T>[] = []
    let left = budget
    // stop scanning when nothing fits any more (a long queue is otherwise walked on every message)
    const min = this.minBytes
    for (let s = 0; s < this.buckets.length && left > 0 && left >= min; s++) {
      const b = this.buckets[s]
      let kept = b.length
      for (let i = b.length - 1; i >= 0 && left > 0 && left >= min; i--) {
        const it = b[i]
        if (!it.live) {
          b.splice(i, 1)
          kept--
          if (this.stale > 0) this.stale--
          continue
        }
        if (to !== undefined && it.skip.includes(to)) {
          // every other member has it (a pair's news from the other member): it is done
          if (it.skip.length >= members - 1) {
            this.retire(it)
            b.splice(i, 1)
            kept--
          }
          continue
        }
        if (it.bytes > left) continue
        if (to !== undefined) it.skip.push(to)
        left -= it.bytes
        out.push(it.value)
        b.splice(i, 1)
        kept--
        it.sent++
        if (it.sent >= limit || it.skip.length >= members - 1) this.retire(it)
        else moved.push(it)
      }
      if (kept === 0 && s === this.buckets.length - 1) this.buckets.length = s
    }
    // newest first within a bucket: put them back in the order they were taken, reversed
    for (let i = moved.length - 1; i >= 0; i--) this.bucket(moved[i].sent).push(moved[i])
    this.lastTakeBytes = budget - left
    return out
  }

  /**
   * Whether a message to `to` would carry anything. An item skips the members who have it: in a
   * pair, news from the other member is for nobody, and the fan-out must not probe for it forever.
   */
  hasFor(peer: string): boolean {
    const to = this.who(peer)
    for (const it of this.byKey.values()) if (it.live && !it.skip.includes(to)) return true
    return false
  }

  /** Forget everything (a restart). */
  clear(): void {
    this.buckets = []
    this.stale = 0
    this.liveBytes = 0
    this.byKey.clear()
    this.groups.clear()
  }

  /**
   * A take() passes over stale items only as far as its budget reaches: replaced items and a
   * crash's worth of dropped suspicions would otherwise stay in the buckets.
   */
  private compactIfStale(): void {
    if (this.stale <= 2 * this.byKey.size + 64) return
    for (let s = 0; s < this.buckets.length; s++) this.buckets[s] = this.buckets[s].filter((it) => it.live)
    while (this.buckets.length > 0 && this.buckets[this.buckets.length - 1].length === 0)
      this.buckets.length--
    this.stale = 0
  }

  /** `skip` as members, each once (lists of one or two: no Set per item) */
  private skipList(skip: readonly string[]): Who[] {
    const out: Who[] = []
    for (const p of skip) {
      const w = this.who(p)
      if (!out.includes(w)) out.push(w)
    }
    return out
  }

  /** The item leaves the queue (buckets skip it lazily). */
  private retire(it: Item<T>): void {
    this.unGroup(it)
    this.byKey.delete(it.key)
  }

  /** Not live any more; its key may already hold a newer item. */
  private unGroup(it: Item<T>): void {
    if (it.live) this.liveBytes -= it.bytes
    it.live = false
    if (it.group === undefined) return
    const g = this.groups.get(it.group)
    if (g === undefined) return
    g.delete(it)
    if (g.size === 0) this.groups.delete(it.group)
  }

  private bucket(s: number): Item<T>[] {
    while (this.buckets.length <= s) this.buckets.push([])
    return this.buckets[s]
  }

  private dropMostSent(): void {
    for (let s = this.buckets.length - 1; s >= 0; s--) {
      const b = this.buckets[s]
      while (b.length > 0) {
        const it = b.shift()!
        if (!it.live) {
          if (this.stale > 0) this.stale--
          continue
        }
        this.retire(it)
        return
      }
    }
  }
}
