import assert from 'node:assert/strict'
import { runScenario } from '../../sim/report.js'

// A small scenario in the normal suite: 50 members, 10% crash, 2 simulated minutes (a second
// or two of wall time). Safety: every crash seen dead by every live member, no live member
// marked dead or even suspected (no loss, no slow nodes), every view right at the end.
describe('sim regression: 50 members, 10% crash, 2 minutes', () => {
  it('detects every crash everywhere, with no false positives, and converges', function () {
    this.timeout(60_000)
    const { summary: s, sim } = runScenario({
      scenario: 'crash',
      params: { nodes: 50, durationMs: 120_000, seed: 1 },
    })
    assert.equal(s.detection.count, 5, 'five crashes, each seen dead by all')
    assert.equal(s.detection.pending, 0)
    assert.ok((s.detection.p99 ?? 99) < 40, `detection p99 ${s.detection.p99} s`)
    assert.equal(s.falsePositives.deadClaims, 0)
    assert.equal(s.falsePositives.suspectClaims, 0)
    assert.equal(s.violations.length, 0)
    assert.equal(sim.tracker.total, 0, 'every view right at the end')
    assert.notEqual(s.settleS, null)
    for (const o of sim.liveNodes()) {
      for (const m of sim.tracker.universe)
        assert.equal(sim.statusOf(o, m), sim.nodes[m].up ? 'alive' : 'dead')
    }
  })

  it('churn with loss: nothing stays wrong', function () {
    this.timeout(60_000)
    const { summary: s, sim } = runScenario({
      scenario: 'churn',
      params: { nodes: 50, durationMs: 240_000, seed: 2, startMs: 10_000, churnPerMin: 0.1 },
      sim: { network: { loss: 0.01 } },
    })
    assert.ok(
      s.detection.count + s.detection.undetected > 0 || s.convergence.join.count > 0,
      'something happened',
    )
    assert.equal(s.violations.length, 0)
    assert.equal(sim.tracker.total, 0)
  })

  it('a partition shorter than the suspicion timeout heals by refutation', function () {
    this.timeout(60_000)
    const { summary: s } = runScenario({
      scenario: 'partition',
      // 2 s: below the 3 s minimum suspicion (a longer cut now ends in death claims the heal refutes)
      params: { nodes: 50, durationMs: 120_000, seed: 3, partitionMs: 2_000 },
    })
    assert.equal(s.violations.length, 0)
    assert.notEqual(s.settleS, null)
    assert.equal(s.falsePositives.deadClaims, 0)
  })
})
