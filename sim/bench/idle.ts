// Idle cost benchmark (not a test): CPU, memory and bytes of agents that have nothing to do, in
// the cluster shapes a user starts with (issue 20):
//   alone     one agent, no other member
//   pair      two members on 127.0.0.1
//   orphan    two members, then the other one is killed and its data dir removed: what a member
//             whose peers are all gone costs while it keeps looking for them
//   nat       a public hub and two members behind home-router NATs (netns, root), each able to
//             reserve a relay only on the hub
//   libp2p    the reference: two plain js-libp2p processes (TCP + Noise + yamux, identify, ping)
//             connected on 127.0.0.1, measured the same way in the same run (sim/bench/idle-peer.ts)
// Each agent is measured over --idle-s seconds after --settle-s: CPU as % of one core (from
// /proc/PID/stat), RSS at the start and end of the window, and bytes per second (loopback:
// everything the process wrote, sockets and disk, from /proc/PID/io; netns: the host's
// interface, both ways). Also each agent's relay searches, DHT lookups and dials in the window.
//
//   npm run build && node dist/sim/bench/idle.js [--idle-s 60] [--settle-s 15] [--park-s 10] [--only alone,pair,orphan,nat,libp2p]
//   (--park-s: nat.parkIdleMs of the nat shape, default 5 min in the agent; the window starts
//   once both members closed their idle WebRTC path and released libdatachannel; 0: never)
//   MESH_BENCH_PROF=DIR   each agent writes DIR/agent-NAME-PID-0.cpuprofile when stopped (cpu-prof.ts)

import { spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import {
  type AgentProcess,
  Fixture,
  mesh,
  meshJson,
  waitFor,
} from '../../test/integration/cluster-harness.js'
import { type Agent, ifaceBytes, natLab, type World } from '../../test/system/world.js'
import { parseFlags, positive } from './args.js'
import {
  cpuSeconds,
  cpuSecondsByThread,
  fetchMetrics,
  fmt,
  machineInfo,
  machineMarkdown,
  markdownTable,
  metric,
  rssMiB,
  sleep,
  stopProcess,
  waitForLine,
  wcharBytes,
  writeReport,
} from './report.js'

const SHAPES = ['alone', 'pair', 'orphan', 'nat', 'libp2p'] as const
type Shape = (typeof SHAPES)[number]

interface Options {
  idleS: number
  settleS: number
  only: Shape[]
  /** nat.parkIdleMs for the nat shape, in seconds (0: WebRTC paths stay open) */
  parkS: number
}

function parseArgs(argv: string[]): Options {
  const o: Options = { idleS: 60, settleS: 15, only: [...SHAPES], parkS: 10 }
  parseFlags(
    argv,
    {
      '--idle-s': (next) => {
        o.idleS = Math.max(5, Math.min(1800, positive('--idle-s', next())))
      },
      '--settle-s': (next) => {
        const v = Number(next())
        if (!Number.isFinite(v) || v < 0) throw new Error('--settle-s needs a number of seconds')
        o.settleS = Math.min(600, v)
      },
      '--park-s': (next) => {
        const v = Number(next())
        if (!Number.isInteger(v) || v < 0)
          throw new Error('--park-s needs a whole number of seconds (0: never park)')
        o.parkS = v
      },
      '--only': (next) => {
        const want = next().split(',')
        const bad = want.filter((s) => !SHAPES.includes(s as Shape))
        if (bad.length > 0)
          throw new Error(`--only: unknown shape ${bad.join(', ')} (shapes: ${SHAPES.join(', ')})`)
        o.only = want as Shape[]
      },
    },
    `use --idle-s S --settle-s S --park-s S --only ${SHAPES.join(',')}`,
  )
  return o
}

interface Row {
  shape: Shape
  agent: string
  cpuPct: number
  rssStart: number
  rssEnd: number
  bytesPerS: number
  bytesWhat: 'written' | 'interface'
  searches: number
  lookups: number
  dials: number
  /** dials in the window by path and result, e.g. 'direct/error' */
  dialsBy: Record<string, number>
  /** % of a core per thread name in the window (threads that ended meanwhile are missing) */
  threads: Record<string, number>
  /** what the RSS is made of at the end of the window, MiB (what holds a NAT member's extra) */
  memory: MemorySplit
}

/**
 * RSS split at one moment: anonymous vs file-backed pages (/proc/PID/status: RssAnon, RssFile,
 * the native module's code shows in file), and the V8 heap and the memory V8 knows is held
 * outside it (Buffers, ArrayBuffers) from the agent's process metrics. Anonymous memory that is
 * neither heap nor external is native: libuv, OpenSSL, libdatachannel/usrsctp, malloc arenas.
 */
interface MemorySplit {
  anon: number
  file: number
  heapTotal: number
  heapUsed: number
  /** the young generation's share of heapTotal (V8 grows it in a burst and keeps it) */
  newSpace: number
  external: number
}

function memorySplit(pid: number | undefined, text: string): MemorySplit {
  let status = ''
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {}
  const kb = (k: string) =>
    Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) / 1024
  const mib = (name: string) => (text === '' ? Number.NaN : metric(text, name) / 2 ** 20)
  return {
    anon: kb('RssAnon'),
    file: kb('RssFile'),
    heapTotal: mib('mesh_process_nodejs_heap_size_total_bytes'),
    heapUsed: mib('mesh_process_nodejs_heap_size_used_bytes'),
    newSpace:
      text === ''
        ? Number.NaN
        : metric(text, 'mesh_process_nodejs_heap_space_size_total_bytes', { space: 'new' }) / 2 ** 20,
    external: mib('mesh_process_nodejs_external_memory_bytes'),
  }
}

