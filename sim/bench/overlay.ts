// Overlay benchmark (not a test): TCP throughput, ssh bulk and ping RTT between two members
// through mesh0 against the same between their namespaces directly, side by side in one run,
// for each carrier (the direct UDP carrier, the WebRTC datagram channel with overlay.udp: false,
// and the stream with overlay.datagram: false too), on a
// clean link and on links that lose packets; the bare mesh stream ceiling (one libp2p stream of
// the agent's stack, two processes on 127.0.0.1), and the agents' CPU seconds per GB through
// mesh0. Root only (netns lab in 198.18.0.0/16).
//
// Impairment: netem is not in this kernel (no sch_netem, no sch_fq, no modprobe), so the impaired
// rows run over a userspace impaired link (impair.ts): a and b on two segments joined by a router
// namespace whose forwarding goes through a Node process that delays, drops (seeded) and reorders
// (netem's reorder: a packet sent ahead of the held ones) every packet, each direction: none
// (the link's own rate, bound by that process), low (2 ms, 0.25%, 0.5%) and high (4 ms, 1%,
// 2.5%), as issue 15 asks; mesh0 and direct TCP over the same link, alternating.

//   npm run bench:overlay            (node dist/sim/bench/overlay.js --mib 128 --repeats 3 --ssh-mib 200 --pings 100 --lossy-mib 32)
//   MESH_BENCH_PROF=DIR              agents write a CPU profile into DIR when they stop (cpu-prof.ts)
//   --carriers udp,datagram,stream   which carriers, in this order (default: all three)
//   --datagram-only                  the same as --carriers datagram
//   --no-lossy --no-ceiling          a short run: the clean link only
//   --lossy-mib N                    MiB per TCP run on the impaired link (--no-lossy: none)
//   --impaired-only                  the impaired-link rows alone (a short quiet run)
//   --datagram-mtu N --udp-mtu-max N the overlay's packet size limits (udp-mtu-max 1280: fixed size)
//
// Prints a markdown table and writes sim/out/overlay-<time>.json. Every process and namespace
// it starts is removed, also when a step fails.

import { readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { newCluster } from '../../src/node/cluster.js'
import { sshdSetup } from '../../test/system/harness.js'
import { type Agent, World } from '../../test/system/world.js'
import { parseFlags, positive } from './args.js'
import { type Impairment, type ImpairStats, impairedLink } from './impair.js'
import { type Carrier, type PairOptions, pair } from './overlay-pair.js'
import {
  cpuSeconds,
  cpuSecondsByThread,
  fmt,
  machineInfo,
  machineMarkdown,
  markdownTable,
  median,
  writeReport,
} from './report.js'
import { streamRun } from './stream-run.js'

// every flag checked up front (parseFlags: an unknown one is an error, not a long run on defaults)
const numbers = new Map<string, number>()
const switches = new Set<string>()
const CARRIERS: Carrier[] = ['udp', 'datagram', 'stream']
let carriers: Carrier[] = CARRIERS
const num = (name: string) => (next: () => string) => {
  numbers.set(name, positive(`--${name}`, next()))
}
const on = (name: string) => () => {
  switches.add(name)
}
parseFlags(
  process.argv.slice(2),
  {
    '--mib': num('mib'),
    '--repeats': num('repeats'),
    '--ssh-mib': num('ssh-mib'),
    '--pings': num('pings'),
    '--lossy-mib': num('lossy-mib'),
    '--datagram-mtu': num('datagram-mtu'),
    '--udp-mtu-max': num('udp-mtu-max'),
    '--skip': on('skip'),
    '--no-lossy': on('no-lossy'),
    '--no-ceiling': on('no-ceiling'),
    '--datagram-only': on('datagram-only'),
    '--impaired-only': on('impaired-only'),
    '--carriers': (next) => {
      const list = next().split(',')
      const bad = list.filter((c) => !CARRIERS.includes(c as Carrier))
      if (bad.length > 0 || list.length === 0) throw new Error(`--carriers takes ${CARRIERS.join(',')}`)
      carriers = list as Carrier[]
    },
  },
  'use --mib N --repeats N --ssh-mib N --pings N --lossy-mib N --datagram-mtu N --udp-mtu-max N --carriers udp,datagram,stream --skip --no-lossy --no-ceiling --datagram-only --impaired-only',
)
const arg = (name: string, dflt: number): number => numbers.get(name) ?? dflt
const pairOptions = (): PairOptions => ({
  mib: arg('mib', 128),
  datagramMtu: arg('datagram-mtu', 1280),
  udpMtuMax: arg('udp-mtu-max', 16000),
})

/** What one carrier measured. */
interface CarrierRun {
  carrier: Carrier
  tcp: number[]
  direct: number[]
  cpuPerGB: number
  sshMesh: number
  sshDirect: number
  pingMesh: { mean: number; median: number }
  pingDirect: { mean: number; median: number }
  /** over the impaired link: TCP through mesh0 and direct (MB/s), and what the impairer counted */
  lossy: Array<{
    name: string
    imp: Impairment
    mesh: number[]
    direct: number[]
    link: ImpairStats & { pps: number }
    /** the direct UDP carrier's packet size at a after the runs, and the fragment loss b reported */
    udpSize?: { packetSize: number; fragmentLoss?: number; changes?: unknown[] }
    /** b's kernel: UDP datagrams dropped at its socket, IPv4 reassemblies failed and done */
    atB?: { rcvbufErrors: number; reasmFails: number; reasmOKs: number }
  }>
  dropped: Record<string, unknown>
  /** CPU seconds per GB through mesh0 of each agent's threads, by thread name (a, b) */
  threads: Record<string, Record<string, number>>
}

// issue 15's two impairments (each direction), and none: the userspace link's own rate
const IMPAIRMENTS: Array<{ name: string; imp: Impairment }> = [
  { name: 'none', imp: { delayMs: 0, lossPct: 0, reorderPct: 0 } },
  { name: 'low', imp: { delayMs: 2, lossPct: 0.25, reorderPct: 0.5, seed: 1 } },
  { name: 'high', imp: { delayMs: 4, lossPct: 1, reorderPct: 2.5, seed: 1 } },
]

/** What a run without the clean-link part (--impaired-only) reports for it: nothing */
const EMPTY: Omit<CarrierRun, 'carrier' | 'lossy'> = {
  tcp: [],
  direct: [],
  cpuPerGB: Number.NaN,
  sshMesh: Number.NaN,
  sshDirect: Number.NaN,
  pingMesh: { mean: Number.NaN, median: Number.NaN },
  pingDirect: { mean: Number.NaN, median: Number.NaN },
  dropped: {},
  threads: {},
}

async function measure(carrier: Carrier): Promise<CarrierRun> {
  if (switches.has('impaired-only')) return { ...EMPTY, carrier, lossy: await impaired(carrier) }
  const mib = arg('mib', 128)
  const sshMiB = arg('ssh-mib', 200)
  const pings = arg('pings', 100)
  const repeats = Math.max(1, arg('repeats', 3))
  const w = new World()
  let clean: Omit<CarrierRun, 'lossy'>
  try {
    const pub = w.lab.segment('pub')
    const aHost = w.lab.host('a', pub)
    const bHost = w.lab.host('b', pub)
    const { a, b, bOverlay, send } = await pair(w, aHost, bHost, carrier, pairOptions())
    // b's sshd on its link address and its overlay address (port 22 in b's namespace)
    w.lab.spawn(bHost, sshdSetup(join(w.tmp, 'sshd-b'), 22, readFileSync(`${w.key}.pub`), ['0.0.0.0', '::']))
    // the sink and sshd listening before the first run
    await new Promise((r) => setTimeout(r, 500))
    // mean and median: on a loaded machine a few scheduling stalls move the mean by milliseconds
    const rtt = async (to: string): Promise<{ mean: number; median: number }> => {
      const r = await w.lab.execOk(aHost, ['ping', '-n', '-c', String(pings), '-i', '0.01', to], {
        timeoutMs: 60_000,
      })
      const m = /= [\d.]+\/([\d.]+)\//.exec(r)
      const times = [...r.matchAll(/time=([\d.]+) ms/g)].map((x) => Number(x[1]))
      return { mean: m === null ? Number.NaN : Number(m[1]), median: median(times) }
    }
    // sshMiB of zeros to `cat > /dev/null` on b over ssh (its own encryption, no compression)
    const ssh = async (to: string): Promise<number> => {
      const opts = w.sshOpts().join(' ')
      const t0 = process.hrtime.bigint()
      await w.lab.execOk(
        aHost,
        ['sh', '-c', `head -c ${sshMiB}M /dev/zero | ssh ${opts} root@${to} 'cat > /dev/null'`],
        { timeoutMs: 600_000 },
      )
      return (sshMiB * 1.048576) / (Number(process.hrtime.bigint() - t0) / 1e9)
    }
    const drops = async (x: Agent) => (await w.json(x, ['status'])).overlayInterface.drops
    // packets and messages (datagrams) on the carrier (fewer messages: small packets batched)
    const channel = async (x: Agent, to: string) => {
      const p = (await w.json(x, ['status'])).overlayInterface.peers.find((p: any) => p.name === to)
      return carrier === 'udp' ? p?.udp : p?.datagram
    }
    const pids = [a.child.pid, b.child.pid]
    // the TCP runs alternate mesh0 and direct, `repeats` times each; medians
    const tcp: number[] = []
    const direct: number[] = []
    let cpuMesh = 0
    const threadCpu = [new Map<string, number>(), new Map<string, number>()]
    for (let i = 0; i < repeats; i++) {
      const cpu0 = pids.map(cpuSeconds)
      const th0 = pids.map(cpuSecondsByThread)
      tcp.push(await send(bOverlay))
      const cpu1 = pids.map(cpuSeconds)
      const th1 = pids.map(cpuSecondsByThread)
      cpuMesh += cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1]
      for (let j = 0; j < 2; j++)
        for (const [name, s] of th1[j])
          threadCpu[j].set(name, (threadCpu[j].get(name) ?? 0) + s - (th0[j].get(name) ?? 0))
      direct.push(await send(bHost.ip))
    }
    const gb = (repeats * mib * 1.048576) / 1000
    const cpuPerGB = cpuMesh / gb
    const threads: CarrierRun['threads'] = {}
    for (const [j, who] of ['a', 'b'].entries())
      threads[who] = Object.fromEntries(
        [...threadCpu[j]].filter(([, s]) => s > 0).map(([name, s]) => [name, Number((s / gb).toFixed(1))]),
      )
    const sshMesh = await ssh(bOverlay)
    const sshDirect = await ssh(bHost.ip)
    const pingMesh = await rtt(bOverlay)
    const pingDirect = await rtt(bHost.ip)
    const dropped = {
      a: { ...(await drops(a)), channel: await channel(a, 'b') },
      b: { ...(await drops(b)), channel: await channel(b, 'a') },
    }
    clean = {
      carrier,
      tcp,
      direct,
      cpuPerGB,
      sshMesh,
      sshDirect,
      pingMesh,
      pingDirect,
      dropped,
      threads,
    }
  } finally {
    await w.cleanup()
  }
  // --no-lossy: the clean link only (a short profiling run)
  return { ...clean, lossy: switches.has('no-lossy') ? [] : await impaired(carrier) }
}

