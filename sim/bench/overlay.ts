// Overlay benchmark (not a test): TCP throughput, ssh bulk and ping RTT between two members
// through mesh0 against the same between their namespaces directly, side by side in one run,
// the bare mesh stream ceiling (one libp2p stream of the agent's stack, two processes on
// 127.0.0.1), and the agents' CPU seconds per GB through mesh0. Root only (netns lab in
// 198.18.0.0/16).
//
//   npm run bench:overlay            (node dist/sim/bench/overlay.js --mib 256 --repeats 3 --ssh-mib 200 --pings 100)
//   MESH_BENCH_PROF=DIR              agents write a CPU profile into DIR when they stop (cpu-prof.ts)
//
// Prints a markdown table and writes sim/out/overlay-<time>.json. Every process and namespace
// it starts is removed, also when a step fails.
import { readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { newCluster } from '../../src/node/cluster.js'
import { sshdSetup } from '../../test/system/harness.js'
import { type Agent, World, waitFor } from '../../test/system/world.js'
import {
  cpuSeconds,
  fmt,
  machineInfo,
  machineMarkdown,
  markdownTable,
  median,
  writeReport,
} from './report.js'
import { streamRun } from './stream-run.js'

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? dflt : Number(process.argv[i + 1])
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

async function main(): Promise<void> {
  if (process.argv.includes('--skip') || process.getuid?.() !== 0) {
    console.log('skipped: mesh0 and the netns lab need root')
    return
  }
  const mib = arg('mib', 256)
  const sshMiB = arg('ssh-mib', 200)
  const pings = arg('pings', 100)
  const repeats = Math.max(1, arg('repeats', 3))
  const w = new World()
  try {
    const pub = w.lab.segment('pub')
    const aHost = w.lab.host('a', pub)
    const bHost = w.lab.host('b', pub)
    const prof = process.env.MESH_BENCH_PROF
    const on = {
      MESH_OVERLAY__INTERFACE: 'true',
      MESH_OVERLAY__NAMES: 'false',
      MESH_LOG_LEVEL: 'warn',
      ...(prof === undefined
        ? {}
        : { MESH_BENCH_PROF: prof, NODE_OPTIONS: `--import ${join(import.meta.dirname, 'cpu-prof.js')}` }),
    }
    await w.mesh({ dir: join(w.tmp, 'agent-a') } as Agent, ['init', '--cluster', 'bench'])
    const a = w.agent('a', aHost, ['--announce', `/ip4/${aHost.ip}/tcp/4701`], on)
    await w.ready(a)
    const b = w.agent(
      'b',
      bHost,
      ['--announce', `/ip4/${bHost.ip}/tcp/4701`, '--join', await w.invite(a)],
      on,
    )
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
    w.lab.spawn(bHost, [process.execPath, '-e', SINK])
    // b's sshd on its link address and its overlay address (port 22 in b's namespace)
    w.lab.spawn(bHost, sshdSetup(join(w.tmp, 'sshd-b'), 22, readFileSync(`${w.key}.pub`), ['0.0.0.0', '::']))
    await new Promise((r) => setTimeout(r, 500))
    const netem = await w.lab.exec(aHost, [
      'tc',
      'qdisc',
      'add',
      'dev',
      'eth0',
      'root',
      'netem',
      'delay',
      '2ms',
    ])
    const netemNote =
      netem.code === 0
        ? 'netem available (impaired runs not implemented yet)'
        : `netem unavailable: ${(netem.stderr || netem.stdout).trim()}`
    if (netem.code === 0) await w.lab.exec(aHost, ['tc', 'qdisc', 'del', 'dev', 'eth0', 'root'])
    const send = async (to: string): Promise<number> => {
      const r = await w.lab.execOk(aHost, [process.execPath, '-e', SOURCE, to, String(mib)], {
        timeoutMs: 320_000,
      })
      return Number(r.trim())
    }
    const rtt = async (to: string): Promise<number> => {
      const r = await w.lab.execOk(aHost, ['ping', '-n', '-q', '-c', String(pings), '-i', '0.01', to], {
        timeoutMs: 60_000,
      })
      const m = /= [\d.]+\/([\d.]+)\//.exec(r)
      return m === null ? Number.NaN : Number(m[1])
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
    const pids = [a.child.pid, b.child.pid]
    // the TCP runs alternate mesh0 and direct, `repeats` times each; medians
    const meshRuns: number[] = []
    const directRuns: number[] = []
    let cpuMesh = 0
    for (let i = 0; i < repeats; i++) {
      const cpu0 = pids.map(cpuSeconds)
      meshRuns.push(await send(bOverlay))
      const cpu1 = pids.map(cpuSeconds)
      cpuMesh += cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1]
      directRuns.push(await send(bHost.ip))
    }
    const viaMesh = median(meshRuns)
    const direct = median(directRuns)
    const cpuPerGB = cpuMesh / ((repeats * mib * 1.048576) / 1000)
    const sshMesh = await ssh(bOverlay)
    const sshDirect = await ssh(bHost.ip)
    const pingMesh = await rtt(bOverlay)
    const pingDirect = await rtt(bHost.ip)
    const c = newCluster('bench')
    const ceiling = await streamRun(
      'mesh',
      { bytes: mib * 2 ** 20, chunk: 64 << 10 },
      JSON.stringify({ name: c.name, id: c.id, key: Buffer.from(c.key).toString('hex') }),
    )
    const dropped = { a: await drops(a), b: await drops(b) }
    const rows = [
      [
        `TCP throughput, one stream (MB/s, median of ${repeats})`,
        `${fmt(viaMesh)} (${fmt(Math.min(...meshRuns))}-${fmt(Math.max(...meshRuns))})`,
        `${fmt(direct)} (${fmt(Math.min(...directRuns))}-${fmt(Math.max(...directRuns))})`,
        fmt(viaMesh / direct, 2),
      ],
      [
        'bare mesh stream ceiling, one libp2p stream on 127.0.0.1 (MB/s)',
        fmt(ceiling.mbps),
        fmt(direct),
        fmt(ceiling.mbps / direct, 2),
      ],
      [`ssh bulk, ${sshMiB} MiB to cat (MB/s)`, fmt(sshMesh), fmt(sshDirect), fmt(sshMesh / sshDirect, 2)],
      ['ping RTT (ms, mean)', fmt(pingMesh, 3), fmt(pingDirect, 3), `+${fmt(pingMesh - pingDirect, 3)} ms`],
      ['agent CPU seconds per GB through mesh0 (both ends)', fmt(cpuPerGB, 1), '-', '-'],
    ]
    const table = markdownTable(['measure', 'through mesh0', 'direct (same link)', 'ratio'], rows, [
      'l',
      'r',
      'r',
      'r',
    ])
    const machine = machineInfo()
    console.log(
      `\n${table}\n${netemNote}\ndropped packets: ${JSON.stringify(dropped)}\n\nMachine: ${machineMarkdown(machine)}; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    )
    writeReport('overlay', {
      mib,
      pings,
      viaMesh,
      direct,
      meshRuns,
      directRuns,
      ceiling: ceiling.mbps,
      sshMiB,
      sshMesh,
      sshDirect,
      dropped,
      pingMesh,
      pingDirect,
      cpuPerGB,
      netemNote,
      machine,
    })
  } finally {
    await w.cleanup()
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
