/**
 * One member's membership as a sans-IO core: the member table, the SWIM detector and the
 * piggyback queue, and the glue between them that the agent (service.ts) and the simulator
 * (sim/sim.ts) both need and used to write each in its own way:
 *
 * - a table change moves the detector (probe a new or refuted member, stop probing a dead one)
 *   and a claim against ourselves is refuted with a higher incarnation;
 * - what arrives is applied records first, then claims (a claim counts only from a member);
 *   gossiped news that changed our table is queued to be passed on;
 * - the detector's verdicts become signed claims, applied here and spread.
 *
 * Inputs are what arrived (records, claims, acks, probe requests) and the time (`now`, in ms,
 * on whatever clock the driver runs: Date.now() in the agent, virtual time in the simulator).
 * Outputs are effects, handed to `emit` the moment they happen, in order: the simulator's
 * figures depend on the order things happen within one event, and a change must reach the
 * driver before the reaction it causes. `emit` must not call back into the core.
 */
import { BROADCAST_DEFAULTS, BroadcastQueue } from './broadcasts.js'
import type { Change, Entry, MemberTable } from './merge.js'
import {
  type Claim,
  encodeClaim,
  encodeInfo,
  type MemberInfo,
  type SignedInfo,
  type Signer,
  type Status,
  signClaim,
  signInfo,
  type Verifier,
} from './record.js'
import { type Action, Swim, type SwimOptions } from './swim.js'
import { syncScale } from './sync-scale.js'

/** A record or a claim, as queued and piggybacked. */
export type News = SignedInfo | Claim

export type MembershipEffect =
  /** the detector's messages: probe, probe request, and as a relay, ack or nack */
  | Exclude<Action, { type: 'suspect' | 'dead' }>
  /**
   * The table changed. `replaced`: the entry it held before. `quiet`: our own 'left' record,
   * which the agent does not announce as a change of status.
   */
  | { type: 'change'; change: Change; replaced: Entry | undefined; quiet: boolean }
  /** something of ours to spread: a re-signed record or a claim (already queued to piggyback) */
  | { type: 'publish'; record: SignedInfo | undefined; claim: Claim | undefined }
  /** someone claimed we are suspect or dead: we answer with this higher incarnation */
  | { type: 'refuted'; incarnation: number }
  /** news was queued to piggyback: make sure the fan-out runs */
  | { type: 'queued' }
  /** a claim by someone who is not a member was ignored */
  | { type: 'dropped'; reason: 'unknown_claimant' }

export interface MembershipCoreOptions {
  signer: Signer
  verifier: Verifier
  /** the table to keep (the agent's outlives its detector) */
  table: MemberTable
  /** the detector's settings; `self` is the signer's peer ID */
  swim: Omit<SwimOptions, 'self'>
  /** our own record at an incarnation: what the driver knows of us (addresses, tags, disk) */
  describe: (incarnation: number, status: 'alive' | 'left') => MemberInfo
  emit: (e: MembershipEffect) => void
  /**
   * piggybacked dissemination: lambda of the queue's retransmissions, optionally the most items
   * queued and a member index for its skip lists (BroadcastOptions); false for none (gossipsub only)
   */
  piggyback?: { retransmitMult?: number; maxItems?: number; index?: (peer: string) => number } | false
  /** members this one follows (a light simulator node: a sample); default all */
  follows?: (peerId: string) => boolean
  /** the cluster size the retransmission limit is computed for (default: the table's) */
  clusterSize?: () => number
  /** periodic sync rounds already counted at start (staggers the syncs of a formed cluster) */
  syncRounds?: number
}

const QUEUED: MembershipEffect = Object.freeze({ type: 'queued' })
const UNKNOWN_CLAIMANT: MembershipEffect = Object.freeze({ type: 'dropped', reason: 'unknown_claimant' })

const sizes = new WeakMap<object, number>()
const varintLen = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4)
/** A length-delimited protobuf field of `len` bytes. */
const field = (len: number): number => 1 + varintLen(len) + len

/** an Ed25519 signature (the simulator signs with stand-ins but counts real ones) */
export const SIG_BYTES = 64

/** Bytes of one record or claim as an entry of a MemberSet (a Signed{body, sig}). */
export function newsBytes(x: News): number {
  let n = sizes.get(x)
  if (n === undefined) {
    const body = 'info' in x ? encodeInfo(x.info).length : encodeClaim(x).length
    n = field(field(body) + field(SIG_BYTES))
    sizes.set(x, n)
  }
  return n
}

