/**
 * Election messages: the request ("application" in Aquarium Fish's words), votes, the winner's
 * state reports and the requester's cancellation. Like member records, each is signed over its
 * canonical bytes: a domain line, a newline, then JSON with sorted keys and only the known
 * fields. The request id is a hash of the request's bytes, so a requester cannot show two
 * different requests under one id, and a vote for the id is a vote for exactly that content.
 */
import { createHash } from 'node:crypto'
import { LIMITS as MEMBER_LIMITS, type Signer, type Verifier } from '../membership/record.js'

export const REQUEST_DOMAIN = 'mesh-election-request-v1'
export const VOTE_DOMAIN = 'mesh-election-vote-v1'
export const REPORT_DOMAIN = 'mesh-election-report-v1'
export const CANCEL_DOMAIN = 'mesh-election-cancel-v1'
export const HISTORY_DOMAIN = 'mesh-election-history-v1'

/** Why a voter says no, in canonical order (a vote lists them sorted this way). */
export const VOTE_REASONS = [
  'compute-type',
  'server-type',
  'capacity',
  'maintenance',
  'filter',
  'other',
] as const
export type VoteReason = (typeof VOTE_REASONS)[number]

export const REPORT_STATES = ['ELECTED', 'ALLOCATED', 'DEALLOCATED', 'ERROR'] as const
export type ReportState = (typeof REPORT_STATES)[number]

export const LIMITS = {
  peerId: 128,
  /** voters in one request; also bounds the number of rounds */
  voters: 2048,
  tags: 32,
  tagKey: 64,
  tagValue: 256,
  names: 16,
  computeType: 64,
  note: 256,
  instance: 253,
  sig: MEMBER_LIMITS.sig,
  /** canonical encoding of one request, domain line included (a 1,000-voter request is ~85 KiB) */
  requestBytes: 256 * 1024,
} as const

/** What the work needs; 0 where it does not care. */
export interface Needs {
  cpus: number
  memoryBytes: number
  diskBytes: number
}

/** Where the work may run: every tag must match exactly; with names, the name must match a glob. */
export interface NodeFilter {
  tags: Record<string, string>
  /** sorted, unique; `*` any run of characters, `?` one character */
  names: string[]
}

/** A voter as the requester saw it; a death claim counts only at or above this incarnation. */
export interface Voter {
  peerId: string
  incarnation: number
}

export interface RequestBody {
  requester: string
  /** ms since the epoch, on the requester's clock */
  created: number
  /** uint32, so that two equal requests made in the same millisecond differ */
  nonce: number
  computeType: string
  /** '' for none */
  serverType: string
  filter: NodeFilter
  resources: Needs
  /** the alive members when the request was made, sorted by peer ID, unique */
  voters: Voter[]
  /**
   * A placement again: the id of the request (same requester) that ended no-candidate, which
   * this one replaces. Absent (not '') on a first request, so older members' encoding holds.
   */
  supersedes?: string
}

export interface Request extends RequestBody {
  kind: 'request'
  /** requestId(body): hex of the first 16 bytes of SHA-256 over the canonical bytes */
  id: string
  /** by `requester` over encodeRequest(body) */
  sig: Uint8Array
}

export interface Vote {
  kind: 'vote'
  request: string
  round: number
  /** which round `round` is: nextHistory() over the winners left behind before it ('' for round 0) */
  history: string
  voter: string
  yes: boolean
  /** empty for yes; sorted in VOTE_REASONS order and non-empty for no */
  reasons: VoteReason[]
  /** higher is better (e.g. free capacity); 0 for no */
  score: number
  /** uint32 (core.ts voteTiebreak: a hash, so a vote made again is the same): breaks ties between equal scores */
  tiebreak: number
  /** free text for humans, '' for none */
  note: string
  sig: Uint8Array
}

export interface Report {
  kind: 'report'
  request: string
  round: number
  history: string
  /** the member reporting (the winner of `round`), also the signer */
  member: string
  state: ReportState
  /** the instance name; required for ALLOCATED */
  instance: string
  note: string
  sig: Uint8Array
}

