import assert from 'node:assert/strict'
import {
  type Claim,
  type MemberInfo,
  MembershipCore,
  type MembershipEffect,
  MemberTable,
  mulberry32,
  nullCrypto,
  type SignedInfo,
  signClaim,
  signInfo,
} from '../../src/membership/index.js'

// The membership core on a fake clock: no libp2p, no timers. Time is whatever `now` we pass.

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const peer = (i: number): string => `12D3KooW${B58[i % 58].repeat(44)}`

function info(peerId: string, incarnation: number, status: 'alive' | 'left' = 'alive'): MemberInfo {
  return {
    peerId,
    name: `n${peerId.charCodeAt(8)}`,
    overlay: 'fd00::1',
    addrs: [],
    incarnation,
    status,
    version: '0.1.0',
    tags: {},
    computeTypes: [],
    resources: { cpus: 1, memoryBytes: 1, diskFreeBytes: 1 },
    maintenance: false,
  }
}

const record = (p: string, inc: number): SignedInfo => signInfo(info(p, inc), nullCrypto.signer(p))
const claim = (by: string, about: string, inc: number, status: 'suspect' | 'dead'): Claim =>
  signClaim({ peerId: about, incarnation: inc, status }, nullCrypto.signer(by))

const ME = peer(1)
const A = peer(2)
const B = peer(3)

function make(self = ME): { core: MembershipCore; effects: MembershipEffect[] } {
  const effects: MembershipEffect[] = []
  const core = new MembershipCore({
    signer: nullCrypto.signer(self),
    verifier: nullCrypto.verifier,
    table: new MemberTable(),
    swim: { rng: mulberry32(7), incarnation: 100, probeIntervalMs: 1000, probeTimeoutMs: 500 },
    describe: (inc, status) => info(self, inc, status),
    emit: (e) => effects.push(e),
    piggyback: {},
  })
  core.start(0)
  return { core, effects }
}

const ofType = <T extends MembershipEffect['type']>(effects: MembershipEffect[], type: T) =>
  effects.filter((e): e is Extract<MembershipEffect, { type: T }> => e.type === type)

/** Tick at every wake-up until `until`, answering nothing. */
function runSilent(core: MembershipCore, from: number, until: number): void {
  for (let now = from; now <= until; now = Math.max(now + 1, core.nextWakeup())) core.tick(now)
}

