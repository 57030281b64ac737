/**
 * Member records. A member asserts facts about itself in a `MemberInfo` signed with its own key;
 * other members make suspect / dead `Claim`s about it, signed with theirs. This module holds the
 * canonical bytes that get signed, the shape and size checks for records off the wire, and the
 * signer / verifier seams: Ed25519 for the agent, a cheap stand-in for the simulator.
 */
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'

export type Status = 'alive' | 'suspect' | 'dead' | 'left'

export interface Resources {
  cpus: number
  memoryBytes: number
  diskFreeBytes: number
}

/** What a member says about itself. Treat as immutable once signed (encodings are cached). */
export interface MemberInfo {
  peerId: string
  name: string
  overlay: string
  addrs: string[]
  /** raised by the member on every change and to refute a suspicion */
  incarnation: number
  status: 'alive' | 'left'
  version: string
  tags: Record<string, string>
  computeTypes: string[]
  resources: Resources
  maintenance: boolean
}

export interface SignedInfo {
  info: MemberInfo
  /** by info.peerId over encodeInfo(info) */
  sig: Uint8Array
}

/** Member `by` says `peerId`, as of `incarnation`, is suspect or dead. */
export interface Claim {
  peerId: string
  incarnation: number
  status: 'suspect' | 'dead'
  by: string
  /** by `by` over encodeClaim(claim) */
  sig: Uint8Array
}

export interface Signer {
  /** the peer whose key this is; signInfo / signClaim refuse to sign for anyone else */
  readonly peerId: string
  sign(bytes: Uint8Array): Uint8Array
}

export interface Verifier {
  /** Is `sig` a signature of `bytes` by the key behind `peerId`? Never throws. */
  verify(peerId: string, bytes: Uint8Array, sig: Uint8Array): boolean
}

export const INFO_DOMAIN = 'mesh-member-v1'
export const CLAIM_DOMAIN = 'mesh-claim-v1'

export const LIMITS = {
  peerId: 128,
  addrs: 32,
  addr: 256,
  version: 64,
  tags: 64,
  tagKey: 64,
  tagValue: 256,
  computeTypes: 32,
  computeType: 64,
  sig: 128,
  /** canonical encoding of one MemberInfo, domain prefix included */
  infoBytes: 16 * 1024,
} as const

export const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const PEER_ID_RE = /^[A-Za-z0-9]{8,128}$/
// the canonical lowercase RFC 5952 text overlayAddress() produces
const OVERLAY_RE = /^[0-9a-f:]{2,39}$/
const VERSION_RE = /^[\x21-\x7e]{0,64}$/
// a leading letter or digit keeps out __proto__ and friends
const TAG_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$/
const COMPUTE_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const INFO_KEYS = 11

const enc = new TextEncoder()

/** No C0 controls or DEL: values end up on terminals in `mesh members`. */
function printable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return false
  }
  return true
}

// ---- canonical encoding -------------------------------------------------------------------

const infoCache = new WeakMap<MemberInfo, Uint8Array>()
const claimCache = new WeakMap<Claim, Uint8Array>()

const str = (s: string): string => JSON.stringify(s)
const strArr = (a: readonly string[]): string => `[${a.map(str).join(',')}]`

/**
 * The bytes a member signs: the domain prefix, a newline, then JSON with keys in sorted order
 * and only the known fields, so two encoders never disagree. Cached per (immutable) object.
 */
export function encodeInfo(i: MemberInfo): Uint8Array {
  let bytes = infoCache.get(i)
  if (bytes !== undefined) return bytes
  const tags = Object.keys(i.tags)
    .sort()
    .map((k) => `${str(k)}:${str(i.tags[k])}`)
    .join(',')
  const r = i.resources
  const json =
    `{"addrs":${strArr(i.addrs)},"computeTypes":${strArr(i.computeTypes)},"incarnation":${i.incarnation},` +
    `"maintenance":${i.maintenance},"name":${str(i.name)},"overlay":${str(i.overlay)},"peerId":${str(i.peerId)},` +
    `"resources":{"cpus":${r.cpus},"diskFreeBytes":${r.diskFreeBytes},"memoryBytes":${r.memoryBytes}},` +
    `"status":${str(i.status)},"tags":{${tags}},"version":${str(i.version)}}`
  bytes = enc.encode(`${INFO_DOMAIN}\n${json}`)
  infoCache.set(i, bytes)
  return bytes
}

/** The bytes a claimant signs (the sig field itself excluded). */
export function encodeClaim(c: Omit<Claim, 'sig'>): Uint8Array {
  const cached = claimCache.get(c as Claim)
  if (cached !== undefined) return cached
  const json = `{"by":${str(c.by)},"incarnation":${c.incarnation},"peerId":${str(c.peerId)},"status":${str(c.status)}}`
  const bytes = enc.encode(`${CLAIM_DOMAIN}\n${json}`)
  claimCache.set(c as Claim, bytes)
  return bytes
}

