/**
 * The election state machine of one member, for every request it knows of. Sans-IO: feed it
 * what arrives (requests, votes, reports, cancellations from gossip; death claims from the
 * membership table), call tick(now) at nextWakeup(), and carry out the effects it returns.
 *
 * The state of a request is a pure function of the set of valid messages held, so members that
 * hold the same messages agree, whatever order they came in:
 *
 * - Round 0's participants are the request's voters; round r+1's are round r's minus its winner.
 *   Votes and reports name the round by number and history (messages.ts nextHistory: the winners
 *   left behind before it), and count only in that very round.
 * - A round is complete when every participant has voted in it or is dead: death claims at or
 *   above the incarnation the request lists for it, signed by a majority of the other voters
 *   (deadQuorum: a minority cut off by a partition cannot end every open request).
 * - The winner of a complete round is the best yes vote of its participants (rule.ts:
 *   highest score, then highest tiebreak, then smallest peer ID). None: "no member can run this".
 * - The round ends, and round r+1 starts without the winner, when the winner reports ERROR or is
 *   dead. A DEALLOCATED report from the winner finishes the request (even if it dies later).
 * - A cancellation by the requester finishes it too.
 *
 * Never two allocations. A member acts only while the state above names it the winner of the
 * current round and stops ('stand-down') the moment it does not; it reports ERROR only once it
 * has stopped. It votes in a round only while its state is in that round, so after it stopped
 * acting in any other. A member's state only moves forward: for a given round and history the
 * winner can only get better as votes arrive, so the list of winners grows in lexicographic
 * order and never comes back to one it left. Say a and b, both alive, act at once in different
 * states. If one list of winners extends the other, the shorter one's winner was left behind in
 * the longer: it reported ERROR, so it had stopped, or it is dead. Otherwise take a's list to be
 * the later one where they first differ: b is not left behind in a's list before a's round (it
 * would have reported ERROR in a's branch, or be dead), so a's round needed b's vote for that
 * very round and history, cast while b's state was in a's branch, and b cannot have gone back
 * to its own earlier one. In one round of one history, two states name the same winner unless
 * one holds the vote of a member the other holds as dead. Other members never time a live
 * winner out: only the winner gives up (ERROR after roundTimeoutMs without ALLOCATED), because
 * only it knows whether it started. What this rests on: a member declared dead has really
 * stopped, and voters do not sign two different votes for one round. A member falsely declared
 * dead (a partition) stands down when it learns of it, but may overlap with its successor until
 * then.
 */
import {
  type Claim,
  checkClaim,
  fnv1a32,
  fnv1a32String,
  type Signer,
  type Verifier,
  verifyClaim,
} from '../membership/record.js'
import {
  type Cancel,
  checkMessage,
  compareBytes,
  LIMITS,
  type Message,
  nextHistory,
  type Report,
  type ReportState,
  type Request,
  type RequestSpec,
  requestId,
  sameMessage,
  signCancel,
  signReport,
  signRequest,
  signVote,
  type Vote,
  type VoteReason,
  verifyMessage,
} from './messages.js'
import { type Assessment, isFinal, pickWinner, preferReport, preferVote } from './rule.js'

export type Status = 'voting' | 'elected' | 'allocated' | 'deallocated' | 'no-candidate' | 'cancelled'

export const TERMINAL: ReadonlySet<Status> = new Set<Status>(['deallocated', 'no-candidate', 'cancelled'])

/** A winner left behind: round `round` ended because it reported an error or died. */
export interface Exclusion {
  peer: string
  round: number
  why: 'error' | 'dead'
}

export type RefusalReason = VoteReason | 'dead' | 'failed'

/** Why a voter is not running the request. */
export interface Refusal {
  reasons: RefusalReason[]
  note: string
}

/** 'late': an allocation finished after we had stood down from the round it was for */
export type StandDownReason = 'cancelled' | 'superseded' | 'declared-dead' | 'timeout' | 'late'

export type Effect =
  /** broadcast one of our own signed messages (or send it again) */
  | { type: 'send'; msg: Message }
  /** judge the request (rule.ts assess, plus the compute type's `available`), then call vote() */
  | { type: 'vote-needed'; requestId: string; round: number; request: Request }
  /** the round has a winner (announced once per round and winner) */
  | { type: 'decided'; requestId: string; round: number; winner: string; vote: Vote }
  /** we are the winner: allocate, then report ALLOCATED (or ERROR). `resumed`: we had already begun, before a restart */
  | { type: 'act'; requestId: string; round: number; request: Request; resumed: boolean }
  /** stop and undo whatever `act` started; for 'cancelled', report DEALLOCATED when done */
  | { type: 'stand-down'; requestId: string; round: number; reason: StandDownReason }
  /** round `round` starts without `excluded` */
  | { type: 'new-round'; requestId: string; round: number; excluded: string; why: 'error' | 'dead' }
  /** nobody can run it: every voter's reasons */
  | { type: 'no-candidate'; requestId: string; round: number; reasons: Record<string, Refusal> }
  | { type: 'status'; requestId: string; status: Status; round: number; winner?: string }
  /** no progress for a while: these voters have not voted, or this winner has not reported */
  | { type: 'stalled'; requestId: string; round: number; waitingFor: string[] }
  /** a member signed two different votes for one round; the smaller encoding is kept */
  | { type: 'misbehaviour'; requestId: string; round: number; peer: string; what: 'equivocation' }

export type Outcome =
  | 'accepted'
  /** byte-identical to what we hold */
  | 'duplicate'
  /** a copy of a vote for a round that has already ended here */
  | 'replayed'
  /** for a request we do not know yet: kept for pendingMs (counted again when applied) */
  | 'held'
  /** malformed, oversized, or a request whose id is not its hash */
  | 'invalid'
  | 'bad-signature'
  /** a vote or report by a member that is not a voter of the request */
  | 'not-voter'
  /** a cancellation by someone other than the requester */
  | 'not-requester'
  /** a report by a member that voted no in that round */
  | 'not-winner'
  /** a vote or report for a round too far ahead of ours (sent again later) */
  | 'future-round'
  /** a second, different vote by one voter for one round */
  | 'equivocation'
  /** a report older than the one we hold, or a death claim below the listed incarnation */
  | 'stale'
  /** a request created longer than maxAgeMs ago (or too far in the future) */
  | 'expired'
  /** for a request finished and forgotten here */
  | 'finished'
  /** held for a request that never came */
  | 'unknown-request'
  /** one member voting or reporting under too many histories for one round */
  | 'too-many'
  /** a suspect claim, or a death claim about nobody we elect with */
  | 'ignored'
  /** too many requests or held messages */
  | 'full'