/** TCP through mesh0 and direct over the userspace impaired link, for each impairment. */
async function impaired(carrier: Carrier): Promise<CarrierRun['lossy']> {
  const mib = arg('lossy-mib', 32)
  const repeats = Math.max(1, arg('repeats', 3))
  const w = new World()
  try {
    const link = await impairedLink(w.lab)
    const aHost = w.lab.host('a', link.sideA)
    const bHost = w.lab.host('b', link.sideB)
    const { a, send, bOverlay } = await pair(w, aHost, bHost, carrier, pairOptions())
    const out: CarrierRun['lossy'] = []
    // where datagrams are lost besides the impairer: b's UDP socket (RcvbufErrors) and b's IPv4
    // fragment reassembly (ReasmFails), counted by b's kernel (/proc/net/snmp in its namespace)
    const kernel = async () => {
      const snmp = await w.lab.execOk(bHost, ['cat', '/proc/net/snmp'])
      const field = (proto: string, name: string) => {
        const [head, values] = snmp.split('\n').filter((l) => l.startsWith(`${proto}:`))
        const i = head.split(/\s+/).indexOf(name)
        return Number(values.split(/\s+/)[i])
      }
      return {
        rcvbufErrors: field('Udp', 'RcvbufErrors'),
        reasmFails: field('Ip', 'ReasmFails'),
        reasmOKs: field('Ip', 'ReasmOKs'),
      }
    }
    for (const { name, imp } of IMPAIRMENTS) {
      await link.set(imp)
      const k0 = await kernel()
      const s0 = await link.stats()
      const t0 = performance.now()
      const run = { name, imp, mesh: [] as number[], direct: [] as number[] }
      for (let i = 0; i < repeats; i++) {
        run.mesh.push(await send(bOverlay, mib))
        run.direct.push(await send(bHost.ip, mib))
      }
      const seconds = (performance.now() - t0) / 1000
      const s1 = await link.stats()
      const d = (k: keyof ImpairStats) => s1[k] - s0[k]
      const stats = {
        in: d('in'),
        out: d('out'),
        dropped: d('dropped'),
        reordered: d('reordered'),
        overflow: d('overflow'),
        writeErrors: d('writeErrors'),
        maxLateMs: s1.maxLateMs,
        /** packets through the impairer per second of the runs (both directions, both paths) */
        pps: Math.round(d('in') / seconds),
      }
      const peer = (await w.json(a, ['status'])).overlayInterface.peers.find((p: any) => p.name === 'b')
      const udpSize =
        peer?.udp === undefined
          ? undefined
          : {
              packetSize: peer.udp.packetSize,
              fragmentLoss: peer.udp.fragmentLoss,
              changes: peer.udp.sizeChanges,
            }
      const k1 = await kernel()
      const atB = {
        rcvbufErrors: k1.rcvbufErrors - k0.rcvbufErrors,
        reasmFails: k1.reasmFails - k0.reasmFails,
        reasmOKs: k1.reasmOKs - k0.reasmOKs,
      }
      out.push({ ...run, link: stats, udpSize, atB })
      console.error(`impaired link, ${name}: ${JSON.stringify({ ...run, link: stats, udpSize, atB })}`)
    }
    return out
  } finally {
    await w.cleanup()
  }
}

