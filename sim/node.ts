// One simulated member: the real MemberTable and Swim, its own signed record, and the little
// state the agent's adapter keeps around them (connections, sync times, relay waiters).

import type { MembershipCore } from '../src/membership/core.js'
import type { MemberTable, Row } from '../src/membership/merge.js'
import type { Claim, MemberInfo, SignedInfo, Signer } from '../src/membership/record.js'
import type { Swim } from '../src/membership/swim.js'
import { mix3 } from './rng.js'

/**
 * 'full' nodes hold the whole table and probe everyone, exactly as the agent does; at sizes
 * where N full tables do not fit in memory, 'light' nodes run the same Swim over a sample of the
 * members and keep only those rows (see MODEL.md). Figures are measured on full nodes.
 */
export type NodeKind = 'full' | 'light'

/** A message in flight between two nodes (one shape for all kinds, for speed). */
export interface Msg {
  t: number
  from: number
  /** sender's epoch and when the message started leaving its uplink: a crash stops what had not */
  fe: number
  tx: number
  seq: number
  target: number
  ack: boolean
  sentAt: number
  why: SyncWhy
  body: unknown
  /** piggybacked dissemination (`--dissemination piggyback`): records and claims riding along */
  gossip: Array<SignedInfo | Claim> | undefined
}

export type SyncWhy = 'periodic' | 'connect' | 'leave' | 'catchup'

export const MSG = {
  probe: 0,
  probeReq: 1,
  reply: 2,
  replyIndirect: 3,
  syncReq: 4,
  syncResp: 5,
  syncFin: 6,
  dial: 7,
  ext: 8,
  /** a fan-out message of the piggyback dissemination (a Probe{seq 0} carrying only gossip) */
  gossip: 9,
  gossipReply: 10,
} as const

export class SimNode {
  kind: NodeKind
  /** running (not crashed, not stopped after leaving) */
  up = false
  /** bumped at every (re)start: messages and timers of an older epoch are void */
  epoch = -1
  /** when each epoch ended */
  readonly downAt: number[] = []
  /** announced 'left'; stops at stopAt */
  left = false
  stopAt = Number.POSITIVE_INFINITY
  /** the agent's membership core (table, detector, queue), new at every start */
  core!: MembershipCore
  table!: MemberTable
  /**
   * Full nodes: the table's own rows by member index (MemberTable.rowsByIndex), so syncs and
   * lookups index an array instead of hashing peer IDs into 10,000-row maps.
   */
  rowAt: ReadonlyArray<Row | undefined> | undefined
  /** the agent polls tick() every 100 ms from this phase */
  tickPhase = 0
  /** nominal time of the pending wake-up, +Infinity when none */
  wakeAt = Number.POSITIVE_INFINITY
  /** mean extra delay before this node handles anything (a busy event loop); 0 for most */
  slowMs = 0
  /** anti-entropy fingerprint per bucket (two 32-bit lanes) and the full-set size in bytes */
  hash!: Int32Array
  tableBytes = 0
  readonly lastSync = new Map<number, number>()
  /** when a sync it started last completed (sync-on-connect.ts); -Infinity: never */
  lastSyncOk = Number.NEGATIVE_INFINITY
  /** a catch-up sync is due (sync-on-connect.ts, catchUpAfter) */
  catchUpArmed = false
  // connections: explicit ones, or implicit among the members present at t = 0
  baseLinked = false
  readonly conn = new Set<number>()
  readonly cut = new Set<number>()
  connCount = 0
  /** members it knows (its peer store) but holds no connection to: what its dial loops try */
  readonly unlinked = new Set<number>()
  /** the unlinked ones it holds alive: what connectMembers dials */
  readonly dialable = new Set<number>()
  /** piggyback dissemination: whether its fan-out timer runs */
  fanoutArmed = false
  /** gossipsub mesh peers */
  mesh: number[] = []
  meshDirty = false
  /** relayed probe requests waiting for the detector's verdict, by `${origin}/${seq}` */
  readonly waiters = new Map<string, Msg>()
  /** light nodes: the members it follows (itself included) */
  interest: number[] | undefined
  /** light nodes: it follows j when mix3(seed, min, max) of the pair falls below this fraction (a Set of 300 per node costs more) */
  sampleSeed = 0
  sampleFrac = 1
  /** bytes this node sent, and how long it ran */
  sent = 0
  aliveMs = 0
  upSince = 0

  constructor(
    readonly idx: number,
    readonly peerId: string,
    readonly signer: Signer,
    readonly overlay: string,
    readonly addrs: readonly string[],
    kind: NodeKind,
  ) {
    this.kind = kind
  }

  get swim(): Swim {
    return this.core.swim
  }

  get self(): MemberInfo {
    return this.core.signed.info
  }

  get signed(): SignedInfo {
    return this.core.signed
  }

  get full(): boolean {
    return this.kind === 'full'
  }

  follows(j: number): boolean {
    if (this.interest === undefined) return true
    if (j === this.idx) return true
    if (j < 0) return false
    const a = j < this.idx ? j : this.idx
    const b = j < this.idx ? this.idx : j
    return mix3(this.sampleSeed, a, b) / 4294967296 < this.sampleFrac
  }

  /**
   * A light node's own number for member j: its position in `interest` (0 for itself), -1 when
   * it does not follow j. Its table and detector find rows and slots by it in arrays of ~300
   * instead of two hash maps of peer IDs (~100 B a row). `interest` after its first entry (the
   * node itself) is ascending: members it followed when added, then joiners in index order.
   */
  slotOf(j: number): number {
    if (j === this.idx) return 0
    const a = this.interest
    if (a === undefined || j < 0) return -1
    let lo = 1
    let hi = a.length - 1
    while (lo <= hi) {
      const m = (lo + hi) >> 1
      const v = a[m]
      if (v === j) return m
      if (v < j) lo = m + 1
      else hi = m - 1
    }
    return -1
  }

  downAtOf(epoch: number): number {
    return this.downAt[epoch] ?? Number.POSITIVE_INFINITY
  }
}
