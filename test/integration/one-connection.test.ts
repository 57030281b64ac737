import '../../src/shim.js'
import assert from 'node:assert/strict'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { NodeComponent } from '../../src/node/node-component.js'
import { OneConnectionPerPeer } from '../../src/node/one-connection.js'
import { pathKind } from '../../src/node/paths.js'
import {
  type AgentProcess,
  allAlive,
  bareTcpNode,
  Fixture,
  inProcessMember,
  mesh,
  meshJson,
  waitFor,
} from './cluster-harness.js'

// Two members that dial each other at the same moment (a join storm, both reconnect ticks)
// both succeed, and libp2p kept both connections: each with its own liveness pings, yamux and
// Noise state and heap (issue 18). A pair now settles on the connection dialled by the
// smaller peer ID, on both ends, and what rode the other one carries on.

const open = (n: NodeComponent, peer: string) =>
  n.node.getConnections().filter((c) => c.remotePeer.toString() === peer && c.status === 'open')

describe('one connection per pair of members', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  const nodes: NodeComponent[] = []
  let founder: AgentProcess

  after(async () => {
    await Promise.allSettled(nodes.map((n) => n.stop()))
    await fx.cleanup()
  })

  it('crossed dials end with one connection, the same on both ends, and gossip goes both ways', async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init', '--cluster', 'pair'])).code, 0)
    founder = fx.agent(dir, ['--name', 'founder']).start()
    await founder.ready(30_000)
    for (const name of ['b', 'c']) {
      const n = await inProcessMember(fx.tempDir(), dir, name)
      await n.start()
      nodes.push(n)
    }
    const [b, c] = nodes
    const bId = b.node.peerId.toString()
    const cId = c.node.peerId.toString()
    const topic = '/mesh-test/pair'
    for (const n of nodes) n.node.services.pubsub.subscribe(topic)

    // both dial at once, each a connection of its own (force: libp2p would otherwise hand back
    // a connection that finished first; in a storm both dials are in flight before either ends)
    const [fromB, fromC] = await Promise.all([
      b.node.dial(c.node.getMultiaddrs()[0], { force: true, signal: AbortSignal.timeout(20_000) }),
      c.node.dial(b.node.getMultiaddrs()[0], { force: true, signal: AbortSignal.timeout(20_000) }),
    ])
    assert.notEqual(fromB.id, fromC.id)
    const kept = bId < cId ? fromB : fromC
    const dropped = kept === fromB ? fromC : fromB

    await waitFor(
      'each end to hold one connection to the other',
      async () => open(b, cId).length === 1 && open(c, bId).length === 1,
      60_000,
      250,
    )
    assert.equal(dropped.status, 'closed', 'the larger peer ID’s dial was closed')
    assert.equal(kept.status, 'open', 'the smaller peer ID’s dial is kept')
    // the same connection on both ends: one side's outbound is the other's inbound
    const [onB] = open(b, cId)
    const [onC] = open(c, bId)
    assert.notEqual(onB.direction, onC.direction)
    assert.equal((bId < cId ? onB : onC).direction, 'outbound')

    // gossip both ways, over the kept connection (gossipsub re-opened its streams there)
    for (const [from, to] of [
      [b, c],
      [c, b],
    ] as const) {
      let got = false
      const listener = (e: CustomEvent<{ topic: string }>) => {
        if (e.detail.topic === topic) got = true
      }
      to.node.services.pubsub.addEventListener('message', listener)
      await waitFor(
        `a message from ${from === b ? 'b' : 'c'} to arrive`,
        async () => {
          if (got) return true
          await from.node.services.pubsub.publish(topic, new TextEncoder().encode('hi')).catch(() => {})
          return got
        },
        60_000,
        1_000,
      )
      to.node.services.pubsub.removeEventListener('message', listener)
    }
    assert.equal(open(b, cId).length, 1)
    assert.equal(open(c, bId).length, 1)
  })
})

/** /v1/peers of an agent: its connections by peer. */
async function connectionsByPeer(a: AgentProcess): Promise<Map<string, number>> {
  const st = await a.api.call<{ connections: Array<{ peerId: string }> }>('GET', '/v1/peers')
  const by = new Map<string, number>()
  for (const c of st.connections) by.set(c.peerId, (by.get(c.peerId) ?? 0) + 1)
  return by
}