/** Who news need not go back to: whoever told us, and whoever signed it. */
const skipFor = (from: string | undefined, signer: string): string[] =>
  from === undefined ? [signer] : [from, signer]

/**
 * The queue key: a newer record, or a dead claim, replaces what is queued about the same member;
 * independent suspicions travel apart (they are Lifeguard confirmations).
 */
function newsKey(x: News): string {
  // one string per record or claim, not one per queue holding it (10,000 queues in the simulator)
  let k = keys.get(x)
  if (k === undefined) {
    if ('info' in x) k = `r/${x.info.peerId}`
    else k = x.status === 'suspect' ? `s/${x.peerId}/${x.by}` : `c/${x.peerId}`
    keys.set(x, k)
  }
  return k
}

const keys = new WeakMap<News, string>()

export class MembershipCore {
  readonly self: string
  readonly table: MemberTable
  readonly swim: Swim
  private readonly o: MembershipCoreOptions
  private readonly queue: BroadcastQueue<News> | undefined
  private readonly emit: (e: MembershipEffect) => void
  private readonly follows: ((peerId: string) => boolean) | undefined
  private mine!: SignedInfo
  private hasLeft = false
  private syncRounds: number

  constructor(o: MembershipCoreOptions) {
    this.o = o
    this.self = o.signer.peerId
    this.table = o.table
    this.emit = o.emit
    this.follows = o.follows
    this.syncRounds = o.syncRounds ?? 0
    this.swim = new Swim({ ...o.swim, self: this.self })
    this.queue =
      o.piggyback === false || o.piggyback === undefined
        ? undefined
        : new BroadcastQueue({
            retransmitMult: o.piggyback.retransmitMult ?? BROADCAST_DEFAULTS.retransmitMult,
            maxItems: o.piggyback.maxItems ?? BROADCAST_DEFAULTS.maxItems,
            index: o.piggyback.index,
          })
  }

  /** Our current signed record. */
  get signed(): SignedInfo {
    return this.mine
  }

  get left(): boolean {
    return this.hasLeft
  }

  /** Whether queued news is still due to `peer` (see BroadcastQueue.hasFor). */
  hasNewsFor(peer: string): boolean {
    return this.queue?.hasFor(peer) ?? false
  }

  /** News still queued to piggyback. */
  get queued(): number {
    return this.queue?.size ?? 0
  }

  /** Bytes of news still queued (the fan-out widens with it: fanoutWidth). */
  get queuedBytes(): number {
    return this.queue?.bytes ?? 0
  }

  /** Sign our first record and hold it (announce() spreads it). */
  start(now: number): void {
    this.mine = signInfo(this.o.describe(this.swim.incarnation, 'alive'), this.o.signer)
    this.apply(this.mine, now)
  }

  /**
   * Spread the record we hold as it is: a member that starts (or restarts on its data dir) queues
   * its first record to piggyback, as memberlist's setAlive does, so it rides the epidemic and not
   * only the syncs, which pass nothing on. No new incarnation: the first one is the wall clock at
   * start, which already outranks our record and any claim about us from before a restart.
   */
  announce(): void {
    if (this.hasLeft) return
    this.spread(this.mine, undefined)
  }

  /** Re-sign our record at a higher incarnation (new addresses, tags, or a refutation) and spread it. */
  refresh(now: number, incarnation = this.swim.bumpIncarnation()): void {
    if (this.hasLeft) return
    this.mine = signInfo(this.o.describe(incarnation, 'alive'), this.o.signer)
    this.apply(this.mine, now)
    this.spread(this.mine, undefined)
  }

  /** We leave: our record says 'left' (applied quietly), spread; the detector stops. */
  leave(now: number): SignedInfo {
    this.hasLeft = true
    this.mine = signInfo(this.o.describe(this.swim.bumpIncarnation(), 'left'), this.o.signer)
    this.applyQuiet(this.mine, now, true)
    this.spread(this.mine, undefined)
    return this.mine
  }

  /**
   * Apply a record or entry we were given (a sync, a formed cluster), reacting to the change
   * but not passing it on.
   */
  apply(item: Entry | SignedInfo | Claim, now: number): Change | undefined {
    const change = this.applyQuiet(item, now, false)
    if (change !== undefined) this.react(change, now)
    return change
  }

