/**
 * The membership CRDT. One entry per peer: the newest self-signed record plus the strongest
 * claim about it that is not outdated. merge() is the join of two such entries; MemberTable is
 * a map of them with verification, change reporting, anti-entropy digests and tombstones.
 *
 * Order on self-signed records: incarnation, then 'left' over 'alive', then canonical bytes,
 * then signature bytes. Order on claims: incarnation, then dead over suspect, then claimant
 * peer ID, then signature bytes. Both are total, so the join is a max and the result is the
 * same in any order; a claim below the kept record's incarnation was refuted and is dropped.
 */
import { overlayAddress } from './overlay.js'
import {
  type Claim,
  checkClaim,
  checkSignedInfo,
  checkSize,
  encodeInfo,
  fnv1a32,
  fnv1a32String,
  type SignedInfo,
  type Status,
  type Verifier,
  verifyClaim,
  verifyInfo,
} from './record.js'

export interface Entry {
  signed: SignedInfo
  claim?: Claim
}

/** What apply() changed. `before === after` when only the record changed (new tags, say). */
export interface Change {
  peerId: string
  /** undefined when the peer was not in the table (or only as a reaped tombstone) */
  before: Status | undefined
  after: Status
  entry: Entry
}

export type Outcome =
  | 'changed'
  /** byte-identical to what we hold: the common case for gossip */
  | 'duplicate'
  /** valid, but we already hold something newer */
  | 'stale'
  /** a claim about a peer we hold no record of: held back until its record arrives */
  | 'unknown-peer'
  /** refused by the table's `refuse` hook (revoked or not admitted) */
  | 'refused'
  /** malformed or oversized */
  | 'invalid'
  | 'bad-signature'

export interface ApplyResult {
  outcome: Outcome
  change?: Change
  /** why, for 'invalid' */
  reason?: string
}

/** One row of a push-pull digest: enough to tell which side holds the newer entry. */
export interface DigestItem {
  peerId: string
  incarnation: number
  left: boolean
  /** -1 when there is no claim */
  claimIncarnation: number
  /** 0 none, 1 suspect, 2 dead */
  claimRank: number
  /** fingerprints that break ties between different records with equal keys */
  infoFp: number
  claimFp: number
}

export const DAY_MS = 24 * 60 * 60 * 1000

const MAX_PENDING = 1024

export const STATUSES: readonly Status[] = ['alive', 'suspect', 'dead', 'left']

// ---- the join ------------------------------------------------------------------------------

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && compareBytes(a, b) === 0

const claimRank = (c: Claim | undefined): number => (c === undefined ? 0 : c.status === 'dead' ? 2 : 1)

export function compareInfo(a: SignedInfo, b: SignedInfo): number {
  if (a === b) return 0
  const ai = a.info
  const bi = b.info
  if (ai.incarnation !== bi.incarnation) return ai.incarnation - bi.incarnation
  if (ai.status !== bi.status) return ai.status === 'left' ? 1 : -1
  return compareBytes(encodeInfo(ai), encodeInfo(bi)) || compareBytes(a.sig, b.sig)
}

export function compareClaim(a: Claim, b: Claim): number {
  if (a === b) return 0
  if (a.incarnation !== b.incarnation) return a.incarnation - b.incarnation
  const r = claimRank(a) - claimRank(b)
  if (r !== 0) return r
  if (a.by !== b.by) return a.by < b.by ? -1 : 1
  return compareBytes(a.sig, b.sig)
}

/**
 * Entries are immutable, so a record without a claim has one shared entry: in the simulator
 * thousands of tables hold the same record, and a row is most of what a table costs.
 */
const plainEntries = new WeakMap<SignedInfo, Entry>()

function plain(signed: SignedInfo): Entry {
  let e = plainEntries.get(signed)
  if (e === undefined) {
    e = { signed }
    plainEntries.set(signed, e)
  }
  return e
}

function make(signed: SignedInfo, claim: Claim | undefined): Entry {
  return claim === undefined ? plain(signed) : { signed, claim }
}

/** An entry with an outdated claim removed (returns `e` itself when there is none). */
export function normalize(e: Entry): Entry {
  return e.claim !== undefined && e.claim.incarnation < e.signed.info.incarnation ? plain(e.signed) : e
}

/**
 * Join two entries for the same peer. Returns one of the inputs when it already is the join,
 * so callers can detect "nothing new" by identity.
 */