interface Probe {
  name: string
  pid: number | undefined
  /** the agent's control socket (for its counters); none for the reference */
  socket?: string
  bytes: () => Promise<number>
  bytesWhat: Row['bytesWhat']
}

const counters = async (socket: string | undefined) => {
  const text = socket === undefined ? '' : await fetchMetrics(socket).catch(() => '')
  return {
    searches: metric(text, 'mesh_node_relay_searches_total'),
    lookups: metric(text, 'mesh_node_dht_closest_peer_lookups_total'),
    dials: metric(text, 'mesh_node_transport_dials_total'),
    dialsBy: dialSeries(text),
    text,
  }
}

/** mesh_node_transport_dials_total by `path/result`. */
function dialSeries(text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^mesh_node_transport_dials_total\{([^}]*)\}\s+(\S+)/gm)) {
    const l = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    out[`${l.path ?? '?'}/${l.result ?? '?'}`] = Number(m[2])
  }
  return out
}

/** Measure every probe over the same window. */
async function measure(shape: Shape, probes: Probe[], o: Options): Promise<Row[]> {
  await sleep(o.settleS * 1000)
  // counters first: answering the metrics request is work (and bytes) of its own
  const before: Array<{
    c: Awaited<ReturnType<typeof counters>>
    cpu: number
    threads: Map<string, number>
    rss: number
    bytes: number
  }> = []
  for (const p of probes) {
    const c = await counters(p.socket)
    before.push({
      c,
      cpu: cpuSeconds(p.pid),
      threads: cpuSecondsByThread(p.pid),
      rss: rssMiB(p.pid ?? -1)?.rss ?? Number.NaN,
      bytes: await p.bytes(),
    })
  }
  const t0 = performance.now()
  await sleep(o.idleS * 1000)
  const s = (performance.now() - t0) / 1000
  const after = []
  for (const p of probes)
    after.push({
      cpu: cpuSeconds(p.pid),
      threads: cpuSecondsByThread(p.pid),
      rss: rssMiB(p.pid ?? -1)?.rss ?? Number.NaN,
      bytes: await p.bytes(),
    })
  const rows: Row[] = []
  for (const [i, p] of probes.entries()) {
    const c = await counters(p.socket)
    rows.push({
      shape,
      agent: p.name,
      cpuPct: (100 * (after[i].cpu - before[i].cpu)) / s,
      rssStart: before[i].rss,
      rssEnd: after[i].rss,
      bytesPerS: (after[i].bytes - before[i].bytes) / s,
      bytesWhat: p.bytesWhat,
      searches: c.searches - before[i].c.searches,
      lookups: c.lookups - before[i].c.lookups,
      dials: c.dials - before[i].c.dials,
      dialsBy: Object.fromEntries(
        Object.entries(c.dialsBy)
          .map(([k, v]) => [k, v - (before[i].c.dialsBy[k] ?? 0)] as const)
          .filter(([, v]) => v > 0),
      ),
      threads: Object.fromEntries(
        [...after[i].threads]
          .map(([k, v]) => [k, (100 * (v - (before[i].threads.get(k) ?? 0))) / s] as const)
          .filter(([, v]) => v >= 0.01)
          .sort((x, y) => y[1] - x[1]),
      ),
      memory: memorySplit(p.pid, c.text),
    })
  }
  for (const r of rows)
    console.error(
      `${shape}/${r.agent}: ${fmt(r.cpuPct, 2)} % CPU, RSS ${fmt(r.rssStart)} -> ${fmt(r.rssEnd)} MiB, ${fmt(r.bytesPerS, 0)} B/s, dials ${JSON.stringify(r.dialsBy)}; ` +
        `by thread ${Object.entries(r.threads)
          .map(([k, v]) => `${k} ${fmt(v, 2)}`)
          .join(', ')}; ` +
        `memory anon ${fmt(r.memory.anon)} (V8 heap ${fmt(r.memory.heapTotal)} of which used ${fmt(r.memory.heapUsed)}, new space ${fmt(r.memory.newSpace)}; external ${fmt(r.memory.external)}) file ${fmt(r.memory.file)} MiB`,
    )
  return rows
}

