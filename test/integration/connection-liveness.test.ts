import '../../src/shim.js'
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import type { Libp2p } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { ConnectionLiveness } from '../../src/node/connection-liveness.js'
import { bareTcpNode } from './cluster-harness.js'

/**
 * A TCP relay between the two nodes that can go silent without closing anything: what a
 * vanished peer, a pulled cable or a NAT that dropped its state looks like from this side.
 */
class FreezableProxy {
  private readonly server: Server
  private readonly sockets: Socket[] = []

  constructor(targetPort: number) {
    this.server = createServer((inbound) => {
      const outbound = tcpConnect(targetPort, '127.0.0.1')
      this.sockets.push(inbound, outbound)
      inbound.pipe(outbound)
      outbound.pipe(inbound)
      for (const s of [inbound, outbound]) s.on('error', () => {})
    })
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    return (this.server.address() as { port: number }).port
  }

  /** stop carrying bytes; every socket stays open */
  freeze(): void {
    for (const s of this.sockets) {
      s.unpipe()
      s.pause()
    }
  }

  /** carry bytes again (what was sent meanwhile arrives now) */
  thaw(): void {
    for (let i = 0; i + 1 < this.sockets.length; i += 2) {
      const [inbound, outbound] = [this.sockets[i], this.sockets[i + 1]]
      inbound.pipe(outbound)
      outbound.pipe(inbound)
      inbound.resume()
      outbound.resume()
    }
  }

  close(): void {
    for (const s of this.sockets) s.destroy()
    this.server.close()
  }
}

const node = bareTcpNode

