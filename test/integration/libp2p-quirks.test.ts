import '../../src/shim.js'
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import type { NodeComponent } from '../../src/node/node-component.js'
import { Fixture, inProcessMember, mesh } from './cluster-harness.js'

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
})
