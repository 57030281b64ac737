import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { MemberSet } from '../../protocols/membership.js'
import { Digest, FINGERPRINT_BYTES, parseDigest } from '../../src/membership/digest.js'
import {
  type MemberInfo,
  MemberTable,
  nullCrypto,
  type Status,
  signClaim,
  signInfo,
} from '../../src/membership/index.js'
import { fromWireClaim, fromWireInfo } from '../../src/membership/wire.js'

const PEERS = ['12D3KooWPeerAAAA', '12D3KooWPeerBBBB', '12D3KooWPeerCCCC', '12D3KooWPeerDDDD']
const V = nullCrypto.verifier

function info(peerId: string, incarnation: number, status: 'alive' | 'left', role: string): MemberInfo {
  return {
    peerId,
    name: peerId.slice(-4).toLowerCase(),
    overlay: 'fd00::1',
    addrs: [],
    incarnation,
    status,
    version: '0.1.0',
    tags: { role },
    computeTypes: [],
    resources: { cpus: 1, memoryBytes: 1, diskFreeBytes: 1 },
    maintenance: false,
  }
}

const item = fc.oneof(
  fc
    .record({
      peer: fc.constantFrom(...PEERS),
      inc: fc.integer({ min: 0, max: 3 }),
      status: fc.constantFrom('alive' as const, 'left' as const),
      role: fc.constantFrom('x', 'y'),
    })
    .map(({ peer, inc, status, role }) => signInfo(info(peer, inc, status, role), nullCrypto.signer(peer))),
  fc
    .record({
      peer: fc.constantFrom(...PEERS),
      inc: fc.integer({ min: 0, max: 3 }),
      status: fc.constantFrom('suspect' as const, 'dead' as const),
      by: fc.constantFrom(...PEERS),
    })
    .map(({ peer, inc, status, by }) =>
      signClaim({ peerId: peer, incarnation: inc, status }, nullCrypto.signer(by)),
    ),
)

function tableOf(items: Parameters<MemberTable['apply']>[0][]): MemberTable {
  const t = new MemberTable()
  for (const x of items) t.apply(x, V, 0)
  return t
}

/** Apply what came over the wire, as the agent does (records, then claims). */
function ingest(t: MemberTable, set: MemberSet): void {
  for (const r of set.records) t.apply(fromWireInfo(r), V, 0)
  for (const c of set.claims) t.apply(fromWireClaim(c), V, 0)
}

function view(t: MemberTable): Array<[string, Status, number]> {
  return [...t.rows()]
    .map((r): [string, Status, number] => [r.peerId, r.status, r.entry.signed.info.incarnation])
    .sort((a, b) => a[0].localeCompare(b[0]))
}

/** One sync/2.0.0 exchange between a dialer and a responder; returns the bytes each way. */
type Bytes = Uint8Array<ArrayBuffer>
function sync(dialer: MemberTable, responder: MemberTable, sd: Bytes[] = [], sr: Bytes[] = []) {
  const ask = new Digest(dialer.entries(), sd).bytes
  const mine = new Digest(responder.entries(), sr)
  const missing = mine.missingFrom(ask)
  ingest(dialer, missing)
  for (const s of missing.statements) if (!sd.some((x) => Buffer.compare(x, s) === 0)) sd.push(s)
  const back = new Digest(dialer.entries(), sd).missingFrom(mine.bytes)
  ingest(responder, back)
  for (const s of back.statements) if (!sr.some((x) => Buffer.compare(x, s) === 0)) sr.push(s)
  return { toResponder: back, toDialer: missing }
}

describe('membership digest sync', () => {
  it('one exchange leaves both tables equal to the merge of the two (any contents), and a second sends nothing', () => {
    fc.assert(
      fc.property(fc.array(item, { maxLength: 12 }), fc.array(item, { maxLength: 12 }), (xs, ys) => {
        // both start from a record of every peer (a claim about a peer a table has no record of
        // waits aside until the record comes, in any sync), then diverge
        const base = PEERS.map((p) => signInfo(info(p, 0, 'alive', 'x'), nullCrypto.signer(p)))
        const a = tableOf([...base, ...xs])
        const b = tableOf([...base, ...ys])
        const merged = tableOf([...base, ...xs, ...ys])
        sync(a, b)
        assert.deepEqual(view(a), view(merged))
        assert.deepEqual(view(b), view(merged))
        // and then a second sync sends nothing either way
        const again = sync(a, b)
        assert.equal(again.toDialer.records.length + again.toDialer.claims.length, 0)
        assert.equal(again.toResponder.records.length + again.toResponder.claims.length, 0)
      }),
      { numRuns: 300 },
    )
  })

  it('in steady state only the digests travel: 8 bytes per member', () => {
    const items = PEERS.map((p) => signInfo(info(p, 1, 'alive', 'x'), nullCrypto.signer(p)))
    const a = tableOf(items)
    const b = tableOf(items)
    assert.equal(new Digest(a.entries(), []).bytes.length, PEERS.length * FINGERPRINT_BYTES)
    const r = sync(a, b)
    assert.deepEqual(r.toDialer, { records: [], claims: [], statements: [] })
    assert.deepEqual(r.toResponder, { records: [], claims: [], statements: [] })
  })

  it('a changed row (a new claim) is sent, with its record', () => {
    const items = PEERS.map((p) => signInfo(info(p, 1, 'alive', 'x'), nullCrypto.signer(p)))
    const a = tableOf(items)
    const b = tableOf(items)
    b.apply(
      signClaim({ peerId: PEERS[2], incarnation: 1, status: 'dead' }, nullCrypto.signer(PEERS[0])),
      V,
      0,
    )
    const r = sync(a, b)
    assert.equal(r.toDialer.records.length, 1)
    assert.equal(r.toDialer.claims.length, 1)
    assert.equal(a.status(PEERS[2]), 'dead')
  })

  it('admin statements missing on one side are sent to it', () => {
    const a = new MemberTable()
    const b = new MemberTable()
    const sa: Bytes[] = [new Uint8Array([1, 2, 3])]
    const sb: Bytes[] = [new Uint8Array([4, 5])]
    sync(a, b, sa, sb)
    assert.equal(sa.length, 2)
    assert.equal(sb.length, 2)
  })

  it('a malformed digest is refused', () => {
    assert.throws(() => parseDigest(new Uint8Array(FINGERPRINT_BYTES + 3)), /multiple of 8 bytes/)
    assert.equal(parseDigest(new Uint8Array(0)).size, 0)
  })
})
