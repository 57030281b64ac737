import assert from 'node:assert/strict'
import fc from 'fast-check'
import { displayNames, overlayAddress, ResolveError, resolveMember } from '../../src/membership/index.js'

const CLUSTER = '00112233445566778899aabbccddeeff'
const A = '12D3KooWAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaQx7Ab1'
const B = '12D3KooWBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbRt9Zq2'
const C = '12D3KooWCcccccccccccccccccccccccccccccccccccccccKp3mX3'

const members = [
  { peerId: B, name: 'web' },
  { peerId: A, name: 'web' },
  { peerId: C, name: 'db' },
]

const ok = <T>(r: T | ResolveError): T => {
  if (r instanceof ResolveError) throw r
  return r
}

describe('membership: names', () => {
  it('resolves a clash deterministically: the smallest peer ID keeps the name', () => {
    const shown = displayNames(members)
    assert.equal(shown.get(A), 'web')
    assert.equal(shown.get(B), 'web-rt9zq2')
    assert.equal(shown.get(C), 'db')
    fc.assert(
      fc.property(fc.shuffledSubarray(members, { minLength: 3 }), (xs) => {
        assert.deepEqual(new Map([...displayNames(xs)].sort()), new Map([...shown].sort()))
      }),
    )
  })

  it('never hands out a suffixed name that another member asserts', () => {
    const shown = displayNames([...members, { peerId: C.replace('X3', 'Y4'), name: 'web-rt9zq2' }])
    assert.equal(shown.get(B), 'web-bbrt9zq2')
    assert.equal(new Set(shown.values()).size, shown.size)
  })

  it('resolves NAME, NAME.mesh, the overlay address in any spelling and the peer ID', () => {
    assert.equal(ok(resolveMember('web', members, CLUSTER)).peerId, A)
    assert.equal(ok(resolveMember('WEB.mesh', members, CLUSTER)).peerId, A)
    assert.equal(ok(resolveMember('web.mesh.', members, CLUSTER)).peerId, A)
    assert.equal(ok(resolveMember('web-rt9zq2.mesh', members, CLUSTER)).peerId, B)
    assert.equal(ok(resolveMember(` ${C} `, members, CLUSTER)).peerId, C)
    const addr = overlayAddress(CLUSTER, C)
    assert.equal(ok(resolveMember(addr, members, CLUSTER)).peerId, C)
    assert.equal(ok(resolveMember(`[${addr.toUpperCase()}]`, members, CLUSTER)).peerId, C)
    const full = addr.split(':')
    assert.equal(full.length, 8, 'no :: expected in this address')
    assert.equal(ok(resolveMember(full.map((g) => g.padStart(4, '0')).join(':'), members, CLUSTER)).peerId, C)
  })

  it('says what is close when nothing matches', () => {
    const r = resolveMember('wbe', members, CLUSTER)
    assert.ok(r instanceof ResolveError)
    assert.equal(r.code, 'not-found')
    assert.deepEqual(r.suggestions, ['web'])
    assert.match(r.message, /no member 'wbe'; did you mean web\?/)
    const pre = resolveMember('we', members, CLUSTER)
    assert.ok(pre instanceof ResolveError)
    assert.deepEqual(pre.suggestions, ['web', 'web-rt9zq2'])
    assert.deepEqual((resolveMember('dbb', members, CLUSTER) as ResolveError).suggestions, ['db'])
    const byId = resolveMember('Kp3mX', members, CLUSTER)
    assert.ok(byId instanceof ResolveError)
    assert.deepEqual(byId.suggestions, [C])
    const none = resolveMember('zzzzzzzz', members, CLUSTER)
    assert.ok(none instanceof ResolveError)
    assert.deepEqual(none.suggestions, [])
    const ip = resolveMember('fd00::1', members, CLUSTER)
    assert.ok(ip instanceof ResolveError && ip.code === 'not-found')
    const empty = resolveMember('  ', members, CLUSTER)
    assert.ok(empty instanceof ResolveError && empty.code === 'empty')
  })

  it('accepts a peer ID in any case (OpenSSH lowercases %h), before any name, never when ambiguous', () => {
    assert.equal(ok(resolveMember(C.toLowerCase(), members, CLUSTER)).peerId, C)
    assert.equal(ok(resolveMember(C.toUpperCase(), members, CLUSTER)).peerId, C)
    // a member that names itself after another's lowercased peer ID does not get its traffic
    const impostor = [...members, { peerId: B.replace('Zq2', 'Zq3'), name: C.toLowerCase() }]
    assert.equal(ok(resolveMember(C.toLowerCase(), impostor, CLUSTER)).peerId, C)
    // two peer IDs equal but for case: the exact spelling still works, a lowercase guess does not
    const twin = [...members, { peerId: C.replace('Kp3mX3', 'kp3mx3'), name: 'twin' }]
    assert.equal(ok(resolveMember(C, twin, CLUSTER)).peerId, C)
    assert.ok(
      resolveMember(C.toLowerCase().replace('kp3mx3', 'KP3MX3'), twin, CLUSTER) instanceof ResolveError,
    )
  })
})
