import '../../src/shim.js'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { opensslAead } from '../../src/overlay/openssl-aead.js'
import { newKey, Opener, OVERHEAD, Sealer } from '../../src/overlay/udp-crypto.js'

const joined = (d: Buffer | Buffer[]) => (Array.isArray(d) ? Buffer.concat(d) : d)
const backends = { openssl: true, 'node:crypto': false } as const
const pairs = [
  ['node:crypto', 'openssl'],
  ['openssl', 'node:crypto'],
  ['openssl', 'openssl'],
  ['node:crypto', 'node:crypto'],
] as const

describe('overlay: ChaCha20-Poly1305 through OpenSSL contexts (openssl-aead.ts) and node:crypto', () => {
  it('is available on this Node (its OpenSSL symbols are exported)', function () {
    if (process.env.MESH_OVERLAY_AEAD === 'node-crypto') this.skip()
    assert.ok(opensslAead(newKey(), true), 'the OpenSSL path did not load: the carrier would use node:crypto')
  })

  it('gives the same datagrams as node:crypto, and each opens what the other sealed', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.nat({ max: 2 ** 32 - 1 }),
        fc.maxSafeNat(),
        fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ minLength: 1200, maxLength: 17_000 })),
        (key, keyId, counter, plaintext) => {
          const viaOpenssl = joined(new Sealer(key.slice(), keyId, counter, true).seal(plaintext))
          const viaNode = joined(new Sealer(key.slice(), keyId, counter, false).seal(plaintext))
          assert.deepEqual(viaOpenssl, viaNode)
          assert.equal(viaOpenssl.length, plaintext.length + OVERHEAD)
          for (const [sealer, opener] of pairs) {
            const d = joined(new Sealer(key.slice(), keyId, counter, backends[sealer]).seal(plaintext))
            const r = new Opener(key.slice(), backends[opener]).open(d)
            assert.ok(r.ok, `${sealer} -> ${opener}`)
            assert.equal(r.counter, counter)
            assert.deepEqual(new Uint8Array(r.plaintext), plaintext)
          }
        },
      ),
      { numRuns: 150 },
    )
  })

  it('seals one counter after another on one context, as node:crypto does', () => {
    const key = newKey()
    const a = new Sealer(key.slice(), 9, 0, true)
    const b = new Sealer(key.slice(), 9, 0, false)
    const o = new Opener(key.slice(), true)
    for (let i = 0; i < 300; i++) {
      const p = Uint8Array.from({ length: (i * 37) % 1500 }, (_, j) => (i + j) & 0xff)
      const d = joined(a.seal(p))
      assert.deepEqual(d, joined(b.seal(p)))
      const r = o.open(d)
      assert.ok(r.ok && r.counter === i)
    }
  })

  it('refuses a wrong tag, a wrong key, a changed byte or counter, a cut datagram, on both paths', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: 1500 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.constantFrom('tag', 'key', 'byte', 'counter', 'cut', 'short'),
        fc.constantFrom(...pairs),
        (key, otherKey, plaintext, where, xor, how, [sealer, opener]) => {
          fc.pre(how !== 'key' || !Buffer.from(key).equals(Buffer.from(otherKey)))
          const d = Buffer.from(joined(new Sealer(key.slice(), 1, 5, backends[sealer]).seal(plaintext)))
          let bad: Buffer = d
          let openKey = key
          if (how === 'tag') d[d.length - 1 - (where % 16)] ^= xor
          else if (how === 'key') openKey = otherKey
          else if (how === 'byte') d[4 + (where % (d.length - 4))] ^= xor
          else if (how === 'counter') d[11] ^= xor
          else if (how === 'cut') bad = d.subarray(0, d.length - 1 - (where % Math.min(d.length - 1, 40)))
          else bad = d.subarray(0, where % OVERHEAD)
          const o = new Opener(openKey.slice(), backends[opener])
          const r = o.open(bad)
          assert.equal(r.ok, false, `${how} through ${sealer} -> ${opener}`)
          // a refused datagram does not move the window: the genuine one still opens
          const genuine = joined(new Sealer(openKey.slice(), 1, 5, backends[sealer]).seal(plaintext))
          assert.ok(o.open(genuine).ok)
        },
      ),
      { numRuns: 400 },
    )
  })

  it('writes no buffer the caller passed in, and gives a new datagram each time', () => {
    const key = newKey()
    const s = new Sealer(key.slice(), 3, 0, true)
    const p = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff)
    const copy = p.slice()
    const d1 = joined(s.seal(p))
    const keep = Buffer.from(d1)
    const d2 = joined(s.seal(p))
    assert.deepEqual(p, copy)
    assert.deepEqual(d1, keep, 'the second seal wrote into the first datagram')
    assert.notDeepEqual(d1, d2)
    // the plaintext of a datagram sealed in one buffer with others around it
    const around = Buffer.concat([Buffer.alloc(7, 0xaa), d2, Buffer.alloc(9, 0xbb)])
    const r = new Opener(key.slice(), true).open(around.subarray(7, 7 + d2.length))
    assert.ok(r.ok)
    assert.deepEqual(new Uint8Array(r.plaintext), p)
    assert.deepEqual(around.subarray(0, 7), Buffer.alloc(7, 0xaa))
    assert.deepEqual(around.subarray(7 + d2.length), Buffer.alloc(9, 0xbb))
  })

  it('after wipe, frees the context and seals or opens without it (the zeroed key, as before)', () => {
    const key = newKey()
    const s = new Sealer(key.slice(), 3, 0, true)
    const o = new Opener(key.slice(), true)
    const d = joined(s.seal(Uint8Array.of(1, 2, 3)))
    s.wipe()
    o.wipe()
    s.wipe()
    const after = joined(s.seal(Uint8Array.of(1, 2, 3)))
    assert.equal(after.length, 3 + OVERHEAD)
    assert.equal(o.open(d).ok, false, 'the wiped key opened a datagram')
    // what a zeroed key seals, node:crypto with a zeroed key opens: the context is really gone
    assert.ok(new Opener(new Uint8Array(32), false).open(after).ok)
  })

  it('falls back to node:crypto where the OpenSSL path is turned off (MESH_OVERLAY_AEAD=node-crypto)', () => {
    const aead = fileURLToPath(new URL('../../src/overlay/openssl-aead.js', import.meta.url))
    const crypto = fileURLToPath(new URL('../../src/overlay/udp-crypto.js', import.meta.url))
    const script = `
      const { opensslAead } = await import(${JSON.stringify(aead)})
      const { Sealer, Opener } = await import(${JSON.stringify(crypto)})
      const key = new Uint8Array(32).fill(7)
      const d = new Sealer(key.slice(), 1).seal(Uint8Array.of(9, 9))
      const r = new Opener(key.slice()).open(Buffer.concat(d))
      console.log(JSON.stringify({ openssl: opensslAead(key, true) !== undefined, parts: d.length, ok: r.ok }))`
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, MESH_OVERLAY_AEAD: 'node-crypto' },
      encoding: 'utf8',
    })
    assert.deepEqual(JSON.parse(out), { openssl: false, parts: 3, ok: true })
  })
})
