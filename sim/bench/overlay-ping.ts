// Ping RTT through mesh0 against direct, for one build or several side by side (not a test):
// a pair of agents on the direct UDP carrier per build (each build's own dist/, its own netns
// lab), all up at once, then rounds that take the builds in turn (the order rotates each round):
// `ping -c PINGS -i 0.01` through mesh0 then direct, and a TCP run through mesh0 with both
// agents' CPU seconds from /proc. Issue 15 asks ping through mesh0 <= direct + 0.5 ms.
//
//   node dist/sim/bench/overlay-ping.js [--builds DIST,DIST] [--rounds 10] [--pings 100] [--mib 16]
//
// --builds: dist/ directories (default: this one), e.g. a copy of main's dist/ against this one.
// Prints a markdown table and writes sim/out/overlay-ping-<time>.json. Root only.
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { parseFlags, positive } from './args.js'
import { pair } from './overlay-pair.js'
import {
  cpuSeconds,
  fmt,
  machineInfo,
  machineMarkdown,
  markdownTable,
  median,
  writeReport,
} from './report.js'

type WorldModule = typeof import('../../test/system/world.js')

// what to compare, and how much of each (defaults below); every flag checked up front
const opt = { builds: [resolve(import.meta.dirname, '../..')], rounds: 10, pings: 100, mib: 16 }
parseFlags(
  process.argv.slice(2),
  {
    '--builds': (next) => {
      opt.builds = next()
        .split(',')
        .map((b) => resolve(b))
    },
    '--rounds': (next) => {
      opt.rounds = positive('--rounds', next())
    },
    '--pings': (next) => {
      opt.pings = positive('--pings', next())
    },
    '--mib': (next) => {
      opt.mib = positive('--mib', next())
    },
  },
  'use --builds DIST,DIST --rounds N --pings N --mib N',
)
const { builds, rounds, pings, mib } = opt

interface Measured {
  build: string
  mesh: number[]
  direct: number[]
  /** per round: median through mesh0 - median direct */
  overhead: number[]
  /** per round: both agents' CPU milliseconds per ping through mesh0 (robust to the machine's load) */
  cpuPerPing: number[]
  tcp: number[]
  cpu: number
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('skipped: mesh0 and the netns lab need root')
    return
  }
  const load0 = loadavg()
  // the machine line's 'load average at start' is read now, not when the report is printed
  const machine = machineInfo()
  const worlds: Array<{ w: InstanceType<WorldModule['World']>; run: Awaited<ReturnType<typeof setUp>> }> = []
  const out: Measured[] = builds.map((build) => ({
    build,
    mesh: [],
    direct: [],
    overhead: [],
    cpuPerPing: [],
    tcp: [],
    cpu: 0,
  }))
  try {
    for (const build of builds) {
      const { World } = (await import(join(build, 'test/system/world.js'))) as WorldModule
      const w = new World()
      worlds.push({ w, run: undefined as never })
      worlds[worlds.length - 1].run = await setUp(w)
    }
    for (let r = 0; r < rounds; r++)
      for (let k = 0; k < builds.length; k++) {
        const i = (r + k) % builds.length
        const { w, run } = worlds[i]
        const m = out[i]
        const pids = [run.a.child.pid, run.b.child.pid]
        const p0 = pids.map(cpuSeconds)
        const mesh = await rtts(w, run.aHost, run.bOverlay)
        const p1 = pids.map(cpuSeconds)
        m.cpuPerPing.push(((p1[0] - p0[0] + p1[1] - p0[1]) * 1000) / pings)
        const direct = await rtts(w, run.aHost, run.bHost.ip)
        m.mesh.push(...mesh)
        m.direct.push(...direct)
        m.overhead.push(median(mesh) - median(direct))
        if (mib > 0) {
          const c0 = pids.map(cpuSeconds)
          m.tcp.push(await run.send(run.bOverlay, mib))
          const c1 = pids.map(cpuSeconds)
          m.cpu += c1[0] - c0[0] + c1[1] - c0[1]
        }
        console.error(
          `round ${r + 1} ${m.build}: +${fmt(m.overhead.at(-1), 3)} ms, ${fmt(m.cpuPerPing.at(-1), 3)} CPU ms/ping, ${fmt(m.tcp.at(-1))} MB/s`,
        )
      }
  } finally {
    for (const { w } of worlds) await w.cleanup()
  }
  const gb = (rounds * mib * 1.048576) / 1000
  const rows = out.map((m) => [
    m.build,
    fmt(median(m.mesh), 3),
    fmt(median(m.direct), 3),
    `+${fmt(median(m.mesh) - median(m.direct), 3)}`,
    `+${fmt(median(m.overhead), 3)} (${fmt(Math.min(...m.overhead), 3)}-${fmt(Math.max(...m.overhead), 3)})`,
    `${fmt(median(m.cpuPerPing), 3)} (${fmt(Math.min(...m.cpuPerPing), 3)}-${fmt(Math.max(...m.cpuPerPing), 3)})`,
    mib > 0 ? fmt(median(m.tcp)) : '-',
    mib > 0 ? fmt(m.cpu / gb, 1) : '-',
  ])
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ')
  const table = markdownTable(
    [
      'build',
      'ping mesh0, median (ms)',
      'direct (ms)',
      'overhead (ms)',
      'overhead per round, median (min-max)',
      'agents CPU ms per ping, median (min-max)',
      'TCP mesh0 (MB/s, median)',
      'CPU-s/GB both agents',
    ],
    rows,
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  )
  console.log(
    `\n${table}\n${rounds} rounds of ${pings} pings (-i 0.01) per build${mib > 0 ? ` and ${mib} MiB TCP` : ''}; Machine: ${machineMarkdown(machine)}; load average at end ${load(loadavg())}`,
  )
  writeReport('overlay-ping', { rounds, pings, mib, out, load: [load0, loadavg()] })
}

/** A pair on the direct UDP carrier in a lab of its own. */
async function setUp(w: InstanceType<WorldModule['World']>) {
  const pub = w.lab.segment('pub')
  const aHost = w.lab.host('a', pub)
  const bHost = w.lab.host('b', pub)
  const p = await pair(w, aHost, bHost, 'udp', { mib, datagramMtu: 1280, udpMtuMax: 16000 })
  return { ...p, aHost, bHost }
}

/** `pings` RTTs (ms) from a to `to`. */
async function rtts(
  w: InstanceType<WorldModule['World']>,
  from: Parameters<typeof w.lab.exec>[0],
  to: string,
) {
  const r = await w.lab.execOk(from, ['ping', '-n', '-c', String(pings), '-i', '0.01', to], {
    timeoutMs: 60_000,
  })
  return [...r.matchAll(/time=([\d.]+) ms/g)].map((x) => Number(x[1]))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