describe('one connection per pair: real agents joining at once', function () {
  this.timeout(300_000)
  const fx = new Fixture()
  after(() => fx.cleanup())

  it('four agents that join together end with one connection per pair, and still see a kill -9', async () => {
    const dirs = [0, 1, 2, 3].map(() => fx.tempDir())
    assert.equal((await mesh(['--data-dir', dirs[0], 'init', '--cluster', 'storm'])).code, 0)
    const founder = fx.agent(dirs[0], ['--name', 'a0']).start()
    await founder.ready(30_000)
    const tokens: string[] = []
    for (let i = 1; i < dirs.length; i++)
      tokens.push((await meshJson<{ token: string }>(dirs[0], ['invite'])).token)
    // the joiners all at once: each learns the others from the founder and dials them while
    // they dial it
    const agents = [founder]
    for (let i = 1; i < dirs.length; i++)
      agents.push(fx.agent(dirs[i], ['--name', `a${i}`]).start(['--join', tokens[i - 1]]))
    await Promise.all(agents.map((a) => a.ready(60_000)))
    await allAlive(agents, 120_000)
    await waitFor(
      'every agent to hold exactly one connection to each of the others',
      async () => {
        for (const a of agents) {
          const by = await connectionsByPeer(a)
          if (by.size !== agents.length - 1 || [...by.values()].some((n) => n !== 1)) return false
        }
        return true
      },
      90_000,
      1_000,
    )
    // `mesh status` shows each connection's round-trip time (a muxer ping, not a ping stream)
    for (const a of agents) {
      const conns = ((await a.status()).connections ?? []) as Array<{ peerId: string; rttMs?: number }>
      assert.equal(conns.length, agents.length - 1)
      for (const c of conns) assert.ok(typeof c.rttMs === 'number' && c.rttMs >= 0, `an RTT to ${c.peerId}`)
    }
    // membership still works over the kept connections: a kill -9 is seen by the others
    const victim = agents[3]
    const victimId = (await victim.status()).peerId as string
    await victim.kill('SIGKILL')
    await waitFor(
      'the others to mark the killed agent dead',
      async () => {
        for (const a of agents.slice(0, 3)) {
          const rows = await meshJson<Array<{ peerId: string; status: string }>>(a.dataDir, ['members'])
          if (rows.find((r) => r.peerId === victimId)?.status !== 'dead') return false
        }
        return true
      },
      60_000,
      500,
    )
    await allAlive(agents.slice(0, 3), 10_000, 'the three others to stay alive')
  })
})