function freezeInfo(i: MemberInfo): MemberInfo {
  Object.freeze(i.addrs)
  Object.freeze(i.computeTypes)
  Object.freeze(i.tags)
  Object.freeze(i.resources)
  return Object.freeze(i)
}

/** Sign our own record. The info is frozen: its encoding is cached and must not go stale. */
export function signInfo(info: MemberInfo, signer: Signer): SignedInfo {
  if (signer.peerId !== info.peerId)
    throw new Error(`cannot sign a record of ${info.peerId} as ${signer.peerId}`)
  const reason = checkInfo(info) ?? checkSize(info)
  if (reason !== undefined) throw new Error(`invalid member record: ${reason}`)
  const frozen = freezeInfo(info)
  return { info: frozen, sig: signer.sign(encodeInfo(frozen)) }
}

/** Make a suspect / dead claim about another member, as signer.peerId. */
export function signClaim(c: Omit<Claim, 'sig' | 'by'>, signer: Signer): Claim {
  const body = { peerId: c.peerId, incarnation: c.incarnation, status: c.status, by: signer.peerId }
  const reason = checkClaim({ ...body, sig: new Uint8Array(1) })
  if (reason !== undefined) throw new Error(`invalid claim: ${reason}`)
  const sig = signer.sign(encodeClaim(body))
  return Object.freeze({ ...body, sig })
}

// ---- shape and size checks ----------------------------------------------------------------

const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x)
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0

function checkStrings(x: unknown, max: number, each: number, re: RegExp, what: string): string | undefined {
  if (!Array.isArray(x)) return `${what} is not a list`
  if (x.length > max) return `too many ${what} (${x.length} > ${max})`
  for (const s of x) {
    if (typeof s !== 'string' || s.length > each || !re.test(s)) return `bad entry in ${what}`
  }
  return undefined
}

/**
 * Why `x` is not a well-formed MemberInfo, or undefined when it is. Cheap: no encoding,
 * so it can run on every message; checkSize covers the encoded size.
 */
/**
 * Frozen records and claims (ours, from signInfo / signClaim, and the simulator's shared copies)
 * cannot change once checked: remember the ones that passed, so the thousandth copy is not
 * checked again. Records parsed off the wire are not frozen and are always checked.
 */
const passed = new WeakSet<object>()
const frozenInfo = (x: Record<string, unknown>): boolean =>
  Object.isFrozen(x) &&
  Object.isFrozen(x.addrs) &&
  Object.isFrozen(x.computeTypes) &&
  Object.isFrozen(x.tags) &&
  Object.isFrozen(x.resources)

export function checkInfo(x: unknown): string | undefined {
  if (!isObj(x)) return 'not an object'
  if (passed.has(x)) return undefined
  const why = checkInfoFields(x)
  if (why === undefined && frozenInfo(x)) passed.add(x)
  return why
}

function checkInfoFields(x: Record<string, unknown>): string | undefined {
  if (Object.keys(x).length !== INFO_KEYS) return 'unexpected fields'
  if (typeof x.peerId !== 'string' || !PEER_ID_RE.test(x.peerId)) return 'bad peerId'
  if (typeof x.name !== 'string' || !NAME_RE.test(x.name)) return 'name is not a DNS label'
  if (typeof x.overlay !== 'string' || !OVERLAY_RE.test(x.overlay)) return 'bad overlay address'
  if (!isCount(x.incarnation)) return 'bad incarnation'
  if (x.status !== 'alive' && x.status !== 'left') return 'bad status'
  if (typeof x.version !== 'string' || !VERSION_RE.test(x.version)) return 'bad version'
  if (typeof x.maintenance !== 'boolean') return 'bad maintenance flag'
  const addrs = checkStrings(x.addrs, LIMITS.addrs, LIMITS.addr, /^\/[\x21-\x7e]*$/, 'addrs')
  if (addrs !== undefined) return addrs
  const types = checkStrings(
    x.computeTypes,
    LIMITS.computeTypes,
    LIMITS.computeType,
    COMPUTE_TYPE_RE,
    'computeTypes',
  )
  if (types !== undefined) return types
  if (!isObj(x.tags)) return 'tags is not an object'
  let n = 0
  for (const k in x.tags) {
    if (!Object.hasOwn(x.tags, k)) return 'bad tags'
    if (++n > LIMITS.tags) return `too many tags (> ${LIMITS.tags})`
    const v = x.tags[k]
    if (!TAG_KEY_RE.test(k)) return `bad tag key ${JSON.stringify(k.slice(0, 80))}`
    if (typeof v !== 'string' || v.length > LIMITS.tagValue || !printable(v)) return `bad tag value for ${k}`
  }
  const r = x.resources
  if (!isObj(r) || Object.keys(r).length !== 3) return 'bad resources'
  if (typeof r.cpus !== 'number' || !Number.isFinite(r.cpus) || r.cpus < 0 || r.cpus > 1e6) return 'bad cpus'
  if (!isCount(r.memoryBytes) || !isCount(r.diskFreeBytes)) return 'bad memory or disk size'
  return undefined
}