export const OUTCOMES: readonly Outcome[] = [
  'accepted',
  'duplicate',
  'replayed',
  'held',
  'invalid',
  'bad-signature',
  'not-voter',
  'not-requester',
  'not-winner',
  'future-round',
  'equivocation',
  'stale',
  'expired',
  'finished',
  'unknown-request',
  'too-many',
  'ignored',
  'full',
]

export interface Received {
  outcome: Outcome
  reason?: string
  effects: Effect[]
}

export interface ElectionOptions {
  signer: Signer
  verifier: Verifier
  /** uniform in [0, 1): request nonces (a vote's tiebreak is a hash, see voteTiebreak) */
  rng: () => number
  /** the winner gives up (ERROR) when not ALLOCATED this long after it began (Aquarium Fish: 30 s) */
  roundTimeoutMs?: number
  /** 'stalled' after this long without a decision (winners: roundTimeoutMs later) */
  stallMs?: number
  /** send our own messages again after this, doubling up to maxResendMs; 0: never */
  resendMs?: number
  maxResendMs?: number
  /** how long to hold votes, reports and cancellations for a request not seen yet */
  pendingMs?: number
  maxPending?: number
  maxRequests?: number
  /** keep a finished request this long (for `mesh requests`), then forget it */
  keepMs?: number
  /** refuse requests created longer ago than this, so a forgotten one cannot come back */
  maxAgeMs?: number
  /** refuse requests created this far in the future */
  maxSkewMs?: number
  /** accept votes and reports at most this many rounds ahead of ours */
  maxRoundsAhead?: number
}

export interface RoundView {
  round: number
  votes: Vote[]
  reports: Report[]
}

/** Everything `mesh request show` needs. */
export interface ElectionView {
  request: Request
  status: Status
  round: number
  winner?: string
  /** from the winner's ALLOCATED report */
  instance?: string
  report?: Report
  excluded: Exclusion[]
  /** voters the current round waits for, or the winner that has not reported */
  waitingFor: string[]
  dead: string[]
  /** when no member can run it */
  reasons?: Record<string, Refusal>
  rounds: RoundView[]
  /** we are the winner and allocating / running it */
  acting: boolean
  cancelled: boolean
  /** this request ended no-candidate and its requester placed it again as this request */
  placedAgainAs?: string
  /** this request places again that no-candidate request of the same requester */
  supersedes?: string
  /** a lower-id placement of the same request is held: this one is void (status cancelled) */
  outranked?: string
}

interface RoundState {
  round: number
  history: string
  votes: Map<string, Vote>
  reports: Map<string, Report>
  /** bumped on every vote change, for the winner cache */
  version: number
  key: string
  best: Vote | undefined
}

interface Derived {
  /** with the cancellation applied */
  status: Status
  base: Status
  round: number
  /** the history of `round`; path[r] is round r's */
  history: string
  path: string[]
  winner?: string
  vote?: Vote
  report?: Report
  excluded: Exclusion[]
}

interface Acting {
  round: number
  history: string
  deadline: number
  allocated: boolean
}

/** A honest member votes under more than one history for a round only after a late vote. */
const MAX_BRANCHES = 4

const idOf = (round: number, history: string): string => `${round}/${history}`

class Election {
  readonly id: string
  /** voter -> incarnation listed in the request */
  readonly voters = new Map<string, number>()
  /** by idOf(round, history) */
  readonly rounds = new Map<string, RoundState>()
  /** `${peer}/${round}` -> the histories it voted or reported under */
  readonly branches = new Map<string, Set<string>>()
  /** `${history}/${winner}` -> nextHistory() */
  readonly histories = new Map<string, string>()
  /** voters counted dead: a claim each, from the quorum that made them count (see deadQuorum) */
  readonly dead = new Map<string, Claim>()
  /** every death claim held about a voter, by the voter that signed it: peer -> signer -> claim */
  readonly claims = new Map<string, Map<string, Claim>>()
  cancel: Cancel | undefined
  d: Derived = { status: 'voting', base: 'voting', round: 0, history: '', path: [''], excluded: [] }
  acting: Acting | undefined
  /** the round we stood down from on cancellation: DEALLOCATED / ERROR still to report */
  winding: { round: number; history: string } | undefined
  /**
   * Our own unfinished ELECTED/ALLOCATED report came from outside this process (the saved
   * file after a restart, or a peer's sync): we may still run something for it. If the state
   * does not make us act, we stand down at the next settle (deallocate is idempotent).
   */
  mayRun: { round: number; history: string } | undefined
  /** rounds (idOf) we acted in, or were asked to vote in */
  readonly acted = new Set<string>()
  readonly asked = new Set<string>()
  readonly announced = new Set<string>()
  readonly flagged = new Set<string>()
  decided = ''
  noCandidate = ''
  lastStatus = ''
  stallAt: number | undefined
  resendAt: number | undefined
  resendGap = 0
  finishedAt: number | undefined
  /** sum of hashOf() over everything held: see fingerprint() */
  fp: number

  constructor(readonly request: Request) {
    this.id = request.id
    for (const v of request.voters) this.voters.set(v.peerId, v.incarnation)
    this.fp = hashOf(request)
  }

  setVote(v: Vote): void {
    const rd = this.round(v.round, v.history)
    const prev = rd.votes.get(v.voter)
    if (prev !== undefined) this.fp -= hashOf(prev)
    rd.votes.set(v.voter, v)
    rd.version++
    this.fp = (this.fp + hashOf(v)) >>> 0
  }

  setReport(r: Report): void {
    const rd = this.round(r.round, r.history)
    const prev = rd.reports.get(r.member)
    if (prev !== undefined) this.fp -= hashOf(prev)
    rd.reports.set(r.member, r)
    this.fp = (this.fp + hashOf(r)) >>> 0
  }

  setCancel(c: Cancel): void {
    this.cancel = c
    this.fp = (this.fp + hashOf(c)) >>> 0
  }

