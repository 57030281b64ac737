import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { AbortOptions, PeerId } from '@libp2p/interface'
import type { AuthMessage } from '../../protocols/auth.js'
import { hmac } from './cluster.js'
import type { Standing } from './trust.js'

/**
 * The member-admission handshake (protocols/auth.md), five messages on one stream. Each side
 * proves the cluster key before the other shows it anything that identifies a member: the
 * listener's proof comes first (it reveals nothing to a peer without the key), the dialer's
 * proof comes with its certificate, and the listener's certificate only once the dialer's
 * proof checked out.
 *
 *   1 D -> L  {nonce nD}
 *   2 L -> D  {nonce nL, proof P(L)}
 *   3 D -> L  {proof P(D), certificate D}       or {error}
 *   4 L -> D  {certificate L}                   or {error, revocation}
 *   5 D -> L  {}                                or {error, revocation}
 */

/** a pb stream of AuthMessage (what @libp2p/utils' pbStream(...).pb(AuthMessage) gives) */
export interface AuthChannel {
  read(options?: AbortOptions): Promise<AuthMessage>
  write(m: AuthMessage, options?: AbortOptions): Promise<unknown>
}

export interface HandshakeContext {
  /** the auth key derived from the cluster key */
  key: Uint8Array
  me: PeerId
  them: PeerId
  /** our certificate (empty while joining) and the verdict on theirs */
  ours(): Uint8Array<ArrayBuffer>
  standing(peerId: string, certificate: Uint8Array): Standing
  /** a peer refused us and showed a statement (our revocation): the trust store checks it */
  learn?(statement: Uint8Array): void
  signal: AbortSignal
}

/** The outcome and the metric label that says how it came about. */
export interface HandshakeResult {
  standing: Standing
  result: 'ok' | 'joiner' | 'refused' | 'refused_by_peer' | 'bad_proof'
}

const enc = new TextEncoder()
const NONCE = 32

export async function dialerHandshake(ch: AuthChannel, ctx: HandshakeContext): Promise<HandshakeResult> {
  const { signal } = ctx
  const nD = new Uint8Array(randomBytes(NONCE))
  await ch.write(msg({ nonce: nD }), { signal })
  const m2 = await ch.read({ signal })
  if (m2.error !== '') return refusedBy(ctx, m2)
  const nL = m2.nonce
  if (nL.length !== NONCE || !same(proof(ctx.key, 'L', ctx.me, ctx.them, nD, nL), m2.proof)) {
    await ch.write(msg({ error: 'wrong cluster key' }), { signal }).catch(() => {})
    return { standing: REFUSED('wrong cluster key'), result: 'bad_proof' }
  }
  // the listener holds the key: now we prove ours and show our certificate
  await ch.write(msg({ proof: proof(ctx.key, 'D', ctx.me, ctx.them, nD, nL), certificate: ctx.ours() }), {
    signal,
  })
  const m4 = await ch.read({ signal })
  if (m4.error !== '') return refusedBy(ctx, m4)
  const theirs = ctx.standing(ctx.them.toString(), m4.certificate)
  if (theirs.kind === 'refused') {
    await ch.write(msg({ error: theirs.why, revocation: theirs.revocation }), { signal }).catch(() => {})
    return { standing: theirs, result: 'refused' }
  }
  await ch.write(msg({}), { signal })
  return { standing: theirs, result: theirs.kind === 'member' ? 'ok' : 'joiner' }
}

export async function listenerHandshake(ch: AuthChannel, ctx: HandshakeContext): Promise<HandshakeResult> {
  const { signal } = ctx
  const m1 = await ch.read({ signal })
  const nD = m1.nonce
  if (nD.length !== NONCE) throw new Error('malformed hello')
  const nL = new Uint8Array(randomBytes(NONCE))
  // proving the key shows nothing: an HMAC over fresh nonces, useless without the key
  await ch.write(msg({ nonce: nL, proof: proof(ctx.key, 'L', ctx.them, ctx.me, nD, nL) }), { signal })
  const m3 = await ch.read({ signal })
  if (m3.error !== '') return refusedBy(ctx, m3)
  if (!same(proof(ctx.key, 'D', ctx.them, ctx.me, nD, nL), m3.proof)) {
    await ch.write(msg({ error: 'wrong cluster key' }), { signal }).catch(() => {})
    return { standing: REFUSED('wrong cluster key'), result: 'bad_proof' }
  }
  const theirs = ctx.standing(ctx.them.toString(), m3.certificate)
  if (theirs.kind === 'refused') {
    await ch.write(msg({ error: theirs.why, revocation: theirs.revocation }), { signal }).catch(() => {})
    return { standing: theirs, result: 'refused' }
  }
  // the dialer proved the key: only now show our certificate
  await ch.write(msg({ certificate: ctx.ours() }), { signal })
  const m5 = await ch.read({ signal })
  if (m5.error !== '') return refusedBy(ctx, m5)
  return { standing: theirs, result: theirs.kind === 'member' ? 'ok' : 'joiner' }
}

/** HMAC-SHA256 bound to the role, both peer IDs (dialer first) and both nonces. */
function proof(
  key: Uint8Array,
  role: 'D' | 'L',
  dialer: PeerId,
  listener: PeerId,
  nD: Uint8Array,
  nL: Uint8Array,
): Uint8Array<ArrayBuffer> {
  return hmac(key, enc.encode(role), dialer.toMultihash().bytes, listener.toMultihash().bytes, nD, nL)
}

function same(expected: Uint8Array, got: Uint8Array): boolean {
  return got.length === expected.length && timingSafeEqual(expected, got)
}

/** The peer refused us; if it showed our revocation, the trust store checks and takes it. */
function refusedBy(ctx: HandshakeContext, m: AuthMessage): HandshakeResult {
  if (m.revocation.length > 0) ctx.learn?.(m.revocation)
  return { standing: REFUSED(m.error), result: 'refused_by_peer' }
}

export const REFUSED = (why: string): Standing => ({ kind: 'refused', why })

function msg(m: Partial<AuthMessage>): AuthMessage {
  return {
    nonce: new Uint8Array(),
    proof: new Uint8Array(),
    error: '',
    certificate: new Uint8Array(),
    revocation: new Uint8Array(),
    ...m,
    ...(m.revocation === undefined ? { revocation: new Uint8Array() } : {}),
  }
}
