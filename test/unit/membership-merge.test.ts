import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import fc from 'fast-check'
import {
  type Claim,
  DAY_MS,
  type Entry,
  ed25519Signer,
  ed25519Verifier,
  effectiveStatus,
  encodeInfo,
  type MemberInfo,
  MemberTable,
  merge,
  normalize,
  nullCrypto,
  overlayAddress,
  type SignedInfo,
  type Signer,
  signClaim,
  signInfo,
  type Verifier,
} from '../../src/membership/index.js'

const PEERS = ['12D3KooWPeerAAAA', '12D3KooWPeerBBBB', '12D3KooWPeerCCCC']
const nullSigner = (p: string): Signer => nullCrypto.signer(p)
const V = nullCrypto.verifier

function info(peerId: string, over: Partial<MemberInfo> = {}): MemberInfo {
  return {
    peerId,
    name: 'node',
    overlay: 'fd00::1',
    addrs: [],
    incarnation: 0,
    status: 'alive',
    version: '0.1.0',
    tags: {},
    computeTypes: [],
    resources: { cpus: 1, memoryBytes: 1, diskFreeBytes: 1 },
    maintenance: false,
    ...over,
  }
}

/** Arbitraries over a few peers, small incarnations and a little content, so ties are common. */
function arbs(ids: string[], signer: (p: string) => Signer) {
  const signed = (peer: fc.Arbitrary<string>) =>
    fc
      .record({
        peerId: peer,
        incarnation: fc.integer({ min: 0, max: 3 }),
        status: fc.constantFrom('alive' as const, 'left' as const),
        name: fc.constantFrom('a', 'b'),
        role: fc.constantFrom('x', 'y'),
      })
      .map(({ peerId, role, ...rest }) => signInfo(info(peerId, { ...rest, tags: { role } }), signer(peerId)))
  const claim = (peer: fc.Arbitrary<string>) =>
    fc
      .record({
        peerId: peer,
        incarnation: fc.integer({ min: 0, max: 3 }),
        status: fc.constantFrom('suspect' as const, 'dead' as const),
        by: fc.constantFrom(...ids),
      })
      .map(({ by, ...c }) => signClaim(c, signer(by)))
  const entry = (peer: fc.Arbitrary<string>): fc.Arbitrary<Entry> =>
    peer.chain((p) =>
      fc
        .tuple(signed(fc.constant(p)), fc.option(claim(fc.constant(p)), { nil: undefined }))
        .map(([s, c]) => normalize(c === undefined ? { signed: s } : { signed: s, claim: c })),
    )
  const anyPeer = fc.constantFrom(...ids)
  const item: fc.Arbitrary<Entry | SignedInfo | Claim> = fc.oneof(
    entry(anyPeer),
    signed(anyPeer),
    claim(anyPeer),
  )
  return { entry: entry(fc.constant(ids[0])), item }
}

function crdtLaws(entry: fc.Arbitrary<Entry>, numRuns: number): void {
  fc.assert(
    fc.property(entry, entry, (a, b) => {
      assert.deepStrictEqual(merge(a, b), merge(b, a))
    }),
    { numRuns },
  )
  fc.assert(
    fc.property(entry, entry, entry, (a, b, c) => {
      assert.deepStrictEqual(merge(merge(a, b), c), merge(a, merge(b, c)))
    }),
    { numRuns },
  )
  fc.assert(
    fc.property(entry, entry, (a, b) => {
      assert.equal(merge(a, a), a)
      // a structurally equal copy is absorbed too, and merging again changes nothing
      assert.deepStrictEqual(merge(a, structuredClone(a)), a)
      const ab = merge(a, b)
      assert.deepStrictEqual(merge(ab, b), ab)
    }),
    { numRuns },
  )
}

function snapshot(t: MemberTable): unknown {
  return [...t.rows()]
    .map((r) => [r.peerId, r.status, r.entry])
    .sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1))
}

function countingVerifier(inner: Verifier): Verifier & { calls: number } {
  const v = {
    calls: 0,
    verify(p: string, b: Uint8Array, s: Uint8Array) {
      v.calls++
      return inner.verify(p, b, s)
    },
  }
  return v
}