  /**
   * Holds a voter's death claim; false when this signer's is held already or the signer is no
   * other voter. The voter counts dead once deadQuorum() others signed one.
   */
  addClaim(c: Claim): boolean {
    // a request with one voter has no others to ask: any member's claim about it counts
    if (c.by === c.peerId || (!this.voters.has(c.by) && this.voters.size > 1)) return false
    let per = this.claims.get(c.peerId)
    if (per === undefined) {
      per = new Map()
      this.claims.set(c.peerId, per)
    }
    if (per.has(c.by)) return false
    per.set(c.by, c)
    this.fp = (this.fp + hashOf(c)) >>> 0
    if (!this.dead.has(c.peerId) && per.size >= deadQuorum(this.voters.size)) this.dead.set(c.peerId, c)
    return true
  }

  get size(): number {
    return this.voters.size
  }

  at(round: number, history: string): RoundState | undefined {
    return this.rounds.get(idOf(round, history))
  }

  round(round: number, history: string): RoundState {
    const id = idOf(round, history)
    let rd = this.rounds.get(id)
    if (rd === undefined) {
      rd = { round, history, votes: new Map(), reports: new Map(), version: 0, key: '', best: undefined }
      this.rounds.set(id, rd)
    }
    return rd
  }

  /** May `peer` speak in this round under this history (a new one counts towards a cap)? */
  branch(peer: string, round: number, history: string): boolean {
    const k = `${peer}/${round}`
    let b = this.branches.get(k)
    if (b === undefined) {
      b = new Set()
      this.branches.set(k, b)
    }
    if (b.has(history)) return true
    if (b.size >= MAX_BRANCHES) return false
    b.add(history)
    return true
  }

  next(history: string, winner: string): string {
    const k = `${history}/${winner}`
    let h = this.histories.get(k)
    if (h === undefined) {
      h = nextHistory(history, winner)
      this.histories.set(k, h)
    }
    return h
  }
}

/**
 * How many other voters must have signed a claim that a voter is dead before it counts: a
 * majority of the others. Both sides of a partition sign claims about the other; only the
 * majority's count, so a minority (of one, say) cannot end every open request by itself.
 */
/**
 * A vote's tiebreak: a hash of voter, request, round and history, not a random draw. A member
 * that lost its state (killed before it saved its vote, or the simulator's crash) and votes in
 * the same round again then signs the same vote (ed25519 is deterministic) as long as its score
 * is unchanged, instead of a second one that makes it win in its own view while the first made
 * another member win elsewhere (two acting at once). A voter picks its own tiebreak anyway, so a
 * predictable one gives nobody an edge they did not have.
 */
export function voteTiebreak(voter: string, requestId: string, round: number, history: string): number {
  let h = fnv1a32String(`${voter}/${requestId}/${round}/${history}`)
  // fmix32 (MurmurHash3's finaliser): FNV's low bits alone spread poorly over similar strings
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

export function deadQuorum(voters: number): number {
  return Math.floor((voters - 1) / 2) + 1
}

const NO_EFFECTS: Effect[] = []
const UINT32 = 4294967296

const isClaim = (x: unknown): x is Claim => typeof x === 'object' && x !== null && !('kind' in x)

/** Notes come from commands and humans: keep them printable and short. */
function clean(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  return s.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, LIMITS.note)
}

export class ElectionCore {
  readonly self: string
  /** how many inputs ended each way: for metrics */
  readonly counters: Record<Outcome, number> = {
    accepted: 0,
    duplicate: 0,
    replayed: 0,
    held: 0,
    invalid: 0,
    'bad-signature': 0,
    'not-voter': 0,
    'not-requester': 0,
    'not-winner': 0,
    'future-round': 0,
    equivocation: 0,
    stale: 0,
    expired: 0,
    finished: 0,
    'unknown-request': 0,
    'too-many': 0,
    ignored: 0,
    full: 0,
  }

  private readonly signer: Signer
  private readonly verifier: Verifier
  private readonly rng: () => number
  private readonly roundTimeoutMs: number
  private readonly stallMs: number
  private readonly resendMs: number
  private readonly maxResendMs: number
  private readonly pendingMs: number
  private readonly maxPending: number
  private readonly maxRequests: number
  private readonly keepMs: number
  private readonly maxAgeMs: number
  private readonly maxSkewMs: number
  private readonly maxAhead: number

  private readonly elections = new Map<string, Election>()
  private readonly pending = new Map<string, { until: number; msgs: Array<Vote | Report | Cancel> }>()
  private pendingCount = 0
  /** forgotten request id -> when to stop refusing it (by then it is too old anyway) */
  private readonly finished = new Map<string, number>()
  /** recent death claims (peer -> signer -> claim), for requests that arrive after them */
  private readonly deaths = new Map<string, Map<string, Claim>>()
  /** the very objects taken in already: copies within one process skip the checks */
  private readonly seen = new WeakSet<object>()
  /**
   * `${requester}/${old id}` -> ids of that requester's requests superseding it. The lowest id
   * is the placement; any other (a requester that crashed before saving its first) is void.
   */
  private readonly successors = new Map<string, Set<string>>()
  /** inside ingestAll: elections to settle at the end */
  private batch: Set<Election> | undefined
  /**
   * Members an admin revoked: out of every vote at once, like the dead. A revocation is a signed
   * statement every member holds, so every member reaches the same answer once it has it.
   */
  private readonly revoked = new Set<string>()

  constructor(o: ElectionOptions) {
    this.signer = o.signer
    this.self = o.signer.peerId
    this.verifier = o.verifier
    this.rng = o.rng
    this.roundTimeoutMs = o.roundTimeoutMs ?? 30_000
    this.stallMs = o.stallMs ?? 10_000
    this.resendMs = o.resendMs ?? 2_000
    this.maxResendMs = o.maxResendMs ?? 30_000
    this.pendingMs = o.pendingMs ?? 10_000
    this.maxPending = o.maxPending ?? 4096
    this.maxRequests = o.maxRequests ?? 10_000
    this.keepMs = o.keepMs ?? 10 * 60_000
    this.maxAgeMs = o.maxAgeMs ?? 24 * 60 * 60_000
    this.maxSkewMs = o.maxSkewMs ?? 5 * 60_000
    this.maxAhead = o.maxRoundsAhead ?? 8
  }

  /** A member was revoked: it leaves every vote now (it can never vote or report again). */
  revoke(peerId: string, now: number): Effect[] {
    if (this.revoked.has(peerId)) return []
    this.revoked.add(peerId)
    const out: Effect[] = []
    for (const e of this.elections.values()) if (e.voters.has(peerId)) this.settle(e, now, out)
    return out
  }