export function merge(a: Entry, b: Entry): Entry {
  if (a === b) return a
  const signed = compareInfo(a.signed, b.signed) >= 0 ? a.signed : b.signed
  let claim: Claim | undefined
  if (a.claim === undefined) claim = b.claim
  else if (b.claim === undefined) claim = a.claim
  else claim = compareClaim(a.claim, b.claim) >= 0 ? a.claim : b.claim
  if (claim !== undefined && claim.incarnation < signed.info.incarnation) claim = undefined
  if (signed === a.signed && claim === a.claim) return a
  if (signed === b.signed && claim === b.claim) return b
  return make(signed, claim)
}

export function effectiveStatus(e: Entry): Status {
  if (e.signed.info.status === 'left') return 'left'
  if (e.claim !== undefined && e.claim.incarnation >= e.signed.info.incarnation) return e.claim.status
  return 'alive'
}

// ---- the table -----------------------------------------------------------------------------

/**
 * A table row. Read-only outside this module; the objects are reused across updates, except a
 * formed row shared by many tables (insertVerified), which is replaced at its first update.
 */
export interface Row {
  readonly peerId: string
  readonly entry: Entry
  readonly status: Status
  /** `now` of the apply that gave the row its current status */
  readonly since: number
}

/** Lean on purpose (the simulator holds millions): the peer ID comes from the record, fingerprints from a shared cache. */
class Rec implements Row {
  constructor(
    public entry: Entry,
    public status: Status,
    public since: number,
  ) {}

  get peerId(): string {
    return this.entry.signed.info.peerId
  }
}

export interface MemberTableOptions {
  /** when set, a record must carry the overlay address derived from this cluster id */
  clusterId?: string
  /** refuse anything about (or claimed by) these peers, e.g. revoked ones */
  refuse?: (peerId: string) => boolean
  /**
   * A small unique number >= 0 for every peer the table will hold (the simulator's member
   * number): rows are then found by it in an array instead of a hash map. Same behaviour, same
   * iteration order; for a driver that holds millions of rows. Default: a map by peer ID.
   */
  index?: (peerId: string) => number
}

/** Where the rows are kept: a Map by peer ID, or IndexedRows. Both iterate in insertion order. */
interface RowStore {
  readonly size: number
  get(peerId: string): Rec | undefined
  has(peerId: string): boolean
  set(peerId: string, rec: Rec): void
  delete(peerId: string): boolean
  values(): IterableIterator<Rec>
}

/**
 * Rows in an array by the driver's index of each peer, plus the indices in insertion order (as a
 * Map iterates): a replaced row keeps its place without a search.
 */
class IndexedRows implements RowStore {
  readonly at: Array<Rec | undefined> = []
  private readonly order: number[] = []

  constructor(private readonly index: (peerId: string) => number) {}

  get size(): number {
    return this.order.length
  }

  get(peerId: string): Rec | undefined {
    const i = this.index(peerId)
    return i >= 0 && i < this.at.length ? this.at[i] : undefined
  }

  has(peerId: string): boolean {
    return this.get(peerId) !== undefined
  }

  set(peerId: string, rec: Rec): void {
    const i = this.index(peerId)
    if (!(i >= 0)) throw new Error(`no index for ${peerId}`)
    // filled up to i, not assigned past the end: a far write would make a sparse (dictionary) array
    while (this.at.length <= i) this.at.push(undefined)
    if (this.at[i] === undefined) this.order.push(i)
    this.at[i] = rec
  }

  /** O(rows): only reaping and revoking delete. */
  delete(peerId: string): boolean {
    const i = this.index(peerId)
    if (!(i >= 0 && i < this.at.length) || this.at[i] === undefined) return false
    this.at[i] = undefined
    this.order.splice(this.order.indexOf(i), 1)
    return true
  }

  *values(): IterableIterator<Rec> {
    const at = this.at
    for (const i of this.order) yield at[i]!
  }
}

/**
 * Rows made by insertVerified, one per record, shared by every table that holds the record so:
 * a formed row is the same in all of them (the record, 'alive', the same `since`), and the
 * simulator's formed cluster holds ~8 M of them (48 B each). Never changed: a table copies one
 * before its first update.
 */
const formedRows = new WeakMap<SignedInfo, Rec>()

/**
 * The local view of the cluster. apply() takes an entry, a signed record or a claim from
 * anywhere (gossip, push-pull, our own failure detector), checks and verifies it, joins it in,
 * and says what changed. Dead and left rows are tombstones: listed until reap() hides them after
 * `tombstoneMs`, then remembered, hidden, for another `tombstoneMs` so that late copies from
 * members who have not reaped yet cannot bring them back.
 */