export interface Cancel {
  kind: 'cancel'
  request: string
  requester: string
  sig: Uint8Array
}

export type Message = Request | Vote | Report | Cancel

const PEER_ID_RE = /^[A-Za-z0-9]{8,128}$/
const ID_RE = /^[0-9a-f]{32}$/
const HISTORY_RE = /^([0-9a-f]{32})?$/
// a leading letter or digit keeps out __proto__ and friends
const TAG_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$/
const TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
// DNS label characters plus the two wildcards
const GLOB_RE = /^[a-z0-9*?-]{1,63}$/
const UINT32 = 0xffffffff

const enc = new TextEncoder()

/** No C0 controls or DEL: notes and tags end up on terminals. */
function printable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return false
  }
  return true
}

// ---- canonical encoding -------------------------------------------------------------------

const cache = new WeakMap<object, Uint8Array>()
const str = (s: string): string => JSON.stringify(s)
const strArr = (a: readonly string[]): string => `[${a.map(str).join(',')}]`

function cached(o: object, make: () => string): Uint8Array {
  let b = cache.get(o)
  if (b === undefined) {
    b = enc.encode(make())
    cache.set(o, b)
  }
  return b
}

/** The bytes the requester signs and the id hashes: everything but kind, id and sig. */
export function encodeRequest(r: RequestBody): Uint8Array {
  return cached(r, () => {
    const tags = Object.keys(r.filter.tags)
      .sort()
      .map((k) => `${str(k)}:${str(r.filter.tags[k])}`)
      .join(',')
    const n = r.resources
    const voters = r.voters.map((v) => `{"incarnation":${v.incarnation},"peerId":${str(v.peerId)}}`).join(',')
    return (
      `${REQUEST_DOMAIN}\n{"computeType":${str(r.computeType)},"created":${r.created},` +
      `"filter":{"names":${strArr(r.filter.names)},"tags":{${tags}}},"nonce":${r.nonce},` +
      `"requester":${str(r.requester)},` +
      `"resources":{"cpus":${n.cpus},"diskBytes":${n.diskBytes},"memoryBytes":${n.memoryBytes}},` +
      `"serverType":${str(r.serverType)},` +
      (r.supersedes === undefined ? '' : `"supersedes":${str(r.supersedes)},`) +
      `"voters":[${voters}]}`
    )
  })
}

export function encodeVote(v: Omit<Vote, 'kind' | 'sig'>): Uint8Array {
  return cached(
    v,
    () =>
      `${VOTE_DOMAIN}\n{"history":${str(v.history)},"note":${str(v.note)},"reasons":${strArr(v.reasons)},` +
      `"request":${str(v.request)},` +
      `"round":${v.round},"score":${v.score},"tiebreak":${v.tiebreak},"voter":${str(v.voter)},"yes":${v.yes}}`,
  )
}

export function encodeReport(r: Omit<Report, 'kind' | 'sig'>): Uint8Array {
  return cached(
    r,
    () =>
      `${REPORT_DOMAIN}\n{"history":${str(r.history)},"instance":${str(r.instance)},"member":${str(r.member)},` +
      `"note":${str(r.note)},` +
      `"request":${str(r.request)},"round":${r.round},"state":${str(r.state)}}`,
  )
}

export function encodeCancel(c: Omit<Cancel, 'kind' | 'sig'>): Uint8Array {
  return cached(c, () => `${CANCEL_DOMAIN}\n{"request":${str(c.request)},"requester":${str(c.requester)}}`)
}

/** The signed bytes of any message. */
export function encodeMessage(m: Message): Uint8Array {
  switch (m.kind) {
    case 'request':
      return encodeRequest(m)
    case 'vote':
      return encodeVote(m)
    case 'report':
      return encodeReport(m)
    case 'cancel':
      return encodeCancel(m)
  }
}

/** Who must have signed the message. */
export function signerOf(m: Message): string {
  switch (m.kind) {
    case 'request':
      return m.requester
    case 'vote':
      return m.voter
    case 'report':
      return m.member
    case 'cancel':
      return m.requester
  }
}

