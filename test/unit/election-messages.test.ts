import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import fc from 'fast-check'
import {
  assess,
  checkCancel,
  checkMessage,
  checkReport,
  checkRequest,
  checkVote,
  compareVotes,
  encodeCancel,
  encodeMessage,
  encodeReport,
  encodeRequest,
  encodeVote,
  globMatch,
  LIMITS,
  type LocalState,
  matchesFilter,
  nextHistory,
  pickWinner,
  preferReport,
  preferVote,
  requestId,
  signCancel,
  signReport,
  signRequest,
  signVote,
  type Vote,
  verifyMessage,
} from '../../src/election/index.js'
import { ed25519Signer, ed25519Verifier, nullCrypto } from '../../src/membership/record.js'

const A = '12D3KooWPeerAAAA'
const B = '12D3KooWPeerBBBB'
const C = '12D3KooWPeerCCCC'
const sig = nullCrypto.signer
const H1 = nextHistory('', A)

function request(over: Partial<Parameters<typeof signRequest>[0]> = {}, by = A) {
  return signRequest(
    {
      computeType: 'docker',
      serverType: 'base',
      filter: { tags: { zone: 'eu', gpu: 'no' }, names: ['web-*', 'db?'] },
      resources: { cpus: 0.5, memoryBytes: 1024, diskBytes: 0 },
      voters: [
        { peerId: C, incarnation: 2 },
        { peerId: A, incarnation: 1 },
        { peerId: B, incarnation: 0 },
      ],
      created: 1_700_000_000_000,
      nonce: 7,
      ...over,
    },
    sig(by),
  )
}

function vote(over: Partial<Omit<Vote, 'kind' | 'sig' | 'voter'>> = {}, by = B): Vote {
  return signVote(
    {
      request: 'a'.repeat(32),
      round: 0,
      history: '',
      yes: true,
      reasons: [],
      score: 5,
      tiebreak: 9,
      note: '',
      ...over,
    },
    sig(by),
  )
}