export class MemberTable {
  private readonly map: RowStore
  private readonly tombstones = new Set<string>()
  private readonly hidden = new Map<string, { rec: Rec; at: number }>()
  private readonly byStatus: Record<Status, number> = { alive: 0, suspect: 0, dead: 0, left: 0 }
  private readonly overlays = new Map<string, string>()
  /** verified claims about peers not (yet) in the table, joined in when their record comes */
  private readonly pending = new Map<string, Claim>()
  /** how many inputs ended each way: for metrics */
  readonly outcomes: Record<Outcome, number> = {
    changed: 0,
    duplicate: 0,
    stale: 0,
    'unknown-peer': 0,
    refused: 0,
    invalid: 0,
    'bad-signature': 0,
  }

  /** whether insertVerified gave this table shared rows (see formedRows) */
  private shared = false

  constructor(private readonly opts: MemberTableOptions = {}) {
    this.map = opts.index !== undefined ? new IndexedRows(opts.index) : new Map<string, Rec>()
  }

  get size(): number {
    return this.map.size
  }

  has(peerId: string): boolean {
    return this.map.has(peerId)
  }

  get(peerId: string): Entry | undefined {
    return this.map.get(peerId)?.entry
  }

  row(peerId: string): Row | undefined {
    return this.map.get(peerId)
  }

  /**
   * With an `index`: the rows by index, for a driver that looks up millions of rows by number
   * (read it again after an update: a shared formed row is replaced). Undefined without one.
   */
  rowsByIndex(): ReadonlyArray<Row | undefined> | undefined {
    return this.map instanceof IndexedRows ? this.map.at : undefined
  }

  status(peerId: string): Status | undefined {
    return this.map.get(peerId)?.status
  }

  /** Row counts by effective status, kept up to date incrementally. */
  counts(): Readonly<Record<Status, number>> {
    return this.byStatus
  }

  /** The listed rows, tombstones included. No copying: do not apply or reap while iterating. */
  rows(): IterableIterator<Row> {
    return this.map.values()
  }

  *entries(status?: Status): IterableIterator<Entry> {
    for (const r of this.map.values()) if (status === undefined || r.status === status) yield r.entry
  }

  /** apply() without the detail: the change, or undefined when nothing changed or it was dropped. */
  apply(item: Entry | SignedInfo | Claim, verifier: Verifier, now: number): Change | undefined {
    return this.ingest(item, verifier, now).change
  }

  /**
   * Join a record that already passed apply()'s checks and verification (the same object went
   * through apply() in another table) about a peer this table holds nothing of: the row and
   * counts apply() would give it, without checking it again or building a Change. For a driver
   * that builds millions of rows at once (the simulator's formed cluster). False, having done
   * nothing, when apply() is needed instead: the peer is held, hidden or has a claim held back,
   * the record is not 'alive', or the table refuses peers or checks overlay addresses.
   */
  insertVerified(signed: SignedInfo, now: number): boolean {
    const peerId = signed.info.peerId
    if (signed.info.status !== 'alive' || this.opts.refuse !== undefined || this.opts.clusterId !== undefined)
      return false
    if (this.map.has(peerId)) return false
    if (this.hidden.size > 0 && this.hidden.has(peerId)) return false
    if (this.pending.size > 0 && this.pending.has(peerId)) return false
    let rec = formedRows.get(signed)
    if (rec === undefined) {
      rec = new Rec(plain(signed), 'alive', now)
      formedRows.set(signed, rec)
    }
    // shared only when it is the row this table would make (formed at another time: its own)
    if (rec.since === now) this.shared = true
    else rec = new Rec(plain(signed), 'alive', now)
    this.map.set(peerId, rec)
    this.byStatus.alive++
    this.outcomes.changed++
    return true
  }

  /** Check, verify and join one input; says how it ended and what changed. Never throws. */
  ingest(item: Entry | SignedInfo | Claim, verifier: Verifier, now: number): ApplyResult {
    const r = this.ingestInner(item, verifier, now)
    this.outcomes[r.outcome]++
    return r
  }

