/**
 * ChaCha20-Poly1305 (RFC 8439: 12-byte nonce, 16-byte tag, no associated data) through the
 * OpenSSL that Node itself carries, called through koffi: one EVP_CIPHER_CTX per key, kept for
 * the key's life, and only the nonce set per datagram. node:crypto builds a cipher object per
 * datagram instead (it cannot reset a nonce), which is most of a cold seal (sim/PROFILE.md,
 * issue 15.7). The bytes are node:crypto's; where the symbols are missing (a Node built another
 * way, a FIPS-only OpenSSL) or do not give node:crypto's bytes, `opensslAead` answers undefined
 * and the caller keeps node:crypto.
 */
import { createCipheriv } from 'node:crypto'
import { createRequire } from 'node:module'

const TAG = 16
const EVP_CTRL_AEAD_SET_TAG = 0x11
const EVP_CTRL_AEAD_GET_TAG = 0x10

type Ptr = unknown
interface Evp {
  ctxNew(): Ptr
  ctxFree(ctx: Ptr): void
  cipher(): Ptr
  init(
    ctx: Ptr,
    cipher: Ptr,
    engine: null,
    key: Uint8Array | null,
    iv: Uint8Array | null,
    enc: number,
  ): number
  encUpdate(ctx: Ptr, out: Uint8Array, outl: Int32Array, inp: Uint8Array, inl: number): number
  encFinal(ctx: Ptr, out: Uint8Array, outl: Int32Array): number
  decUpdate(ctx: Ptr, out: Uint8Array, outl: Int32Array, inp: Uint8Array, inl: number): number
  decFinal(ctx: Ptr, out: Uint8Array, outl: Int32Array): number
  ctrl(ctx: Ptr, type: number, arg: number, ptr: Uint8Array): number
}

function bind(): Evp {
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
  // the process's own symbols: node links OpenSSL in and exports it (for addons)
  const self = koffi.load(null)
  // each is typed by the Evp interface it fills
  const f = (proto: string): never => self.func(proto) as never
  return {
    ctxNew: f('void *EVP_CIPHER_CTX_new()'),
    ctxFree: f('void EVP_CIPHER_CTX_free(void *ctx)'),
    cipher: f('void *EVP_chacha20_poly1305()'),
    init: f(
      'int EVP_CipherInit_ex(void *ctx, void *cipher, void *engine, const uint8_t *key, const uint8_t *iv, int enc)',
    ),
    encUpdate: f('int EVP_EncryptUpdate(void *ctx, uint8_t *out, int *outl, const uint8_t *in, int inl)'),
    encFinal: f('int EVP_EncryptFinal_ex(void *ctx, uint8_t *out, int *outl)'),
    decUpdate: f('int EVP_DecryptUpdate(void *ctx, uint8_t *out, int *outl, const uint8_t *in, int inl)'),
    decFinal: f('int EVP_DecryptFinal_ex(void *ctx, uint8_t *out, int *outl)'),
    ctrl: f('int EVP_CIPHER_CTX_ctrl(void *ctx, int type, int arg, uint8_t *ptr)'),
  }
}

// a context a caller dropped without free() is freed when it is collected
const orphans = new FinalizationRegistry<{ evp: Evp; ctx: Ptr }>(({ evp, ctx }) => evp.ctxFree(ctx))

/** One key, one direction (seal or open), one OpenSSL context. */
export class OpensslAead {
  private ctx: Ptr
  private readonly outl = new Int32Array(1)
  private readonly scratch = new Uint8Array(TAG)
  private readonly token = {}

  constructor(
    private readonly evp: Evp,
    key: Uint8Array,
    private readonly encrypt: boolean,
  ) {
    const ctx = evp.ctxNew()
    if (ctx === null) throw new Error('EVP_CIPHER_CTX_new failed')
    // the key is set once; OpenSSL keeps its own copy, cleared by EVP_CIPHER_CTX_free
    if (evp.init(ctx, evp.cipher(), null, key, null, encrypt ? 1 : 0) !== 1) {
      evp.ctxFree(ctx)
      throw new Error('EVP_CipherInit_ex failed for chacha20-poly1305')
    }
    this.ctx = ctx
    orphans.register(this, { evp, ctx }, this.token)
  }

