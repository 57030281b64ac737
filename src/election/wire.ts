/**
 * Election messages on the wire (protocols/election.proto): each is its canonical signed bytes
 * plus the signature. Decoding parses the body, rebuilds the message, shape-checks it and
 * insists that the body is exactly the canonical encoding of what it parsed to (so the signature
 * the core verifies is over the bytes that were sent). It never verifies signatures itself: the
 * core does, after cheaper checks. Anything wrong throws WireError, which callers count and drop.
 */
import type { SignedMsg } from '../../protocols/election.js'
import { CLAIM_DOMAIN, type Claim, encodeClaim } from '../membership/record.js'
import { fromWireClaim, WireError } from '../membership/wire.js'
import {
  CANCEL_DOMAIN,
  checkMessage,
  compareBytes,
  encodeMessage,
  LIMITS,
  type Message,
  REPORT_DOMAIN,
  REQUEST_DOMAIN,
  type RequestBody,
  requestId,
  VOTE_DOMAIN,
} from './messages.js'

export { WireError }

const dec = new TextDecoder()
const KINDS: Record<string, Message['kind']> = {
  [REQUEST_DOMAIN]: 'request',
  [VOTE_DOMAIN]: 'vote',
  [REPORT_DOMAIN]: 'report',
  [CANCEL_DOMAIN]: 'cancel',
}

const isClaim = (x: Message | Claim): x is Claim => !('kind' in x)

export function toWire(m: Message | Claim): SignedMsg {
  const body = isClaim(m) ? encodeClaim(m) : encodeMessage(m)
  return { body: body as Uint8Array<ArrayBuffer>, sig: m.sig as Uint8Array<ArrayBuffer> }
}

/** A message or death claim off the wire, shape-checked; throws WireError. */
export function fromWire(s: SignedMsg): Message | Claim {
  if (s.body.length > LIMITS.requestBytes + 64) throw new WireError('oversized')
  const text = dec.decode(s.body)
  const nl = text.indexOf('\n')
  if (nl < 0) throw new WireError('no domain line')
  const domain = text.slice(0, nl)
  if (domain === CLAIM_DOMAIN) return fromWireClaim({ body: s.body, sig: s.sig })
  const kind = KINDS[domain]
  if (kind === undefined) throw new WireError('unknown domain')
  let parsed: unknown
  try {
    parsed = JSON.parse(text.slice(nl + 1))
  } catch {
    throw new WireError('truncated or not JSON')
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new WireError('not an object')
  const fields = parsed as Record<string, unknown>
  if ('kind' in fields || 'sig' in fields || 'id' in fields) throw new WireError('unexpected fields')
  let m: Record<string, unknown>
  if (kind === 'request') {
    m = { kind, id: '0'.repeat(32), ...fields, sig: s.sig }
    const why = checkMessage(m)
    if (why !== undefined) throw new WireError(why)
    m.id = requestId(m as unknown as RequestBody)
  } else {
    m = { kind, ...fields, sig: s.sig }
    const why = checkMessage(m)
    if (why !== undefined) throw new WireError(why)
  }
  const msg = m as unknown as Message
  // the signature covers the canonical bytes: a body in any other form is refused here
  if (compareBytes(encodeMessage(msg), s.body) !== 0) throw new WireError('not canonical')
  return Object.freeze(msg)
}
