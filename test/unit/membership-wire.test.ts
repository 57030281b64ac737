// Membership messages off the wire: malformed input (oversized, truncated, unsigned, wrongly
// signed, wrong domain, replayed) goes through wire.ts and the MemberTable exactly as the
// membership service feeds it (protobuf MemberSet -> fromWireInfo / fromWireClaim -> ingest).
// Every bad input must end as a WireError or a non-'changed' table outcome; nothing else may
// throw, and the table must not move.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import fc from 'fast-check'
import { MemberSet, type Signed } from '../../protocols/membership.js'
import { type Entry, MemberTable, type Outcome } from '../../src/membership/merge.js'
import { overlayAddress } from '../../src/membership/overlay.js'
import {
  CLAIM_DOMAIN,
  type Claim,
  ed25519Signer,
  ed25519Verifier,
  encodeClaim,
  encodeInfo,
  INFO_DOMAIN,
  LIMITS,
  type MemberInfo,
  type SignedInfo,
  type Signer,
  signClaim,
  signInfo,
} from '../../src/membership/record.js'
import { fromWireClaim, fromWireInfo, toWireClaim, toWireInfo, WireError } from '../../src/membership/wire.js'

const CLUSTER = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'
const enc = new TextEncoder()
const dec = new TextDecoder()
const verifier = ed25519Verifier()

interface Peer {
  key: PrivateKey
  id: string
  signer: Signer
}

async function peer(): Promise<Peer> {
  const key = await generateKeyPair('Ed25519')
  return { key, id: peerIdFromPrivateKey(key).toString(), signer: ed25519Signer(key) }
}

function info(p: Peer, over: Partial<MemberInfo> = {}): MemberInfo {
  return {
    peerId: p.id,
    name: 'node',
    overlay: overlayAddress(CLUSTER, p.id),
    addrs: ['/ip4/127.0.0.1/tcp/4701'],
    incarnation: 1,
    status: 'alive',
    version: '0.1.0',
    tags: { role: 'web' },
    computeTypes: [],
    resources: { cpus: 2, memoryBytes: 1 << 30, diskFreeBytes: 1 << 30 },
    maintenance: false,
    ...over,
  }
}

const table = () => new MemberTable({ clusterId: CLUSTER })

/** How one input ended: rejected by the wire decoder (with its reason), or the table's outcome. */
type Ending = { stage: 'wire'; reason: string } | { stage: 'table'; outcome: Outcome; reason?: string }

/** What the service does with one record off the wire. Any exception but WireError fails the test. */
function receiveRecord(t: MemberTable, s: Signed, now = 1000): Ending {
  let signed: SignedInfo
  try {
    signed = fromWireInfo(s)
  } catch (err) {
    assert.ok(
      err instanceof WireError,
      `fromWireInfo threw a ${(err as Error)?.name}: ${(err as Error)?.message}`,
    )
    return { stage: 'wire', reason: err.message }
  }
  const r = t.ingest(signed, verifier, now)
  return { stage: 'table', outcome: r.outcome, reason: r.reason }
}

function receiveClaim(t: MemberTable, s: Signed, now = 1000): Ending {
  let claim: Claim
  try {
    claim = fromWireClaim(s)
  } catch (err) {
    assert.ok(
      err instanceof WireError,
      `fromWireClaim threw a ${(err as Error)?.name}: ${(err as Error)?.message}`,
    )
    return { stage: 'wire', reason: err.message }
  }
  const r = t.ingest(claim, verifier, now)
  return { stage: 'table', outcome: r.outcome, reason: r.reason }
}

/** The gossip path: bytes -> MemberSet (with the service's limits) -> every record and claim. */
function receiveSet(t: MemberTable, bytes: Uint8Array): { decoded: boolean; endings: Ending[] } {
  let set: MemberSet
  try {
    set = MemberSet.decode(bytes, { limits: { records: 1024, claims: 1024 } })
  } catch {
    return { decoded: false, endings: [] }
  }
  return {
    decoded: true,
    endings: [...set.records.map((r) => receiveRecord(t, r)), ...set.claims.map((c) => receiveClaim(t, c))],
  }
}