  private ingestInner(item: Entry | SignedInfo | Claim, verifier: Verifier, now: number): ApplyResult {
    if (typeof item !== 'object' || item === null) return { outcome: 'invalid', reason: 'not an object' }
    let signed: SignedInfo | undefined
    let claim: Claim | undefined
    if ('signed' in item) {
      signed = item.signed
      claim = item.claim
    } else if ('info' in item) signed = item
    else claim = item as Claim

    const bad =
      (signed !== undefined ? checkSignedInfo(signed) : undefined) ??
      (claim !== undefined ? checkClaim(claim) : undefined)
    if (bad !== undefined) return { outcome: 'invalid', reason: bad }
    if (signed === undefined && claim === undefined) return { outcome: 'invalid', reason: 'empty entry' }
    const peerId = signed !== undefined ? signed.info.peerId : claim!.peerId
    if (claim !== undefined && claim.peerId !== peerId)
      return { outcome: 'invalid', reason: 'claim is about another peer' }
    if (
      this.opts.refuse !== undefined &&
      (this.opts.refuse(peerId) || (claim !== undefined && this.opts.refuse(claim.by)))
    ) {
      return { outcome: 'refused' }
    }

    const live = this.map.get(peerId)
    const ghost = live === undefined ? this.hidden.get(peerId) : undefined
    let rec = live ?? ghost?.rec
    // byte-identical copies skip verification: they cannot change anything
    const infoNew = signed !== undefined && !(rec !== undefined && sameSigned(rec.entry.signed, signed))
    const claimNew =
      claim !== undefined && !(rec?.entry.claim !== undefined && sameClaim(rec.entry.claim, claim))
    if (!infoNew && !claimNew) return { outcome: 'duplicate' }

    if (infoNew) {
      const size = checkSize(signed!.info)
      if (size !== undefined) return { outcome: 'invalid', reason: size }
      if (this.opts.clusterId !== undefined && signed!.info.overlay !== this.overlayOf(peerId)) {
        return { outcome: 'invalid', reason: 'overlay address does not belong to the peer' }
      }
      if (!verifyInfo(signed!, verifier)) return { outcome: 'bad-signature' }
    }
    if (claimNew && !verifyClaim(claim!, verifier)) return { outcome: 'bad-signature' }

    if (rec === undefined) {
      if (signed === undefined) {
        this.hold(claim!)
        return { outcome: 'unknown-peer' }
      }
      const held = this.pending.get(peerId)
      this.pending.delete(peerId)
      const entry = normalize(
        held === undefined ? make(signed, claim) : merge(make(signed, claim), make(signed, held)),
      )
      const status = effectiveStatus(entry)
      this.map.set(peerId, new Rec(entry, status, now))
      this.count(status, 1)
      if (status === 'dead' || status === 'left') this.tombstones.add(peerId)
      return { outcome: 'changed', change: { peerId, before: undefined, after: status, entry } }
    }

    const incoming = make(signed ?? rec.entry.signed, claim)
    const merged = merge(rec.entry, incoming)
    if (merged === rec.entry) return { outcome: 'stale' }
    if (this.shared && formedRows.get(rec.entry.signed) === rec) {
      // a shared formed row: this table's own copy from now on (the same place in the order)
      rec = new Rec(rec.entry, rec.status, rec.since)
      if (live !== undefined) this.map.set(peerId, rec)
    }
    const before = live === undefined ? undefined : rec.status
    const status = effectiveStatus(merged)
    rec.entry = merged
    if (live === undefined) {
      // a reaped tombstone came back with something newer: list it again
      this.hidden.delete(peerId)
      this.map.set(peerId, rec)
      rec.status = status
      rec.since = now
      this.count(status, 1)
    } else if (status !== rec.status) {
      this.count(rec.status, -1)
      this.count(status, 1)
      rec.status = status
      rec.since = now
    }
    if (status === 'dead' || status === 'left') this.tombstones.add(peerId)
    else this.tombstones.delete(peerId)
    return { outcome: 'changed', change: { peerId, before, after: status, entry: merged } }
  }

  /**
   * Hide tombstones older than `tombstoneMs` and forget hidden ones older than that again.
   * Returns the peers hidden now.
   */
  reap(now: number, tombstoneMs = DAY_MS): string[] {
    const out: string[] = []
    for (const [peerId, h] of this.hidden) if (now - h.at >= tombstoneMs) this.hidden.delete(peerId)
    for (const peerId of this.tombstones) {
      const rec = this.map.get(peerId)!
      if (now - rec.since < tombstoneMs) continue
      this.tombstones.delete(peerId)
      this.map.delete(peerId)
      this.count(rec.status, -1)
      this.hidden.set(peerId, { rec, at: now })
      out.push(peerId)
    }
    return out
  }

  /** Drop a peer outright, with no tombstone (a revoked member). Pair with `refuse`. */
  forget(peerId: string): boolean {
    this.hidden.delete(peerId)
    this.pending.delete(peerId)
    const rec = this.map.get(peerId)
    if (rec === undefined) return false
    this.map.delete(peerId)
    this.tombstones.delete(peerId)
    this.count(rec.status, -1)
    return true
  }

