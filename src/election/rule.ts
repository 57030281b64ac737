/**
 * The deterministic rules every member applies to the same messages: which vote wins, which of
 * two conflicting votes or reports to keep, and how a member judges a request against itself.
 */
import {
  compareBytes,
  encodeReport,
  encodeVote,
  type Needs,
  type NodeFilter,
  type Report,
  type ReportState,
  type RequestBody,
  VOTE_REASONS,
  type Vote,
  type VoteReason,
} from './messages.js'

/**
 * The winner rule. > 0 when `a` beats `b`: the higher score, then the higher tiebreak, then
 * the smaller peer ID (the last only matters for two votes by one voter, or a broken rng).
 */
export function compareVotes(a: Vote, b: Vote): number {
  if (a.score !== b.score) return a.score - b.score
  if (a.tiebreak !== b.tiebreak) return a.tiebreak - b.tiebreak
  return a.voter < b.voter ? 1 : a.voter > b.voter ? -1 : 0
}

/** The best yes vote among `votes` whose voter passes `eligible`, if there is one. */
export function pickWinner(
  votes: Iterable<Vote>,
  eligible: (peer: string) => boolean = () => true,
): Vote | undefined {
  let best: Vote | undefined
  for (const v of votes) {
    if (!v.yes || !eligible(v.voter)) continue
    if (best === undefined || compareVotes(v, best) > 0) best = v
  }
  return best
}

/**
 * Of two different votes by one voter in one round (misbehaviour: it signed both), the one every
 * member keeps: the smaller canonical encoding, then the smaller signature. Order-free, so all
 * members converge on the same vote whichever they saw first.
 */
export function preferVote(a: Vote, b: Vote): Vote {
  const c = compareBytes(encodeVote(a), encodeVote(b)) || compareBytes(a.sig, b.sig)
  return c <= 0 ? a : b
}

const RANK: Record<ReportState, number> = { ELECTED: 0, ALLOCATED: 1, DEALLOCATED: 2, ERROR: 2 }

export const isFinal = (s: ReportState): boolean => RANK[s] === 2

/**
 * Of two reports by one member for one round, the one to keep: the later state
 * (ELECTED < ALLOCATED < DEALLOCATED = ERROR), then the smaller encoding, then signature.
 */
export function preferReport(a: Report, b: Report): Report {
  const r = RANK[a.state] - RANK[b.state]
  if (r !== 0) return r > 0 ? a : b
  const c = compareBytes(encodeReport(a), encodeReport(b)) || compareBytes(a.sig, b.sig)
  return c <= 0 ? a : b
}

// ---- judging a request locally ------------------------------------------------------------

/** Does `name` match `glob` (`*` any run, `?` one character)? Linear, no regex backtracking. */
export function globMatch(glob: string, name: string): boolean {
  let g = 0
  let n = 0
  let star = -1
  let mark = 0
  while (n < name.length) {
    if (g < glob.length && (glob[g] === '?' || glob[g] === name[n])) {
      g++
      n++
    } else if (g < glob.length && glob[g] === '*') {
      star = g++
      mark = n
    } else if (star >= 0) {
      g = star + 1
      n = ++mark
    } else return false
  }
  while (g < glob.length && glob[g] === '*') g++
  return g === glob.length
}

export function matchesFilter(
  f: NodeFilter,
  member: { name: string; tags: Readonly<Record<string, string>> },
): boolean {
  for (const k of Object.keys(f.tags)) {
    if (!Object.hasOwn(member.tags, k) || member.tags[k] !== f.tags[k]) return false
  }
  return f.names.length === 0 || f.names.some((g) => globMatch(g, member.name))
}

/** What a member knows about itself when it judges a request. */
export interface LocalState {
  name: string
  tags: Readonly<Record<string, string>>
  /** compute types whose `available` check passes here */
  computeTypes: readonly string[]
  /** server types installed here; undefined: do not check */
  serverTypes?: readonly string[]
  maintenance: boolean
  /** free now */
  free: Needs
  /** the machine's size, for the score */
  total: Needs
}

/** A vote's content before the tiebreak is drawn and it is signed. */
export interface Assessment {
  yes: boolean
  reasons: VoteReason[]
  score: number
  note?: string
}

const NEEDS: ReadonlyArray<keyof Needs> = ['cpus', 'memoryBytes', 'diskBytes']

/**
 * The default judgement: no when the compute type (or server type) is not available, the
 * filter does not match, resources do not fit, or the member is in maintenance; all that apply
 * are listed. A yes scores the smallest share of any resource left free after the work, in
 * millionths, so the member with the most slack wins.
 */
export function assess(req: RequestBody, local: LocalState): Assessment {
  const reasons: VoteReason[] = []
  const notes: string[] = []
  if (!local.computeTypes.includes(req.computeType)) {
    reasons.push('compute-type')
    notes.push(`compute type ${req.computeType} not available`)
  }
  if (
    req.serverType !== '' &&
    local.serverTypes !== undefined &&
    !local.serverTypes.includes(req.serverType)
  ) {
    reasons.push('server-type')
    notes.push(`server type ${req.serverType} not installed`)
  }
  const short = NEEDS.filter((k) => local.free[k] < req.resources[k])
  if (short.length > 0) {
    reasons.push('capacity')
    notes.push(`not enough ${short.join(', ')}`)
  }
  if (local.maintenance) {
    reasons.push('maintenance')
    notes.push('in maintenance')
  }
  if (!matchesFilter(req.filter, local)) {
    reasons.push('filter')
    notes.push('filter does not match')
  }
  if (reasons.length > 0) {
    reasons.sort((a, b) => VOTE_REASONS.indexOf(a) - VOTE_REASONS.indexOf(b))
    return { yes: false, reasons, score: 0, note: notes.join('; ') }
  }
  let share = 1
  for (const k of NEEDS) {
    if (local.total[k] > 0) share = Math.min(share, (local.free[k] - req.resources[k]) / local.total[k])
  }
  return { yes: true, reasons: [], score: Math.max(0, Math.floor(share * 1_000_000)), note: '' }
}