export function requestId(body: RequestBody): string {
  return createHash('sha256').update(encodeRequest(body)).digest('hex').slice(0, 32)
}

/**
 * The history of round r+1, from round r's and the winner left behind in round r. Votes and
 * reports name it, so that members who disagree for a while about an earlier round (one holds
 * the late vote of a member that died, the other not) never count them in the wrong round.
 */
export function nextHistory(history: string, winner: string): string {
  return createHash('sha256').update(`${HISTORY_DOMAIN}\n${history}\n${winner}`).digest('hex').slice(0, 32)
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}

/** Byte-identical: same signed bytes and same signature. */
export function sameMessage(a: Message, b: Message): boolean {
  if (a === b) return true
  return (
    a.kind === b.kind &&
    compareBytes(a.sig, b.sig) === 0 &&
    compareBytes(encodeMessage(a), encodeMessage(b)) === 0
  )
}

// ---- signing ------------------------------------------------------------------------------

export interface RequestSpec {
  computeType: string
  serverType?: string
  filter?: Partial<NodeFilter>
  resources?: Partial<Needs>
  /** the alive members now; sorted and de-duplicated here */
  voters: readonly Voter[]
  created: number
  nonce: number
  /** the id of our own no-candidate request this one places again */
  supersedes?: string
}

function sign<T extends Message>(
  body: Omit<T, 'sig'>,
  signer: Signer,
  check: (x: unknown) => string | undefined,
): T {
  const reason = check({ ...body, sig: new Uint8Array(1) })
  if (reason !== undefined) throw new Error(`invalid ${body.kind}: ${reason}`)
  const m = { ...body, sig: new Uint8Array(0) } as T
  m.sig = signer.sign(encodeMessage(m))
  return Object.freeze(m)
}

/** Build and sign a request as signer.peerId. Frozen: its encoding is cached. */
export function signRequest(spec: RequestSpec, signer: Signer): Request {
  const seen = new Map<string, Voter>()
  for (const v of spec.voters) {
    const prev = seen.get(v.peerId)
    if (prev === undefined || v.incarnation > prev.incarnation) seen.set(v.peerId, v)
  }
  const voters = [...seen.values()]
    .sort((a, b) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0))
    .map((v) => Object.freeze({ peerId: v.peerId, incarnation: v.incarnation }))
  const body: RequestBody = {
    requester: signer.peerId,
    created: spec.created,
    nonce: spec.nonce,
    computeType: spec.computeType,
    serverType: spec.serverType ?? '',
    filter: Object.freeze({
      tags: Object.freeze({ ...(spec.filter?.tags ?? {}) }),
      names: Object.freeze([...new Set(spec.filter?.names ?? [])].sort()) as string[],
    }),
    resources: Object.freeze({
      cpus: spec.resources?.cpus ?? 0,
      memoryBytes: spec.resources?.memoryBytes ?? 0,
      diskBytes: spec.resources?.diskBytes ?? 0,
    }),
    voters: Object.freeze(voters) as Voter[],
  }
  if (spec.supersedes !== undefined) body.supersedes = spec.supersedes
  const reason = checkRequest({ kind: 'request', id: '0'.repeat(32), ...body, sig: new Uint8Array(1) })
  if (reason !== undefined) throw new Error(`invalid request: ${reason}`)
  const size = encodeRequest(body).length
  if (size > LIMITS.requestBytes)
    throw new Error(`request too large (${size} > ${LIMITS.requestBytes} bytes)`)
  const r: Request = { kind: 'request', id: requestId(body), ...body, sig: signer.sign(encodeRequest(body)) }
  // the encoding was cached on `body`; carry it over to the frozen message
  cache.set(r, encodeRequest(body))
  return Object.freeze(r)
}

