// One end of a throughput measurement, run as its own process so that sender and receiver
// do not share an event loop (as two agents would not):
//
//   node dist/sim/bench/stream-peer.js mesh-sink                 (MESH_BENCH_CLUSTER set)
//   node dist/sim/bench/stream-peer.js mesh-source ADDR BYTES CHUNK
//   node dist/sim/bench/stream-peer.js tcp-sink
//   node dist/sim/bench/stream-peer.js tcp-source PORT BYTES CHUNK
//
// A sink prints one JSON line {"ready":true,...} when it listens, counts what arrives on each
// stream until the sender half-closes, then answers with the count (8 bytes) so the sender's
// clock covers delivery, not just queueing. A source prints one JSON line with bytes and ms.
// Everything listens and dials on 127.0.0.1 only, and every process ends by itself.
import '../../src/shim.js'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { ConfigSchema } from '../../src/agent/config.js'
import { Reporter } from '../../src/kernel/reporter.js'
import type { Cluster } from '../../src/node/cluster.js'
import { createMeshNode } from '../../src/node/libp2p.js'
import { PeerTraffic } from '../../src/node/peer-traffic.js'

export const BENCH_PROTOCOL = '/mesh-bench/stream/1.0.0'
/** A peer never outlives this, whatever its parent does. */
const MAX_LIFE_MS = 300_000

function ackBytes(n: number): Uint8Array {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return new Uint8Array(b)
}

/** Wall time and this process's CPU time (user + system) since the call. */
function meter(): () => { ms: number; cpuMs: number } {
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  return () => {
    const c = process.cpuUsage(c0)
    return { ms: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 }
  }
}

function print(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

/** The cluster both processes share, passed by the parent as JSON {name, id, key (hex)}. */
function clusterFromEnv(): Cluster {
  const raw = process.env.MESH_BENCH_CLUSTER
  if (raw === undefined) throw new Error('MESH_BENCH_CLUSTER is not set (JSON {name, id, key})')
  const c = JSON.parse(raw) as { name: string; id: string; key: string }
  return { name: c.name, id: c.id, key: new Uint8Array(Buffer.from(c.key, 'hex')) }
}

async function meshNode() {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-bench-'))
  // the datastore goes away however the process ends (but SIGKILL)
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  const config = ConfigSchema.parse({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    name: 'bench',
    webrtc: { enabled: false },
    relay: { server: false, reservations: 0 },
  })
  // 'bare' is the reference: plain libp2p TCP + Noise + yamux, no cluster prologue and no admission
  const node =
    process.env.MESH_BENCH_STACK === 'bare'
      ? await createLibp2p({
          start: false,
          addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
          transports: [tcp()],
          connectionEncrypters: [noise()],
          streamMuxers: [yamux()],
        })
      : await createMeshNode({
          config,
          cluster: clusterFromEnv(),
          privateKey: await generateKeyPair('Ed25519'),
          datastorePath: join(dir, 'datastore'),
          reporter: new Reporter({ level: 'warn' }).forComponent('bench'),
          // both ends hold the cluster key; certificates are not what this measures
          trust: {
            ours: () => new Uint8Array(),
            standing: () => ({ kind: 'member' }),
            isRevoked: () => false,
          },
        })
  // MESH_BENCH_COUNT_TRAFFIC=1: count bytes per peer as the agent does (src/node/peer-traffic.ts),
  // to show what that costs
  let traffic: PeerTraffic | undefined
  if (process.env.MESH_BENCH_COUNT_TRAFFIC === '1') {
    const t = new PeerTraffic()
    node.addEventListener('connection:open', (evt: CustomEvent<Connection>) => t.count(evt.detail))
    traffic = t
  }
  /** what the counter holds (in + out, all peers), printed so a run shows that it counted */
  const counted = () => {
    if (traffic === undefined) return {}
    let n = 0
    for (const t of traffic.snapshot().values()) n += t.in + t.out
    return { counted: n }
  }
  // createMeshNode may leave starting to its caller (the agent wires listeners first)
  await node.start()
  const stop = async () => {
    await Promise.resolve(node.stop()).catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  }
  return { node, stop, counted }
}

async function meshSink(): Promise<void> {
  const { node, stop, counted } = await meshNode()
  await node.handle(
    BENCH_PROTOCOL,
    async (stream: Stream) => {
      const m = meter()
      let n = 0
      for await (const chunk of stream) n += chunk.byteLength
      stream.send(ackBytes(n))
      print({ received: n, ...m(), ...counted() })
      await stream.close().catch(() => {})
    },
    { maxInboundStreams: 4 },
  )
  exitOn(stop)
  print({ ready: true, peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })
}

async function meshSource(addr: string, total: number, chunkSize: number): Promise<void> {
  const { node, stop, counted } = await meshNode()
  try {
    const t0 = performance.now()
    const connection = await node.dial(multiaddr(addr))
    // the stream opens only once both sides have admitted each other (admission's stream guard)
    const stream = await connection.newStream(BENCH_PROTOCOL)
    const setupMs = performance.now() - t0
    const chunk = new Uint8Array(randomBytes(chunkSize))
    const ack = readAck(stream)
    ack.catch(() => {}) // awaited below; a failed send must not turn it into an unhandled rejection
    const m = meter()
    let sent = 0
    while (sent < total) {
      const n = Math.min(chunkSize, total - sent)
      // send() queues the bytes even when it returns false; false means wait before more
      if (!stream.send(n === chunkSize ? chunk : chunk.subarray(0, n))) await drained(stream)
      sent += n
    }
    await stream.close()
    const received = await ack
    const r = m()
    if (received !== total) throw new Error(`sink received ${received} bytes of ${total}`)
    print({ bytes: total, ...r, setupMs, ...counted() })
  } finally {
    await stop()
  }
}

/**
 * Waits for 'drain' (or rejects on 'close'). Not stream.onDrain(): in @libp2p/utils 7.4.1 it
 * keeps its first resolved promise, so after the first drain it never waits again and a fast
 * sender queues everything it has (256 MiB here), which ended with the connection aborted
 * ("WebAssembly.Memory.grow(): Maximum memory size exceeded").
 */
function drained(stream: Stream): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      stream.removeEventListener('close', onClose)
      resolve()
    }
    const onClose = (evt: Event) => {
      stream.removeEventListener('drain', onDrain)
      reject((evt as Event & { error?: Error }).error ?? new Error('stream closed while waiting for drain'))
    }
    stream.addEventListener('drain', onDrain, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}

