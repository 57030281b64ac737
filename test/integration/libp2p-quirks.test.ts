import '../../src/shim.js'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import { INBOUND_LIMITS } from '../../src/node/inbound-limits.js'
import { MAX_STRETCH } from '../../src/node/local-lag.js'
import type { NodeComponent } from '../../src/node/node-component.js'
import { Fixture, inProcessMember, mesh, waitFor } from './cluster-harness.js'

// Work-arounds for libp2p 3.3.11 behaviour that took agents down, checked on a real node.
describe('libp2p quirks the agent guards against', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  let n: NodeComponent | undefined

  after(async () => {
    await n?.stop().catch(() => {})
    await fx.cleanup()
  })

  it('a relay address without a network part (from a reservation over WebRTC) is ignored, not thrown', async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init', '--cluster', 'quirks'])).code, 0)
    const founder = fx.agent(dir, ['--name', 'founder']).start()
    await founder.ready(30_000)
    n = await inProcessMember(fx.tempDir(), dir, 'm')
    await n.start()
    const am = n.node.services.addresses
    const relay = (await founder.status()).peerId
    const bare = multiaddr(`/webrtc/p2p/${relay}/p2p-circuit`)
    // what the circuit-relay listener does with every address of a new reservation
    assert.doesNotThrow(() => am.confirmObservedAddr(bare, { type: 'transport' }))
    assert.doesNotThrow(() => am.removeObservedAddr(bare))
    assert.equal(
      n.node.getMultiaddrs().some((a) => a.toString().startsWith('/webrtc')),
      false,
      'and it is not announced',
    )
  })

  it("a starved agent stretches libp2p's inbound upgrade deadline (a field of libp2p's upgrader it reads per connection)", async () => {
    assert.ok(n, 'the member of the first test')
    const tcp = n.node.getMultiaddrs().find((a) => a.toString().startsWith('/ip4/127.0.0.1/tcp/'))
    assert.ok(tcp)
    const parts = tcp.getComponents()
    const host = parts[0].value ?? ''
    const port = Number(parts[1].value)
    /** a socket that never starts Noise: closed by the upgrade deadline only */
    const silent = async () => {
      const sock = connect(port, host)
      const closed = { at: 0 }
      sock.on('close', () => (closed.at = Date.now()))
      sock.on('error', () => {})
      await once(sock, 'connect')
      return { sock, closed }
    }
    // as after two seconds of starvation: deadlines at 8x
    n.lag.sample(2_000)
    const late = await silent()
    await new Promise((r) => setTimeout(r, INBOUND_LIMITS.upgradeTimeoutMs + 3_000))
    assert.equal(late.closed.at, 0, 'still pending well past the healthy deadline')
    late.sock.destroy()
    // healthy again: a silent socket is closed by the (then short) deadline
    for (let i = 0; i < 40; i++) n.lag.sample(0)
    const opened = Date.now()
    const healthy = await silent()
    await waitFor(
      'the silent socket to be closed',
      async () => healthy.closed.at > 0,
      INBOUND_LIMITS.upgradeTimeoutMs * MAX_STRETCH + 5_000,
      100,
    )
    console.log(
      `      a silent socket closed after ${healthy.closed.at - opened} ms (lag now ${n.lag.ms.toFixed(0)} ms)`,
    )
  })
})
