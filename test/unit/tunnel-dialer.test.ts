import '../../src/shim.js'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { type AddressInfo, createServer } from 'node:net'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Libp2p } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { MeshLibp2p } from '../../src/node/libp2p.js'
import { splitAddrs, TunnelDialer } from '../../src/tunnel/dialer.js'

// The tunnel dialer's choices that need no second member: which addresses of a record it dials
// as direct and which as relay circuits, and the order of the two phases (relay first for a
// while after a direct failure). Real libp2p with TCP on loopback; the target is a port where
// nothing speaks libp2p, so every dial fails fast and says why.

const newPeer = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()

describe('tunnel dialer', () => {
  let target: string
  let relay: string
  let self: string
  before(async () => {
    ;[target, relay, self] = await Promise.all([newPeer(), newPeer(), newPeer()])
  })

  describe('splitAddrs', () => {
    it('direct addresses get the target peer ID; circuits through a third member are relays', () => {
      const { direct, relayed } = splitAddrs(
        target,
        [
          '/ip4/198.18.0.1/tcp/4001',
          `/ip4/198.18.0.2/tcp/4001/p2p/${target}`,
          `/ip4/198.18.0.3/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${target}`,
          `/ip4/198.18.0.4/tcp/4001/p2p/${relay}/p2p-circuit`,
        ],
        self,
      )
      assert.deepEqual(
        direct.map((m) => m.toString()),
        [`/ip4/198.18.0.1/tcp/4001/p2p/${target}`, `/ip4/198.18.0.2/tcp/4001/p2p/${target}`],
      )
      assert.deepEqual(
        relayed.map((m) => m.toString()),
        [
          `/ip4/198.18.0.3/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${target}`,
          `/ip4/198.18.0.4/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${target}`,
        ],
      )
    })

    it("drops garbage, someone else's addresses, circuits through ourselves or the target, and WebRTC", () => {
      const { direct, relayed } = splitAddrs(
        target,
        [
          'not an address',
          `/ip4/198.18.0.1/tcp/4001/p2p/${relay}`,
          `/ip4/198.18.0.2/tcp/4001/p2p/${self}/p2p-circuit/p2p/${target}`,
          `/ip4/198.18.0.3/tcp/4001/p2p/${target}/p2p-circuit/p2p/${target}`,
          `/ip4/198.18.0.4/tcp/4001/p2p/${relay}/p2p-circuit/webrtc/p2p/${target}`,
        ],
        self,
      )
      assert.deepEqual(direct, [])
      assert.deepEqual(relayed, [])
    })
  })

  describe('dial order', () => {
    let node: Libp2p
    let server: ReturnType<typeof createServer>
    let port: number
    before(async () => {
      // accepts TCP and closes at once: a direct dial fails there without waiting for a timeout
      server = createServer((s) => s.destroy())
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      port = (server.address() as AddressInfo).port
      node = await createLibp2p({
        addresses: { listen: [] },
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
      })
    })
    after(async () => {
      await node?.stop()
      server?.close()
    })

    const dialer = () =>
      new TunnelDialer(() => node as unknown as MeshLibp2p, {
        protocol: '/test/tunnel/1.0.0',
        streamTimeoutMs: 5_000,
        directDialTimeoutMs: 5_000,
        dialTimeoutMs: 5_000,
      })
    const addrs = () => [
      `/ip4/127.0.0.1/tcp/${port}/p2p/${target}`,
      `/ip4/127.0.0.1/tcp/${port}/p2p/${relay}/p2p-circuit/p2p/${target}`,
    ]
    const phases = (errors: string[]) => errors.map((e) => e.split(':')[0])

    it('direct first; a failed direct dial makes the relay go first for that member, a success forgets it', async () => {
      const d = dialer()
      const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const tgt = peerIdFromString(target)
      let errors: string[] = []
      await assert.rejects(
        d.dial(tgt, addrs(), AbortSignal.timeout(20_000), errors),
        /direct dial: .*relayed dial: /,
      )
      assert.deepEqual(phases(errors).slice(0, 2), ['direct dial', 'relayed dial'])
      assert.ok(d.directFailedRecently(target), 'the failed direct dial is remembered')
      assert.equal(d.directFailedRecently(peer.toString()), false, 'for that member only')
      errors = []
      await assert.rejects(d.dial(tgt, addrs(), AbortSignal.timeout(20_000), errors))
      assert.equal(phases(errors)[0], 'relayed dial', 'the relay goes first now')
      assert.equal(phases(errors).at(-1), 'direct dial', 'and direct is still tried after it')
      assert.equal(d.directFailedRecently(target, Date.now() + 61_000), false, 'for a minute')
      d.noteDirect(target, true)
      assert.equal(d.directFailedRecently(target), false)
    })

    it('nothing to dial: says so; a caller that gives up gets its abort, not a dial error', async () => {
      const tgt = peerIdFromString(target)
      const errors: string[] = []
      await assert.rejects(
        dialer().dial(tgt, ['garbage'], AbortSignal.timeout(10_000), errors),
        /^Error: dial: /,
      )
      const ctl = new AbortController()
      ctl.abort()
      await assert.rejects(dialer().dial(tgt, addrs(), ctl.signal), (e: Error) => e.name === 'AbortError')
    })
  })

  describe('a slow stream open', () => {
    it('does not abort a connection a stream has opened on since it began (that tunnel would break)', async () => {
      const tgt = peerIdFromString(target)
      // the first stream open hangs until its timeout; every later one opens at once
      let calls = 0
      const aborted: Error[] = []
      const conn = {
        status: 'open',
        remoteAddr: multiaddr(`/ip4/198.18.0.1/tcp/4701/p2p/${target}`),
        newStream: (_p: string, o: { signal: AbortSignal }) =>
          calls++ === 0
            ? new Promise((_, rej) => o.signal.addEventListener('abort', () => rej(o.signal.reason)))
            : Promise.resolve({ id: `s${calls}` }),
        abort: (err: Error) => aborted.push(err),
      } as unknown as Connection
      const fake = {
        getConnections: () => [conn],
        services: { admission: { connectionAdmitted: () => true } },
      }
      const d = new TunnelDialer(() => fake as unknown as MeshLibp2p, {
        protocol: '/test/tunnel/1.0.0',
        streamTimeoutMs: 2_000,
        directDialTimeoutMs: 1_000,
        dialTimeoutMs: 1_000,
      })
      const slow = d.open(tgt, [], AbortSignal.timeout(10_000))
      // the first attempt has lost its quick window (1 s); a second tunnel opens meanwhile
      await new Promise((r) => setTimeout(r, 1_200))
      const second = await d.open(tgt, [], AbortSignal.timeout(10_000))
      assert.equal(second.connection, conn)
      await assert.rejects(slow, /no stream within .*timeout|aborted/i)
      assert.equal(aborted.length, 0, 'the connection the second tunnel runs on is left open')
      // with no stream since, a timeout still means the connection is dead
      calls = 0
      await assert.rejects(d.open(tgt, [], AbortSignal.timeout(10_000)))
      assert.equal(aborted.length, 1)
      assert.match(aborted[0].message, /connection unresponsive/)
    })
  })
})