describe('election: messages', () => {
  it('canonical bytes: domain line, sorted keys, sorted voters and globs; the id is their hash', () => {
    const r = request()
    const text = new TextDecoder().decode(encodeRequest(r))
    assert.equal(
      text,
      'mesh-election-request-v1\n{"computeType":"docker","created":1700000000000,' +
        '"filter":{"names":["db?","web-*"],"tags":{"gpu":"no","zone":"eu"}},"nonce":7,' +
        `"requester":"${A}","resources":{"cpus":0.5,"diskBytes":0,"memoryBytes":1024},"serverType":"base",` +
        `"voters":[{"incarnation":1,"peerId":"${A}"},{"incarnation":0,"peerId":"${B}"},{"incarnation":2,"peerId":"${C}"}]}`,
    )
    assert.equal(r.id, requestId(r))
    assert.match(r.id, /^[0-9a-f]{32}$/)
    assert.ok(Object.isFrozen(r) && Object.isFrozen(r.voters) && Object.isFrozen(r.filter.tags))
    // the same content signed again is the same request; a different nonce is another one
    assert.equal(request().id, r.id)
    assert.notEqual(request({ nonce: 8 }).id, r.id)
    assert.equal(
      new TextDecoder().decode(encodeVote(vote({ reasons: ['capacity', 'filter'], yes: false, score: 0 }))),
      `mesh-election-vote-v1\n{"history":"","note":"","reasons":["capacity","filter"],"request":"${'a'.repeat(32)}",` +
        `"round":0,"score":0,"tiebreak":9,"voter":"${B}","yes":false}`,
    )
    const rep = signReport(
      { request: r.id, round: 1, history: H1, state: 'ALLOCATED', instance: 'web-1', note: '' },
      sig(B),
    )
    assert.equal(
      new TextDecoder().decode(encodeReport(rep)),
      `mesh-election-report-v1\n{"history":"${H1}","instance":"web-1","member":"${B}","note":"",` +
        `"request":"${r.id}","round":1,"state":"ALLOCATED"}`,
    )
    assert.equal(
      new TextDecoder().decode(encodeCancel(signCancel(r.id, sig(A)))),
      `mesh-election-cancel-v1\n{"request":"${r.id}","requester":"${A}"}`,
    )
  })

  it('duplicate voters keep the highest incarnation', () => {
    const r = request({
      voters: [
        { peerId: B, incarnation: 1 },
        { peerId: B, incarnation: 4 },
      ],
    })
    assert.deepEqual(r.voters, [{ peerId: B, incarnation: 4 }])
  })

  it('signs and verifies with Ed25519; a changed field or another signer fails', async () => {
    const ka = await generateKeyPair('Ed25519')
    const kb = await generateKeyPair('Ed25519')
    const sa = ed25519Signer(ka)
    const sb = ed25519Signer(kb)
    const ver = ed25519Verifier()
    const r = signRequest(
      { computeType: 'docker', voters: [{ peerId: sa.peerId, incarnation: 0 }], created: 1, nonce: 1 },
      sa,
    )
    assert.ok(verifyMessage(r, ver))
    assert.equal(verifyMessage({ ...r, nonce: 2 }, ver), false)
    const v = signVote(
      { request: r.id, round: 0, history: '', yes: true, reasons: [], score: 1, tiebreak: 2, note: '' },
      sb,
    )
    assert.ok(verifyMessage(v, ver))
    assert.equal(verifyMessage({ ...v, score: 2 }, ver), false)
    assert.equal(verifyMessage({ ...v, voter: sa.peerId }, ver), false)
    const rep = signReport(
      { request: r.id, round: 0, history: '', state: 'ELECTED', instance: '', note: '' },
      sb,
    )
    assert.ok(verifyMessage(rep, ver))
    assert.equal(verifyMessage({ ...rep, state: 'ERROR' }, ver), false)
    const c = signCancel(r.id, sa)
    assert.ok(verifyMessage(c, ver))
    assert.equal(verifyMessage({ ...c, sig: new Uint8Array(64) }, ver), false)
  })

  it('shape checks reject malformed messages', () => {
    const r = request()
    const v = vote()
    const rep = signReport(
      { request: r.id, round: 0, history: '', state: 'ELECTED', instance: '', note: '' },
      sig(B),
    )
    const c = signCancel(r.id, sig(A))
    assert.equal(checkMessage(r), undefined)
    assert.equal(checkMessage(v), undefined)
    assert.equal(checkMessage(rep), undefined)
    assert.equal(checkMessage(c), undefined)
    const bad: Array<[unknown, (x: unknown) => string | undefined]> = [
      [null, checkMessage],
      [[], checkMessage],
      [{ ...v, kind: 'ballot' }, checkMessage],
      [{ ...r, extra: 1 }, checkRequest],
      [{ ...r, id: 'xyz' }, checkRequest],
      [{ ...r, requester: 'short' }, checkRequest],
      [{ ...r, nonce: 2 ** 32 }, checkRequest],
      [{ ...r, created: -1 }, checkRequest],
      [{ ...r, computeType: '__proto__' }, checkRequest],
      [{ ...r, serverType: 'a b' }, checkRequest],
      [{ ...r, voters: [] }, checkRequest],
      [{ ...r, voters: [...r.voters].reverse() }, checkRequest],
      [{ ...r, voters: [r.voters[0], r.voters[0]] }, checkRequest],
      [{ ...r, voters: [{ peerId: A, incarnation: 1.5 }] }, checkRequest],
      [{ ...r, filter: { tags: {}, names: ['B*'] } }, checkRequest],
      [{ ...r, filter: { tags: {}, names: ['b', 'a'] } }, checkRequest],
      [{ ...r, filter: { tags: { x: 'a\nb' }, names: [] } }, checkRequest],
      [{ ...r, filter: { tags: JSON.parse('{"__proto__":"x"}'), names: [] } }, checkRequest],
      [{ ...r, resources: { cpus: Number.NaN, memoryBytes: 0, diskBytes: 0 } }, checkRequest],
      [{ ...r, resources: { cpus: 1, memoryBytes: -1, diskBytes: 0 } }, checkRequest],
      [{ ...r, sig: new Uint8Array(0) }, checkRequest],
      [{ ...r, sig: new Uint8Array(LIMITS.sig + 1) }, checkRequest],
      [{ ...r, sig: 'abc' }, checkRequest],
      [{ ...v, round: -1 }, checkVote],
      [{ ...v, round: LIMITS.voters }, checkVote],
      [{ ...v, round: 1 }, checkVote],
      [{ ...v, history: H1 }, checkVote],
      [{ ...v, round: 1, history: 'X'.repeat(32) }, checkVote],
      [{ ...rep, round: 2 }, checkReport],
      [{ ...v, yes: 'yes' }, checkVote],
      [{ ...v, reasons: ['capacity'] }, checkVote],
      [{ ...v, yes: false, reasons: [], score: 0 }, checkVote],
      [{ ...v, yes: false, reasons: ['capacity'], score: 3 }, checkVote],
      [{ ...v, yes: false, reasons: ['filter', 'capacity'], score: 0 }, checkVote],
      [{ ...v, yes: false, reasons: ['capacity', 'capacity'], score: 0 }, checkVote],
      [{ ...v, yes: false, reasons: ['tired'], score: 0 }, checkVote],
      [{ ...v, score: 1.5 }, checkVote],
      [{ ...v, tiebreak: 2 ** 32 }, checkVote],
      [{ ...v, note: 'x'.repeat(LIMITS.note + 1) }, checkVote],
      [{ ...v, note: '\u001b[31m' }, checkVote],
      [{ ...v, sig: undefined }, checkVote],
      [{ ...rep, state: 'RUNNING' }, checkReport],
      [{ ...rep, state: 'ALLOCATED', instance: '' }, checkReport],
      [{ ...rep, member: 'x' }, checkReport],
      [{ ...c, requester: 7 }, checkCancel],
      [{ ...c, request: 'A'.repeat(32) }, checkCancel],
    ]
    for (const [i, [x, check]] of bad.entries()) assert.notEqual(check(x), undefined, `case ${i} passed`)
  })

  it('a request over the size limit is refused at signing and by checkMessage', () => {
    const voters = Array.from({ length: LIMITS.voters }, (_, i) => ({
      peerId: `P${String(i).padStart(5, '0')}${'x'.repeat(122)}`,
      incarnation: 0,
    }))
    assert.throws(
      () => signRequest({ computeType: 'docker', voters, created: 1, nonce: 1 }, sig(A)),
      /too large/,
    )
    const small = request()
    const big = { ...small, voters }
    assert.equal(checkRequest(big), undefined)
    assert.match(checkMessage(big) ?? '', /too large/)
    assert.throws(
      () =>
        signRequest(
          { computeType: 'docker', voters: [...voters, { peerId: B, incarnation: 0 }], created: 1, nonce: 1 },
          sig(A),
        ),
      /too many voters/,
    )
  })

  it('signing refuses bad content', () => {
    assert.throws(() => vote({ yes: true, reasons: ['capacity'] }), /invalid vote/)
    assert.throws(() =>
      signReport(
        { request: 'a'.repeat(32), round: 0, history: '', state: 'ALLOCATED', instance: '', note: '' },
        sig(A),
      ),
    )
    assert.throws(() => request({ computeType: 'no spaces' }))
  })
})