  /** Dead (a signed claim) or revoked: counted as having voted, never a winner. */
  private down(e: Election, peer: string): boolean {
    return e.dead.has(peer) || this.revoked.has(peer)
  }

  // ---- reading ------------------------------------------------------------------------------

  get size(): number {
    return this.elections.size
  }

  has(requestId: string): boolean {
    return this.elections.has(requestId)
  }

  ids(): string[] {
    return [...this.elections.keys()]
  }

  status(requestId: string): Status | undefined {
    return this.elections.get(requestId)?.d.status
  }

  view(requestId: string): ElectionView | undefined {
    const e = this.elections.get(requestId)
    if (e === undefined) return undefined
    const d = e.d
    // the rounds of the history we are in (votes under other histories count nowhere now)
    const rounds: RoundView[] = d.path.map((h, round) => {
      const rd = e.at(round, h)
      return { round, votes: [...(rd?.votes.values() ?? [])], reports: [...(rd?.reports.values() ?? [])] }
    })
    const v: ElectionView = {
      request: e.request,
      status: d.status,
      round: d.round,
      excluded: [...d.excluded],
      waitingFor: this.waitingFor(e),
      dead: [...e.dead.keys()].sort(),
      rounds,
      acting: e.acting !== undefined,
      cancelled: e.cancel !== undefined,
    }
    if (d.winner !== undefined) v.winner = d.winner
    if (d.report !== undefined) v.report = d.report
    if (d.report?.state === 'ALLOCATED' || d.report?.state === 'DEALLOCATED') v.instance = d.report.instance
    if (d.base === 'no-candidate') v.reasons = this.refusals(e)
    const again = this.placement(e.request.requester, e.id)
    if (again !== undefined) v.placedAgainAs = again
    if (e.request.supersedes !== undefined) v.supersedes = e.request.supersedes
    const over = this.outranking(e)
    if (over !== undefined) v.outranked = over
    return v
  }

  /**
   * Every message we hold for the request, death claims included: for anti-entropy with a peer
   * and for persisting it (feed them back through ingestAll() after a restart).
   */
  messages(requestId: string): Array<Message | Claim> {
    const e = this.elections.get(requestId)
    if (e === undefined) return []
    const out: Array<Message | Claim> = [e.request]
    for (const rd of e.rounds.values()) {
      for (const v of rd.votes.values()) out.push(v)
      for (const r of rd.reports.values()) out.push(r)
    }
    if (e.cancel !== undefined) out.push(e.cancel)
    for (const per of e.claims.values()) for (const c of per.values()) out.push(c)
    return out
  }

  /**
   * An order-free fingerprint of the messages held for the request: equal on two members
   * (almost certainly) means they hold the same ones, so anti-entropy can skip it.
   */
  fingerprint(requestId: string): number | undefined {
    return this.elections.get(requestId)?.fp
  }

  // ---- inputs -------------------------------------------------------------------------------

  /** A message from anywhere (decoded to plain objects), or a death claim from the membership table. */
  ingest(x: Message | Claim, now: number): Effect[] {
    return this.receive(x, now).effects
  }

  /** ingest() with the outcome. */
  receive(x: Message | Claim, now: number): Received {
    const effects: Effect[] = []
    let r: { outcome: Outcome; reason?: string }
    if (this.seen.has(x)) r = { outcome: 'duplicate' }
    else {
      r = isClaim(x) ? this.onClaim(x, now, effects) : this.onMessage(x, now, effects)
      if (r.outcome === 'accepted' || r.outcome === 'held') this.seen.add(x)
    }
    this.counters[r.outcome]++
    return r.reason === undefined
      ? { outcome: r.outcome, effects }
      : { outcome: r.outcome, reason: r.reason, effects }
  }

  /**
   * Many at once (a restart from persisted messages, an anti-entropy sync): the state is
   * derived as they come, but we react (vote, act) only once all are in, so a restarted member
   * sees its own earlier vote before it could be asked for another.
   */
  ingestAll(items: Iterable<Message | Claim>, now: number): Effect[] {
    const out: Effect[] = []
    const batch = new Set<Election>()
    this.batch = batch
    try {
      for (const x of items) for (const e of this.receive(x, now).effects) out.push(e)
    } finally {
      this.batch = undefined
    }
    for (const e of batch) if (this.elections.get(e.id) === e) this.settle(e, now, out)
    return out
  }

  /** Make a request as the requester (us) and start its election. */
  create(spec: Omit<RequestSpec, 'created' | 'nonce'>, now: number): { request: Request; effects: Effect[] } {
    const request = signRequest(
      { ...spec, created: now, nonce: Math.floor(this.rng() * UINT32) },
      this.signer,
    )
    const r = this.receive(request, now)
    if (r.outcome !== 'accepted') throw new Error(`cannot start the election: ${r.outcome} ${r.reason ?? ''}`)
    return { request, effects: [{ type: 'send', msg: request }, ...r.effects] }
  }

  /**
   * Our answer to 'vote-needed'. Returns no effects when the round has moved on meanwhile (a
   * new 'vote-needed' comes with the next round) or we have voted already.
   */
  vote(requestId: string, round: number, a: Assessment, now: number): Effect[] {
    const e = this.elections.get(requestId)
    if (e === undefined || !this.mayVote(e) || e.d.round !== round) return NO_EFFECTS
    const v = signVote(
      {
        request: requestId,
        round,
        history: e.d.history,
        yes: a.yes,
        reasons: a.yes ? [] : a.reasons,
        score: a.yes ? a.score : 0,
        tiebreak: voteTiebreak(this.self, requestId, round, e.d.history),
        note: clean(a.note ?? ''),
      },
      this.signer,
    )
    this.storeVote(e, v)
    const out: Effect[] = [{ type: 'send', msg: v }]
    this.settle(e, now, out)
    return out
  }

