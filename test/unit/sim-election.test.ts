import assert from 'node:assert/strict'
import { runScenario } from '../../sim/report.js'

interface ElectionReport {
  requests: number
  decided: number
  allocated: number
  stillVoting: number
  safetyViolations: number
  violations: string[]
  decisionP50Ms: number | null
}

// Elections under churn with the real election core on every simulated member: many seeded
// runs of 20 members with members crashing, leaving, joining and restarting throughout (and 1%
// loss), a request every 2 s. Safety: never two live members acting for one request at once.
// Liveness: every request reaches a winner unless its requester went away.
describe('sim: elections under churn', () => {
  it('never two winners acting for one request, over many seeded elections', function () {
    this.timeout(120_000)
    let total = 0
    for (let seed = 1; seed <= 6; seed++) {
      const { summary } = runScenario({
        scenario: 'elections-churn',
        params: { nodes: 20, durationMs: 150_000, seed, startMs: 10_000, churnPerMin: 0.3 },
        sim: { network: { loss: 0.01 } },
      })
      const e = summary.extensions.election as ElectionReport
      assert.equal(e.safetyViolations, 0, `seed ${seed}: ${e.violations.join('; ')}`)
      assert.ok(e.requests >= 40, `seed ${seed}: ${e.requests} requests`)
      assert.ok(e.decided >= e.requests * 0.8, `seed ${seed}: only ${e.decided} of ${e.requests} decided`)
      assert.ok(e.allocated > 0)
      total += e.requests
    }
    assert.ok(total >= 240, `${total} elections in all`)
  })
})
