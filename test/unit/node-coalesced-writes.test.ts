import '../../src/shim.js'
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import type { MultiaddrConnection } from '@libp2p/interface'
import { defaultLogger } from '@libp2p/logger'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { Uint8ArrayList } from 'uint8arraylist'
import { corked, tcpBulkOptions } from '../../src/node/coalesced-writes.js'

// what Noise hands the connection for one bulk yamux frame: per message a 2-byte length and
// about 64 KiB of ciphertext
const MESSAGE = 65535
const MESSAGES = 8

function bulk(seed: number): { list: Uint8ArrayList; bytes: Buffer } {
  const list = new Uint8ArrayList()
  for (let i = 0; i < MESSAGES; i++) {
    list.append(Uint8Array.of(MESSAGE >> 8, MESSAGE & 0xff))
    list.append(new Uint8Array(MESSAGE).fill((seed + i) & 0xff))
  }
  return { list, bytes: Buffer.from(list.subarray()) }
}

interface Peer {
  server: Server
  /** the accepted socket, once there */
  socket: Promise<Socket>
  /** everything read so far */
  received: () => Buffer
}

/** A plain TCP server on 127.0.0.1 that reads (and keeps) all it gets, unless paused. */
async function peer(): Promise<Peer> {
  const chunks: Buffer[] = []
  let accepted!: (s: Socket) => void
  const socket = new Promise<Socket>((r) => {
    accepted = r
  })
  const server = createServer((s) => {
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('error', () => {})
    accepted(s)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return { server, socket, received: () => Buffer.concat(chunks) }
}

/** A @libp2p/tcp connection to the peer, wrapped as the agent wraps it before Noise. */
async function dial(p: Peer): Promise<{ conn: MultiaddrConnection; socket: Socket }> {
  const transport = tcp(tcpBulkOptions)({ logger: defaultLogger() } as never)
  const port = (p.server.address() as { port: number }).port
  const conn = (await transport.dial(multiaddr(`/ip4/127.0.0.1/tcp/${port}`), {
    signal: AbortSignal.timeout(10_000),
    upgrader: { upgradeOutbound: async (c: MultiaddrConnection) => c },
  } as never)) as unknown as MultiaddrConnection
  corked(conn)
  return { conn, socket: (conn as unknown as { socket: Socket }).socket }
}

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 20))
  assert.ok(ok(), `timed out waiting for ${what}`)
}

describe('one socket write per send (node/coalesced-writes.ts)', () => {
  const servers: Server[] = []
  const conns: MultiaddrConnection[] = []
  afterEach(async () => {
    for (const c of conns.splice(0)) c.abort(new Error('test over'))
    for (const s of servers.splice(0)) s.close()
  })

  it('a bulk send of many Noise messages reaches the kernel in one writev, byte for byte', async () => {
    const p = await peer()
    servers.push(p.server)
    const { conn, socket } = await dial(p)
    conns.push(conn)
    let writevs = 0
    const writev = (socket as unknown as { _writev: (...a: unknown[]) => void })._writev.bind(socket)
    ;(socket as unknown as { _writev: (...a: unknown[]) => void })._writev = (...a) => {
      writevs++
      writev(...a)
    }
    let drains = 0
    conn.addEventListener('drain', () => drains++)
    const { list, bytes } = bulk(1)
    conn.send(list)
    await until('all bytes at the peer', () => p.received().length >= bytes.length)
    assert.ok(p.received().equals(bytes), 'the same bytes in the same order')
    // with Node's default mark (16 KiB) @libp2p/tcp stopped at the first corked write past it:
    // a writev and a 'drain' per message
    assert.equal(writevs, 1)
    assert.equal(drains, 0)
  })

  it('a reader that stops still holds the sender back, and the rest arrives after it reads again', async () => {
    const p = await peer()
    servers.push(p.server)
    const { conn, socket } = await dial(p)
    conns.push(conn)
    const remote = await p.socket
    remote.pause()
    const sent: Buffer[] = []
    let held = 0
    // send until the connection says to wait: bounded, since the kernel's buffers are
    for (let i = 0; i < 2000; i++) {
      const { list, bytes } = bulk(i)
      sent.push(bytes)
      const more = conn.send(list)
      held = Math.max(held, socket.writableLength + conn.writeBufferLength)
      if (!more) break
    }
    assert.equal(conn.writableNeedsDrain, true, 'the sender was told to wait')
    // Node keeps at most the high-water mark plus the send that crossed it
    assert.ok(held <= socket.writableHighWaterMark + bulk(0).bytes.length, `held ${held} bytes`)
    const drained = new Promise<void>((r) => conn.addEventListener('drain', () => r(), { once: true }))
    remote.resume()
    await drained
    const all = Buffer.concat(sent)
    await until('all bytes at the peer', () => p.received().length >= all.length)
    assert.ok(p.received().equals(all), 'the same bytes in the same order')
  })
})