  /**
   * As the winner: ALLOCATED once the instance runs, DEALLOCATED once it is gone, ERROR when it
   * failed (the round ends and another member gets a chance). Returns no effects when refused:
   * we are not the acting winner (any more), or the state does not follow; an ALLOCATED refused
   * because we stood down meanwhile returns a 'late' stand-down: undo what was just started.
   */
  report(
    requestId: string,
    state: Exclude<ReportState, 'ELECTED'>,
    detail: { instance?: string; note?: string },
    now: number,
  ): Effect[] {
    const e = this.elections.get(requestId)
    if (e === undefined) return NO_EFFECTS
    const a = e.acting
    let at: { round: number; history: string }
    if (state === 'ALLOCATED') {
      // the allocation finished after we stood down (superseded, declared dead, timed out,
      // cancelled while it started): the stand-down found nothing to stop, so what it started
      // would run on beside the real winner's. Stop it now, and report nothing.
      if (a === undefined)
        return detail.instance
          ? [{ type: 'stand-down', requestId, round: e.d.round, reason: 'late' }]
          : NO_EFFECTS
      if (a.allocated || !detail.instance) return NO_EFFECTS
      a.allocated = true
      at = a
    } else if (a !== undefined) {
      // DEALLOCATED is the end of a run; a failed start is an ERROR
      if (state === 'DEALLOCATED' && !a.allocated) return NO_EFFECTS
      at = a
      e.acting = undefined
    } else if (e.winding !== undefined) {
      at = e.winding
      e.winding = undefined
    } else return NO_EFFECTS
    if (this.ownFinal(e, at.round, at.history)) return NO_EFFECTS
    const out: Effect[] = []
    this.sendReport(e, at, state, clean(detail.instance ?? ''), clean(detail.note ?? ''), out)
    this.settle(e, now, out)
    return out
  }

  /** As the requester: call it off. The winner stands down and reports DEALLOCATED. */
  cancel(requestId: string, now: number): Effect[] {
    const e = this.elections.get(requestId)
    if (e === undefined || e.request.requester !== this.self || e.cancel !== undefined) return NO_EFFECTS
    const c = signCancel(requestId, this.signer)
    e.setCancel(c)
    const out: Effect[] = [{ type: 'send', msg: c }]
    this.settle(e, now, out)
    return out
  }

  /**
   * As the requester of `oldId`, which ended no-candidate: place it again among `alive` (the
   * members alive now, at their incarnations now), as a new request that supersedes it. Voters
   * whose death counted in the old request at or above the incarnation given are left out (a
   * member declared dead is never trusted with it again at that incarnation), revoked ones too.
   * Refused ({why}) unless someone the old request could not ask is among them: a member new to
   * it or back at a higher incarnation; otherwise it would end the same way.
   */
  supersede(
    oldId: string,
    alive: readonly { peerId: string; incarnation: number }[],
    now: number,
  ): { request: Request; effects: Effect[] } | { why: string } {
    const e = this.elections.get(oldId)
    if (e === undefined) return { why: 'unknown request' }
    const old = e.request
    if (old.requester !== this.self) return { why: 'not our request' }
    if (e.d.status !== 'no-candidate') return { why: `it is ${e.d.status}` }
    const again = this.placement(this.self, oldId)
    if (again !== undefined) return { why: `placed again already as ${again}` }
    const voters = alive.filter((v) => {
      if (this.revoked.has(v.peerId)) return false
      const dead = e.dead.get(v.peerId)
      return dead === undefined || dead.incarnation < v.incarnation
    })
    const fresh = voters.filter((v) => {
      const was = e.voters.get(v.peerId)
      return was === undefined || v.incarnation > was
    })
    if (fresh.length === 0) return { why: 'nobody it could not ask before is alive' }
    const { filter, resources, computeType, serverType } = old
    return this.create({ computeType, serverType, filter, resources, voters, supersedes: oldId }, now)
  }

  // ---- time ---------------------------------------------------------------------------------

  /** When tick() must next run (+Infinity: nothing pending). */
  nextWakeup(): number {
    let t = Number.POSITIVE_INFINITY
    for (const e of this.elections.values()) {
      if (e.acting !== undefined && !e.acting.allocated) t = Math.min(t, e.acting.deadline)
      if (e.stallAt !== undefined) t = Math.min(t, e.stallAt)
      if (e.resendAt !== undefined) t = Math.min(t, e.resendAt)
      if (e.finishedAt !== undefined) t = Math.min(t, e.finishedAt + this.keepMs)
    }
    for (const p of this.pending.values()) t = Math.min(t, p.until)
    return t
  }

  tick(now: number): Effect[] {
    const out: Effect[] = []
    for (const e of [...this.elections.values()]) {
      const a = e.acting
      if (a !== undefined && !a.allocated && now >= a.deadline) {
        // only the winner knows whether it started, so only it can time itself out
        e.acting = undefined
        out.push({ type: 'stand-down', requestId: e.id, round: a.round, reason: 'timeout' })
        if (!this.ownFinal(e, a.round, a.history))
          this.sendReport(e, a, 'ERROR', '', `not allocated within ${this.roundTimeoutMs} ms`, out)
        this.settle(e, now, out)
      }
      if (e.stallAt !== undefined && now >= e.stallAt) {
        e.stallAt = undefined
        const waitingFor = this.waitingFor(e)
        if (waitingFor.length > 0)
          out.push({ type: 'stalled', requestId: e.id, round: e.d.round, waitingFor })
      }
      if (e.resendAt !== undefined && now >= e.resendAt) {
        for (const msg of this.ownMessages(e)) out.push({ type: 'send', msg })
        e.resendGap *= 2
        e.resendAt = e.resendGap <= this.maxResendMs ? now + e.resendGap : undefined
      }
      if (e.finishedAt !== undefined && now >= e.finishedAt + this.keepMs && e.acting === undefined) {
        // forgotten: copies of its messages must meet 'finished' / 'expired' from now on
        for (const m of this.messages(e.id)) this.seen.delete(m)
        this.elections.delete(e.id)
        this.successors.delete(`${e.request.requester}/${e.id}`)
        this.finished.set(e.id, Math.max(now, e.request.created + this.maxAgeMs + this.maxSkewMs))
      }
    }
    for (const [id, p] of this.pending) {
      if (now < p.until) continue
      this.pending.delete(id)
      this.pendingCount -= p.msgs.length
      this.counters['unknown-request'] += p.msgs.length
      // dropped: a later copy must be able to be held again
      for (const m of p.msgs) this.seen.delete(m)
    }
    for (const [id, until] of this.finished) if (now >= until) this.finished.delete(id)
    return out
  }

  // ---- ingest -------------------------------------------------------------------------------