/** Two plain libp2p nodes on loopback, each settling its pairs with the rule (admission aside). */
describe('one connection per pair: a stream on the redundant connection is waited for', function () {
  this.timeout(60_000)
  const HOLD = '/mesh-test/hold/1.0.0'
  const LINK = '/mesh-test/link/1.0.0'
  let a: Libp2p | undefined
  let b: Libp2p | undefined
  const settlers: OneConnectionPerPeer[] = []

  afterEach(async () => {
    for (const s of settlers) s.stop()
    await Promise.allSettled([a?.stop(), b?.stop()])
  })

  const settlerOf = (n: Libp2p, hold: 'wait' | 'bounded') => {
    const s = new OneConnectionPerPeer({
      self: n.peerId,
      connections: (p) => n.getConnections(p),
      admitted: () => true,
      streamKind: (p) => (p === LINK ? 'reopen' : hold),
      recheckMs: 200,
      graceMs: 1_500,
    })
    settlers.push(s)
    return s
  }

  const node = bareTcpNode
  // the far end of a closed connection learns of the close from the socket, a moment later
  const bothHoldOne = () =>
    waitFor(
      'both ends to hold one connection',
      async () => a!.getConnections(b!.peerId).length === 1 && b!.getConnections(a!.peerId).length === 1,
      5_000,
      50,
    )

  it('closes the redundant connection only once its other streams have ended, and they work till then', async () => {
    a = await node()
    b = await node()
    // an echo on both ends: HOLD stands for a tunnel (must not be cut), LINK for a probe link
    for (const n of [a, b])
      await n.handle([HOLD, LINK], async (stream: Stream) => {
        for await (const chunk of stream) stream.send(chunk.subarray())
        await stream.close().catch(() => {})
      })
    const settler = (n: Libp2p) => settlerOf(n, 'wait')
    const [sa, sb] = [settler(a), settler(b)]
    const [fromA, fromB] = await Promise.all([
      a.dial(multiaddr(`${b.getMultiaddrs()[0]}`), { force: true }),
      b.dial(multiaddr(`${a.getMultiaddrs()[0]}`), { force: true }),
    ])
    const aIsSmaller = a.peerId.toString() < b.peerId.toString()
    const dropped: Connection = aIsSmaller ? fromB : fromA
    const dialer = aIsSmaller ? b : a
    // a held stream and a link on the connection to drop, opened by its dialer
    const hold = await dropped.newStream(HOLD)
    const link = await dropped.newStream(LINK)
    const echoes = async (s: Stream, text: string) => {
      const reply = new Promise<string>((resolve) =>
        s.addEventListener('message', (e) => resolve(new TextDecoder().decode(e.data.subarray())), {
          once: true,
        }),
      )
      s.send(new TextEncoder().encode(text))
      return reply
    }
    assert.equal(await echoes(hold, 'one'), 'one')
    await waitFor(
      'both connections to be open on both ends',
      async () => a!.getConnections(b!.peerId).length === 2 && b!.getConnections(a!.peerId).length === 2,
      10_000,
      50,
    )
    sa.check(b.peerId)
    sb.check(a.peerId)
    // the held stream keeps its connection: a while later both are still there and it echoes
    await new Promise((r) => setTimeout(r, 1_000))
    assert.equal(dropped.status, 'open')
    assert.equal(await echoes(hold, 'two'), 'two')
    // a new stream to the peer lands on the kept connection, not the one being drained
    const fresh = await dialer.dialProtocol(dialer === a ? b.peerId : a.peerId, LINK)
    assert.ok(!dropped.streams.includes(fresh))
    await fresh.close()
    // the held stream ends: the connection goes, the link on it with it
    await hold.close()
    await waitFor('the redundant connection to close', async () => dropped.status === 'closed', 10_000, 100)
    assert.notEqual(link.status, 'open')
    await bothHoldOne()
  })
  it('a request stream that outlives its grace no longer holds the redundant connection', async () => {
    a = await node()
    b = await node()
    for (const n of [a, b])
      await n.handle(HOLD, async (stream: Stream) => {
        for await (const chunk of stream) stream.send(chunk.subarray())
      })
    const [sa, sb] = [settlerOf(a, 'bounded'), settlerOf(b, 'bounded')]
    const [fromA, fromB] = await Promise.all([
      a.dial(multiaddr(`${b.getMultiaddrs()[0]}`), { force: true }),
      b.dial(multiaddr(`${a.getMultiaddrs()[0]}`), { force: true }),
    ])
    const dropped = a.peerId.toString() < b.peerId.toString() ? fromB : fromA
    await dropped.newStream(HOLD) // a request whose reply never comes
    await waitFor(
      'both connections to be open on both ends',
      async () => a!.getConnections(b!.peerId).length === 2 && b!.getConnections(a!.peerId).length === 2,
      10_000,
      50,
    )
    sa.check(b.peerId)
    sb.check(a.peerId)
    await new Promise((r) => setTimeout(r, 500))
    assert.equal(dropped.status, 'open', 'waited for within the grace')
    await waitFor(
      'the redundant connection to close after the grace',
      async () => dropped.status === 'closed',
      10_000,
      100,
    )
    await bothHoldOne()
  })
})

/**
 * A relayed connection beside a direct one (50-agent fleets kept a few for good, each holding a
 * hop on a third member): both ends close it once what rides it is free, on real libp2p with a
 * real circuit relay on loopback. A stream whose user does not move (WebRTC signalling, the
 * overlay's datagram offer, a tunnel) holds it; without a direct connection it is never touched.
 */