export function signVote(v: Omit<Vote, 'kind' | 'sig' | 'voter'>, signer: Signer): Vote {
  return sign<Vote>(
    {
      kind: 'vote',
      request: v.request,
      round: v.round,
      history: v.history,
      voter: signer.peerId,
      yes: v.yes,
      reasons: Object.freeze([...v.reasons]) as VoteReason[],
      score: v.score,
      tiebreak: v.tiebreak,
      note: v.note,
    },
    signer,
    checkVote,
  )
}

export function signReport(r: Omit<Report, 'kind' | 'sig' | 'member'>, signer: Signer): Report {
  return sign<Report>(
    {
      kind: 'report',
      request: r.request,
      round: r.round,
      history: r.history,
      member: signer.peerId,
      state: r.state,
      instance: r.instance,
      note: r.note,
    },
    signer,
    checkReport,
  )
}

export function signCancel(request: string, signer: Signer): Cancel {
  return sign<Cancel>({ kind: 'cancel', request, requester: signer.peerId }, signer, checkCancel)
}

export function verifyMessage(m: Message, v: Verifier): boolean {
  return v.verify(signerOf(m), encodeMessage(m), m.sig)
}

// ---- shape and size checks ----------------------------------------------------------------

const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x)
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0
const isUint32 = (x: unknown): x is number => isCount(x) && x <= UINT32
const isPeer = (x: unknown): x is string => typeof x === 'string' && PEER_ID_RE.test(x)
const isText = (x: unknown, max: number): x is string =>
  typeof x === 'string' && x.length <= max && printable(x)
const isRound = (x: unknown): x is number => isCount(x) && x < LIMITS.voters
const isHistory = (round: unknown, h: unknown): boolean =>
  typeof h === 'string' && HISTORY_RE.test(h) && (h === '') === (round === 0)

function checkSig(x: unknown): string | undefined {
  return x instanceof Uint8Array && x.length > 0 && x.length <= LIMITS.sig ? undefined : 'bad signature field'
}

function keys(x: Record<string, unknown>, n: number): boolean {
  return Object.keys(x).length === n
}

/**
 * Why `x` is not a well-formed request, or undefined when it is. Does not encode: check the
 * size with checkRequestSize and the id with requestId.
 */
export function checkRequest(x: unknown): string | undefined {
  if (!isObj(x)) return 'not an object'
  if (x.kind !== 'request' || !keys(x, x.supersedes === undefined ? 11 : 12)) return 'unexpected fields'
  if (typeof x.id !== 'string' || !ID_RE.test(x.id)) return 'bad id'
  if (x.supersedes !== undefined && (typeof x.supersedes !== 'string' || !ID_RE.test(x.supersedes)))
    return 'bad supersedes'
  if (!isPeer(x.requester)) return 'bad requester'
  if (!isCount(x.created)) return 'bad created time'
  if (!isUint32(x.nonce)) return 'bad nonce'
  if (typeof x.computeType !== 'string' || !TYPE_RE.test(x.computeType)) return 'bad compute type'
  if (typeof x.serverType !== 'string' || (x.serverType !== '' && !TYPE_RE.test(x.serverType)))
    return 'bad server type'
  const f = x.filter
  if (!isObj(f) || !keys(f, 2) || !isObj(f.tags) || !Array.isArray(f.names)) return 'bad filter'
  let n = 0
  for (const k in f.tags) {
    if (!Object.hasOwn(f.tags, k)) return 'bad filter tags'
    if (++n > LIMITS.tags) return `too many filter tags (> ${LIMITS.tags})`
    if (!TAG_KEY_RE.test(k)) return 'bad filter tag key'
    if (!isText(f.tags[k], LIMITS.tagValue)) return `bad filter tag value for ${k}`
  }
  if (f.names.length > LIMITS.names) return `too many name globs (> ${LIMITS.names})`
  for (let i = 0; i < f.names.length; i++) {
    const g = f.names[i]
    if (typeof g !== 'string' || !GLOB_RE.test(g)) return 'bad name glob'
    if (i > 0 && !(f.names[i - 1] < g)) return 'name globs not sorted and unique'
  }
  const r = x.resources
  if (!isObj(r) || !keys(r, 3)) return 'bad resources'
  if (typeof r.cpus !== 'number' || !Number.isFinite(r.cpus) || r.cpus < 0 || r.cpus > 1e6) return 'bad cpus'
  if (!isCount(r.memoryBytes) || !isCount(r.diskBytes)) return 'bad memory or disk size'
  const vs = x.voters
  if (!Array.isArray(vs) || vs.length === 0) return 'no voters'
  if (vs.length > LIMITS.voters) return `too many voters (${vs.length} > ${LIMITS.voters})`
  let prev = ''
  for (const v of vs) {
    if (!isObj(v) || !keys(v, 2) || !isPeer(v.peerId) || !isCount(v.incarnation)) return 'bad voter'
    if (!(prev < v.peerId)) return 'voters not sorted and unique'
    prev = v.peerId
  }
  return checkSig(x.sig)
}