  /** A compact summary of every listed row, for push-pull. */
  digest(): DigestItem[] {
    const out: DigestItem[] = []
    for (const r of this.map.values()) {
      const { info } = r.entry.signed
      const peerId = info.peerId
      const c = r.entry.claim
      out.push({
        peerId,
        incarnation: info.incarnation,
        left: info.status === 'left',
        claimIncarnation: c === undefined ? -1 : c.incarnation,
        claimRank: claimRank(c),
        infoFp: infoFingerprint(r.entry.signed),
        claimFp: c === undefined ? 0 : claimFingerprint(c),
      })
    }
    return out
  }

  /**
   * The entries the holder of `remote` lacks or holds older versions of. Tombstones the remote
   * never heard of are sent too, so tables converge exactly. Push-pull in three messages:
   * A sends its digest; B answers diff(A's digest) and its own digest; A applies that, then
   * sends diff(B's digest). Both then hold the same rows (applying before diffing also passes
   * on claims A held back for peers it had no record of).
   */
  diff(remote: readonly DigestItem[]): Array<Entry | Claim> {
    const theirs = new Map<string, DigestItem>()
    for (const d of remote) theirs.set(d.peerId, d)
    const out: Array<Entry | Claim> = []
    for (const r of this.map.values()) {
      const d = theirs.get(r.peerId)
      if (d === undefined || newerThan(r, d)) out.push(r.entry)
    }
    // claims we hold back for want of a record, about peers the remote has a record of
    for (const [peerId, c] of this.pending) {
      const d = theirs.get(peerId)
      if (d !== undefined && claimNewer(c, d)) out.push(c)
    }
    return out
  }

  /** Keep a verified claim about a peer we have no record of yet: gossip can overtake. */
  private hold(c: Claim): void {
    const prev = this.pending.get(c.peerId)
    if (prev !== undefined && compareClaim(prev, c) >= 0) return
    if (prev === undefined && this.pending.size >= MAX_PENDING)
      this.pending.delete(this.pending.keys().next().value as string)
    this.pending.set(c.peerId, c)
  }

  private count(s: Status, d: number): void {
    this.byStatus[s] += d
  }

  private overlayOf(peerId: string): string {
    let o = this.overlays.get(peerId)
    if (o === undefined) {
      if (this.overlays.size >= 65536) this.overlays.clear()
      o = overlayAddress(this.opts.clusterId!, peerId)
      this.overlays.set(peerId, o)
    }
    return o
  }
}

function sameSigned(a: SignedInfo, b: SignedInfo): boolean {
  if (a === b) return true
  return (
    a.info.incarnation === b.info.incarnation &&
    a.info.status === b.info.status &&
    bytesEqual(a.sig, b.sig) &&
    bytesEqual(encodeInfo(a.info), encodeInfo(b.info))
  )
}

function sameClaim(a: Claim, b: Claim): boolean {
  if (a === b) return true
  return a.incarnation === b.incarnation && a.status === b.status && a.by === b.by && bytesEqual(a.sig, b.sig)
}

/** Fingerprints are pure functions of immutable records and claims: computed once per object. */
const fingerprints = new WeakMap<SignedInfo | Claim, number>()

function infoFingerprint(s: SignedInfo): number {
  let fp = fingerprints.get(s)
  if (fp === undefined) {
    fp = fnv1a32(s.sig)
    fingerprints.set(s, fp)
  }
  return fp
}

function claimFingerprint(c: Claim): number {
  let fp = fingerprints.get(c)
  if (fp === undefined) {
    fp = fnv1a32(c.sig, fnv1a32String(c.by))
    fingerprints.set(c, fp)
  }
  return fp
}

/** Would sending our row change the state of a peer whose row is summarised by `d`? */
function newerThan(r: Rec, d: DigestItem): boolean {
  const { info } = r.entry.signed
  const left = info.status === 'left'
  if (info.incarnation !== d.incarnation) {
    if (info.incarnation > d.incarnation) return true
  } else if (left !== d.left) {
    if (left) return true
  } else if (infoFingerprint(r.entry.signed) !== d.infoFp) return true
  const c = r.entry.claim
  return c !== undefined && claimNewer(c, d)
}

/** Would our claim survive and win on a peer whose row is summarised by `d`? */
function claimNewer(c: Claim, d: DigestItem): boolean {
  if (c.incarnation < d.incarnation) return false
  if (c.incarnation !== d.claimIncarnation) return c.incarnation > d.claimIncarnation
  const rank = claimRank(c)
  if (rank !== d.claimRank) return rank > d.claimRank
  return claimFingerprint(c) !== d.claimFp
}
