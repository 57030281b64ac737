import '../../src/shim.js'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2pEvents } from '@libp2p/interface'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { persistentPeerStore } from '@libp2p/peer-store'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryDatastore } from 'datastore-core'
import { TypedEventEmitter } from 'main-event'
import { QuietPeerStore } from '../../src/node/quiet-peer-store.js'

const stamp = () => new TextEncoder().encode(String(Date.now()))

/** libp2p's own persistent peer store on a datastore that counts its writes */
async function setup() {
  const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const datastore = new MemoryDatastore()
  let puts = 0
  const put = datastore.put.bind(datastore)
  datastore.put = (...args: Parameters<typeof put>) => {
    puts++
    return put(...args)
  }
  const events = new TypedEventEmitter<Libp2pEvents>()
  const peerStore = persistentPeerStore({ peerId: self, datastore, events, logger: defaultLogger() })
  const quiet = new QuietPeerStore({ peerStore, events })
  quiet.start()
  return { peerStore, other, puts: () => puts, stop: () => quiet.stop() }
}

describe('quiet peer store: the dialer stamps', () => {
  it('a dial that failed writes nothing (libp2p stamps last-dial-failure and never reads it)', async () => {
    const s = await setup()
    try {
      await s.peerStore.merge(s.other, { multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/4001')] })
      const before = s.puts()
      await s.peerStore.merge(s.other, { metadata: { 'last-dial-failure': stamp() } })
      assert.equal(s.puts(), before)
      assert.equal((await s.peerStore.get(s.other)).metadata.has('last-dial-failure'), false)
    } finally {
      s.stop()
    }
  })

  it('a dial that succeeded still records a new address, without the stamp', async () => {
    const s = await setup()
    try {
      const addr = multiaddr('/ip4/127.0.0.1/tcp/4002')
      await s.peerStore.merge(s.other, { multiaddrs: [addr], metadata: { 'last-dial-success': stamp() } })
      const peer = await s.peerStore.get(s.other)
      assert.ok(peer.addresses.some((a) => a.multiaddr.equals(addr)))
      assert.equal(peer.metadata.has('last-dial-success'), false)
    } finally {
      s.stop()
    }
  })

  it('other metadata is still written', async () => {
    const s = await setup()
    try {
      await s.peerStore.merge(s.other, { metadata: { note: stamp(), 'last-dial-success': stamp() } })
      const peer = await s.peerStore.get(s.other)
      assert.equal(peer.metadata.has('note'), true)
    } finally {
      s.stop()
    }
  })
})
