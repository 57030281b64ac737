import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import {
  CLAIM_DOMAIN,
  checkClaim,
  checkInfo,
  checkSize,
  ed25519Signer,
  ed25519Verifier,
  encodeClaim,
  encodeInfo,
  INFO_DOMAIN,
  LIMITS,
  type MemberInfo,
  nullCrypto,
  signClaim,
  signInfo,
  verifyClaim,
  verifyInfo,
} from '../../src/membership/index.js'

const dec = new TextDecoder()

function info(peerId: string, over: Partial<MemberInfo> = {}): MemberInfo {
  return {
    peerId,
    name: 'web-1',
    overlay: 'fd00::1',
    addrs: ['/ip4/198.18.0.1/tcp/4001'],
    incarnation: 3,
    status: 'alive',
    version: '0.1.0',
    tags: { role: 'web', dc: 'lab' },
    computeTypes: ['docker'],
    resources: { cpus: 4, memoryBytes: 8 * 2 ** 30, diskFreeBytes: 100 * 2 ** 30 },
    maintenance: false,
    ...over,
  }
}

describe('membership: records', () => {
  it('encodes canonically: key order and tag order do not matter', () => {
    const a = info('12D3KooWAAAAAAAA', { tags: { a: '1', b: '2' } })
    const b: MemberInfo = JSON.parse(JSON.stringify({ ...a, tags: { b: '2', a: '1' } }))
    const shuffled = Object.fromEntries(Object.entries(b).reverse()) as unknown as MemberInfo
    assert.deepEqual(encodeInfo(a), encodeInfo(shuffled))
    const text = dec.decode(encodeInfo(a))
    assert.ok(text.startsWith(`${INFO_DOMAIN}\n{"addrs":`))
    assert.ok(text.includes('"tags":{"a":"1","b":"2"}'))
  })

  it('separates domains: record and claim bytes never collide', () => {
    const c = { peerId: '12D3KooWAAAAAAAA', incarnation: 1, status: 'dead' as const, by: '12D3KooWBBBBBBBB' }
    assert.ok(dec.decode(encodeClaim(c)).startsWith(`${CLAIM_DOMAIN}\n`))
    assert.notEqual(INFO_DOMAIN, CLAIM_DOMAIN)
  })

  it('signs and verifies with real Ed25519 keys, and rejects tampering and the wrong signer', async () => {
    const ka = await generateKeyPair('Ed25519')
    const kb = await generateKeyPair('Ed25519')
    const a = peerIdFromPrivateKey(ka).toString()
    const b = peerIdFromPrivateKey(kb).toString()
    const v = ed25519Verifier()
    const s = signInfo(info(a), ed25519Signer(ka))
    assert.equal(s.sig.length, 64)
    assert.ok(verifyInfo(s, v))
    assert.ok(Object.isFrozen(s.info))
    // the same content signed by b, but attributed to a
    const forged = { info: s.info, sig: ed25519Signer(kb).sign(encodeInfo(s.info)) }
    assert.equal(verifyInfo(forged, v), false)
    const tampered = { info: { ...s.info, incarnation: 4 }, sig: s.sig }
    assert.equal(verifyInfo(tampered, v), false)
    assert.throws(() => signInfo(info(a), ed25519Signer(kb)), /cannot sign/)

    const c = signClaim({ peerId: a, incarnation: 3, status: 'suspect' }, ed25519Signer(kb))
    assert.equal(c.by, b)
    assert.ok(verifyClaim(c, v))
    assert.equal(verifyClaim({ ...c, status: 'dead' }, v), false)
    assert.equal(verifyClaim({ ...c, by: a }, v), false)
    assert.equal(v.verify('not-a-peer-id', encodeInfo(s.info), s.sig), false)
  })

  it('null crypto binds records to their signer and content', () => {
    const s = signInfo(info('12D3KooWAAAAAAAA'), nullCrypto.signer('12D3KooWAAAAAAAA'))
    assert.ok(verifyInfo(s, nullCrypto.verifier))
    assert.equal(verifyInfo({ info: { ...s.info, name: 'other' }, sig: s.sig }, nullCrypto.verifier), false)
    const other = nullCrypto.signer('12D3KooWBBBBBBBB').sign(encodeInfo(s.info))
    assert.equal(verifyInfo({ info: s.info, sig: other }, nullCrypto.verifier), false)
  })

  it('rejects malformed and oversized records', () => {
    const p = '12D3KooWAAAAAAAA'
    assert.equal(checkInfo(info(p)), undefined)
    const bad: Array<[string, unknown]> = [
      ['not an object', 'x'],
      ['upper-case name', info(p, { name: 'Web' })],
      ['name too long', info(p, { name: 'a'.repeat(64) })],
      ['name with a dot', info(p, { name: 'a.b' })],
      ['negative incarnation', info(p, { incarnation: -1 })],
      ['fractional incarnation', info(p, { incarnation: 1.5 })],
      ['suspect is not self-asserted', { ...info(p), status: 'suspect' }],
      [
        'too many addrs',
        info(p, { addrs: Array.from({ length: LIMITS.addrs + 1 }, (_, i) => `/ip4/1.1.1.1/tcp/${i}`) }),
      ],
      ['long addr', info(p, { addrs: [`/dns4/${'a'.repeat(LIMITS.addr)}`] })],
      [
        'too many tags',
        info(p, {
          tags: Object.fromEntries(Array.from({ length: LIMITS.tags + 1 }, (_, i) => [`k${i}`, 'v'])),
        }),
      ],
      ['proto tag key', info(p, { tags: JSON.parse('{"__proto__":"x"}') })],
      ['control char in tag value', info(p, { tags: { a: 'x\u001b[2J' } })],
      ['extra field', { ...info(p), extra: 1 }],
      ['missing field', (({ version: _, ...rest }) => rest)(info(p))],
      ['NaN cpus', info(p, { resources: { cpus: Number.NaN, memoryBytes: 0, diskFreeBytes: 0 } })],
      ['bad peer id', info('no spaces allowed')],
    ]
    for (const [why, x] of bad) assert.notEqual(checkInfo(x), undefined, why)

    // every field within its bound, but the whole too large
    const big = info(p, {
      addrs: Array.from({ length: LIMITS.addrs }, (_, i) => `/dns4/${'a'.repeat(200)}${i}/tcp/1`),
      tags: Object.fromEntries(
        Array.from({ length: LIMITS.tags }, (_, i) => [`k${i}`, 'v'.repeat(LIMITS.tagValue)]),
      ),
    })
    assert.equal(checkInfo(big), undefined)
    assert.match(checkSize(big) ?? '', /too large/)
    assert.throws(() => signInfo(big, nullCrypto.signer(p)), /too large/)

    assert.equal(
      checkClaim({ peerId: p, incarnation: 0, status: 'suspect', by: p, sig: new Uint8Array(64) }),
      undefined,
    )
    assert.notEqual(
      checkClaim({ peerId: p, incarnation: 0, status: 'alive', by: p, sig: new Uint8Array(64) }),
      undefined,
    )
    assert.notEqual(
      checkClaim({ peerId: p, incarnation: 0, status: 'dead', by: p, sig: new Uint8Array(999) }),
      undefined,
    )
  })
})