const loopbackProbe = (name: string, a: AgentProcess): Probe => ({
  name,
  pid: a.child?.pid,
  socket: join(a.dataDir, 'mesh.sock'),
  bytes: async () => wcharBytes(a.child?.pid),
  bytesWhat: 'written',
})

// MESH_BENCH_PROF=DIR: every agent writes a CPU profile of its run into DIR at SIGTERM
// (cpu-prof.ts), as in bench:overlay; the bench's own process is not profiled. The agents are
// then stopped with SIGTERM, not killed: a SIGKILL leaves no profile.
const PROF = process.env.MESH_BENCH_PROF
const profEnv = (): Record<string, string> =>
  PROF === undefined
    ? {}
    : { MESH_BENCH_PROF: PROF, NODE_OPTIONS: `--import ${join(import.meta.dirname, 'cpu-prof.js')}` }
const agentEnv = (): Record<string, string> => ({ MESH_LOG_LEVEL: 'warn', ...profEnv() })

async function founder(f: Fixture, name: string): Promise<AgentProcess> {
  const dir = f.tempDir('mesh-idle-')
  const init = await mesh(['--data-dir', dir, 'init', '--cluster', 'idle'])
  if (init.code !== 0) throw new Error(`mesh init: ${init.stderr}`)
  const a = f.agent(dir, ['--name', name]).start([], agentEnv())
  await a.ready()
  return a
}

async function joiner(f: Fixture, inviter: AgentProcess, name: string): Promise<AgentProcess> {
  const { token } = await meshJson<{ token: string }>(inviter.dataDir, ['invite'])
  const b = f.agent(f.tempDir('mesh-idle-'), ['--name', name]).start(['--join', token], agentEnv())
  await b.ready(60_000)
  await waitFor(
    `${name} alive in both tables`,
    async () => {
      for (const x of [inviter, b]) {
        const ms = await meshJson<Array<{ status: string }>>(x.dataDir, ['members'])
        if (ms.length !== 2 || !ms.every((m) => m.status === 'alive')) return false
      }
      return true
    },
    60_000,
  )
  return b
}

async function runLoopback(shape: Exclude<Shape, 'nat' | 'libp2p'>, o: Options): Promise<Row[]> {
  const f = new Fixture()
  try {
    const a = await founder(f, 'alpha')
    if (shape === 'alone') return await measure(shape, [loopbackProbe('alpha', a)], o)
    const b = await joiner(f, a, 'bravo')
    if (shape === 'pair')
      return await measure(shape, [loopbackProbe('alpha', a), loopbackProbe('bravo', b)], o)
    // orphan: bravo is gone for good (killed, data dir removed); alpha keeps its record
    await b.kill('SIGKILL')
    rmSync(b.dataDir, { recursive: true, force: true })
    return await measure(shape, [loopbackProbe('alpha', a)], o)
  } finally {
    await Promise.all(f.agents.map((a) => a.stop()))
    await f.cleanup()
  }
}