  /**
   * A member of a formed cluster: `signed`, a record that already passed apply() elsewhere (the
   * same object), about a peer we hold nothing of, joined in as apply() joins it (the row, then
   * the detector starts probing it), without checking it again and with no 'change' effect: the
   * driver accounts for the row itself. For a driver that builds millions of rows at once (the
   * simulator's formed cluster). False, having done nothing, when apply() is needed instead.
   */
  joinVerified(signed: SignedInfo, now: number): boolean {
    if (!this.table.insertVerified(signed, now)) return false
    // what react() does with an 'alive' row that was not there (addMember ignores ourselves)
    this.swim.addMember(signed.info.peerId, signed.info.incarnation)
    return true
  }

  /**
   * Apply what arrived: records first, then claims. `spread`: it came by gossip, so what changed
   * our table (or counted as a new confirmation of a suspicion) is queued to be passed on, to
   * anyone but `from` (who sent it) and whoever already has it (a record's own member, a claim's
   * signer). Returns how many items changed the table.
   */
  ingest(
    records: readonly SignedInfo[],
    claims: readonly Claim[],
    now: number,
    spread: boolean,
    from?: string,
  ): number {
    let changed = 0
    const follows = this.follows
    for (const r of records) {
      if (follows !== undefined && !follows(r.info.peerId)) continue
      if (this.apply(r, now) === undefined) continue
      changed++
      if (spread) this.enqueue(r, skipFor(from, r.info.peerId))
    }
    for (const c of claims) {
      const r = this.ingestClaim(c, now)
      if (r > 1) changed++
      if (spread && r > 0 && c.peerId !== this.self) this.enqueue(c, skipFor(from, c.by))
    }
    return changed
  }

  /**
   * Pass on news about a member this one does not follow (a light simulator member holds no row
   * for it, so ingest() cannot tell news from old news: the driver says it is new to us). A
   * member of a real cluster holds every row and passes on whatever changed it; without this a
   * light member is a dead end for all news outside its sample (sim/MODEL.md, Large clusters).
   */
  relay(x: News, from?: string): void {
    this.enqueue(x, skipFor(from, 'info' in x ? x.info.peerId : x.by))
  }

  /** Stop probing a member we will not hear from again (revoked). */
  forget(peer: string): void {
    this.swim.removeMember(peer)
  }

  /** Up to `budget` bytes of queued news for one outgoing message (to member `to`, if known). */
  take(budget: number, to?: string): News[] {
    const q = this.queue
    if (q === undefined || q.size === 0) return []
    return q.take(budget, this.o.clusterSize?.() ?? this.table.size, to)
  }

  /** Bytes (as newsBytes counts them) of what the last take() returned. */
  get takenBytes(): number {
    return this.queue?.lastTakeBytes ?? 0
  }

  /**
   * Call once per base sync interval (`syncIntervalMs`): whether the periodic push-pull sync is
   * due this round. It is every syncScale(N) rounds (sync-scale.ts): gossip carries news, the
   * periodic sync only repairs, and its digest grows with N.
   */
  syncRound(): boolean {
    const n = this.o.clusterSize?.() ?? this.swim.memberCount + 1
    if (++this.syncRounds < syncScale(n)) return false
    this.syncRounds = 0
    return true
  }

  // ---- the detector -------------------------------------------------------------------------

  /** When tick() must next run (the detector's nextWakeup). */
  nextWakeup(): number {
    return this.swim.nextWakeup()
  }

  tick(now: number): void {
    if (this.hasLeft) return
    this.run(this.swim.tick(now), now)
  }

  onAck(from: string, seq: number, now: number): void {
    this.run(this.swim.onAck(from, seq, now), now)
  }

  /** `from` proved itself alive on its own initiative (see Swim.heard). */
  heard(from: string, now: number): void {
    this.swim.heard(from, now)
  }

  /** Our last connection to `peer` closed: it may be probed out of turn (see Swim.closed). */
  closed(peer: string, now: number): void {
    this.swim.closed(peer, now)
  }

  onNack(from: string, seq: number): void {
    this.swim.onNack(from, seq)
  }

  onProbeReq(origin: string, target: string, seq: number, now: number): void {
    this.run(this.swim.onProbeReq(origin, target, seq, now), now)
  }

  // ---- internals ----------------------------------------------------------------------------