  /** Encrypts `plaintext` into `ct` (as long; not the same memory) and writes the tag to `tag`. */
  seal(nonce: Uint8Array, plaintext: Uint8Array, ct: Uint8Array, tag: Uint8Array): void {
    const { evp, ctx, outl } = this
    if (ctx === null || !this.encrypt) throw new Error('not a sealing context')
    // a new nonce restarts the cipher and Poly1305 under the key already set
    let ok = evp.init(ctx, null, null, null, nonce, 1) === 1
    if (ok && plaintext.length > 0) ok = evp.encUpdate(ctx, ct, outl, plaintext, plaintext.length) === 1
    ok &&= evp.encFinal(ctx, this.scratch, outl) === 1
    ok &&= evp.ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG, tag) === 1
    if (!ok) throw new Error('chacha20-poly1305 seal failed in OpenSSL')
  }

  /**
   * Decrypts `body` in place when `tag` is its tag under `nonce`; false otherwise (the bytes of
   * `body` are then garbage: the caller drops them).
   */
  open(nonce: Uint8Array, body: Uint8Array, tag: Uint8Array): boolean {
    const { evp, ctx, outl } = this
    if (ctx === null || this.encrypt) throw new Error('not an opening context')
    if (evp.init(ctx, null, null, null, nonce, 0) !== 1) return false
    if (evp.ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG, tag) !== 1) return false
    if (body.length > 0 && evp.decUpdate(ctx, body, outl, body, body.length) !== 1) return false
    return evp.decFinal(ctx, this.scratch, outl) === 1
  }

  /** Frees the context; OpenSSL clears its copy of the key. Nothing works after this. */
  free(): void {
    if (this.ctx === null) return
    orphans.unregister(this.token)
    this.evp.ctxFree(this.ctx)
    this.ctx = null
  }
}

/** The bindings, once they gave node:crypto's bytes for a known input; null where they cannot. */
let evp: Evp | null | undefined

function check(e: Evp): boolean {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i + 1)
  const nonce = Uint8Array.from({ length: 12 }, (_, i) => (i < 4 ? 0 : i * 7))
  const plaintext = Uint8Array.from({ length: 97 }, (_, i) => (i * 31) & 0xff)
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG })
  const want = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()])
  const got = new Uint8Array(plaintext.length + TAG)
  const sealer = new OpensslAead(e, key, true)
  const opener = new OpensslAead(e, key, false)
  try {
    for (let round = 0; round < 2; round++) {
      sealer.seal(nonce, plaintext, got.subarray(0, plaintext.length), got.subarray(plaintext.length))
      if (!want.equals(got)) return false
    }
    const body = got.slice(0, plaintext.length)
    if (!opener.open(nonce, body, got.subarray(plaintext.length))) return false
    if (!Buffer.from(body).equals(Buffer.from(plaintext))) return false
    const forged = got.slice(plaintext.length)
    forged[0] ^= 1
    return !opener.open(nonce, got.slice(0, plaintext.length), forged)
  } finally {
    sealer.free()
    opener.free()
  }
}

/**
 * A context for `key` through OpenSSL, or undefined where that path is not available or is
 * turned off (MESH_OVERLAY_AEAD=node-crypto, for comparisons).
 */
export function opensslAead(key: Uint8Array, encrypt: boolean): OpensslAead | undefined {
  if (evp === undefined) {
    evp = null
    if (process.env.MESH_OVERLAY_AEAD !== 'node-crypto') {
      try {
        const e = bind()
        if (check(e)) evp = e
      } catch {}
    }
  }
  if (evp === null) return undefined
  try {
    return new OpensslAead(evp, key, encrypt)
  } catch {
    // OpenSSL out of memory for a context: this key goes through node:crypto
    return undefined
  }
}
