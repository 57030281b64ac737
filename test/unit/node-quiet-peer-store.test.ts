import '../../src/shim.js'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2pEvents, PeerId } from '@libp2p/interface'
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
  const third = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const datastore = new MemoryDatastore()
  let puts = 0
  let gets = 0
  const put = datastore.put.bind(datastore)
  datastore.put = (...args: Parameters<typeof put>) => {
    puts++
    return put(...args)
  }
  const dsGet = datastore.get.bind(datastore)
  datastore.get = (...args: Parameters<typeof dsGet>) => {
    gets++
    return dsGet(...args)
  }
  const events = new TypedEventEmitter<Libp2pEvents>()
  const peerStore = persistentPeerStore({ peerId: self, datastore, events, logger: defaultLogger() })
  const connected = new Set<string>()
  const connectionManager = {
    getConnections: (peer?: PeerId) => (peer !== undefined && connected.has(peer.toString()) ? [{}] : []),
  }
  const quiet = new QuietPeerStore({ peerStore, events, connectionManager })
  quiet.start()
  return {
    peerStore,
    events,
    other,
    third,
    connected,
    puts: () => puts,
    gets: () => gets,
    stop: () => quiet.stop(),
  }
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

describe('quiet peer store: reads of a connected peer', () => {
  it('are answered from memory until a write or a disconnect, and never stale', async () => {
    const s = await setup()
    try {
      const a1 = multiaddr('/ip4/127.0.0.1/tcp/4101')
      const a2 = multiaddr('/ip4/127.0.0.1/tcp/4102')
      await s.peerStore.merge(s.other, { multiaddrs: [a1], tags: { member: { value: 50 } } })
      // not connected: every read goes to the datastore
      let before = s.gets()
      await s.peerStore.get(s.other)
      await s.peerStore.get(s.other)
      assert.equal(s.gets() - before, 2)
      // connected: read once
      s.connected.add(s.other.toString())
      before = s.gets()
      for (let i = 0; i < 10; i++) assert.ok((await s.peerStore.get(s.other)).tags.has('member'))
      assert.equal(s.gets() - before, 1)
      // a write (a new address, identify replacing protocols, a patch) is seen at once
      await s.peerStore.merge(s.other, { multiaddrs: [a2] })
      let peer = await s.peerStore.get(s.other)
      assert.ok(peer.addresses.some((a) => a.multiaddr.equals(a2)))
      await s.peerStore.patch(s.other, { protocols: ['/x/1.0.0'], multiaddrs: [a1] })
      peer = await s.peerStore.get(s.other)
      assert.deepEqual(peer.protocols, ['/x/1.0.0'])
      // a read that overlaps a write does not keep the older record
      const [, during] = await Promise.all([
        s.peerStore.merge(s.other, { tags: { member: { value: 60 } } }),
        s.peerStore.get(s.other),
      ])
      assert.ok(during !== undefined)
      assert.equal((await s.peerStore.get(s.other)).tags.get('member')?.value, 60)
      // disconnected: its record leaves memory
      s.connected.delete(s.other.toString())
      s.events.safeDispatchEvent('peer:disconnect', { detail: s.other })
      before = s.gets()
      await s.peerStore.get(s.other)
      await s.peerStore.get(s.other)
      assert.equal(s.gets() - before, 2)
      // deleted: not found, whatever was cached
      s.connected.add(s.other.toString())
      await s.peerStore.get(s.other)
      await s.peerStore.delete(s.other)
      await assert.rejects(s.peerStore.get(s.other), { name: 'NotFoundError' })
    } finally {
      s.stop()
    }
  })
})

describe('quiet peer store: protocol merges', () => {
  it('a merge naming protocols a connected peer is known to speak writes nothing; any other does', async () => {
    const s = await setup()
    try {
      s.connected.add(s.other.toString())
      await s.peerStore.merge(s.other, { protocols: ['/a/1.0.0', '/b/1.0.0'] })
      let before = s.puts()
      for (let i = 0; i < 5; i++) await s.peerStore.merge(s.other, { protocols: ['/a/1.0.0'] })
      assert.equal(s.puts(), before, 'a stream per probe, no write')
      await s.peerStore.merge(s.other, { protocols: ['/c/1.0.0'] })
      assert.equal(s.puts(), before + 1, 'a new protocol is written')
      assert.deepEqual((await s.peerStore.get(s.other)).protocols.sort(), [
        '/a/1.0.0',
        '/b/1.0.0',
        '/c/1.0.0',
      ])
      // not connected: nothing is kept, every merge goes to the store
      s.connected.delete(s.other.toString())
      s.events.safeDispatchEvent('peer:disconnect', { detail: s.other })
      before = s.puts()
      await s.peerStore.merge(s.other, { protocols: ['/a/1.0.0'] })
      assert.equal(s.puts(), before + 1)
    } finally {
      s.stop()
    }
  })
})

describe('quiet peer store: many peers written at once', () => {
  it("one peer's write does not stop another's record from being kept (a join storm)", async () => {
    const s = await setup()
    try {
      s.connected.add(s.other.toString())
      s.connected.add(s.third.toString())
      // both peers' first protocol merges overlap, as streams from many members do in a storm
      await Promise.all([
        s.peerStore.merge(s.other, { protocols: ['/a/1.0.0'] }),
        s.peerStore.merge(s.third, { protocols: ['/a/1.0.0'] }),
      ])
      const before = s.puts()
      for (let i = 0; i < 3; i++) {
        await Promise.all([
          s.peerStore.merge(s.other, { protocols: ['/a/1.0.0'] }),
          s.peerStore.merge(s.third, { protocols: ['/a/1.0.0'] }),
        ])
      }
      assert.equal(s.puts(), before, 'protocols both peers are known to speak: no write')
    } finally {
      s.stop()
    }
  })
})
