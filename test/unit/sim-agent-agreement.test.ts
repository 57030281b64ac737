import assert from 'node:assert/strict'
import { Probe, ProbeReply } from '../../protocols/membership.js'
import { Sim } from '../../sim/sim.js'

// What bench:sim-vs-real found the simulator doing otherwise than the agents (2026-12-04): the
// agent's own counters and connections are the reference here, the simulator must match them.
describe('sim agrees with the agent on what it sends and how a restart spreads', () => {
  it('idle probe payload is a Probe and a ProbeReply (with now_ms) per probe sent, and a round is a probe or a skip, as the agent counts it', () => {
    const n = 5
    const sim = new Sim({ seed: 1, expectedNodes: n, network: { latency: 'loopback' } })
    sim.form(n)
    sim.run(15_000)
    const skipped = () => sim.nodes.reduce((sum, x) => sum + x.swim.skippedProbes, 0)
    const p0 = sim.payload.probe
    const s0 = skipped()
    sim.run(45_000)
    // the agent's counter: each message's protobuf bytes plus its 1-byte length prefix
    const probe = Probe.encode({ seq: 40, target: '' }).length + 1
    const reply = ProbeReply.encode({ seq: 40, ack: true, nowMs: Date.now() }).length + 1
    const sent = (sim.payload.probe - p0) / (probe + reply)
    assert.ok(Number.isInteger(sent), `${sent} probes: payload not whole Probe + ProbeReply pairs`)
    // one round per member per second (idle: no indirect probes, no gossip); a round whose target
    // had just probed us sends nothing (Swim.heard: mesh_membership_probes_skipped on the agent)
    assert.equal(sent + skipped() - s0, n * 30)
    assert.ok(skipped() - s0 > 0, 'no probe skipped')
    assert.equal(sim.payload.gossip, 0, 'nothing published on gossipsub')
  })

  it('a restarted member is connected to every member it knew at once and alive everywhere within a second (20 members)', () => {
    const n = 20
    const sim = new Sim({ seed: 2, expectedNodes: n, network: { latency: 'loopback' } })
    sim.form(n)
    sim.run(10_000)
    sim.crash(5)
    sim.run(40_000)
    assert.equal(sim.tracker.detections.length, 1)
    const syncs = sim.syncs.connect
    sim.restart(5)
    // the agent: outbound connections to all 19 and 19 syncs before its control API answered
    for (let j = 0; j < n; j++) if (j !== 5) assert.ok(sim.connected(5, j), `connected to ${j}`)
    sim.run(sim.now + 10_000)
    assert.equal(sim.tracker.convergence.restart.length, 1)
    assert.ok(
      sim.tracker.convergence.restart[0] < 1_000,
      `alive everywhere after ${sim.tracker.convergence.restart[0]} ms`,
    )
    assert.ok(sim.syncs.connect - syncs >= n - 1, 'it synced with every member')
  })
})