  private isMember(peer: string): boolean {
    const s = this.table.status(peer)
    return s === 'alive' || s === 'suspect'
  }

  /** 0: nothing; 1: counted as a confirmation only; 2: changed the table. */
  private ingestClaim(c: Claim, now: number): number {
    const follows = this.follows
    if (follows !== undefined && !follows(c.peerId)) return 0
    // a claim counts only from a member we know (a light node takes one about a member it
    // does not follow: it cannot tell), except one about ourselves: we answer it with a higher
    // incarnation whoever signed it. After a partition each side holds the other dead, so every
    // claim of our death comes from a member we hold dead; ignoring it, neither side refuted
    if (
      c.by !== this.self &&
      c.peerId !== this.self &&
      (follows === undefined || follows(c.by)) &&
      !this.isMember(c.by)
    ) {
      this.emit(UNKNOWN_CLAIMANT)
      return 0
    }
    const changed = this.apply(c, now) !== undefined
    const counted = c.status === 'suspect' && this.swim.onSuspect(c.peerId, c.incarnation, c.by, now)
    return changed ? 2 : counted ? 1 : 0
  }

  private applyQuiet(item: Entry | SignedInfo | Claim, now: number, quiet: boolean): Change | undefined {
    const peer = 'signed' in item ? item.signed.info.peerId : 'info' in item ? item.info.peerId : item.peerId
    const replaced = this.table.get(peer)
    const change = this.table.apply(item, this.o.verifier, now)
    if (change !== undefined) this.emit({ type: 'change', change, replaced, quiet })
    return change
  }

  /** What a change of the table means for the detector, and for us. */
  private react(change: Change, now: number): void {
    const { peerId, after, entry } = change
    this.dropOutdated(peerId, after, entry)
    if (peerId === this.self) {
      // someone says we are suspect or dead at our current incarnation: refute
      if (after !== 'alive' && after !== 'left' && !this.hasLeft && entry.claim !== undefined) {
        const incarnation = this.swim.selfSuspected(entry.claim.incarnation)
        this.emit({ type: 'refuted', incarnation })
        this.refresh(now, incarnation)
      }
    } else if (after === 'alive' || after === 'suspect') {
      const inc = entry.signed.info.incarnation
      if (!this.swim.has(peerId)) this.swim.addMember(peerId, inc)
      else this.swim.onRefute(peerId, inc)
    } else {
      this.swim.removeMember(peerId)
    }
  }

  private run(actions: readonly Action[], now: number): void {
    for (const a of actions) this.act(a, now)
  }

  private act(a: Action, now: number): void {
    if (a.type !== 'suspect' && a.type !== 'dead') {
      this.emit(a)
      return
    }
    const claim = signClaim({ peerId: a.peer, incarnation: a.incarnation, status: a.type }, this.o.signer)
    this.apply(claim, now)
    this.spread(undefined, claim)
  }

  private spread(record: SignedInfo | undefined, claim: Claim | undefined): void {
    const x = record ?? claim
    if (x !== undefined) this.enqueue(x)
    this.emit({ type: 'publish', record, claim })
  }

  private enqueue(x: News, skip?: readonly string[]): void {
    if (this.queue === undefined) return
    // suspicions travel apart (one per suspector: Lifeguard confirmations), grouped by subject
    const group = 'info' in x || x.status !== 'suspect' ? undefined : x.peerId
    this.queue.enqueue(newsKey(x), x, newsBytes(x), skip, group)
    this.emit(QUEUED)
  }

  /**
   * Queued suspicions of `peer` that its row now outranks (a death, a departure, a refutation)
   * would change no table that holds the same: drop them, as memberlist's dead or alive message
   * invalidates a queued suspect message (what outranked them spreads on its own). At
   * 3,000 members with a 10% crash a full member held ~800 such suspicions (sim/MODEL.md).
   */
  private dropOutdated(peer: string, after: Status, entry: Entry): void {
    if (this.queue === undefined) return
    const inc = entry.signed.info.incarnation
    // a suspicion below the row's incarnation is refuted; a death or departure outranks its own too
    const below =
      after === 'dead'
        ? Math.max(inc, entry.claim?.incarnation ?? inc) + 1
        : after === 'left'
          ? Number.POSITIVE_INFINITY
          : inc
    this.queue.dropGroup(peer, (x) => !('info' in x) && x.incarnation < below)
  }
}