/** Why the encoded record is too big, if it is. Encodes (and caches) the record. */
export function checkSize(info: MemberInfo): string | undefined {
  const n = encodeInfo(info).length
  return n > LIMITS.infoBytes ? `record too large (${n} > ${LIMITS.infoBytes} bytes)` : undefined
}

export function checkSignedInfo(x: unknown): string | undefined {
  if (!isObj(x)) return 'not an object'
  if (!(x.sig instanceof Uint8Array) || x.sig.length === 0 || x.sig.length > LIMITS.sig)
    return 'bad signature field'
  return checkInfo(x.info)
}

export function checkClaim(x: unknown): string | undefined {
  if (!isObj(x)) return 'not an object'
  if (passed.has(x)) return undefined
  const why = checkClaimFields(x)
  if (why === undefined && Object.isFrozen(x)) passed.add(x)
  return why
}

function checkClaimFields(x: Record<string, unknown>): string | undefined {
  if (typeof x.peerId !== 'string' || !PEER_ID_RE.test(x.peerId)) return 'bad peerId'
  if (typeof x.by !== 'string' || !PEER_ID_RE.test(x.by)) return 'bad claimant'
  if (!isCount(x.incarnation)) return 'bad incarnation'
  if (x.status !== 'suspect' && x.status !== 'dead') return 'bad status'
  if (!(x.sig instanceof Uint8Array) || x.sig.length === 0 || x.sig.length > LIMITS.sig)
    return 'bad signature field'
  return undefined
}

export function verifyInfo(s: SignedInfo, v: Verifier): boolean {
  return v.verify(s.info.peerId, encodeInfo(s.info), s.sig)
}

export function verifyClaim(c: Claim, v: Verifier): boolean {
  return v.verify(c.by, encodeClaim(c), c.sig)
}

// ---- signers and verifiers ----------------------------------------------------------------

/** Sign with the node's Ed25519 libp2p key (synchronous on Node). */
export function ed25519Signer(key: PrivateKey): Signer {
  if (key.type !== 'Ed25519') throw new Error(`member records need an Ed25519 key, not ${key.type}`)
  return {
    peerId: peerIdFromPrivateKey(key).toString(),
    sign(bytes) {
      const sig = key.sign(bytes)
      if (sig instanceof Uint8Array) return sig
      throw new Error('Ed25519 signing was asynchronous; member records need a synchronous signer')
    },
  }
}

/** Verify against the public key inlined in an Ed25519 peer ID. Parsed keys are cached. */
export function ed25519Verifier(cacheSize = 4096): Verifier {
  const keys = new Map<string, PublicKey | null>()
  const keyOf = (peerId: string): PublicKey | null => {
    let k = keys.get(peerId)
    if (k !== undefined) return k
    try {
      const id = peerIdFromString(peerId)
      k = id.type === 'Ed25519' ? id.publicKey : null
    } catch {
      k = null
    }
    // drop the oldest: insertion order is a fine approximation of LRU here
    if (keys.size >= cacheSize) keys.delete(keys.keys().next().value as string)
    keys.set(peerId, k)
    return k
  }
  return {
    verify(peerId, bytes, sig) {
      const key = keyOf(peerId)
      if (key === null) return false
      try {
        return key.verify(bytes, sig) === true
      } catch {
        return false
      }
    },
  }
}

/** 32-bit FNV-1a, for fingerprints and the simulator's stand-in signatures. */
export function fnv1a32(bytes: Uint8Array, h = 0x811c9dc5): number {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193)
  return h >>> 0
}

export function fnv1a32String(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/**
 * Stand-in crypto for the simulator and tests: the "signature" is a content hash plus the
 * signer's peer ID. It catches records attributed to the wrong peer and accidental changes, not
 * forgery. Never use it on a network.
 */
export const nullCrypto: { signer(peerId: string): Signer; verifier: Verifier } = {
  signer(peerId) {
    return {
      peerId,
      sign(bytes) {
        const id = enc.encode(peerId)
        const sig = new Uint8Array(4 + id.length)
        new DataView(sig.buffer).setUint32(0, fnv1a32(bytes))
        sig.set(id, 4)
        return sig
      },
    }
  },
  verifier: {
    verify(peerId, bytes, sig) {
      if (sig.length !== 4 + peerId.length) return false
      for (let i = 0; i < peerId.length; i++) if (sig[4 + i] !== peerId.charCodeAt(i)) return false
      const h = fnv1a32(bytes)
      return (
        sig[0] === h >>> 24 &&
        sig[1] === ((h >>> 16) & 0xff) &&
        sig[2] === ((h >>> 8) & 0xff) &&
        sig[3] === (h & 0xff)
      )
    },
  },
}
