import assert from 'node:assert/strict'
import { LightRelayFilter } from '../../sim/light-relay.js'
import { runScenario } from '../../sim/report.js'
import type { Claim, SignedInfo } from '../../src/membership/record.js'

const record = (incarnation: number, status: 'alive' | 'left' = 'alive') =>
  ({ info: { peerId: 'x', incarnation, status }, sig: new Uint8Array(64) }) as unknown as SignedInfo
const claim = (incarnation: number, status: 'suspect' | 'dead', by: string): Claim => ({
  peerId: 'x',
  incarnation,
  status,
  by,
  sig: new Uint8Array(64),
})

/** suspectors in these tests are one-letter peer IDs */
const idx = (peer: string) => peer.charCodeAt(0)

describe('sim: light members pass on news outside their sample', () => {
  it('each member passes an item on once, and a newer one again', () => {
    const f = new LightRelayFilter(100, idx)
    const r1 = record(1)
    assert.equal(f.first(r1, 7, 3), true)
    assert.equal(f.first(r1, 7, 3), false, 'heard before')
    assert.equal(f.first(r1, 7, 4), true, 'another member')
    const r2 = record(2)
    assert.equal(f.first(r2, 7, 3), true, 'a newer incarnation')
    // an older record: not from one that heard the newer, once from one that did not
    assert.equal(f.first(r1, 7, 3), false)
    assert.equal(f.first(r1, 7, 5), true)
    assert.equal(f.first(r1, 7, 5), false)
    assert.equal(f.first(record(2, 'left'), 7, 3), true, 'left outranks alive at one incarnation')
  })

  it('suspicions from different suspectors are confirmations; a death ends them', () => {
    const f = new LightRelayFilter(100, idx)
    const s1 = claim(1, 'suspect', 'a')
    const s2 = claim(1, 'suspect', 'b')
    assert.equal(f.first(s1, 7, 3), true)
    assert.equal(f.first(s2, 7, 3), true, 'a second suspector')
    assert.equal(f.first(s2, 7, 3), false)
    const d1 = claim(1, 'dead', 'a')
    const d2 = claim(1, 'dead', 'c')
    assert.equal(f.first(d1, 7, 3), true)
    assert.equal(f.first(d2, 7, 3), false, 'a second death claim changes nothing')
    assert.equal(f.first(claim(1, 'suspect', 'd'), 7, 3), false, 'a suspicion after the death')
    assert.equal(f.first(s1, 7, 4), true, 'a member that heard nothing yet')
  })

  it('a member passes on the first suspicion and k confirmations, as its Lifeguard timer counts them', () => {
    const f = new LightRelayFilter(100, idx, 2)
    assert.equal(f.first(claim(1, 'suspect', 'a'), 7, 3), true, 'the first')
    assert.equal(f.first(claim(1, 'suspect', 'a'), 7, 3), false, 'the same suspector again')
    assert.equal(f.first(claim(1, 'suspect', 'b'), 7, 3), true, 'confirmation 1')
    assert.equal(f.first(claim(1, 'suspect', 'c'), 7, 3), true, 'confirmation 2')
    assert.equal(f.first(claim(1, 'suspect', 'd'), 7, 3), false, 'past k: not counted, not passed on')
    assert.equal(f.first(claim(1, 'suspect', 'd'), 7, 4), true, 'another member counts its own')
    assert.equal(f.first(claim(2, 'suspect', 'd'), 7, 3), true, 'a suspicion of a newer incarnation')
  })

  it('a claim older than a record the member heard is stale; members past the size pass nothing', () => {
    const f = new LightRelayFilter(100, idx)
    assert.equal(f.first(record(3), 7, 3), true)
    assert.equal(f.first(claim(2, 'dead', 'a'), 7, 3), false, 'refuted at incarnation 3')
    assert.equal(f.first(claim(3, 'suspect', 'a'), 7, 3), true, 'a suspicion of the refutation itself')
    assert.equal(f.first(claim(2, 'dead', 'a'), 7, 4), true, 'a member that never heard the refutation')
    assert.equal(f.first(record(4), 7, 100), false)
  })

  it('with light members a crash is seen dead by every observer; without relays it stalls', function () {
    this.timeout(60_000)
    // 300 members, 20 of them full, the light ones follow ~15: without relays news of a crash
    // reaches mostly the crashed member's ~15 followers and stops there
    const run = (lightRelay: boolean) =>
      runScenario({
        scenario: 'crash',
        params: { nodes: 300, durationMs: 60_000, seed: 7, startMs: 10_000 },
        sim: { fullMax: 60, observers: 20, sample: 15, lightRelay },
      }).summary
    const on = run(true)
    const off = run(false)
    assert.equal(on.detection.count, 30, 'every crash seen dead by all observers')
    assert.equal(on.detection.pending, 0)
    assert.ok(on.detection.p99 !== undefined && on.detection.p99 < 15, `p99 ${on.detection.p99} s`)
    assert.ok(off.detection.pending > 10, `without relays ${off.detection.pending} crashes still pending`)
  })
})