describe('election: rules', () => {
  it('winner: highest score, then highest tiebreak, then smallest peer ID; no votes never win', () => {
    const a = vote({ score: 5, tiebreak: 1 }, A)
    const b = vote({ score: 5, tiebreak: 2 }, B)
    const c = vote({ score: 4, tiebreak: 99 }, C)
    assert.equal(pickWinner([a, b, c])?.voter, B)
    assert.equal(pickWinner([a, c])?.voter, A)
    assert.equal(pickWinner([vote({ score: 5, tiebreak: 2 }, C), b])?.voter, B)
    assert.equal(pickWinner([vote({ yes: false, reasons: ['capacity'], score: 0 }, A)]), undefined)
    assert.equal(
      pickWinner([a, b], (p) => p !== B),
      a,
    )
    assert.ok(compareVotes(b, a) > 0 && compareVotes(a, b) < 0 && compareVotes(a, a) === 0)
  })

  it('the winner does not depend on the order of the votes', () => {
    const peers = ['12D3KooWPeer0000', '12D3KooWPeer1111', '12D3KooWPeer2222', '12D3KooWPeer3333']
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            voter: fc.constantFrom(...peers),
            yes: fc.boolean(),
            score: fc.nat(2),
            tiebreak: fc.nat(2),
          }),
          { maxLength: 8 },
        ),
        fc.infiniteStream(fc.nat()),
        (specs, noise) => {
          const votes = specs.map((s) =>
            vote(
              {
                yes: s.yes,
                reasons: s.yes ? [] : ['other'],
                score: s.yes ? s.score : 0,
                tiebreak: s.tiebreak,
              },
              s.voter,
            ),
          )
          const it = noise[Symbol.iterator]()
          const shuffled = votes
            .map((v) => [it.next().value as number, v] as const)
            .sort((x, y) => x[0] - y[0])
            .map((x) => x[1])
          assert.deepEqual(pickWinner(shuffled), pickWinner(votes))
        },
      ),
    )
  })

  it('conflicting votes and reports: both sides keep the same one', () => {
    const v1 = vote({ score: 1 })
    const v2 = vote({ score: 2 })
    assert.equal(preferVote(v1, v2), preferVote(v2, v1))
    const mk = (state: 'ELECTED' | 'ALLOCATED' | 'DEALLOCATED' | 'ERROR', note = '') =>
      signReport(
        {
          request: 'a'.repeat(32),
          round: 0,
          history: '',
          state,
          instance: state === 'ALLOCATED' ? 'i' : '',
          note,
        },
        sig(B),
      )
    assert.equal(preferReport(mk('ELECTED'), mk('ALLOCATED')).state, 'ALLOCATED')
    assert.equal(preferReport(mk('ERROR'), mk('ALLOCATED')).state, 'ERROR')
    const [x, y] = [mk('ERROR', 'a'), mk('DEALLOCATED')]
    assert.equal(preferReport(x, y), preferReport(y, x))
  })

  it('glob matching', () => {
    const cases: Array<[string, string, boolean]> = [
      ['web-*', 'web-1', true],
      ['web-*', 'web-', true],
      ['web-*', 'db-1', false],
      ['db?', 'db1', true],
      ['db?', 'db12', false],
      ['*', '', true],
      ['*a*b*', 'xxaxxbxx', true],
      ['*a*b', 'xxaxxbxx', false],
      ['a*a*a*a*b', 'a'.repeat(60), false],
      ['node', 'node', true],
    ]
    for (const [g, n, want] of cases) assert.equal(globMatch(g, n), want, `${g} ~ ${n}`)
  })

  it('filters: every tag must match, and one name glob when there are any', () => {
    const m = { name: 'web-3', tags: { zone: 'eu', gpu: 'yes' } }
    assert.ok(matchesFilter({ tags: {}, names: [] }, m))
    assert.ok(matchesFilter({ tags: { zone: 'eu' }, names: ['db-*', 'web-*'] }, m))
    assert.equal(matchesFilter({ tags: { zone: 'us' }, names: [] }, m), false)
    assert.equal(matchesFilter({ tags: { rack: '1' }, names: [] }, m), false)
    assert.equal(matchesFilter({ tags: {}, names: ['db-*'] }, m), false)
    assert.equal(matchesFilter({ tags: { toString: 'x' }, names: [] }, m), false)
  })

  it('assess: every reason that applies, and a score from the slack left', () => {
    const r = request()
    const local: LocalState = {
      name: 'web-1',
      tags: { zone: 'eu', gpu: 'no' },
      computeTypes: ['docker', 'process'],
      serverTypes: ['base'],
      maintenance: false,
      free: { cpus: 2, memoryBytes: 4096, diskBytes: 100 },
      total: { cpus: 4, memoryBytes: 8192, diskBytes: 100 },
    }
    const yes = assess(r, local)
    assert.equal(yes.yes, true)
    // cpus: (2 - 0.5) / 4 = 0.375; memory: (4096 - 1024) / 8192 = 0.375; disk: 1
    assert.equal(yes.score, 375_000)
    const roomier = assess(r, { ...local, free: { cpus: 4, memoryBytes: 8192, diskBytes: 100 } })
    assert.ok(roomier.score > yes.score)
    const no = assess(r, {
      ...local,
      name: 'mail',
      computeTypes: ['process'],
      serverTypes: [],
      maintenance: true,
      free: { cpus: 0.25, memoryBytes: 4096, diskBytes: 0 },
    })
    assert.deepEqual(no.reasons, ['compute-type', 'server-type', 'capacity', 'maintenance', 'filter'])
    assert.equal(no.yes, false)
    assert.equal(no.score, 0)
    assert.match(no.note ?? '', /docker not available.*not enough cpus/)
    // signable as is
    signVote({ request: r.id, round: 0, history: '', tiebreak: 0, ...no, note: no.note ?? '' }, sig(B))
  })

  it('encodings are cached per object and stable', () => {
    const v = vote()
    assert.equal(encodeMessage(v), encodeMessage(v))
    assert.deepEqual(encodeMessage({ ...v }), encodeMessage(v))
  })
})
