import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import fc from 'fast-check'
import { cidOf } from '../../src/blocks/cid.js'
import { BlocksError } from '../../src/blocks/errors.js'
import { placement, quorum, rank, rankedAbove } from '../../src/blocks/replication.js'
import { compareTags, parseRef, signTag, type Tag, TagStore, verifyTag } from '../../src/blocks/tags.js'

const CLUSTER = '0123456789abcdef0123456789abcdef'
const roots = ['a', 'b', 'c', 'd'].map((x) => cidOf(new TextEncoder().encode(x)).toString())

describe('blocks: tags', () => {
  let keys: PrivateKey[]
  before(async () => {
    keys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')))
  })

  const rec = (k: number, root: number, seq: number, tag = 'v1'): Tag =>
    signTag(keys[k], CLUSTER, {
      dataset: 'maps',
      tag,
      root: roots[root],
      seq: BigInt(seq),
      time: BigInt(1000 + k),
      replicas: 0,
    })

  it('signs and verifies; any change breaks the signature; another cluster does not accept it', () => {
    const t = rec(0, 0, 1)
    assert.ok(verifyTag(CLUSTER, t))
    assert.ok(!verifyTag('ffffffffffffffffffffffffffffffff', t))
    assert.ok(!verifyTag(CLUSTER, { ...t, root: roots[1] }))
    assert.ok(!verifyTag(CLUSTER, { ...t, seq: 2n }))
    assert.ok(!verifyTag(CLUSTER, { ...t, publisher: rec(1, 0, 1).publisher }))
    const s = new TagStore(CLUSTER)
    assert.equal(s.apply({ ...t, tag: 'v2' }), 'invalid')
  })

  it('the newest wins: higher seq, then a total order on the rest; stale and duplicates are kept out', () => {
    const s = new TagStore(CLUSTER)
    assert.equal(s.apply(rec(0, 0, 1)), 'new')
    assert.equal(s.apply(rec(0, 0, 1)), 'duplicate')
    assert.equal(s.apply(rec(1, 1, 2)), 'new')
    assert.equal(s.apply(rec(2, 3, 1)), 'stale')
    assert.equal(s.get('maps', 'v1')?.root, roots[1])
    assert.equal(s.nextSeq('maps', 'v1'), 3n)
  })

  it('property: every delivery order gives every member the same record', () => {
    const all = [
      rec(0, 0, 1),
      rec(1, 1, 1),
      rec(2, 2, 1),
      rec(0, 3, 2),
      rec(1, 2, 2),
      rec(2, 0, 1, 'v2'),
      rec(1, 1, 3, 'v2'),
    ]
    const expected = (() => {
      const s = new TagStore(CLUSTER)
      for (const t of all) s.apply(t)
      return s.all()
    })()
    fc.assert(
      fc.property(
        fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length }),
        fc.array(fc.nat(all.length - 1)),
        (order, dups) => {
          const s = new TagStore(CLUSTER)
          for (const t of [...order, ...dups.map((i) => all[i])]) s.apply(t)
          assert.deepEqual(s.all(), expected)
        },
      ),
    )
    assert.equal(expected.find((t) => t.tag === 'v1')?.seq, 2n)
    // equal seq: compareTags is antisymmetric
    assert.equal(Math.sign(compareTags(all[0], all[1])), -Math.sign(compareTags(all[1], all[0])))
  })

  it('a revoked publisher is refused', () => {
    const bad = rec(2, 0, 5)
    const s = new TagStore(CLUSTER, undefined, (p) => p === bad.publisher)
    assert.equal(s.apply(bad), 'refused')
  })

  it('references: CID, DATASET:TAG, /PATH', () => {
    assert.deepEqual(parseRef('maps:v2'), { kind: 'tag', dataset: 'maps', tag: 'v2', path: undefined })
    assert.equal(parseRef(roots[0]).kind, 'cid')
    const r = parseRef(`maps:v2/a/b.txt`, true)
    assert.equal(r.path, 'a/b.txt')
    assert.throws(() => parseRef('maps:v2/a'), BlocksError)
    assert.throws(() => parseRef('Maps:v2'), /invalid dataset name/)
    assert.throws(() => parseRef('maps:'), /invalid tag/)
    assert.throws(() => parseRef('nope'), /is not a CID/)
  })
})

describe('blocks: replica placement', () => {
  const peers = Array.from({ length: 12 }, (_, i) => `12D3KooWPeer${String(i).padStart(4, '0')}`)

  it('quorum is a majority', () => {
    assert.deepEqual([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3])
  })

  it('rank is the same for any input order', () => {
    fc.assert(
      fc.property(
        fc.shuffledSubarray(peers, { minLength: peers.length, maxLength: peers.length }),
        (order) => {
          assert.deepEqual(rank(roots[0], order), rank(roots[0], peers))
        },
      ),
    )
  })

  it('placement takes the top N alive and names the ideal holders that are down', () => {
    const members = peers.map((p) => ({ peerId: p, status: 'alive' as const }))
    const r = rank(roots[1], peers)
    const all = placement(roots[1], 3, members)
    assert.deepEqual(all.targets, r.slice(0, 3))
    assert.deepEqual(all.missing, [])
    const down = members.map((m) => (m.peerId === r[0] ? { ...m, status: 'dead' as const } : m))
    const p = placement(roots[1], 3, down)
    assert.deepEqual(p.targets, r.slice(1, 4))
    assert.deepEqual(p.missing, [{ peerId: r[0], status: 'dead' }])
  })

  it('property: a member leaving moves only its own copy (minimal disruption)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 11 }),
        (ri, n, gone) => {
          const before = rank(roots[ri], peers).slice(0, n)
          const after = rank(
            roots[ri],
            peers.filter((_, i) => i !== gone),
          ).slice(0, n)
          const moved = after.filter((p) => !before.includes(p))
          assert.ok(moved.length <= (before.includes(peers[gone]) ? 1 : 0))
        },
      ),
    )
  })

  it('rankedAbove lists who must be asked before repairing', () => {
    const r = rank(roots[2], peers)
    assert.deepEqual(
      rankedAbove(
        roots[2],
        r[3],
        peers.filter((p) => p !== r[3]),
        10,
      ),
      r.slice(0, 3),
    )
    assert.deepEqual(rankedAbove(roots[2], r[0], peers, 10), [])
  })
})
