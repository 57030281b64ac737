import type { Signed } from '../../protocols/membership.js'
import {
  CLAIM_DOMAIN,
  type Claim,
  checkClaim,
  checkSignedInfo,
  encodeClaim,
  encodeInfo,
  INFO_DOMAIN,
  LIMITS,
  type MemberInfo,
  type SignedInfo,
} from './record.js'

const dec = new TextDecoder()
const INFO_PREFIX = `${INFO_DOMAIN}\n`
const CLAIM_PREFIX = `${CLAIM_DOMAIN}\n`

export class WireError extends Error {
  override name = 'WireError'
}

export const toWireInfo = (s: SignedInfo): Signed => ({
  body: encodeInfo(s.info) as Uint8Array<ArrayBuffer>,
  sig: s.sig as Uint8Array<ArrayBuffer>,
})
export const toWireClaim = (c: Claim): Signed => ({
  body: encodeClaim(c) as Uint8Array<ArrayBuffer>,
  sig: c.sig as Uint8Array<ArrayBuffer>,
})

function body(bytes: Uint8Array, prefix: string): unknown {
  if (bytes.length > LIMITS.infoBytes) throw new WireError('oversized')
  const text = dec.decode(bytes)
  if (!text.startsWith(prefix)) throw new WireError('wrong domain')
  try {
    return JSON.parse(text.slice(prefix.length))
  } catch {
    throw new WireError('truncated or not JSON')
  }
}

/**
 * A signature as its own 64 bytes: off the wire it is a view into the whole message it came in
 * (a sync, a probe's piggyback), and a record the table keeps for as long as the member lives
 * would keep that message's memory with it (about 2 KiB per member, sim/PROFILE.md).
 */
const own = (sig: Uint8Array) => new Uint8Array(sig)

/** A record off the wire: parsed and shape-checked (the table verifies the signature). */
export function fromWireInfo(s: Signed): SignedInfo {
  const candidate = { info: body(s.body, INFO_PREFIX) as MemberInfo, sig: own(s.sig) }
  const why = checkSignedInfo(candidate)
  if (why !== undefined) throw new WireError(why)
  return candidate
}

export function fromWireClaim(s: Signed): Claim {
  const b = body(s.body, CLAIM_PREFIX) as Omit<Claim, 'sig'>
  const candidate = { ...b, sig: own(s.sig) } as Claim
  const why = checkClaim(candidate)
  if (why !== undefined) throw new WireError(why)
  return candidate
}