/** Everything about the table that a bad input must leave as it was. */
function snapshot(t: MemberTable): string {
  return JSON.stringify(
    [...t.rows()].map((r) => ({
      peerId: r.peerId,
      status: r.status,
      since: r.since,
      body: dec.decode(encodeInfo(r.entry.signed.info)),
      sig: Buffer.from(r.entry.signed.sig).toString('hex'),
      claim: r.entry.claim === undefined ? null : dec.decode(encodeClaim(r.entry.claim)),
    })),
  )
}

const wire = (body: Uint8Array | string, sig: Uint8Array): Signed =>
  ({ body: typeof body === 'string' ? enc.encode(body) : body, sig }) as Signed

const rejected = (e: Ending): boolean => e.stage === 'wire' || e.outcome !== 'changed'

describe('membership wire: malformed and hostile input', function () {
  this.timeout(30_000)
  let a: Peer
  let b: Peer
  let c: Peer
  let good: SignedInfo
  let goodWire: Signed

  before(async () => {
    ;[a, b, c] = await Promise.all([peer(), peer(), peer()])
    good = signInfo(info(a), a.signer)
    goodWire = toWireInfo(good)
  })

  it('a well-formed record and claim pass through a MemberSet round trip (the baseline)', () => {
    const t = table()
    const claim = signClaim({ peerId: a.id, incarnation: 1, status: 'suspect' }, b.signer)
    const bytes = MemberSet.encode({
      records: [goodWire, toWireInfo(signInfo(info(b), b.signer))],
      claims: [toWireClaim(claim)],
      statements: [],
    })
    const r = receiveSet(t, bytes)
    assert.ok(r.decoded)
    assert.deepEqual(
      r.endings.map((e) => (e.stage === 'table' ? e.outcome : e.reason)),
      ['changed', 'changed', 'changed'],
    )
    assert.equal(t.status(a.id), 'suspect')
    assert.equal(t.status(b.id), 'alive')
    // the same set again is all duplicates
    assert.deepEqual(
      receiveSet(t, bytes).endings.map((e) => (e.stage === 'table' ? e.outcome : e.reason)),
      ['duplicate', 'duplicate', 'duplicate'],
    )
  })

  it('a record or claim off the wire keeps only its own signature bytes, not the message they came in', () => {
    const claim = signClaim({ peerId: a.id, incarnation: 1, status: 'suspect' }, b.signer)
    const bytes = MemberSet.encode({ records: [goodWire], claims: [toWireClaim(claim)], statements: [] })
    const set = MemberSet.decode(bytes)
    // decoded, the signature is a view into the whole message
    assert.equal(set.records[0].sig.buffer, set.claims[0].sig.buffer)
    const r = fromWireInfo(set.records[0])
    const c = fromWireClaim(set.claims[0])
    for (const [sig, wire] of [
      [r.sig, set.records[0].sig],
      [c.sig, set.claims[0].sig],
    ] as const) {
      assert.deepEqual(sig, wire)
      assert.equal(sig.buffer.byteLength, sig.byteLength)
    }
    assert.equal(verifier.verify(a.id, encodeInfo(r.info), r.sig), true)
  })

  describe('oversized', () => {
    it('a body over the record size limit is refused by the decoder before it is parsed', () => {
      const t = table()
      // valid prefix and JSON, padded with whitespace past the limit
      const json = dec.decode(goodWire.body).slice(INFO_DOMAIN.length + 1)
      const body = `${INFO_DOMAIN}\n${json}${' '.repeat(LIMITS.infoBytes)}`
      const e = receiveRecord(t, wire(body, good.sig))
      assert.deepEqual(e, { stage: 'wire', reason: 'oversized' })
      const claimBody = `${CLAIM_DOMAIN}\n${'x'.repeat(LIMITS.infoBytes + 1)}`
      assert.deepEqual(receiveClaim(t, wire(claimBody, new Uint8Array(64))), {
        stage: 'wire',
        reason: 'oversized',
      })
      assert.equal(t.size, 0)
    })

    it('a record whose every field is in bounds but whose whole is too large is invalid, before any signature check', () => {
      const t = table()
      const big: MemberInfo = info(a, {
        addrs: Array.from({ length: LIMITS.addrs }, (_, i) => `/dns4/${'a'.repeat(200)}${i}/tcp/1`),
        tags: Object.fromEntries(
          Array.from({ length: LIMITS.tags }, (_, i) => [`k${i}`, 'v'.repeat(LIMITS.tagValue)]),
        ),
      })
      // signInfo refuses it, so a hostile sender signs the bytes itself
      assert.throws(() => signInfo(big, a.signer), /too large/)
      const r = t.ingest({ info: big, sig: a.signer.sign(encodeInfo(big)) }, verifier, 1000)
      assert.equal(r.outcome, 'invalid')
      assert.match(r.reason ?? '', /too large/)
      assert.equal(t.size, 0)
    })

    it('too many records in one gossip message: the whole message is refused at decoding', () => {
      const t = table()
      const many = MemberSet.encode({
        records: Array.from({ length: 1025 }, () => goodWire),
        claims: [],
        statements: [],
      })
      assert.equal(receiveSet(t, many).decoded, false)
      const manyClaims = MemberSet.encode({
        records: [],
        claims: Array.from({ length: 1025 }, () => wire('x', new Uint8Array(1))),
        statements: [],
      })
      assert.equal(receiveSet(t, manyClaims).decoded, false)
      assert.equal(t.size, 0)
    })

    it('an oversized signature field is refused', () => {
      const t = table()
      const e = receiveRecord(t, wire(goodWire.body, new Uint8Array(LIMITS.sig + 1)))
      assert.deepEqual(e, { stage: 'wire', reason: 'bad signature field' })
      assert.equal(t.size, 0)
    })
  })

  describe('truncated', () => {
    it('every strict prefix of a valid body is refused, and the table stays empty', () => {
      const t = table()
      const body = goodWire.body
      for (let n = 0; n < body.length; n++) {
        const e = receiveRecord(t, wire(body.subarray(0, n), good.sig))
        assert.equal(e.stage, 'wire', `prefix of ${n} bytes: ${JSON.stringify(e)}`)
      }
      assert.equal(t.size, 0)
      assert.equal(t.outcomes.changed, 0)
    })

    it('a truncated signature is a bad signature', () => {
      const t = table()
      for (const n of [1, 32, 63]) {
        assert.deepEqual(receiveRecord(t, wire(goodWire.body, good.sig.subarray(0, n))), {
          stage: 'table',
          outcome: 'bad-signature',
          reason: undefined,
        })
      }
      assert.equal(t.size, 0)
      assert.equal(t.outcomes['bad-signature'], 3)
    })

    it('a truncated protobuf message either fails to decode or yields only complete, genuine records', () => {
      const claim = signClaim({ peerId: a.id, incarnation: 1, status: 'suspect' }, b.signer)
      const recordB = signInfo(info(b), b.signer)
      const bytes = MemberSet.encode({
        records: [goodWire, toWireInfo(recordB)],
        claims: [toWireClaim(claim)],
        statements: [],
      })
      const genuine = new Set([goodWire.body, toWireInfo(recordB).body].map((x) => dec.decode(x)))
      let undecodable = 0
      for (let n = 0; n < bytes.length; n++) {
        const t = table()
        const r = receiveSet(t, bytes.subarray(0, n))
        if (!r.decoded) undecodable++
        for (const row of t.rows())
          assert.ok(genuine.has(dec.decode(encodeInfo(row.entry.signed.info))), `prefix ${n}`)
        // a claim can only have arrived whole
        for (const row of t.rows())
          if (row.entry.claim !== undefined) assert.deepEqual(row.entry.claim.sig, claim.sig)
      }
      assert.ok(
        undecodable > bytes.length / 2,
        `most prefixes do not decode (${undecodable} of ${bytes.length})`,
      )
    })
  })

  describe('unsigned', () => {
    it('a record or claim with no signature is refused by the decoder', () => {
      const t = table()
      assert.deepEqual(receiveRecord(t, wire(goodWire.body, new Uint8Array(0))), {
        stage: 'wire',
        reason: 'bad signature field',
      })
      const claim = signClaim({ peerId: a.id, incarnation: 1, status: 'dead' }, b.signer)
      assert.deepEqual(receiveClaim(t, wire(toWireClaim(claim).body, new Uint8Array(0))), {
        stage: 'wire',
        reason: 'bad signature field',
      })
      // a protobuf Signed with the sig field left out decodes to an empty signature
      const set = MemberSet.decode(
        MemberSet.encode({ records: [{ body: goodWire.body } as Signed], claims: [], statements: [] }),
      )
      assert.equal(set.records[0].sig.length, 0)
      assert.equal(receiveRecord(t, set.records[0]).stage, 'wire')
      assert.equal(t.size, 0)
    })

    it('a zero-filled or random signature of the right length is a bad signature', () => {
      const t = table()
      for (const sig of [new Uint8Array(64), new Uint8Array(randomBytes(64))]) {
        assert.equal(
          (receiveRecord(t, wire(goodWire.body, sig)) as { outcome?: Outcome }).outcome,
          'bad-signature',
        )
      }
      assert.equal(t.size, 0)
    })

    it('the table itself refuses entries without a signature (nothing throws)', () => {
      const t = table()
      const noSig = { info: good.info } as unknown as SignedInfo
      assert.equal(t.ingest(noSig, verifier, 1).outcome, 'invalid')
      assert.equal(t.ingest({ signed: noSig } as Entry, verifier, 1).outcome, 'invalid')
      assert.equal(t.ingest(null as unknown as SignedInfo, verifier, 1).outcome, 'invalid')
      assert.equal(t.ingest({} as unknown as SignedInfo, verifier, 1).outcome, 'invalid')
      assert.equal(t.size, 0)
    })
  })

  describe('wrongly signed', () => {
    it("a record claiming to be peer A but signed with B's key is a bad signature", () => {
      const t = table()
      const forged = wire(goodWire.body, b.signer.sign(goodWire.body))
      assert.deepEqual(receiveRecord(t, forged), {
        stage: 'table',
        outcome: 'bad-signature',
        reason: undefined,
      })
      assert.equal(t.size, 0)
    })

    it('a record changed after signing (higher incarnation, other tags, left) is a bad signature', () => {
      const t = table()
      for (const over of [
        { incarnation: 99 },
        { tags: { role: 'db' } },
        { status: 'left' as const },
        { name: 'evil' },
      ]) {
        const changed = encodeInfo({ ...good.info, ...over, tags: { ...(over.tags ?? good.info.tags) } })
        assert.deepEqual(receiveRecord(t, wire(changed, good.sig)), {
          stage: 'table',
          outcome: 'bad-signature',
          reason: undefined,
        })
      }
      assert.equal(t.size, 0)
    })

    it("a record with its own valid signature but another peer's overlay address is invalid", () => {
      const t = table()
      const s = signInfo(info(a, { overlay: overlayAddress(CLUSTER, b.id) }), a.signer)
      const e = receiveRecord(t, toWireInfo(s))
      assert.equal(e.stage === 'table' && e.outcome, 'invalid')
      assert.match((e as { reason?: string }).reason ?? '', /overlay/)
      assert.equal(t.size, 0)
    })

    it('a claim attributed to C but signed by B is a bad signature; the member stays alive', () => {
      const t = table()
      assert.equal(receiveRecord(t, goodWire).stage, 'table')
      const real = signClaim({ peerId: a.id, incarnation: 1, status: 'dead' }, b.signer)
      const before = snapshot(t)
      // same claim, re-attributed: the body names C, the signature is B's
      const body = encodeClaim({ peerId: a.id, incarnation: 1, status: 'dead', by: c.id })
      assert.deepEqual(receiveClaim(t, wire(body, b.signer.sign(body))), {
        stage: 'table',
        outcome: 'bad-signature',
        reason: undefined,
      })
      // and B's genuine signature moved onto a stronger claim
      const stronger = encodeClaim({ peerId: a.id, incarnation: 2, status: 'dead', by: b.id })
      assert.equal(
        (receiveClaim(t, wire(stronger, real.sig)) as { outcome?: Outcome }).outcome,
        'bad-signature',
      )
      assert.equal(snapshot(t), before)
      assert.equal(t.status(a.id), 'alive')
    })

    it('a signature over the bare JSON (no domain line) does not verify as a record', () => {
      const t = table()
      const body = goodWire.body
      const bare = body.subarray(INFO_DOMAIN.length + 1)
      assert.equal(
        (receiveRecord(t, wire(body, a.signer.sign(bare))) as { outcome?: Outcome }).outcome,
        'bad-signature',
      )
      assert.equal(t.size, 0)
    })
  })

  describe('wrong domain', () => {
    it('a claim offered as a record and a record offered as a claim are refused', () => {
      const t = table()
      const claim = signClaim({ peerId: a.id, incarnation: 1, status: 'dead' }, b.signer)
      assert.deepEqual(receiveRecord(t, toWireClaim(claim)), { stage: 'wire', reason: 'wrong domain' })
      assert.deepEqual(receiveClaim(t, goodWire), { stage: 'wire', reason: 'wrong domain' })
      assert.equal(t.size, 0)
    })

    it('other domain lines, signed by the right key over exactly those bytes, are refused', () => {
      const t = table()
      const json = dec.decode(goodWire.body).slice(INFO_DOMAIN.length + 1)
      for (const domain of [
        'mesh-member-v2',
        'mesh-member-v1 ',
        'MESH-MEMBER-V1',
        'mesh-cert-v1',
        '',
        'mesh-member-v1\r',
      ]) {
        const body = enc.encode(`${domain}\n${json}`)
        const e = receiveRecord(t, wire(body, a.signer.sign(body)))
        assert.deepEqual(e, { stage: 'wire', reason: 'wrong domain' }, JSON.stringify(domain))
      }
      // no newline at all
      assert.deepEqual(receiveRecord(t, wire(enc.encode(INFO_DOMAIN + json), good.sig)), {
        stage: 'wire',
        reason: 'wrong domain',
      })
      assert.equal(t.size, 0)
    })
  })

  describe('replayed', () => {
    it('an older record of a member, validly signed, is stale and changes nothing', () => {
      const t = table()
      const old = signInfo(info(a, { incarnation: 5, tags: { role: 'old' } }), a.signer)
      const cur = signInfo(info(a, { incarnation: 10 }), a.signer)
      assert.equal((receiveRecord(t, toWireInfo(cur)) as { outcome: Outcome }).outcome, 'changed')
      const before = snapshot(t)
      assert.deepEqual(receiveRecord(t, toWireInfo(old), 5000), {
        stage: 'table',
        outcome: 'stale',
        reason: undefined,
      })
      assert.deepEqual(receiveRecord(t, toWireInfo(cur), 5000), {
        stage: 'table',
        outcome: 'duplicate',
        reason: undefined,
      })
      assert.equal(snapshot(t), before)
      assert.equal(t.get(a.id)?.signed.info.incarnation, 10)
    })

    it('an old `left` record replayed after the member came back does not make it leave again', () => {
      const t = table()
      const gone = signInfo(info(a, { incarnation: 3, status: 'left' }), a.signer)
      const back = signInfo(info(a, { incarnation: 4 }), a.signer)
      receiveRecord(t, toWireInfo(gone))
      assert.equal(t.status(a.id), 'left')
      receiveRecord(t, toWireInfo(back))
      assert.equal(t.status(a.id), 'alive')
      const before = snapshot(t)
      assert.equal((receiveRecord(t, toWireInfo(gone), 9000) as { outcome: Outcome }).outcome, 'stale')
      assert.equal(t.status(a.id), 'alive')
      assert.equal(snapshot(t), before)
    })

    it('an old dead claim replayed after a refutation is stale; the member stays alive', () => {
      const t = table()
      receiveRecord(t, toWireInfo(signInfo(info(b), b.signer)))
      const dead = signClaim({ peerId: a.id, incarnation: 1, status: 'dead' }, b.signer)
      receiveRecord(t, goodWire)
      receiveClaim(t, toWireClaim(dead))
      assert.equal(t.status(a.id), 'dead')
      receiveRecord(t, toWireInfo(signInfo(info(a, { incarnation: 2 }), a.signer)))
      assert.equal(t.status(a.id), 'alive')
      const before = snapshot(t)
      assert.deepEqual(receiveClaim(t, toWireClaim(dead), 9000), {
        stage: 'table',
        outcome: 'stale',
        reason: undefined,
      })
      assert.equal(t.status(a.id), 'alive')
      assert.equal(snapshot(t), before)
    })
  })

  describe('hostile shapes never throw past the API', () => {
    it('JSON of the wrong shape, deep nesting, prototype keys, huge numbers and bad UTF-8 are refused', () => {
      const t = table()
      const json = JSON.parse(dec.decode(goodWire.body).slice(INFO_DOMAIN.length + 1)) as Record<
        string,
        unknown
      >
      const bodies: string[] = [
        'null',
        '[]',
        '"x"',
        '1',
        '{}',
        'true',
        '{"__proto__":{"peerId":"x"}}',
        JSON.stringify({ ...json, extra: 1 }),
        JSON.stringify({ ...json, tags: JSON.parse('{"__proto__":"x"}') }),
        JSON.stringify({ ...json, tags: { constructor: 'x' } }).replace('"constructor"', '"__proto__"'),
        JSON.stringify({ ...json, incarnation: -1 }),
        JSON.stringify({ ...json, incarnation: 1e300 }),
        JSON.stringify({ ...json, incarnation: '1' }),
        JSON.stringify({ ...json, status: 'suspect' }),
        JSON.stringify({ ...json, resources: null }),
        JSON.stringify({ ...json, addrs: 'x' }),
        JSON.stringify({ ...json, addrs: [1] }),
        JSON.stringify({ ...json, name: 'UPPER' }),
        `${'['.repeat(7000)}${']'.repeat(7000)}`,
        `{"a":${'{"a":'.repeat(3000)}1${'}'.repeat(3001)}`,
      ]
      for (const b of bodies) {
        const body = `${INFO_DOMAIN}\n${b}`
        const e = receiveRecord(t, wire(body, a.signer.sign(enc.encode(body))))
        assert.ok(rejected(e), `${b.slice(0, 60)}: ${JSON.stringify(e)}`)
        const cb = `${CLAIM_DOMAIN}\n${b}`
        const ce = receiveClaim(t, wire(cb, a.signer.sign(enc.encode(cb))))
        assert.ok(rejected(ce), `claim ${b.slice(0, 60)}: ${JSON.stringify(ce)}`)
      }
      // invalid UTF-8 in a name: decodes to U+FFFD, which is not a DNS label
      const raw = goodWire.body
      const i = dec.decode(raw).indexOf('"name":"node"') + 8
      const bad = new Uint8Array(raw)
      bad[i] = 0xff
      assert.ok(rejected(receiveRecord(t, wire(bad, a.signer.sign(bad)))))
      assert.equal(t.size, 0)
      assert.equal(t.outcomes.changed, 0)
    })

    it('random bytes as a MemberSet, as a body or as a signature: refused, never thrown (fuzz)', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ maxLength: 130 }), (body, sig) => {
          const t = table()
          receiveSet(t, body)
          assert.ok(rejected(receiveRecord(t, wire(body, sig))))
          assert.ok(rejected(receiveClaim(t, wire(body, sig))))
          // with a valid domain line in front
          const withDomain = new Uint8Array([...enc.encode(`${INFO_DOMAIN}\n`), ...body])
          assert.ok(rejected(receiveRecord(t, wire(withDomain, sig))))
          assert.equal(t.size, 0)
        }),
        { numRuns: 300 },
      )
    })

    it('any single-byte change to a valid record is refused, or decodes to the very same record (fuzz)', () => {
      const body = goodWire.body
      fc.assert(
        fc.property(fc.nat({ max: body.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, x) => {
          const t = table()
          const m = new Uint8Array(body)
          m[at] ^= x
          const e = receiveRecord(t, wire(m, good.sig))
          if (!rejected(e)) assert.deepEqual(encodeInfo(t.get(a.id)!.signed.info), body)
        }),
        { numRuns: 500 },
      )
    })

    it('the table counts every outcome, as /metrics reports them (mesh_membership_inputs)', () => {
      const t = table()
      receiveRecord(t, goodWire)
      receiveRecord(t, goodWire)
      receiveRecord(t, wire(goodWire.body, new Uint8Array(64)))
      t.ingest({ info: { ...good.info, name: 'BAD' }, sig: good.sig }, verifier, 1)
      assert.deepEqual(
        {
          changed: t.outcomes.changed,
          duplicate: t.outcomes.duplicate,
          bad: t.outcomes['bad-signature'],
          invalid: t.outcomes.invalid,
        },
        { changed: 1, duplicate: 1, bad: 1, invalid: 1 },
      )
    })
  })
})