  private onMessage(x: unknown, now: number, out: Effect[]): { outcome: Outcome; reason?: string } {
    const bad = checkMessage(x)
    if (bad !== undefined) return { outcome: 'invalid', reason: bad }
    const m = x as Message
    if (m.kind === 'request') return this.onRequest(m, now, out)
    const e = this.elections.get(m.request)
    if (e !== undefined) return this.apply(e, m, now, out, false)
    if (this.finished.has(m.request)) return { outcome: 'finished' }
    // gossip can overtake the request: hold verified messages a little while
    if (!verifyMessage(m, this.verifier)) return { outcome: 'bad-signature' }
    let p = this.pending.get(m.request)
    if (p?.msgs.some((h) => sameMessage(h, m))) return { outcome: 'duplicate' }
    if (this.pendingCount >= this.maxPending) return { outcome: 'full' }
    if (p === undefined) {
      p = { until: now + this.pendingMs, msgs: [] }
      this.pending.set(m.request, p)
    }
    p.msgs.push(m)
    this.pendingCount++
    return { outcome: 'held' }
  }

  private onRequest(m: Request, now: number, out: Effect[]): { outcome: Outcome; reason?: string } {
    const known = this.elections.get(m.id)
    if (known !== undefined && known.request === m) return { outcome: 'duplicate' }
    if (requestId(m) !== m.id) return { outcome: 'invalid', reason: 'id is not the hash of the request' }
    if (known !== undefined) return { outcome: 'duplicate' }
    if (m.created + this.maxAgeMs < now) return { outcome: 'expired', reason: 'created too long ago' }
    if (m.created > now + this.maxSkewMs) return { outcome: 'expired', reason: 'created in the future' }
    if (this.finished.has(m.id)) return { outcome: 'finished' }
    if (this.elections.size >= this.maxRequests) return { outcome: 'full' }
    if (!verifyMessage(m, this.verifier)) return { outcome: 'bad-signature' }
    const e = new Election(m)
    this.elections.set(m.id, e)
    const siblings = this.noteSuccessor(m)
    for (const [peer, inc] of e.voters)
      for (const c of this.deaths.get(peer)?.values() ?? []) if (c.incarnation >= inc) e.addClaim(c)
    const held = this.pending.get(m.id)
    if (held !== undefined) {
      this.pending.delete(m.id)
      this.pendingCount -= held.msgs.length
      for (const h of held.msgs) this.counters[this.apply(e, h, now, out, true).outcome]++
    }
    this.settle(e, now, out)
    // a lower id voids the siblings; the request it supersedes now shows where it went
    for (const id of siblings) {
      const x = this.elections.get(id)
      if (x !== undefined && x !== e) this.settle(x, now, out)
    }
    return { outcome: 'accepted' }
  }

  /** Files a successor under the request it supersedes; returns every id filed there, and that one. */
  private noteSuccessor(m: Request): string[] {
    if (m.supersedes === undefined) return []
    const k = `${m.requester}/${m.supersedes}`
    let set = this.successors.get(k)
    if (set === undefined) {
      set = new Set()
      this.successors.set(k, set)
    }
    set.add(m.id)
    return [...set, m.supersedes]
  }

  /** The lowest-id placement of what `e` supersedes, when it is not `e` itself. */
  private outranking(e: Election): string | undefined {
    const old = e.request.supersedes
    if (old === undefined) return undefined
    const low = this.placement(e.request.requester, old)
    return low !== undefined && low < e.id ? low : undefined
  }

  /** The successor of `old` made by `requester` that counts: the lowest id held. */
  private placement(requester: string, old: string): string | undefined {
    let low: string | undefined
    for (const id of this.successors.get(`${requester}/${old}`) ?? [])
      if (low === undefined || id < low) low = id
    return low
  }

  private apply(
    e: Election,
    m: Vote | Report | Cancel,
    now: number,
    out: Effect[],
    verified: boolean,
  ): { outcome: Outcome; reason?: string } {
    if (m.kind === 'cancel') {
      if (m.requester !== e.request.requester) return { outcome: 'not-requester' }
      // one requester, one body: any second copy changes nothing
      if (e.cancel !== undefined) return { outcome: 'duplicate' }
      if (!verified && !verifyMessage(m, this.verifier)) return { outcome: 'bad-signature' }
      e.setCancel(m)
      this.settle(e, now, out)
      return { outcome: 'accepted' }
    }
    const peer = m.kind === 'vote' ? m.voter : m.member
    if (!e.voters.has(peer)) return { outcome: 'not-voter' }
    if (m.round >= e.size || m.round > e.d.round + this.maxAhead) return { outcome: 'future-round' }
    const rd = e.at(m.round, m.history)
    if (m.kind === 'vote') {
      const prev = rd?.votes.get(peer)
      if (prev !== undefined && sameMessage(prev, m))
        return { outcome: m.round < e.d.round ? 'replayed' : 'duplicate' }
      if (!verified && !verifyMessage(m, this.verifier)) return { outcome: 'bad-signature' }
      if (!e.branch(peer, m.round, m.history)) return { outcome: 'too-many' }
      if (prev !== undefined) {
        const key = idOf(m.round, `${m.history}/${peer}`)
        if (!e.flagged.has(key)) {
          e.flagged.add(key)
          out.push({ type: 'misbehaviour', requestId: e.id, round: m.round, peer, what: 'equivocation' })
        }
        if (preferVote(prev, m) === prev) return { outcome: 'equivocation' }
        this.storeVote(e, m)
        this.settle(e, now, out)
        return { outcome: 'equivocation' }
      }
      this.storeVote(e, m)
      this.settle(e, now, out)
      return { outcome: 'accepted' }
    }
    const v = rd?.votes.get(peer)
    if (v !== undefined && !v.yes) return { outcome: 'not-winner' }
    const prev = rd?.reports.get(peer)
    if (prev !== undefined && sameMessage(prev, m)) return { outcome: 'duplicate' }
    if (!verified && !verifyMessage(m, this.verifier)) return { outcome: 'bad-signature' }
    if (prev !== undefined && preferReport(prev, m) === prev) return { outcome: 'stale' }
    if (!e.branch(peer, m.round, m.history)) return { outcome: 'too-many' }
    // kept even from a member that is not the winner here: it may be the winner once we hold
    // what others hold; until then it changes nothing
    e.setReport(m)
    if (peer === this.self && !isFinal(m.state) && e.acting === undefined)
      e.mayRun = { round: m.round, history: m.history }
    this.settle(e, now, out)
    return { outcome: 'accepted' }
  }