/** The reference: two plain libp2p processes, the second dialing the first, then both idle. */
async function runLibp2p(o: Options): Promise<Row[]> {
  const peer = new URL('./idle-peer.js', import.meta.url).pathname
  const life = String(o.settleS + o.idleS + 60)
  const kids: ReturnType<typeof spawn>[] = []
  const start = async (args: string[]) => {
    const child = spawn(process.execPath, [peer, life, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    kids.push(child)
    const ready = await waitForLine(
      child,
      (l) => (l.startsWith('{') ? (JSON.parse(l) as { addrs: string[] }) : undefined),
      30_000,
      'libp2p reference peer',
    )
    return { child, addrs: ready.addrs }
  }
  try {
    const a = await start([])
    const b = await start([a.addrs[0]])
    const probe = (name: string, child: ReturnType<typeof spawn>): Probe => ({
      name,
      pid: child.pid,
      bytes: async () => wcharBytes(child.pid),
      bytesWhat: 'written',
    })
    return await measure('libp2p', [probe('one', a.child), probe('two', b.child)], o)
  } finally {
    await Promise.all(kids.map((k) => stopProcess(k, 5_000)))
  }
}

async function runNat(o: Options): Promise<Row[]> {
  let w: World | undefined
  let agents: Agent[] = []
  // the lab's agents take this process's environment (natLab has no other way in); restored at once
  const saved = { MESH_BENCH_PROF: process.env.MESH_BENCH_PROF, NODE_OPTIONS: process.env.NODE_OPTIONS }
  try {
    Object.assign(process.env, profEnv())
    // the agent parks an idle WebRTC path after 5 min; shortened so the run fits, and the window
    // starts once both members released libdatachannel (what an idle member looks like then)
    const L = await natLab(false, { MESH_NAT__PARK_IDLE_MS: String(o.parkS * 1000) }).finally(() => {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
    })
    w = L.w
    agents = [L.hub, L.a, L.b]
    const lab = L.w.lab
    if (o.parkS > 0) {
      const t0 = Date.now()
      await waitFor(
        'both members behind NAT to park their WebRTC path and release libdatachannel',
        async () => {
          for (const x of [L.a, L.b]) {
            const text = await fetchMetrics(join(x.dir, 'mesh.sock'))
            if (metric(text, 'mesh_nat_webrtc_released_total') < 1) return false
          }
          return true
        },
        120_000 + o.parkS * 1000,
        1000,
      )
      console.error(`   parked and released ${((Date.now() - t0) / 1000).toFixed(0)} s after the lab was up`)
    }
    const probe = (a: Agent): Probe => ({
      name: a.name,
      pid: a.child.pid,
      socket: join(a.dir, 'mesh.sock'),
      bytes: () => ifaceBytes(lab, a.host),
      bytesWhat: 'interface',
    })
    return await measure('nat', agents.map(probe), o)
  } finally {
    await Promise.all(agents.map((a) => stopProcess(a.child)))
    await w?.cleanup()
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const m = machineInfo() // the load average before this run adds its own
  const rows: Row[] = []
  const skipped: string[] = []
  for (const shape of o.only) {
    console.error(`== ${shape}: settle ${o.settleS} s, measure ${o.idleS} s`)
    if (shape === 'nat') {
      if (process.getuid?.() !== 0) {
        skipped.push('nat: needs root for network namespaces')
        continue
      }
      rows.push(...(await runNat(o)))
    } else if (shape === 'libp2p') rows.push(...(await runLibp2p(o)))
    else rows.push(...(await runLoopback(shape, o)))
  }
  const table = markdownTable(
    [
      'shape',
      'agent',
      'CPU (% of a core)',
      'RSS start -> end (MiB)',
      'bytes/s',
      'relay searches',
      'DHT lookups',
      'dials',
    ],
    rows.map((r) => [
      r.shape,
      r.agent,
      fmt(r.cpuPct, 2),
      `${fmt(r.rssStart)} -> ${fmt(r.rssEnd)}`,
      `${fmt(r.bytesPerS, 0)} (${r.bytesWhat})`,
      String(r.searches),
      String(r.lookups),
      String(r.dials),
    ]),
    ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'],
  )
  const md = [
    `## Idle agents (${o.idleS} s after ${o.settleS} s settling${o.only.includes('nat') ? `; nat: ${o.parkS > 0 ? `WebRTC paths parked after ${o.parkS} s idle` : 'WebRTC paths kept open'}` : ''})`,
    machineMarkdown(m),
    table,
    ...skipped.map((s) => `- skipped ${s}`),
  ].join('\n\n')
  console.log(md)
  writeReport('idle', { options: o, machine: m, rows, skipped, markdown: md })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
