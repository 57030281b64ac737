import '../../src/shim.js'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Libp2p } from '@libp2p/interface'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { ConfigSchema } from '../../src/agent/config.js'
import { newCluster } from '../../src/node/cluster.js'
import { createMeshNode } from '../../src/node/libp2p.js'
import { Reporter } from '../../src/reporter/reporter.js'
import { type AgentProcess, Fixture, mesh, meshJson, waitFor } from './cluster-harness.js'

/** A libp2p node with no cluster key at all: what anyone on the internet could run. */
async function plainStranger(): Promise<Libp2p<any>> {
  return createLibp2p({
    addresses: { listen: [] },
    transports: [tcp(), webRTCDirect(), webRTC(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }),
    },
  })
}

describe('admission: strangers get no stream on any transport', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  let a: AgentProcess
  let b: AgentProcess
  let prefix: string
  let aAddrs: string[]
  let bId: string
  const strangers: Libp2p<any>[] = []

  before(async () => {
    const dirA = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dirA, 'init', '--cluster', 'lab'])).code, 0)
    const id = JSON.parse(readFileSync(join(dirA, 'cluster.json'), 'utf8')).id as string
    prefix = `/mesh/${id.slice(0, 16)}`
    // A also listens on WebRTC-direct (UDP), which pnet does not cover
    a = fx.agent(dirA).start(['--listen', '/ip4/127.0.0.1/udp/0/webrtc-direct'])
    aAddrs = (await a.ready()).listen
    b = fx.agent(fx.tempDir()).start(['--join', (await meshJson(dirA, ['invite'])).token])
    bId = (await b.ready()).peerId
    await waitFor('a and b admitted', async () =>
      (await meshJson(a.dataDir, ['peers'])).some((c: any) => c.peerId === bId && c.admitted),
    )
  })
  after(async () => {
    await Promise.all(strangers.map((s) => s.stop()))
    await fx.cleanup()
  })

  const tcpAddr = () => aAddrs.find((x) => x.includes('/tcp/') && !x.includes('p2p-circuit'))!

  it('TCP, no cluster key: the connection fails before any stream', async () => {
    const s = await plainStranger()
    strangers.push(s)
    await assert.rejects(s.dial(multiaddr(tcpAddr()), { signal: AbortSignal.timeout(10_000) }))
    assert.equal(s.getConnections().length, 0)
  })

  it('TCP, a member of another cluster: refused', async () => {
    const reporter = new Reporter({ level: 'silent' })
    const other = await createMeshNode({
      config: ConfigSchema.parse({ listen: [], relay: { server: false, reservations: 0 } }),
      cluster: newCluster('other'),
      privateKey: await generateKeyPair('Ed25519'),
      datastorePath: join(fx.tempDir(), 'ds'),
      reporter: reporter.forComponent('other'),
      // a full member of its own cluster: it accepts everyone of that cluster
      trust: { ours: () => new Uint8Array(), standing: () => ({ kind: 'member' }), isRevoked: () => false },
    })
    await other.start()
    strangers.push(other)
    await assert.rejects(other.dial(multiaddr(tcpAddr()), { signal: AbortSignal.timeout(10_000) }))
  })

  it('WebRTC-direct (no pnet): the connection opens but no stream is served either way, and it is closed', async () => {
    const s = await plainStranger()
    strangers.push(s)
    s.services.pubsub.subscribe('anything')
    const wd = aAddrs.find((x) => x.includes('/webrtc-direct/'))
    assert.ok(wd, `A listens on webrtc-direct: ${aAddrs.join(' ')}`)
    const conn = await s.dial(multiaddr(wd), { signal: AbortSignal.timeout(10_000) })
    // every protocol A speaks is refused: ping, identify, the DHT, gossip
    for (const proto of [
      `${prefix}/ping/1.0.0`,
      `${prefix}/id/1.0.0`,
      `${prefix}/kad/1.0.0`,
      '/meshsub/1.1.0',
      '/meshsub/1.2.0',
    ]) {
      await assert.rejects(
        conn.newStream(proto, { signal: AbortSignal.timeout(8_000) }).then(async (st) => {
          // a refused stream may negotiate and then be aborted: a read must fail or end empty
          const it = st[Symbol.asyncIterator]()
          const first = await it.next()
          if (first.done === true) throw new Error('closed without data')
          return st
        }),
        `stream on ${proto} must be refused`,
      )
    }
    await waitFor(
      'A to close the unauthenticated connection',
      async () => s.getConnections().length === 0,
      15_000,
    )
    assert.equal(s.services.pubsub.getPeers().length, 0, 'no gossip stream from A ever reached the stranger')
    const peers = await meshJson(a.dataDir, ['peers'])
    assert.ok(peers.every((c: any) => c.peerId !== s.peerId.toString()))
    const metrics = await fetchMetrics(a)
    assert.match(metrics, /mesh_node_auth_total\{result="timeout"\} [1-9]/)
  })

  it('relayed and WebRTC through a member relay: refused (the relay will not serve a stranger)', async () => {
    const s = await plainStranger()
    strangers.push(s)
    const bAddr = (await b.status()).listen.find(
      (x: string) => x.includes('/tcp/') && !x.includes('p2p-circuit'),
    )
    const aId = (await a.status()).peerId
    for (const target of [`${bAddr}/p2p-circuit/p2p/${aId}`, `${bAddr}/p2p-circuit/webrtc/p2p/${aId}`]) {
      await assert.rejects(s.dial(multiaddr(target), { signal: AbortSignal.timeout(10_000) }), target)
    }
    assert.equal(s.getConnections().length, 0)
  })
})

async function fetchMetrics(a: AgentProcess): Promise<string> {
  const { request } = await import('node:http')
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: join(a.dataDir, 'mesh.sock'), path: '/metrics' }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(body))
    })
    req.on('error', reject)
    req.end()
  })
}