describe('connection liveness: a muxer ping finds a dead connection without opening a stream', function () {
  this.timeout(60_000)
  let a: Libp2p | undefined
  let b: Libp2p | undefined
  let proxy: FreezableProxy | undefined

  afterEach(async () => {
    proxy?.close()
    await Promise.allSettled([a?.stop(), b?.stop()])
  })

  /** two nodes, a connected to b through a proxy that can go silent */
  async function dialThroughProxy() {
    const [from, to] = [await node(), await node()]
    a = from
    b = to
    const port = Number(
      to
        .getMultiaddrs()[0]
        .getComponents()
        .find((c) => c.name === 'tcp')?.value,
    )
    const relay = new FreezableProxy(port)
    proxy = relay
    const via = await relay.listen()
    const conn = await from.dial(multiaddr(`/ip4/127.0.0.1/tcp/${via}/p2p/${to.peerId}`))
    return { conn, from, to, relay }
  }

  it('a connection that answers stays open; one that went silent is closed', async () => {
    const { conn, from, to, relay } = await dialThroughProxy()
    const streamsBefore = conn.streams.length
    const liveness = new ConnectionLiveness({
      connections: () => from.getConnections(),
      intervalMs: 3_600_000,
      timeoutMs: 5_000,
    })

    assert.deepEqual(await liveness.check(), { pinged: 1, closed: 0 }, 'an answered ping keeps it')
    assert.equal(conn.status, 'open')
    assert.equal(conn.streams.length, streamsBefore, 'and the ping opened no stream')

    relay.freeze()
    assert.equal(conn.status, 'open', 'silence alone closes nothing (the sockets are still open)')
    assert.deepEqual(await liveness.check(), { pinged: 1, closed: 1 }, 'an unanswered ping closes it')
    assert.notEqual(conn.status, 'open')
    assert.equal(from.getConnections(to.peerId).length, 0, 'libp2p no longer lists it')
    liveness.stop()
  })

  it("a new connection's round-trip time is measured, which yamux needs to grow a stream's window", async () => {
    a = await node()
    b = await node()
    const conn = await a.dial(b.getMultiaddrs()[0])
    const muxer = (conn as unknown as { muxer: { getRTT(): number } }).muxer
    // with yamux's keepalive off nothing else measures it, and a window never grows past 256 KiB
    assert.equal(muxer.getRTT(), -1)
    const liveness = new ConnectionLiveness({
      connections: () => a?.getConnections() ?? [],
      intervalMs: 3_600_000,
      timeoutMs: 5_000,
    })
    try {
      void liveness.measure(conn)
      for (let i = 0; i < 50 && muxer.getRTT() < 0; i++) await new Promise((r) => setTimeout(r, 100))
      assert.ok(muxer.getRTT() >= 0, `the round-trip time is known (${muxer.getRTT()})`)
      assert.equal(conn.status, 'open')
    } finally {
      liveness.stop()
    }
  })

  it("refresh measures each connection's round-trip time without a stream", async () => {
    a = await node()
    b = await node()
    const conn = await a.dial(b.getMultiaddrs()[0])
    const streamsBefore = conn.streams.length
    const liveness = new ConnectionLiveness({
      connections: () => a?.getConnections() ?? [],
      intervalMs: 3_600_000,
      timeoutMs: 5_000,
    })
    try {
      assert.equal(liveness.rtt(conn), undefined, 'nothing measured yet')
      await liveness.refresh([conn], 5_000)
      const rtt = liveness.rtt(conn)
      assert.ok(typeof rtt === 'number' && rtt >= 0, `an RTT (${rtt})`)
      assert.equal(conn.streams.length, streamsBefore, 'and no stream was opened for it')
      await conn.close()
      await liveness.refresh([conn], 1_000)
      assert.equal(liveness.rtt(conn), rtt, 'a closed connection is not pinged: its last RTT stays')
    } finally {
      liveness.stop()
    }
  })

  it('an answer that comes after refresh gave up does not break the connection', async () => {
    // yamux throws on a pong it no longer waits for (the ping's caller gave up) and closes the
    // connection: in a join storm, `mesh status` with a 1 s budget then cut members off
    const { conn, from, relay } = await dialThroughProxy()
    const liveness = new ConnectionLiveness({
      connections: () => from.getConnections(),
      intervalMs: 3_600_000,
      timeoutMs: 10_000,
    })
    try {
      relay.freeze()
      await liveness.refresh([conn], 300)
      assert.equal(liveness.rtt(conn), undefined, 'no answer within the budget')
      relay.thaw()
      for (let i = 0; i < 50 && liveness.rtt(conn) === undefined && conn.status === 'open'; i++)
        await new Promise((r) => setTimeout(r, 100))
      assert.equal(conn.status, 'open', 'the connection stays open')
      assert.ok(
        (liveness.rtt(conn) ?? 0) >= 300,
        `the late answer is taken as the RTT (${liveness.rtt(conn)})`,
      )
      assert.deepEqual(await liveness.check(), { pinged: 1, closed: 0 }, 'and keeps answering')
    } finally {
      liveness.stop()
    }
  })

  it('a round over many connections prints no listener-leak warning', async () => {
    // one round's deadline is shared by every connection's ping (a member holds dozens)
    a = await node()
    const others = await Promise.all(Array.from({ length: 12 }, () => node()))
    try {
      for (const o of others) await a.dial(o.getMultiaddrs()[0])
      const warnings: string[] = []
      const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`)
      process.on('warning', onWarning)
      const liveness = new ConnectionLiveness({
        connections: () => a?.getConnections() ?? [],
        intervalMs: 3_600_000,
        timeoutMs: 5_000,
      })
      try {
        assert.deepEqual(await liveness.check(), { pinged: 12, closed: 0 })
        // a warning is emitted on the next tick
        await new Promise((r) => setImmediate(r))
      } finally {
        liveness.stop()
        process.off('warning', onWarning)
      }
      assert.deepEqual(
        warnings.filter((w) => w.startsWith('MaxListenersExceededWarning')),
        [],
      )
    } finally {
      await Promise.allSettled(others.map((o) => o.stop()))
    }
  })
})