describe('membership: merge', () => {
  let keys: PrivateKey[]
  let ids: string[]
  before(async () => {
    keys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')))
    ids = keys.map((k) => peerIdFromPrivateKey(k).toString())
  })
  const realSigner = (p: string): Signer => ed25519Signer(keys[ids.indexOf(p)])

  it('is commutative, associative and idempotent (null crypto)', () => {
    crdtLaws(arbs(PEERS, nullSigner).entry, 500)
  })

  it('is commutative, associative and idempotent (Ed25519)', () => {
    crdtLaws(arbs(ids, realSigner).entry, 100)
  })

  it('effective status: left is final for an incarnation, a current claim wins over alive', () => {
    const p = PEERS[0]
    const s3 = signInfo(info(p, { incarnation: 3 }), nullSigner(p))
    const suspect = signClaim({ peerId: p, incarnation: 3, status: 'suspect' }, nullSigner(PEERS[1]))
    const dead = signClaim({ peerId: p, incarnation: 3, status: 'dead' }, nullSigner(PEERS[2]))
    assert.equal(effectiveStatus({ signed: s3 }), 'alive')
    assert.equal(effectiveStatus({ signed: s3, claim: suspect }), 'suspect')
    assert.equal(effectiveStatus(merge({ signed: s3, claim: suspect }, { signed: s3, claim: dead })), 'dead')
    // refutation: a higher incarnation drops the claim
    const s4 = signInfo(info(p, { incarnation: 4 }), nullSigner(p))
    const refuted = merge({ signed: s3, claim: dead }, { signed: s4 })
    assert.deepStrictEqual(refuted, { signed: s4 })
    const left = signInfo(info(p, { incarnation: 3, status: 'left' }), nullSigner(p))
    assert.equal(effectiveStatus(merge({ signed: s3, claim: dead }, { signed: left })), 'left')
  })
})