async function readAck(stream: Stream): Promise<number> {
  const parts: Uint8Array[] = []
  let len = 0
  for await (const chunk of stream) {
    const b = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    parts.push(b)
    len += b.byteLength
  }
  if (len < 8) throw new Error(`short ack (${len} bytes)`)
  return Number(Buffer.concat(parts).readBigUInt64BE(0))
}

async function tcpSink(): Promise<void> {
  const server = createServer((socket) => {
    const m = meter()
    let n = 0
    socket.on('data', (d: Buffer) => {
      n += d.byteLength
    })
    socket.on('end', () => {
      socket.end(ackBytes(n))
      print({ received: n, ...m() })
    })
    socket.on('error', () => socket.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  exitOn(async () => {
    server.close()
  })
  print({ ready: true, port: typeof addr === 'object' && addr !== null ? addr.port : 0 })
}

async function tcpSource(port: number, total: number, chunkSize: number): Promise<void> {
  const t0 = performance.now()
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s))
    s.once('error', reject)
  })
  const setupMs = performance.now() - t0
  const chunk = randomBytes(chunkSize)
  const ack = new Promise<number>((resolve, reject) => {
    const parts: Buffer[] = []
    socket.on('data', (d: Buffer) => parts.push(d))
    socket.on('end', () => {
      const b = Buffer.concat(parts)
      if (b.length < 8) reject(new Error(`short ack (${b.length} bytes)`))
      else resolve(Number(b.readBigUInt64BE(0)))
    })
    socket.on('error', reject)
  })
  const m = meter()
  let sent = 0
  while (sent < total) {
    const n = Math.min(chunkSize, total - sent)
    if (!socket.write(n === chunkSize ? chunk : chunk.subarray(0, n))) {
      await new Promise<void>((r) => socket.once('drain', () => r()))
    }
    sent += n
  }
  socket.end()
  const received = await ack
  const r = m()
  socket.destroy()
  if (received !== total) throw new Error(`sink received ${received} bytes of ${total}`)
  print({ bytes: total, ...r, setupMs })
}

/** A sink runs until SIGTERM/SIGINT, its stdin closing (the parent died) or MAX_LIFE_MS. */
function exitOn(stop: () => Promise<void>): void {
  let stopping = false
  const bye = (code: number) => {
    if (stopping) return
    stopping = true
    void stop().finally(() => process.exit(code))
    setTimeout(() => process.exit(code), 5_000).unref()
  }
  process.on('SIGTERM', () => bye(0))
  process.on('SIGINT', () => bye(0))
  process.stdin.on('end', () => bye(0))
  process.stdin.on('error', () => bye(0))
  process.stdin.resume()
  setTimeout(() => bye(2), MAX_LIFE_MS).unref()
}

function int(s: string | undefined, what: string): number {
  const n = Number(s)
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`bad ${what}: ${s}`)
  return n
}

async function main(argv: string[]): Promise<void> {
  const [mode, a, b, c] = argv
  // a source must also end by itself
  if (mode?.endsWith('-source')) setTimeout(() => fail(new Error('source timed out')), MAX_LIFE_MS).unref()
  switch (mode) {
    case 'mesh-sink':
      return meshSink()
    case 'mesh-source':
      return meshSource(a, int(b, 'BYTES'), int(c, 'CHUNK'))
    case 'tcp-sink':
      return tcpSink()
    case 'tcp-source':
      return tcpSource(int(a, 'PORT'), int(b, 'BYTES'), int(c, 'CHUNK'))
    default:
      throw new Error(
        'usage: stream-peer mesh-sink | mesh-source ADDR BYTES CHUNK | tcp-sink | tcp-source PORT BYTES CHUNK',
      )
  }
}

function fail(err: unknown): never {
  process.stderr.write(`stream-peer: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
}

main(process.argv.slice(2)).catch(fail)
