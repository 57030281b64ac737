import '../../src/shim.js'
import assert from 'node:assert/strict'
import { dialRefused } from '../../src/node/dial-refused.js'
import type { NodeComponent } from '../../src/node/node-component.js'
import { type AgentProcess, agentAndDialer, Fixture } from './cluster-harness.js'

// membership.probeOnClose probes a member out of turn only when a redial is refused: a killed
// agent's port refuses at once, a starved one (here: stopped) never does. If a stopped member's
// failed dial counted, a loaded machine would probe live members early and suspect them.
describe('a redial is refused by a killed agent, never by a stopped one', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  let agent: AgentProcess
  let member: NodeComponent | undefined

  after(async () => {
    agent?.child?.kill('SIGCONT')
    await member?.stop().catch(() => {})
    await fx.cleanup()
  })

  it('stopped: the dial fails without a refusal; killed: refused', async () => {
    const made = await agentAndDialer(fx, 'dialrefused', { dialTimeoutMs: 2_000 })
    agent = made.agent
    member = made.member
    const { agentId } = made
    const m = member

    agent.child!.kill('SIGSTOP')
    let stoppedErr: unknown
    try {
      await m.node.dial(agentId)
    } catch (err) {
      stoppedErr = err
    } finally {
      agent.child!.kill('SIGCONT')
    }
    assert.ok(stoppedErr !== undefined, 'a stopped agent cannot finish the handshake')
    assert.equal(dialRefused(stoppedErr), false, `not a refusal: ${String(stoppedErr)}`)

    await agent.kill('SIGKILL')
    let killedErr: unknown
    try {
      await m.node.dial(agentId)
    } catch (err) {
      killedErr = err
    }
    assert.ok(killedErr !== undefined, 'a killed agent cannot be dialled')
    assert.equal(dialRefused(killedErr), true, `a refusal: ${String(killedErr)}`)
  })

  it('reads refusals inside the errors libp2p aggregates, and nothing else', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })
    const timeout = Object.assign(new Error('timed out'), { name: 'TimeoutError' })
    assert.equal(dialRefused(new AggregateError([timeout, refused], 'All multiaddr dials failed')), true)
    assert.equal(dialRefused(new AggregateError([timeout, timeout], 'All multiaddr dials failed')), false)
    assert.equal(dialRefused(new Error('wrapped', { cause: refused })), true)
    assert.equal(dialRefused(undefined), false)
    assert.equal(dialRefused('ECONNREFUSED'), false)
  })
})