describe('membership core (sans-IO, fake clock)', () => {
  it('holds our own record from the start, as a change, without spreading it', () => {
    const { core, effects } = make()
    assert.equal(core.table.status(ME), 'alive')
    assert.equal(core.signed.info.incarnation, 100)
    assert.deepEqual(
      effects.map((e) => e.type),
      ['change'],
    )
    assert.equal(core.queued, 0)
  })

  it('announce(): a starting member spreads the record it started with, at the same incarnation', () => {
    // the agent's start (service.ts): the first incarnation is the wall clock, which already
    // outranks the record and any claim from before a restart, so no second bump
    const { core, effects } = make()
    core.ingest([record(A, 5), record(B, 5)], [], 0, false)
    effects.length = 0
    core.announce()
    const published = ofType(effects, 'publish')
    assert.equal(published.length, 1)
    assert.equal(published[0].record, core.signed, 'the record held, not a re-signed one')
    assert.equal(core.signed.info.incarnation, 100)
    assert.equal(ofType(effects, 'queued').length, 1)
    assert.ok(core.hasNewsFor(A) && core.hasNewsFor(B))
    const news = core.take(4000, A) as SignedInfo[]
    assert.deepEqual(
      news.map((x) => `${x.info.peerId} ${x.info.incarnation}`),
      [`${ME} 100`],
    )
    assert.equal(core.table.get(ME)?.signed.info.incarnation, 100)
  })

  it('announce() after leaving spreads nothing', () => {
    const { core, effects } = make()
    core.leave(0)
    core.take(4000)
    effects.length = 0
    core.announce()
    assert.equal(effects.length, 0)
  })

  it('probes a member it learnt of, and names it suspect, then dead, when nothing answers', () => {
    const { core, effects } = make()
    core.ingest([record(A, 5)], [], 0, false)
    core.tick(0)
    runSilent(core, 0, 1_000)
    const probes = ofType(effects, 'probe')
    assert.ok(probes.length > 0 && probes.every((p) => p.to === A), 'probes go to the only member')
    runSilent(core, 1_000, 3_000)
    assert.equal(core.table.status(A), 'suspect')
    const published = ofType(effects, 'publish').map((e) => e.claim?.status)
    assert.deepEqual(published, ['suspect'])
    // the verdict is queued to ride on the next messages
    const news = core.take(4000) as Claim[]
    assert.equal(news.length, 1)
    assert.equal(news[0].status, 'suspect')
    assert.equal(news[0].by, ME)
    runSilent(core, 3_000, 120_000)
    assert.equal(core.table.status(A), 'dead')
    assert.deepEqual(
      ofType(effects, 'publish').map((e) => e.claim?.status),
      ['suspect', 'dead'],
    )
  })

  it('stops suspecting a member that acks', () => {
    const { core, effects } = make()
    core.ingest([record(A, 5)], [], 0, false)
    for (let now = 0; now <= 20_000; now = Math.max(now + 1, core.nextWakeup())) {
      const before = effects.length
      core.tick(now)
      for (const e of effects.slice(before)) if (e.type === 'probe') core.onAck(e.to, e.seq, now + 10)
    }
    assert.equal(core.table.status(A), 'alive')
    assert.equal(ofType(effects, 'publish').length, 0)
  })

  it('refutes a suspicion of itself with a higher incarnation, and spreads it', () => {
    const { core, effects } = make()
    core.ingest([record(A, 5)], [], 0, false)
    effects.length = 0
    core.ingest([], [claim(A, ME, 100, 'suspect')], 10, true)
    const refuted = ofType(effects, 'refuted')
    assert.equal(refuted.length, 1)
    assert.ok(refuted[0].incarnation > 100)
    assert.equal(core.table.status(ME), 'alive')
    assert.equal(core.signed.info.incarnation, refuted[0].incarnation)
    // the claim about us is not passed on; our new record is
    const news = core.take(4000)
    assert.equal(news.length, 1)
    assert.ok('info' in news[0] && news[0].info.incarnation === refuted[0].incarnation)
  })

  it('ignores a claim by someone who is not a member', () => {
    const { core, effects } = make()
    core.ingest([record(A, 5)], [], 0, false)
    core.ingest([], [claim(B, A, 5, 'dead')], 10, true)
    assert.equal(core.table.status(A), 'alive')
    assert.equal(ofType(effects, 'dropped').length, 1)
    assert.equal(core.queued, 0)
  })

  it('refutes a claim of its death by a member it holds dead: a healed partition converges at the first sync', () => {
    // Each side of a partition declared the other dead. After the heal, a claim from the other
    // side is signed by someone we hold dead; were it ignored like any claim by a non-member,
    // neither side would ever refute (no sync could help) until some record changed by chance
    const x = make(ME)
    const y = make(A)
    x.core.ingest([y.core.signed], [], 0, false)
    y.core.ingest([x.core.signed], [], 0, false)
    x.core.ingest([], [claim(ME, A, 100, 'dead')], 10, false)
    y.core.ingest([], [claim(A, ME, 100, 'dead')], 10, false)
    assert.equal(x.core.table.status(A), 'dead')
    assert.equal(y.core.table.status(ME), 'dead')
    // one push-pull sync, y dialing x: y takes x's table, then x takes y's (after y's merge)
    const all = (c: MembershipCore) => {
      const rows = [...c.table.rows()]
      return {
        records: rows.map((r) => r.entry.signed),
        claims: rows.flatMap((r) => (r.entry.claim === undefined ? [] : [r.entry.claim])),
      }
    }
    const fromX = all(x.core)
    y.core.ingest(fromX.records, fromX.claims, 20, false)
    const fromY = all(y.core)
    x.core.ingest(fromY.records, fromY.claims, 20, false)
    assert.equal(ofType(y.effects, 'refuted').length, 1, 'y refutes the claim of its death')
    assert.equal(ofType(x.effects, 'refuted').length, 1, 'x refutes the claim of its death')
    assert.equal(x.core.table.status(A), 'alive', 'x holds y alive again')
    // and y hears of x's refutation by x's news (its queue), as a fan-out would carry it
    y.core.ingest(
      x.core.take(4000).filter((n): n is SignedInfo => 'info' in n),
      [],
      30,
      false,
    )
    assert.equal(y.core.table.status(ME), 'alive', 'y holds x alive again')
  })

  it('passes on gossip that changed its table, once, and not what came by sync', () => {
    const { core } = make()
    core.ingest([record(A, 5)], [], 0, false)
    assert.equal(core.queued, 0, 'a sync is not passed on')
    assert.equal(core.ingest([record(A, 6)], [], 0, true), 1)
    assert.equal(core.ingest([record(A, 6)], [], 0, true), 0, 'a copy changes nothing')
    const news = core.take(4000)
    assert.equal(news.length, 1)
    assert.equal((news[0] as SignedInfo).info.incarnation, 6)
  })

  it('drops queued suspicions of a member once a death or a refutation outranks them', () => {
    const C = peer(4)
    const D = peer(5)
    const X = peer(6)
    const setup = () => {
      const { core } = make()
      core.ingest([record(A, 1), record(B, 1), record(C, 1), record(D, 1), record(X, 1)], [], 0, false)
      // three members suspect X: the first and two Lifeguard confirmations are passed on
      core.ingest(
        [],
        [claim(A, X, 1, 'suspect'), claim(B, X, 1, 'suspect'), claim(C, X, 1, 'suspect')],
        0,
        true,
      )
      assert.equal(core.queued, 3)
      return core
    }
    const dead = setup()
    dead.ingest([], [claim(D, X, 1, 'dead')], 0, true)
    assert.deepEqual(
      dead.take(4000).map((x) => ('info' in x ? 'record' : x.status)),
      ['dead'],
      'only the death is still news',
    )
    const refuted = setup()
    refuted.ingest([record(X, 2)], [], 0, true)
    assert.deepEqual(
      refuted.take(4000).map((x) => ('info' in x ? x.info.incarnation : x.status)),
      [2],
      'only the refutation is still news',
    )
    // a suspicion of the new incarnation is news again
    refuted.ingest([], [claim(A, X, 2, 'suspect')], 0, true)
    assert.equal(refuted.queued, 2)
  })

  it('leaves quietly: its record says left, is spread, and the detector stops', () => {
    const { core, effects } = make()
    core.ingest([record(A, 5)], [], 0, false)
    effects.length = 0
    const left = core.leave(50)
    assert.equal(left.info.status, 'left')
    assert.equal(core.table.status(ME), 'left')
    const change = ofType(effects, 'change')
    assert.equal(change.length, 1)
    assert.equal(change[0].quiet, true)
    assert.equal(ofType(effects, 'publish')[0].record, left)
    effects.length = 0
    runSilent(core, 50, 60_000)
    assert.deepEqual(effects, [])
  })
  it('joins verified records of a formed cluster as apply() does: same rows, same probes', () => {
    const records = Array.from({ length: 30 }, (_, i) => record(peer(10 + i), 500 + i))
    const applied = make()
    for (const r of records) applied.core.apply(r, 5)
    const joined = make()
    for (const r of records) assert.equal(joined.core.joinVerified(r, 5), true)
    const rows = (c: MembershipCore) => [...c.table.rows()].map((r) => [r.peerId, r.status, r.since, r.entry])
    assert.deepEqual(rows(joined.core), rows(applied.core))
    assert.equal(rows(joined.core)[1][3], rows(applied.core)[1][3], 'the same shared entry object')
    assert.deepEqual(joined.core.table.counts(), applied.core.table.counts())
    assert.deepEqual(joined.core.table.digest(), applied.core.table.digest())
    // the detector took the same random draws: it probes the same members in the same order
    for (const { core, effects } of [applied, joined]) {
      for (let now = 5; now <= 60_000; now = Math.max(now + 1, core.nextWakeup())) {
        const before = effects.length
        core.tick(now)
        for (const e of effects.slice(before)) if (e.type === 'probe') core.onAck(e.to, e.seq, now + 10)
      }
    }
    const sent = (e: MembershipEffect[]) => e.filter((x) => x.type !== 'change')
    assert.ok(ofType(applied.effects, 'probe').length > 30, 'it probed every member')
    assert.deepEqual(sent(joined.effects), sent(applied.effects))
    // no 'change' effect: the driver accounts for the rows itself
    assert.equal(ofType(joined.effects, 'change').length, ofType(applied.effects, 'change').length - 30)
  })

  it('tables joining the same record share one row until one of them changes it', () => {
    const records = Array.from({ length: 5 }, (_, i) => record(peer(10 + i), 500 + i))
    const byId = new Map(records.map((r, i) => [r.info.peerId, i]))
    for (const index of [undefined, (p: string) => byId.get(p) ?? -1]) {
      const tables = [0, 1, 2].map(() => new MemberTable({ index }))
      for (const t of tables) for (const r of records) assert.equal(t.insertVerified(r, 5), true)
      const X = records[2].info.peerId
      assert.equal(tables[0].row(X), tables[1].row(X), 'one shared row object')
      const order = [...tables[0].rows()].map((r) => r.peerId)
      assert.ok(tables[0].apply(claim(A, X, 502, 'suspect'), nullCrypto.verifier, 9) !== undefined)
      assert.equal(tables[0].status(X), 'suspect')
      assert.equal(tables[0].row(X)?.since, 9)
      for (const t of tables.slice(1)) {
        assert.equal(t.status(X), 'alive', 'the others keep theirs')
        assert.equal(t.row(X)?.since, 5)
        assert.equal(t.row(X)?.entry.claim, undefined)
      }
      assert.deepEqual(
        [...tables[0].rows()].map((r) => r.peerId),
        order,
        'the changed row keeps its place',
      )
      assert.deepEqual(tables[0].counts(), { alive: 4, suspect: 1, dead: 0, left: 0 })
      assert.deepEqual(tables[1].counts(), { alive: 5, suspect: 0, dead: 0, left: 0 })
      // joined at another time: a row of its own, not the shared one
      const late = new MemberTable({ index })
      assert.equal(late.insertVerified(records[0], 7), true)
      assert.equal(late.row(records[0].info.peerId)?.since, 7)
      assert.equal(tables[1].row(records[0].info.peerId)?.since, 5)
    }
  })

  it('leaves joining to apply() when the peer is held or has a claim held back', () => {
    const { core } = make()
    core.apply(record(A, 1), 0)
    assert.equal(core.joinVerified(record(A, 2), 1), false)
    assert.equal(core.table.get(A)?.signed.info.incarnation, 1, 'nothing done')
    core.ingest([], [claim(A, B, 3, 'suspect')], 2, false)
    assert.equal(core.joinVerified(record(B, 3), 3), false)
    assert.equal(core.table.has(B), false)
    assert.equal(core.joinVerified(record(peer(40), 1), 3), true)
    assert.equal(core.table.status(peer(40)), 'alive')
  })
})
