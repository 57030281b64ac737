// Two agents a and b with mesh0 on one carrier, a TCP sink on b: shared by the overlay benchmark
// (overlay.ts) and the ping benchmark that compares builds (overlay-ping.ts).
import { join } from 'node:path'
import type { Host } from '../../test/system/harness.js'
import { type Agent, type World, waitFor } from '../../test/system/world.js'

export type Carrier = 'udp' | 'datagram' | 'stream'

export interface PairOptions {
  /** MiB a send() moves unless told otherwise */
  mib: number
  datagramMtu: number
  udpMtuMax: number
}

// a sink on [::]:7001 and 0.0.0.0:7002 that answers 'done' after each connection's FIN
const SINK = `
const net = require('node:net')
const serve = (s) => { s.on('data', () => {}); s.on('end', () => s.end('done')) }
net.createServer({ allowHalfOpen: true }, serve).listen(7001, '::')
setTimeout(() => process.exit(0), 900000)
`
// sends process.argv[2] MiB to process.argv[1]:7001, prints the MB/s from connect to 'done'
const SOURCE = `
const net = require('node:net')
const [host, mib] = [process.argv[1], Number(process.argv[2])]
const chunk = Buffer.alloc(1 << 20, 7)
const s = net.connect(7001, host, () => {
  const t0 = process.hrtime.bigint()
  let left = mib
  const pump = () => { while (left > 0) { left--; if (!s.write(chunk)) return s.once('drain', pump) } s.end() }
  s.on('data', () => { const sec = Number(process.hrtime.bigint() - t0) / 1e9; console.log((mib * 1.048576 / sec).toFixed(1)); process.exit(0) })
  pump()
})
s.on('error', (e) => { console.error(e.message); process.exit(1) })
setTimeout(() => { console.error('timed out'); process.exit(1) }, 300000)
`

/** Two agents a and b on the given hosts, on one carrier, with a TCP sink on b (ports 7001). */
export async function pair(w: World, aHost: Host, bHost: Host, carrier: Carrier, opts: PairOptions) {
  const prof = process.env.MESH_BENCH_PROF
  const on = {
    MESH_OVERLAY__INTERFACE: 'true',
    MESH_OVERLAY__NAMES: 'false',
    MESH_OVERLAY__UDP: String(carrier === 'udp'),
    MESH_OVERLAY__DATAGRAM: String(carrier !== 'stream'),
    MESH_OVERLAY__DATAGRAM_MTU: String(opts.datagramMtu),
    MESH_OVERLAY__UDP_MTU_MAX: String(opts.udpMtuMax),
    MESH_LOG_LEVEL: 'warn',
    ...(prof === undefined
      ? {}
      : { MESH_BENCH_PROF: prof, NODE_OPTIONS: `--import ${join(import.meta.dirname, 'cpu-prof.js')}` }),
  }
  await w.mesh({ dir: join(w.tmp, 'agent-a') } as Agent, ['init', '--cluster', 'bench'])
  const a = w.agent('a', aHost, ['--announce', `/ip4/${aHost.ip}/tcp/4701`], on)
  await w.ready(a)
  const b = w.agent('b', bHost, ['--announce', `/ip4/${bHost.ip}/tcp/4701`, '--join', await w.invite(a)], on)
  await w.ready(b)
  const bOverlay = await waitFor(
    'both interfaces up and b alive at a',
    async () => {
      const s = await w.json(b, ['status'])
      const m = await w.member(a, 'b')
      return s.overlayInterface?.interface === 'mesh0' && m?.status === 'alive'
        ? (s.overlay as string)
        : undefined
    },
    60_000,
  )
  const carrierOf = async (x: Agent, to: string) =>
    (await w.json(x, ['status'])).overlayInterface.peers.find((p: any) => p.name === to)?.carrier
  // packets flow, and the carrier is up at both ends before anything is measured
  await waitFor(
    `a and b on the ${carrier} carrier`,
    async () => {
      await w.lab.exec(aHost, ['ping', '-n', '-c', '1', '-W', '2', bOverlay])
      return (await carrierOf(a, 'b')) === carrier && (await carrierOf(b, 'a')) === carrier
    },
    60_000,
    1_000,
  )
  w.lab.spawn(bHost, [process.execPath, '-e', SINK])
  const mib = opts.mib
  const send = async (to: string, n = mib): Promise<number> => {
    const r = await w.lab.execOk(aHost, [process.execPath, '-e', SOURCE, to, String(n)], {
      timeoutMs: 320_000,
    })
    return Number(r.trim())
  }
  return { a, b, bOverlay, send }
}
