import '../../src/shim.js'
import assert from 'node:assert/strict'
import type { NodeComponent } from '../../src/node/node-component.js'
import { type AgentProcess, agentAndDialer, Fixture } from './cluster-harness.js'

// A dial gives up on a TCP connect after 1.5 s, but not on an upgrade (Noise, yamux) that a busy
// member answers late: that takes the dial's whole budget. With one 1.5 s deadline for both, 20
// agents on 2 cores beside other work aborted handshakes half done and suspected each other
// (sim/bench/fleet.ts). Here the member answers the handshake only after being stopped for 3 s.
const STALL_MS = 3_000

describe('dial deadlines: a member that answers its handshake late still gets connected', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  let agent: AgentProcess
  let member: NodeComponent | undefined
  let stopped = false

  after(async () => {
    if (stopped) agent.child?.kill('SIGCONT')
    await member?.stop().catch(() => {})
    await fx.cleanup()
  })

  it('stopped for 3 s while a member dials it: the dial waits and connects, admitted', async () => {
    // a dial budget well above the stall (the default, 5 s, is what agents use)
    const made = await agentAndDialer(fx, 'dialdeadline', { dialTimeoutMs: 15_000 })
    agent = made.agent
    member = made.member
    const { addr, agentId } = made
    const m = member
    assert.equal(m.node.getConnections(agentId).length, 0)

    agent.child!.kill('SIGSTOP')
    stopped = true
    const t0 = Date.now()
    const resume = setTimeout(() => {
      agent.child!.kill('SIGCONT')
      stopped = false
    }, STALL_MS)
    try {
      // the kernel accepts the TCP connection for the stopped process; Noise waits for it
      const conn = await m.node.dial(addr)
      const took = Date.now() - t0
      console.log(
        `      connected ${took} ms after the dial began (the member was stopped for ${STALL_MS} ms)`,
      )
      assert.ok(took >= STALL_MS - 50, 'it could only connect once the member ran again')
      assert.equal(await m.node.services.admission.admitted(conn), true)
    } finally {
      clearTimeout(resume)
      if (stopped) {
        agent.child!.kill('SIGCONT')
        stopped = false
      }
    }
  })
})