/** Why the encoded request is too big, if it is. */
export function checkRequestSize(r: RequestBody): string | undefined {
  const n = encodeRequest(r).length
  return n > LIMITS.requestBytes ? `request too large (${n} > ${LIMITS.requestBytes} bytes)` : undefined
}

export function checkVote(x: unknown): string | undefined {
  if (!isObj(x)) return 'not an object'
  if (x.kind !== 'vote' || !keys(x, 11)) return 'unexpected fields'
  if (typeof x.request !== 'string' || !ID_RE.test(x.request)) return 'bad request id'
  if (!isRound(x.round)) return 'bad round'
  if (!isHistory(x.round, x.history)) return 'bad history'
  if (!isPeer(x.voter)) return 'bad voter'
  if (typeof x.yes !== 'boolean') return 'bad yes'
  if (!Array.isArray(x.reasons) || x.reasons.length > VOTE_REASONS.length) return 'bad reasons'
  let last = -1
  for (const r of x.reasons) {
    const i = VOTE_REASONS.indexOf(r)
    if (i <= last) return 'reasons unknown, unsorted or repeated'
    last = i
  }
  if (!isCount(x.score)) return 'bad score'
  if (!isUint32(x.tiebreak)) return 'bad tiebreak'
  if (x.yes && x.reasons.length > 0) return 'a yes vote with reasons'
  if (!x.yes && (x.reasons.length === 0 || x.score !== 0)) return 'a no vote needs reasons and score 0'
  if (!isText(x.note, LIMITS.note)) return 'bad note'
  return checkSig(x.sig)
}

export function checkReport(x: unknown): string | undefined {
  if (!isObj(x)) return 'not an object'
  if (x.kind !== 'report' || !keys(x, 9)) return 'unexpected fields'
  if (typeof x.request !== 'string' || !ID_RE.test(x.request)) return 'bad request id'
  if (!isRound(x.round)) return 'bad round'
  if (!isHistory(x.round, x.history)) return 'bad history'
  if (!isPeer(x.member)) return 'bad member'
  if (!REPORT_STATES.includes(x.state as ReportState)) return 'bad state'
  if (!isText(x.instance, LIMITS.instance)) return 'bad instance'
  if (x.state === 'ALLOCATED' && x.instance === '') return 'ALLOCATED without an instance'
  if (!isText(x.note, LIMITS.note)) return 'bad note'
  return checkSig(x.sig)
}

export function checkCancel(x: unknown): string | undefined {
  if (!isObj(x)) return 'not an object'
  if (x.kind !== 'cancel' || !keys(x, 4)) return 'unexpected fields'
  if (typeof x.request !== 'string' || !ID_RE.test(x.request)) return 'bad request id'
  if (!isPeer(x.requester)) return 'bad requester'
  return checkSig(x.sig)
}

/** Why `x` is not a well-formed message of any kind (request size included). */
export function checkMessage(x: unknown): string | undefined {
  if (!isObj(x)) return 'not an object'
  switch (x.kind) {
    case 'request':
      return checkRequest(x) ?? checkRequestSize(x as unknown as Request)
    case 'vote':
      return checkVote(x)
    case 'report':
      return checkReport(x)
    case 'cancel':
      return checkCancel(x)
    default:
      return 'unknown kind'
  }
}
