import '../../src/shim.js'
import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { Exchange, Want } from '../../protocols/blocks.js'
import { cidOf } from '../../src/blocks/cid.js'
import { loadCluster, protocolPrefix } from '../../src/node/cluster.js'
import type { NodeComponent } from '../../src/node/node-component.js'
import { type AgentProcess, Fixture, inProcessMember, mesh, waitFor } from './cluster-harness.js'

// Every protocol reads with a deadline (issue 16.6): an admitted member that opens a /blocks
// exchange stream and then sends nothing does not hold it forever. The agent runs with a 2 s
// idle deadline (blocks.idleStreamMs) so the test is short; the default is 30 s.
const IDLE_MS = 2_000

/** Resolves with the time the stream's readable side ended (closed or reset by the agent). */
function ended(stream: Stream, boundMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the stream was still open after ${boundMs} ms`)), boundMs)
    void (async () => {
      try {
        for await (const _ of stream) {
          // replies to our wants; nothing to check here
        }
      } catch {
        // reset: ended as well
      }
      clearTimeout(t)
      resolve(Date.now())
    })()
  })
}

describe('read deadlines: an idle /blocks stream is closed', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  let agent: AgentProcess
  let member: NodeComponent
  let protocol: string

  before(async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init', '--cluster', 'deadlines'])).code, 0)
    agent = fx.agent(dir, ['--name', 'alpha']).start([], { MESH_BLOCKS__IDLE_STREAM_MS: String(IDLE_MS) })
    await agent.ready(30_000)
    const cluster = loadCluster(dir)
    assert.ok(cluster)
    protocol = `${protocolPrefix(cluster)}/blocks/1.0.0`
    member = await inProcessMember(fx.tempDir(), dir, 'mallory')
    await member.start()
    const addr = multiaddr((await agent.status()).listen[0])
    await waitFor(
      'the in-process member admitted by the agent',
      async () => {
        const conn = await member.node.dial(addr, { signal: AbortSignal.timeout(10_000) })
        return member.node.services.admission.admitted(conn)
      },
      30_000,
    )
  })

  after(async () => {
    await member?.stop().catch(() => {})
    await fx.cleanup()
  })

  const open = async () => {
    const conn = member.node.getConnections().find((c) => c.status === 'open')
    assert.ok(conn, 'connected to the agent')
    return conn.newStream(protocol, { signal: AbortSignal.timeout(10_000) })
  }

  it('a stream that asks for nothing is closed by the agent after the deadline', async () => {
    const opened = Date.now()
    const stream = await open()
    const at = await ended(stream, 30_000)
    assert.ok(at - opened >= IDLE_MS - 100, `closed after ${at - opened} ms, before the deadline`)
  })

  it('a stream that keeps asking stays open past the deadline, and is closed once it stops', async () => {
    const stream = await open()
    const lp = lpStream(stream)
    const done = ended(stream, 60_000)
    let closedEarly = false
    void done.then(() => {
      closedEarly = true
    })
    // one want-have every 500 ms for 3 deadlines: each message re-arms the agent's deadline
    const until = Date.now() + 3 * IDLE_MS
    for (let i = 0; i < 100 && Date.now() < until; i++) {
      const cid = cidOf(new TextEncoder().encode(`want ${i}`))
      await lp.write(
        Exchange.encode({
          wants: [{ cid: cid.bytes as Uint8Array<ArrayBuffer>, kind: Want.Kind.HAVE }],
          presences: [],
          blocks: [],
          cancels: [],
        }),
      )
      await new Promise((r) => setTimeout(r, 500))
    }
    assert.equal(closedEarly, false, 'the agent closed a stream that was in use')
    const stopped = Date.now()
    const at = await done
    assert.ok(at - stopped >= 0)
  })
})
