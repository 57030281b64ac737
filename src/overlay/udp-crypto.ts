/**
 * The direct UDP carrier's packet protection, sans-IO (protocols/overlay.md, "Direct UDP
 * carrier"): every datagram is
 *
 *     | key id (u32 BE) | counter (u64 BE) | ChaCha20-Poly1305 ciphertext | tag (16) |
 *
 * sealed with the key for this direction, the nonce being 4 zero bytes and the counter, which the
 * sender never reuses with a key. Both ends derive the keys from ephemeral X25519 keys exchanged
 * over the member's Noise-authenticated connection (HKDF-SHA256), so the keys themselves never
 * travel; a member on the previous version sends 32 random bytes instead. The receiver opens a
 * datagram with the key its id names and accepts a counter once (a sliding window, as IPsec and
 * WireGuard keep). The cipher runs through OpenSSL with one context per key where Node exposes
 * it (openssl-aead.ts), through node:crypto otherwise: the same bytes either way.
 */
import {
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto'
import { type OpensslAead, opensslAead } from './openssl-aead.js'

export const KEY_BYTES = 32
export const HEADER_BYTES = 12
export const TAG_BYTES = 16
export const OVERHEAD = HEADER_BYTES + TAG_BYTES
const ALG = 'chacha20-poly1305'

export const newKey = (): Uint8Array<ArrayBuffer> => new Uint8Array(randomBytes(KEY_BYTES))

export const PUBLIC_KEY_BYTES = 32
// the DER prefix of an X25519 SubjectPublicKeyInfo: what node:crypto imports a raw key with
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex')
const KDF_INFO = Buffer.from('mesh overlay-udp 1.0.0 datagram keys')

/** An X25519 key pair for one exchange: the private half never leaves this process. */
export interface Ephemeral {
  privateKey: KeyObject
  publicKey: Uint8Array<ArrayBuffer>
}

export function newEphemeral(): Ephemeral {
  const { privateKey, publicKey } = generateKeyPairSync('x25519')
  const der = publicKey.export({ format: 'der', type: 'spki' })
  return { privateKey, publicKey: new Uint8Array(der.subarray(der.length - PUBLIC_KEY_BYTES)) }
}

/**
 * The two datagram keys of one exchange: HKDF-SHA256 over the X25519 shared secret, salted with
 * both public keys (offerer's first), 64 bytes: the first 32 seal what the offerer sends, the
 * last 32 what the answerer sends.
 */
export function deriveKeys(
  own: Ephemeral,
  theirs: Uint8Array,
  role: 'offerer' | 'answerer',
): { seal: Uint8Array<ArrayBuffer>; open: Uint8Array<ArrayBuffer> } {
  if (theirs.length !== PUBLIC_KEY_BYTES)
    throw new Error(`the member's public key has ${theirs.length} bytes, not ${PUBLIC_KEY_BYTES}`)
  const publicKey = createPublicKey({
    key: Buffer.concat([X25519_SPKI, theirs]),
    format: 'der',
    type: 'spki',
  })
  const shared = diffieHellman({ privateKey: own.privateKey, publicKey })
  // a low-order point gives all zeros: a secret anyone knows (RFC 7748, section 6.1)
  if (shared.every((b) => b === 0)) throw new Error("the member's public key is of low order")
  const salt = role === 'offerer' ? [own.publicKey, theirs] : [theirs, own.publicKey]
  const okm = new Uint8Array(hkdfSync('sha256', shared, Buffer.concat(salt), KDF_INFO, 2 * KEY_BYTES))
  shared.fill(0)
  const fromOfferer = okm.slice(0, KEY_BYTES)
  const fromAnswerer = okm.slice(KEY_BYTES)
  okm.fill(0)
  return role === 'offerer'
    ? { seal: fromOfferer, open: fromAnswerer }
    : { seal: fromAnswerer, open: fromOfferer }
}

/** The key id a datagram names, or undefined when it is too short to be one of ours. */
export function keyIdOf(d: Uint8Array): number | undefined {
  if (d.length < OVERHEAD) return undefined
  return ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0
}

/** The counter a datagram carries (up to 2^53: a session never sends that many). */
export function counterOf(d: Uint8Array): number {
  const hi = ((d[4] << 24) | (d[5] << 16) | (d[6] << 8) | d[7]) >>> 0
  const lo = ((d[8] << 24) | (d[9] << 16) | (d[10] << 8) | d[11]) >>> 0
  return hi * 2 ** 32 + lo
}

function nonceOf(counter: number, out: Buffer): Buffer {
  out.writeUInt32BE(0, 0)
  out.writeUInt32BE(Math.floor(counter / 2 ** 32), 4)
  out.writeUInt32BE(counter >>> 0, 8)
  return out
}

/** Seals what we send to one member: its key, the id it gave for it, our counter. */
export class Sealer {
  private readonly nonce = Buffer.alloc(12)
  private aead: OpensslAead | undefined

  constructor(
    private readonly key: Uint8Array,
    private readonly keyId: number,
    /** the next counter: 0 for a new key */
    private counter = 0,
    /** false: node:crypto even where OpenSSL's contexts are available (tests) */
    openssl = true,
  ) {
    this.aead = openssl ? opensslAead(key, true) : undefined
  }

  /** How many datagrams this key sealed (for a new key: since it was made). */
  get sealed(): number {
    return this.counter
  }

  /**
   * The key is retired: zero our copy of it and free OpenSSL's context (which clears its copy);
   * what node:crypto copied for a call is gone with it.
   */
  wipe(): void {
    this.key.fill(0)
    this.aead?.free()
    this.aead = undefined
  }

  /** The datagram (header, ciphertext, tag): one buffer, or its three parts, to send as one. */
  seal(plaintext: Uint8Array): Buffer | [Buffer, Buffer, Buffer] {
    const counter = this.counter++
    nonceOf(counter, this.nonce)
    if (this.aead !== undefined) {
      const n = plaintext.length
      const d = Buffer.allocUnsafe(HEADER_BYTES + n + TAG_BYTES)
      d.writeUInt32BE(this.keyId, 0)
      this.nonce.copy(d, 4, 4, 12)
      this.aead.seal(
        this.nonce,
        plaintext,
        d.subarray(HEADER_BYTES, HEADER_BYTES + n),
        d.subarray(HEADER_BYTES + n),
      )
      return d
    }
    const header = Buffer.allocUnsafe(HEADER_BYTES)
    header.writeUInt32BE(this.keyId, 0)
    this.nonce.copy(header, 4, 4, 12)
    const c = createCipheriv(ALG, this.key, this.nonce, { authTagLength: TAG_BYTES })
    const ct = c.update(plaintext)
    c.final()
    return [header, ct, c.getAuthTag()]
  }
}

export type OpenResult =
  | { ok: true; plaintext: Buffer; counter: number }
  | { ok: false; reason: 'udp-replayed' | 'udp-bad-tag' }

/** Opens what one member sends us: our key for it, and the counters already seen. */
export class Opener {
  readonly window = new ReplayWindow()
  private readonly nonce = Buffer.alloc(12)
  private aead: OpensslAead | undefined

  constructor(
    private readonly key: Uint8Array,
    /** false: node:crypto even where OpenSSL's contexts are available (tests) */
    openssl = true,
  ) {
    this.aead = openssl ? opensslAead(key, false) : undefined
  }

  wipe(): void {
    this.key.fill(0)
    this.aead?.free()
    this.aead = undefined
  }

  /**
   * The plaintext of a datagram whose key id is ours, or why it is dropped. Through OpenSSL the
   * datagram is decrypted in place: its bytes after the header are the plaintext afterwards (or
   * garbage, when it is refused).
   */
  open(d: Uint8Array): OpenResult {
    if (d.length < OVERHEAD) return { ok: false, reason: 'udp-bad-tag' }
    const counter = counterOf(d)
    // a replay or a counter older than the window is dropped before any decryption
    if (!this.window.fresh(counter)) return { ok: false, reason: 'udp-replayed' }
    const tag = d.subarray(d.length - TAG_BYTES)
    let plaintext: Buffer
    if (this.aead !== undefined) {
      plaintext = Buffer.from(d.buffer, d.byteOffset + HEADER_BYTES, d.length - OVERHEAD)
      if (!this.aead.open(nonceOf(counter, this.nonce), plaintext, tag))
        return { ok: false, reason: 'udp-bad-tag' }
    } else {
      const decipher = createDecipheriv(ALG, this.key, nonceOf(counter, this.nonce), {
        authTagLength: TAG_BYTES,
      })
      decipher.setAuthTag(tag)
      plaintext = decipher.update(d.subarray(HEADER_BYTES, d.length - TAG_BYTES))
      try {
        decipher.final()
      } catch {
        return { ok: false, reason: 'udp-bad-tag' }
      }
    }
    // only an authentic datagram moves the window (a forged one must not push real ones out)
    this.window.mark(counter)
    return { ok: true, plaintext, counter }
  }
}

// counters more than this far below the highest one seen are refused: IP packets reordered by
// more than 4096 datagrams are rare enough to lose (WireGuard keeps 8192 - 64)
export const WINDOW = 4096

/** Which counters have been accepted, for the last WINDOW of them (a bitmap ring). */
export class ReplayWindow {
  /** the highest counter accepted, -1 before any */
  top = -1
  private readonly bits = new Uint32Array(WINDOW / 32)

  /** True when `c` was not accepted before and is not too old to tell. */
  fresh(c: number): boolean {
    if (c > this.top) return true
    if (this.top - c >= WINDOW) return false
    const i = c % WINDOW
    return (this.bits[i >>> 5] & (1 << (i & 31))) === 0
  }

  mark(c: number): void {
    if (c > this.top) {
      // the counters between the old top and c have not been seen: clear their bits
      const gap = c - this.top
      if (gap >= WINDOW) this.bits.fill(0)
      else
        for (let k = this.top + 1; k < c; k++) {
          const i = k % WINDOW
          this.bits[i >>> 5] &= ~(1 << (i & 31))
        }
      this.top = c
    }
    const i = c % WINDOW
    this.bits[i >>> 5] |= 1 << (i & 31)
  }
}