describe('membership: table', () => {
  let keys: PrivateKey[]
  let ids: string[]
  before(async () => {
    keys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')))
    ids = keys.map((k) => peerIdFromPrivateKey(k).toString())
  })

  it('rejects a record not signed by its peer, and a claim not signed by its claimant', () => {
    const { item } = arbs(PEERS, nullSigner)
    fc.assert(
      fc.property(item, fc.constantFrom(...PEERS), (x, wrong) => {
        const t = new MemberTable()
        let forged: Entry | SignedInfo | Claim
        if ('info' in x) {
          fc.pre(wrong !== x.info.peerId)
          // a valid signature over the right bytes, by someone else
          forged = { info: x.info, sig: nullSigner(wrong).sign(encodeInfo(x.info)) }
        } else if ('signed' in x) {
          // the record altered after signing
          forged = {
            ...x,
            signed: {
              info: { ...x.signed.info, maintenance: !x.signed.info.maintenance },
              sig: x.signed.sig,
            },
          }
        } else {
          fc.pre(wrong !== x.by)
          // attributed to someone who did not sign it
          forged = { ...x, by: wrong }
        }
        const r = t.ingest(forged, V, 0)
        assert.equal(r.change, undefined)
        assert.equal(r.outcome, 'bad-signature')
        assert.equal(t.size, 0)
      }),
      { numRuns: 300 },
    )
    // with real keys: b signs a's record
    const t = new MemberTable()
    const v = ed25519Verifier()
    const mine = signInfo(info(ids[0]), ed25519Signer(keys[0]))
    const bySomeoneElse = {
      info: mine.info,
      sig: ed25519Signer(keys[1]).sign(new TextEncoder().encode('nope')),
    }
    assert.equal(t.apply(bySomeoneElse, v, 0), undefined)
    assert.equal(t.outcomes['bad-signature'], 1)
    assert.equal(t.apply(mine, v, 0)?.after, 'alive')
    const claim = signClaim({ peerId: ids[0], incarnation: 0, status: 'dead' }, ed25519Signer(keys[1]))
    assert.equal(t.apply({ ...claim, by: ids[2] }, v, 1), undefined)
    assert.equal(t.status(ids[0]), 'alive')
    assert.equal(t.apply(claim, v, 1)?.after, 'dead')
  })

  it('ends in the same state for any delivery order', () => {
    const { item } = arbs(PEERS, nullSigner)
    fc.assert(
      fc.property(
        fc
          .array(item, { maxLength: 12 })
          .chain((xs) => fc.tuple(fc.constant(xs), fc.shuffledSubarray(xs, { minLength: xs.length }))),
        ([xs, ys]) => {
          const a = new MemberTable()
          const b = new MemberTable()
          for (const x of xs) a.apply(x, V, 0)
          for (const y of ys) b.apply(y, V, 0)
          assert.deepStrictEqual(snapshot(a), snapshot(b))
          assert.deepStrictEqual(a.counts(), b.counts())
        },
      ),
      { numRuns: 300 },
    )
  })

  it('push-pull: exchanging diffs of digests makes two tables equal', () => {
    const { item } = arbs(PEERS, nullSigner)
    fc.assert(
      fc.property(fc.array(item, { maxLength: 10 }), fc.array(item, { maxLength: 10 }), (xs, ys) => {
        const a = new MemberTable()
        const b = new MemberTable()
        for (const x of xs) a.apply(x, V, 0)
        for (const y of ys) b.apply(y, V, 0)
        // a -> b: digest; b -> a: what a lacks, and b's digest; a -> b: what b lacks
        for (const e of b.diff(a.digest())) a.apply(e, V, 1)
        for (const e of a.diff(b.digest())) b.apply(e, V, 1)
        assert.deepStrictEqual(snapshot(a), snapshot(b))
        assert.deepStrictEqual(a.diff(b.digest()), [])
        assert.deepStrictEqual(b.diff(a.digest()), [])
      }),
      { numRuns: 500 },
    )
  })

  it('reports changes, counts by status and skips verifying duplicates', () => {
    const [p, q, r] = PEERS
    const t = new MemberTable()
    const v = countingVerifier(V)
    const s0 = signInfo(info(p), nullSigner(p))
    assert.deepStrictEqual(t.apply(s0, v, 10), {
      peerId: p,
      before: undefined,
      after: 'alive',
      entry: { signed: s0 },
    })
    assert.equal(t.apply(structuredClone(s0), v, 11), undefined)
    assert.equal(t.outcomes.duplicate, 1)
    assert.equal(v.calls, 1)
    t.apply(signInfo(info(q), nullSigner(q)), v, 10)

    const sus = signClaim({ peerId: p, incarnation: 0, status: 'suspect' }, nullSigner(q))
    const c1 = t.apply(sus, v, 20)
    assert.equal(c1?.before, 'alive')
    assert.equal(c1?.after, 'suspect')
    assert.equal(t.row(p)?.since, 20)
    assert.deepStrictEqual({ ...t.counts() }, { alive: 1, suspect: 1, dead: 0, left: 0 })
    // the same suspicion from another member changes the entry, not the status
    const c2 = t.apply(signClaim({ peerId: p, incarnation: 0, status: 'suspect' }, nullSigner(r)), v, 21)
    assert.equal(c2?.before, 'suspect')
    assert.equal(c2?.after, 'suspect')
    assert.equal(t.row(p)?.since, 20)

    // refutation
    const s1 = signInfo(info(p, { incarnation: 1 }), nullSigner(p))
    assert.equal(t.apply(s1, v, 30)?.after, 'alive')
    // the old claim is now stale
    assert.equal(t.apply(sus, v, 31), undefined)
    assert.equal(t.outcomes.stale, 1)
    assert.equal(t.apply(s0, v, 31), undefined)

    const left = signInfo(info(q, { incarnation: 1, status: 'left' }), nullSigner(q))
    assert.equal(t.apply(left, v, 40)?.after, 'left')
    assert.deepStrictEqual([...t.entries('left')], [{ signed: left }])
    assert.deepStrictEqual({ ...t.counts() }, { alive: 1, suspect: 0, dead: 0, left: 1 })
  })

  it('holds a claim that overtakes the record it is about', () => {
    const [p, q] = PEERS
    const t = new MemberTable()
    const dead = signClaim({ peerId: p, incarnation: 2, status: 'dead' }, nullSigner(q))
    assert.equal(t.ingest(dead, V, 0).outcome, 'unknown-peer')
    assert.equal(t.size, 0)
    assert.equal(t.apply(signInfo(info(p, { incarnation: 2 }), nullSigner(p)), V, 1)?.after, 'dead')
  })

  it('reaps tombstones after the grace period and does not let old copies resurrect them', () => {
    const [p, q] = PEERS
    const t = new MemberTable()
    const s = signInfo(info(p, { incarnation: 1 }), nullSigner(p))
    const dead = signClaim({ peerId: p, incarnation: 1, status: 'dead' }, nullSigner(q))
    t.apply(s, V, 0)
    t.apply(dead, V, 1000)
    assert.deepStrictEqual(t.reap(1000 + DAY_MS - 1), [])
    assert.deepStrictEqual(t.reap(1000 + DAY_MS), [p])
    assert.equal(t.size, 0)
    assert.deepStrictEqual({ ...t.counts() }, { alive: 0, suspect: 0, dead: 0, left: 0 })
    // a member that has not reaped yet pushes its copy back: ignored
    assert.equal(t.apply({ signed: s, claim: dead }, V, 1000 + DAY_MS + 5), undefined)
    assert.equal(t.apply(s, V, 1000 + DAY_MS + 5), undefined)
    assert.equal(t.size, 0)
    // but the member coming back with a higher incarnation is news
    const back = signInfo(info(p, { incarnation: 2 }), nullSigner(p))
    assert.deepStrictEqual(t.apply(back, V, 2 * DAY_MS), {
      peerId: p,
      before: undefined,
      after: 'alive',
      entry: { signed: back },
    })
    // reaped and forgotten after a second period: then anything is new again
    t.apply(signClaim({ peerId: p, incarnation: 2, status: 'dead' }, nullSigner(q)), V, 3 * DAY_MS)
    assert.deepStrictEqual(t.reap(4 * DAY_MS), [p])
    t.reap(5 * DAY_MS)
    assert.equal(t.apply(back, V, 5 * DAY_MS)?.after, 'alive')
  })

  it('indexed by member number, holds, lists and diffs exactly what a table by peer ID does', () => {
    const { item } = arbs(PEERS, nullSigner)
    const op = fc.oneof(
      { weight: 6, arbitrary: item.map((x) => ({ apply: x })) },
      { weight: 1, arbitrary: fc.constantFrom(...PEERS).map((p) => ({ forget: p })) },
      { weight: 1, arbitrary: fc.constant({ reap: true }) },
    )
    const view = (t: MemberTable, other: MemberTable) => ({
      rows: [...t.rows()].map((r) => [r.peerId, r.status, r.since, r.entry]),
      digest: t.digest(),
      diff: t.diff(other.digest()),
      counts: { ...t.counts() },
      outcomes: { ...t.outcomes },
    })
    fc.assert(
      fc.property(fc.array(op, { maxLength: 16 }), fc.array(item, { maxLength: 6 }), (ops, ys) => {
        const byId = new MemberTable()
        const byIndex = new MemberTable({ index: (p) => PEERS.indexOf(p) })
        const other = new MemberTable()
        for (const y of ys) other.apply(y, V, 0)
        ops.forEach((o, i) => {
          // a day per step, so that reaping hides and forgets rows
          for (const t of [byId, byIndex]) {
            if ('apply' in o) t.apply(o.apply, V, i * DAY_MS)
            else if ('forget' in o) t.forget(o.forget)
            else t.reap(i * DAY_MS)
          }
        })
        assert.deepStrictEqual(view(byIndex, other), view(byId, other))
        // the rows by index (what the simulator reads) are the listed rows, each at its index
        const at = byIndex.rowsByIndex()!
        assert.deepStrictEqual(
          [...byIndex.rows()].map((r) => at[PEERS.indexOf(r.peerId)] === r),
          [...byIndex.rows()].map(() => true),
        )
        assert.equal(at.filter((r) => r !== undefined).length, byIndex.size)
        assert.equal(byId.rowsByIndex(), undefined)
      }),
      { numRuns: 500 },
    )
  })

  it('checks overlay addresses and refuses revoked peers when asked to', () => {
    const [p, q] = PEERS
    const cluster = '00112233445566778899aabbccddeeff'
    const t = new MemberTable({ clusterId: cluster, refuse: (id) => id === q })
    assert.equal(t.ingest(signInfo(info(p), nullSigner(p)), V, 0).outcome, 'invalid')
    const ok = signInfo(info(p, { overlay: overlayAddress(cluster, p) }), nullSigner(p))
    assert.equal(t.ingest(ok, V, 0).outcome, 'changed')
    assert.equal(
      t.ingest(signInfo(info(q, { overlay: overlayAddress(cluster, q) }), nullSigner(q)), V, 0).outcome,
      'refused',
    )
    assert.equal(
      t.ingest(signClaim({ peerId: p, incarnation: 0, status: 'dead' }, nullSigner(q)), V, 0).outcome,
      'refused',
    )
    assert.equal(t.ingest({ nonsense: true } as unknown as Claim, V, 0).outcome, 'invalid')
    assert.equal(t.status(p), 'alive')
    assert.ok(t.forget(p))
    assert.equal(t.size, 0)
  })
})