describe('one connection per pair: a relayed connection beside a direct one', function () {
  this.timeout(60_000)
  const HOLD = '/mesh-test/hold/1.0.0'
  const LINK = '/mesh-test/link/1.0.0'
  const STOP = '/libp2p/circuit/relay/0.2.0/stop'
  const nodes: Libp2p[] = []
  const settlers: OneConnectionPerPeer[] = []

  after(async () => {
    for (const s of settlers) s.stop()
    await Promise.allSettled(nodes.map((n) => n.stop()))
  })

  const make = async (listen: string[], relay = false) => {
    const n = await createLibp2p({
      addresses: { listen },
      transports: [tcp(), circuitRelayTransport()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({ enableKeepAlive: false })],
      connectionMonitor: { enabled: false },
      services: {
        identify: identify(),
        // as the agent's relay: members only, so no data or time limits on a circuit
        ...(relay ? { relay: circuitRelayServer({ reservations: { applyDefaultLimit: false } }) } : {}),
      },
    })
    nodes.push(n)
    return n
  }
  const settlerOf = (n: Libp2p) => {
    const s = new OneConnectionPerPeer({
      self: n.peerId,
      connections: (p) => n.getConnections(p),
      admitted: () => true,
      streamKind: (p) => (p === LINK ? 'reopen' : 'wait'),
      recheckMs: 200,
    })
    settlers.push(s)
    return s
  }

  it('closes the relayed connection once a direct one is open and its held stream ends; the hop on the relay goes', async () => {
    const r = await make(['/ip4/127.0.0.1/tcp/0'], true)
    const relayAddr = r.getMultiaddrs()[0]
    const b = await make(['/ip4/127.0.0.1/tcp/0', `${relayAddr}/p2p-circuit`])
    const a = await make(['/ip4/127.0.0.1/tcp/0'])
    for (const n of [a, b])
      await n.handle(
        [HOLD, LINK],
        async (stream: Stream) => {
          for await (const chunk of stream) stream.send(chunk.subarray())
          await stream.close().catch(() => {})
        },
        { runOnLimitedConnection: true },
      )
    await waitFor(
      'b to hold a reservation on the relay',
      async () => b.getMultiaddrs().some((m) => pathKind(m) === 'relayed'),
      20_000,
      100,
    )
    const [sa, sb] = [settlerOf(a), settlerOf(b)]
    const relayed = await a.dial(multiaddr(`${relayAddr}/p2p-circuit/p2p/${b.peerId}`), {
      signal: AbortSignal.timeout(20_000),
    })
    assert.equal(pathKind(relayed.remoteAddr), 'relayed')
    const echoes = async (s: Stream, text: string) => {
      const reply = new Promise<string>((resolve) =>
        s.addEventListener('message', (e) => resolve(new TextDecoder().decode(e.data.subarray())), {
          once: true,
        }),
      )
      s.send(new TextEncoder().encode(text))
      return reply
    }
    // a held stream (signalling, a tunnel) and a link (a probe link) on the relayed connection
    const hold = await relayed.newStream(HOLD, { runOnLimitedConnection: true })
    const link = await relayed.newStream(LINK, { runOnLimitedConnection: true })
    assert.equal(await echoes(hold, 'one'), 'one')
    const hops = () =>
      r.getConnections(b.peerId).flatMap((c) => c.streams.filter((s) => s.protocol === STOP)).length
    assert.equal(hops(), 1, 'the relay carries the circuit')

    // no direct connection: the relayed one is all there is, and it stays
    sa.check(b.peerId)
    sb.check(a.peerId)
    await new Promise((res) => setTimeout(res, 500))
    assert.equal(relayed.status, 'open')

    const direct = await a.dial(b.getMultiaddrs().find((m) => pathKind(m) === 'direct')!, {
      force: true,
      signal: AbortSignal.timeout(20_000),
    })
    assert.equal(pathKind(direct.remoteAddr), 'direct')
    await waitFor(
      'b to see both connections',
      async () => b.getConnections(a.peerId).filter((c) => c.status === 'open').length === 2,
      10_000,
      50,
    )
    sa.check(b.peerId)
    sb.check(a.peerId)
    // the held stream keeps the relayed connection, and works
    await new Promise((res) => setTimeout(res, 1_000))
    assert.equal(relayed.status, 'open')
    assert.equal(await echoes(hold, 'two'), 'two')
    // new streams go on the direct connection
    const fresh = await a.dialProtocol(b.peerId, LINK)
    assert.ok(direct.streams.includes(fresh))
    await fresh.close()

    await hold.close()
    await waitFor('the relayed connection to close', async () => relayed.status === 'closed', 10_000, 100)
    assert.notEqual(link.status, 'open')
    await waitFor(
      'both ends to hold only the direct connection, and the relay no hop',
      async () =>
        a.getConnections(b.peerId).length === 1 &&
        b.getConnections(a.peerId).length === 1 &&
        a.getConnections(b.peerId)[0].id === direct.id &&
        hops() === 0,
      10_000,
      50,
    )
    assert.equal(direct.status, 'open')
  })
})
