import assert from 'node:assert/strict'
import { EventHeap } from '../../sim/heap.js'
import { runScenario, type Summary } from '../../sim/report.js'
import { Sim } from '../../sim/sim.js'

const strip = (s: Summary) => ({ ...s, wallS: 0 })

describe('sim determinism and basics', () => {
  it('the event queue runs events in time order, ties in the order they were scheduled', () => {
    const h = new EventHeap<{ at: number; seq: number; name: string }>()
    const names = ['c', 'a1', 'b', 'a2', 'a3', 'd']
    const at = [3, 1, 2, 1, 1, 4]
    names.forEach((name, i) => {
      h.push({ at: at[i], seq: 0, name })
    })
    const out: string[] = []
    for (let e = h.pop(); e !== undefined; e = h.pop()) out.push(e.name)
    assert.deepEqual(out, ['a1', 'a2', 'a3', 'b', 'c', 'd'])
  })

  it('the same seed gives identical results', function () {
    this.timeout(60_000)
    const run = () =>
      strip(
        runScenario({
          scenario: 'churn',
          params: { nodes: 40, durationMs: 120_000, seed: 7, startMs: 10_000, churnPerMin: 0.2 },
          sim: { network: { loss: 0.01 } },
        }).summary,
      )
    assert.deepEqual(run(), run())
  })

  it('the same seed gives identical results with light members too (the 10,000-member path)', function () {
    this.timeout(60_000)
    const run = () =>
      runScenario({
        scenario: 'crash',
        params: { nodes: 120, durationMs: 90_000, seed: 7, startMs: 10_000 },
        sim: { fullMax: 60, observers: 20, sample: 30 },
      }).summary
    const a = run()
    assert.equal(a.observers, 20, 'light members were used')
    assert.ok(a.detection.count + a.detection.pending === 12, 'every crash counted')
    assert.deepEqual(strip(a), strip(run()))
  })

  it("a light member's sample position is found for every member it follows, joiners too", function () {
    this.timeout(60_000)
    const sim = new Sim({ seed: 9, expectedNodes: 150, fullMax: 60, observers: 20, sample: 30 })
    sim.form(120)
    sim.run(5_000)
    for (let i = 0; i < 30; i++) sim.join(i)
    sim.run(30_000)
    let light = 0
    for (const node of sim.nodes) {
      if (node.full) continue
      light++
      assert.equal(node.slotOf(node.idx), 0)
      for (let j = 0; j < sim.nodes.length; j++) {
        const slot = node.slotOf(j)
        assert.equal(slot >= 0, node.follows(j), `node ${node.idx}, member ${j}`)
        if (slot >= 0) assert.equal(node.interest![slot], j)
      }
      // its table holds only members it follows (a row of any other would have thrown)
      for (const r of node.table.rows()) assert.ok(node.follows(sim.idxOf(r.peerId)))
    }
    assert.ok(light > 100)
  })

  it('a different seed gives different results', function () {
    this.timeout(60_000)
    const run = (seed: number) =>
      strip(runScenario({ scenario: 'crash', params: { nodes: 40, durationMs: 90_000, seed } }).summary)
    const a = run(1)
    const b = run(2)
    assert.notDeepEqual(a, b)
    assert.notDeepEqual(a.detection, b.detection)
  })

  it('a formed cluster holds every member alive in every view, and stays so with no loss', () => {
    const sim = new Sim({ seed: 3, expectedNodes: 20, network: { latency: 'lan' } })
    sim.form(20)
    assert.equal(sim.tracker.total, 0)
    for (let o = 0; o < 20; o++) for (let m = 0; m < 20; m++) assert.equal(sim.statusOf(o, m), 'alive')
    sim.run(60_000)
    assert.equal(sim.tracker.total, 0)
    assert.equal(sim.tracker.fp.suspectClaims, 0)
    assert.ok(sim.bytes.probe > 0, 'it probed')
  })

  it('a crashed member is suspected, then dead in every view; a restart brings it back alive', () => {
    const sim = new Sim({ seed: 4, expectedNodes: 20, network: { latency: 'lan' } })
    sim.form(20)
    sim.run(5_000)
    sim.crash(7)
    sim.run(60_000)
    for (const o of sim.liveNodes()) assert.equal(sim.statusOf(o, 7), 'dead', `view of ${o}`)
    assert.equal(sim.tracker.detections.length, 1)
    sim.restart(7)
    sim.run(120_000)
    for (const o of sim.liveNodes()) assert.equal(sim.statusOf(o, 7), 'alive', `view of ${o}`)
    assert.equal(sim.tracker.total, 0)
    assert.equal(sim.tracker.convergence.restart.length, 1)
  })

  it('piggybacked news reaches everyone at a fraction of what gossipsub spends (20 of 200 crash at once)', () => {
    const run = (dissemination: 'gossipsub' | 'piggyback') => {
      const sim = new Sim({ seed: 8, expectedNodes: 200, dissemination })
      sim.form(200)
      sim.run(5_000)
      for (let i = 0; i < 20; i++) sim.crash(i * 7)
      sim.run(65_000)
      for (const o of sim.liveNodes())
        for (let i = 0; i < 20; i++)
          assert.equal(sim.statusOf(o, i * 7), 'dead', `${dissemination}: view of ${o}`)
      assert.equal(sim.tracker.detections.length, 20)
      return sim.bytes.gossip + sim.bytes.ihave
    }
    const piggy = run('piggyback')
    const gossipsub = run('gossipsub')
    assert.ok(piggy * 3 < gossipsub, `piggyback ${piggy} B, gossipsub ${gossipsub} B`)
  })

  it('a joiner ends up in every table, and every table in the joiner', () => {
    const sim = new Sim({ seed: 5, expectedNodes: 11, network: { latency: 'lan' }, announceOnStart: false })
    sim.form(10)
    sim.run(2_000)
    const j = sim.join(3)
    sim.run(90_000)
    for (const o of sim.liveNodes()) assert.equal(sim.statusOf(o, j.idx), 'alive')
    assert.equal(j.table.size, 11)
    assert.equal(sim.tracker.total, 0)
  })

  it('a graceful leave shows as left everywhere at once', () => {
    const sim = new Sim({ seed: 6, expectedNodes: 10, network: { latency: 'lan' } })
    sim.form(10)
    sim.run(2_000)
    sim.leave(2)
    sim.run(3_000)
    for (const o of sim.liveNodes()) assert.equal(sim.statusOf(o, 2), 'left')
    sim.run(10_000)
    assert.equal(sim.nodes[2].up, false)
  })
})