const span = (xs: number[]) => `${fmt(median(xs))} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})`

async function main(): Promise<void> {
  if (switches.has('skip') || process.getuid?.() !== 0) {
    console.log('skipped: mesh0 and the netns lab need root')
    return
  }
  const mib = arg('mib', 128)
  const repeats = Math.max(1, arg('repeats', 3))
  const load0 = loadavg()
  // --datagram-only: the datagram carrier alone (e.g. to compare --datagram-mtu values)
  const runs: CarrierRun[] = []
  for (const carrier of switches.has('datagram-only') ? ['datagram' as const] : carriers)
    runs.push(await measure(carrier))
  const c = newCluster('bench')
  // --no-ceiling: skip the bare stream (it does not change with the overlay's code)
  const ceiling =
    switches.has('no-ceiling') || switches.has('impaired-only')
      ? { mbps: Number.NaN }
      : await streamRun(
          'mesh',
          { bytes: mib * 2 ** 20, chunk: 64 << 10 },
          JSON.stringify({ name: c.name, id: c.id, key: Buffer.from(c.key).toString('hex') }),
        )
  const rows: string[][] = []
  for (const r of runs) {
    const carrier =
      r.carrier === 'stream'
        ? 'stream'
        : r.carrier === 'udp'
          ? `direct UDP, MTU ${arg('datagram-mtu', 1280)}-${arg('udp-mtu-max', 16000)} by loss reports`
          : `WebRTC datagram, MTU ${arg('datagram-mtu', 1280)}`
    const m = median(r.tcp)
    const d = median(r.direct)
    const impairedRows = r.lossy.map((l) => [
      l.name === 'none'
        ? 'TCP, userspace link, no impairment (MB/s)'
        : `TCP, ${l.name} impairment: ${l.imp.delayMs} ms, ${l.imp.lossPct}% loss, ${l.imp.reorderPct}% reorder each way (MB/s)`,
      carrier,
      span(l.mesh),
      span(l.direct),
      fmt(median(l.mesh) / median(l.direct), 2),
    ])
    if (switches.has('impaired-only')) {
      rows.push(...impairedRows)
      continue
    }
    rows.push(
      [
        `TCP, one stream, clean link (MB/s, median of ${repeats})`,
        carrier,
        span(r.tcp),
        span(r.direct),
        fmt(m / d, 2),
      ],
      ...impairedRows,
      [`ssh bulk to cat (MB/s)`, carrier, fmt(r.sshMesh), fmt(r.sshDirect), fmt(r.sshMesh / r.sshDirect, 2)],
      [
        'ping RTT (ms, mean)',
        carrier,
        fmt(r.pingMesh.mean, 3),
        fmt(r.pingDirect.mean, 3),
        `+${fmt(r.pingMesh.mean - r.pingDirect.mean, 3)} ms`,
      ],
      [
        'ping RTT (ms, median)',
        carrier,
        fmt(r.pingMesh.median, 3),
        fmt(r.pingDirect.median, 3),
        `+${fmt(r.pingMesh.median - r.pingDirect.median, 3)} ms`,
      ],
      ['agent CPU seconds per GB through mesh0 (both ends)', carrier, fmt(r.cpuPerGB, 1), '-', '-'],
    )
  }
  if (!switches.has('impaired-only'))
    rows.push([
      'bare mesh stream ceiling, one libp2p stream on 127.0.0.1 (MB/s)',
      '-',
      fmt(ceiling.mbps),
      fmt(median(runs[0].direct)),
      fmt(ceiling.mbps / median(runs[0].direct), 2),
    ])
  const table = markdownTable(['measure', 'carrier', 'through mesh0', 'direct (same link)', 'ratio'], rows, [
    'l',
    'l',
    'r',
    'r',
    'r',
  ])
  const machine = machineInfo()
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ')
  console.log(
    `\n${table}\nimpaired link (per impairment: packets/s through the impairer, drops, reorders): ${JSON.stringify(runs.map((r) => ({ carrier: r.carrier, link: r.lossy.map((l) => ({ name: l.name, ...l.link })) })))}\ndropped packets: ${JSON.stringify(runs.map((r) => r.dropped))}\nagent CPU s/GB through mesh0 by thread (sender a, receiver b): ${JSON.stringify(runs.map((r) => ({ carrier: r.carrier, ...r.threads })))}\n\nMachine: ${machineMarkdown(machine)}; load average at start ${load(load0)}, at end ${load(loadavg())}`,
  )
  writeReport('overlay', { mib, repeats, runs, ceiling: ceiling.mbps, machine, load: [load0, loadavg()] })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