  private onClaim(c: Claim, now: number, out: Effect[]): { outcome: Outcome; reason?: string } {
    const bad = checkClaim(c)
    if (bad !== undefined) return { outcome: 'invalid', reason: bad }
    if (c.status !== 'dead') return { outcome: 'ignored' }
    // the same claim comes from many members: verify it once
    let per = this.deaths.get(c.peerId)
    const known = per?.get(c.by)
    const same = known !== undefined && sameClaim(known, c)
    if (!same) {
      if (!verifyClaim(c, this.verifier)) return { outcome: 'bad-signature' }
      if (known === undefined || c.incarnation > known.incarnation) {
        if (per === undefined) {
          if (this.deaths.size >= this.maxPending)
            this.deaths.delete(this.deaths.keys().next().value as string)
          per = new Map()
          this.deaths.set(c.peerId, per)
        }
        per.set(c.by, c)
      }
    }
    let outcome: Outcome = same ? 'duplicate' : 'ignored'
    for (const e of this.elections.values()) {
      const inc = e.voters.get(c.peerId)
      if (inc === undefined) continue
      // a claim from before the request was made was refuted since: the member was alive then
      if (c.incarnation < inc) {
        if (outcome !== 'accepted') outcome = 'stale'
        continue
      }
      if (!e.addClaim(c)) {
        if (outcome === 'ignored' && e.claims.get(c.peerId)?.has(c.by) === true) outcome = 'duplicate'
        continue
      }
      outcome = 'accepted'
      this.settle(e, now, out)
    }
    return { outcome }
  }

  private storeVote(e: Election, v: Vote): void {
    e.branch(v.voter, v.round, v.history)
    e.setVote(v)
  }

  private sendReport(
    e: Election,
    at: { round: number; history: string },
    state: ReportState,
    instance: string,
    note: string,
    out: Effect[],
  ): void {
    const { round, history } = at
    const r = signReport({ request: e.id, round, history, state, instance, note }, this.signer)
    const prev = e.at(round, history)?.reports.get(this.self)
    e.branch(this.self, round, history)
    e.setReport(prev === undefined ? r : preferReport(prev, r))
    out.push({ type: 'send', msg: r })
  }

  private ownFinal(e: Election, round: number, history: string): boolean {
    const r = e.at(round, history)?.reports.get(this.self)
    return r !== undefined && isFinal(r.state)
  }

  // ---- the state ----------------------------------------------------------------------------

  /** The state as a function of the messages held; see the top of this file. */
  private evaluate(e: Election): Derived {
    const excluded: Exclusion[] = []
    const out = new Set<string>()
    const path: string[] = []
    let h = ''
    const done = (base: Status, round: number, w?: Vote, report?: Report): Derived => {
      // a placement again is the requester's word too: it calls the old request off, like a
      // cancel, should a late vote ever move that one on from no-candidate (see election.md)
      const void_ =
        e.cancel !== undefined ||
        this.outranking(e) !== undefined ||
        (base !== 'no-candidate' && this.placement(e.request.requester, e.id) !== undefined)
      const status = void_ ? 'cancelled' : base
      const d: Derived = { status, base, round, history: h, path, excluded }
      if (w !== undefined) {
        d.winner = w.voter
        d.vote = w
      }
      if (report !== undefined) d.report = report
      return d
    }
    // every pass either returns or leaves one more voter out, so this ends
    for (let r = 0; ; r++) {
      path.push(h)
      const rd = e.at(r, h)
      let have = 0
      if (rd !== undefined) {
        have = rd.votes.size
        for (const x of out) if (rd.votes.has(x)) have--
      }
      for (const p of e.dead.keys()) if (!out.has(p) && rd?.votes.has(p) !== true) have++
      for (const p of this.revoked)
        if (e.voters.has(p) && !e.dead.has(p) && !out.has(p) && rd?.votes.has(p) !== true) have++
      if (have < e.size - out.size) return done('voting', r)
      const w = rd === undefined ? undefined : winnerOf(rd, out)
      if (w === undefined) return done('no-candidate', r)
      const rep = rd!.reports.get(w.voter)
      if (rep?.state === 'DEALLOCATED') return done('deallocated', r, w, rep)
      if (rep?.state !== 'ERROR' && !this.down(e, w.voter))
        return done(rep?.state === 'ALLOCATED' ? 'allocated' : 'elected', r, w, rep)
      excluded.push({ peer: w.voter, round: r, why: rep?.state === 'ERROR' ? 'error' : 'dead' })
      out.add(w.voter)
      h = e.next(h, w.voter)
    }
  }

  private winning(e: Election): boolean {
    const d = e.d
    return (
      (d.status === 'elected' || d.status === 'allocated') && d.winner === this.self && !e.dead.has(this.self)
    )
  }

  /** The state has moved past us: decided without us, us dead or left behind, or cancelled (not merely short of votes). */
  private passedOver(e: Election): boolean {
    const d = e.d
    return (
      d.status !== 'voting' ||
      e.cancel !== undefined ||
      e.dead.has(this.self) ||
      d.excluded.some((x) => x.peer === this.self)
    )
  }

  private mayVote(e: Election): boolean {
    const d = e.d
    return (
      d.status === 'voting' &&
      e.voters.has(this.self) &&
      !e.dead.has(this.self) &&
      !d.excluded.some((x) => x.peer === this.self) &&
      e.at(d.round, d.history)?.votes.has(this.self) !== true
    )
  }

  /** Re-derive the state and do what it asks of us: stand down, act, vote. */
  private settle(e: Election, now: number, out: Effect[]): void {
    e.d = this.evaluate(e)
    if (this.batch !== undefined) {
      this.batch.add(e)
      return
    }
    const a = e.acting
    if (a !== undefined && !(this.winning(e) && e.d.round === a.round && e.d.history === a.history)) {
      // no report: whoever still sees us as the winner gets what moved us on, and moves on too
      e.acting = undefined
      const reason: StandDownReason =
        e.cancel !== undefined ? 'cancelled' : e.dead.has(this.self) ? 'declared-dead' : 'superseded'
      if (reason === 'cancelled') e.winding = { round: a.round, history: a.history }
      out.push({ type: 'stand-down', requestId: e.id, round: a.round, reason })
    }
    const left = e.mayRun
    if (left !== undefined && e.acting === undefined && !this.winning(e) && this.passedOver(e)) {
      // a restarted winner that was declared dead, superseded or cancelled meanwhile: without
      // this its instance would run on, since it never acted in this process
      e.mayRun = undefined
      const reason: StandDownReason =
        e.cancel !== undefined ? 'cancelled' : e.dead.has(this.self) ? 'declared-dead' : 'superseded'
      if (reason === 'cancelled' && !this.ownFinal(e, left.round, left.history)) e.winding = left
      out.push({ type: 'stand-down', requestId: e.id, round: left.round, reason })
    }
    this.announce(e, now, out)
    const d = e.d
    if (e.acting === undefined && this.winning(e)) {
      e.mayRun = undefined
      const id = idOf(d.round, d.history)
      const mine = e.at(d.round, d.history)?.reports.get(this.self)
      // again: superseded, then the winner once more (only a voter signing two votes does that)
      const again = e.acted.has(id)
      e.acted.add(id)
      e.acting = {
        round: d.round,
        history: d.history,
        deadline: now + this.roundTimeoutMs,
        allocated: !again && mine?.state === 'ALLOCATED',
      }
      if (mine === undefined) {
        this.sendReport(e, d, 'ELECTED', '', '', out)
        e.d = this.evaluate(e)
      }
      out.push({
        type: 'act',
        requestId: e.id,
        round: d.round,
        request: e.request,
        resumed: mine !== undefined && !again,
      })
    }
    if (this.mayVote(e) && !e.asked.has(idOf(e.d.round, e.d.history))) {
      e.asked.add(idOf(e.d.round, e.d.history))
      out.push({ type: 'vote-needed', requestId: e.id, round: e.d.round, request: e.request })
    }
  }

  /** Effects for what changed since we last looked, and the timers that go with it. */
  private announce(e: Election, now: number, out: Effect[]): void {
    const d = e.d
    for (const x of d.excluded) {
      const k = `${idOf(x.round, d.path[x.round])}:${x.peer}`
      if (e.announced.has(k)) continue
      e.announced.add(k)
      out.push({ type: 'new-round', requestId: e.id, round: x.round + 1, excluded: x.peer, why: x.why })
    }
    const here = idOf(d.round, d.history)
    if (d.winner !== undefined && d.vote !== undefined && e.decided !== `${here}:${d.winner}`) {
      e.decided = `${here}:${d.winner}`
      out.push({ type: 'decided', requestId: e.id, round: d.round, winner: d.winner, vote: d.vote })
    }
    if (d.status === 'no-candidate' && e.noCandidate !== here) {
      e.noCandidate = here
      out.push({ type: 'no-candidate', requestId: e.id, round: d.round, reasons: this.refusals(e) })
    }
    // base too: a cancelled request's winner reporting DEALLOCATED is news for the requester
    const s = `${d.status}/${d.base}/${here}/${d.winner ?? ''}`
    if (s === e.lastStatus) return
    e.lastStatus = s
    const st: Effect = { type: 'status', requestId: e.id, status: d.status, round: d.round }
    if (d.winner !== undefined) st.winner = d.winner
    out.push(st)
    e.stallAt =
      d.status === 'voting'
        ? now + this.stallMs
        : d.status === 'elected' && d.winner !== this.self
          ? now + this.roundTimeoutMs + this.stallMs
          : undefined
    e.resendGap = this.resendMs
    e.resendAt = this.resendMs > 0 ? now + this.resendMs : undefined
    e.finishedAt = TERMINAL.has(d.status) ? now : undefined
  }

  private waitingFor(e: Election): string[] {
    const d = e.d
    if (d.status === 'elected') return [d.winner!]
    if (d.status !== 'voting') return []
    const rd = e.at(d.round, d.history)
    const out = new Set(d.excluded.map((x) => x.peer))
    return [...e.voters.keys()].filter((p) => !out.has(p) && !this.down(e, p) && rd?.votes.has(p) !== true)
  }

  /** Each voter's reasons, for "no member can run this". */
  private refusals(e: Election): Record<string, Refusal> {
    const d = e.d
    const res: Record<string, Refusal> = {}
    const out = new Set<string>()
    for (const x of d.excluded) {
      out.add(x.peer)
      const rep = e.at(x.round, d.path[x.round])?.reports.get(x.peer)
      const note =
        x.why === 'dead'
          ? `won round ${x.round}, then died`
          : `won round ${x.round}, then failed${rep?.note ? `: ${rep.note}` : ''}`
      res[x.peer] = { reasons: ['failed'], note }
    }
    const rd = e.at(d.round, d.history)
    for (const p of e.voters.keys()) {
      if (out.has(p)) continue
      const v = rd?.votes.get(p)
      res[p] =
        v !== undefined
          ? { reasons: [...v.reasons], note: v.note }
          : { reasons: ['dead'], note: 'died before voting' }
    }
    return res
  }

  /** Ours, still worth sending again: the request, our cancellation, current vote, reports. */
  private ownMessages(e: Election): Message[] {
    const out: Message[] = []
    if (e.request.requester === this.self) out.push(e.request)
    if (e.cancel !== undefined && e.cancel.requester === this.self) out.push(e.cancel)
    const v = e.at(e.d.round, e.d.history)?.votes.get(this.self)
    if (v !== undefined) out.push(v)
    for (const rd of e.rounds.values()) {
      const r = rd.reports.get(this.self)
      if (r !== undefined) out.push(r)
    }
    return out
  }
}

/** A message's share of the fingerprint. */
function hashOf(m: Message | Claim): number {
  return fnv1a32(m.sig, fnv1a32String('kind' in m ? m.kind : `claim ${m.peerId}`))
}

function sameClaim(a: Claim, b: Claim): boolean {
  return (
    a === b ||
    (a.peerId === b.peerId &&
      a.incarnation === b.incarnation &&
      a.status === b.status &&
      a.by === b.by &&
      compareBytes(a.sig, b.sig) === 0)
  )
}

function winnerOf(rd: RoundState, out: ReadonlySet<string>): Vote | undefined {
  const key = `${rd.version}|${[...out].join(',')}`
  if (rd.key !== key) {
    rd.best = pickWinner(rd.votes.values(), (p) => !out.has(p))
    rd.key = key
  }
  return rd.best
}

/** One line for humans: "no member can run this" with each voter's reasons. */
export function explainRefusals(
  reasons: Record<string, Refusal>,
  name: (peer: string) => string = (p) => p,
): string {
  const parts = Object.keys(reasons)
    .sort()
    .map((p) => {
      const r = reasons[p]
      return `${name(p)}: ${r.reasons.join(', ')}${r.note ? ` (${r.note})` : ''}`
    })
  return `no member can run this: ${parts.join('; ')}`
}
