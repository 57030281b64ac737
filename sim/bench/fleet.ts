// A fleet on one machine (not a test): 50 real agents on 127.0.0.1 (issue 18, items 3 and 4).
//
//   npm run bench:fleet -- [--agents 50] [--storm-s 10] [--idle-s 600] [--kills 3]
//   MESH_BENCH_PROF=DIR: a CPU profile of each agent's run in DIR
//
// 1. Join storm: one founder, then every other agent starts with its own join token within
//    --storm-s seconds; measured: until every agent lists every agent alive.
// 2. Idle: --idle-s seconds with nothing to do; per agent CPU (% of one core, from /proc), RSS
//    at the end, membership bytes sent per second (the agent's own counter) and every suspicion
//    any agent raised (cluster_change events to `suspect`: with nobody failing, each is false).
// 3. kill -9 of --kills members one after another: from the kill until every live agent has
//    marked the victim dead (each agent's own time-stamped event).
// All agents share one IP address (127.0.0.1), so the storm also meets each member's limit of
// new connections per address per second, as machines behind one NAT would. The overlay
// interface is off (50 agents on one host cannot each own mesh0; a fleet has one per machine).
// Prints a markdown table and writes sim/out/fleet-<time>.json. Every wait is bounded and every
// process started here is killed, also on failure or ^C.
import '../../src/shim.js'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { allAlive, BenchAgent, children, killAgentsOnExit, membershipBytesOut } from './agents.js'
import { parseFlags } from './args.js'
import {
  CLI,
  cpuSeconds,
  fmt,
  machineInfo,
  machineMarkdown,
  markdownTable,
  median,
  pssMiB,
  rssMiB,
  runBounded,
  sleep,
  stats,
  until,
  writeReport,
} from './report.js'

interface Options {
  agents: number
  stormS: number
  idleS: number
  kills: number
}

function parseArgs(argv: string[]): Options {
  const o: Options = { agents: 50, stormS: 10, idleS: 600, kills: 3 }
  const num = (flag: string, v: string) => {
    const n = Number(v)
    if (!Number.isFinite(n) || n < 0) throw new Error(`${flag} needs a number`)
    return n
  }
  parseFlags(
    argv,
    {
      '--agents': (next) => (o.agents = Math.floor(num('--agents', next()))),
      '--storm-s': (next) => (o.stormS = num('--storm-s', next())),
      '--idle-s': (next) => (o.idleS = num('--idle-s', next())),
      '--kills': (next) => (o.kills = Math.floor(num('--kills', next()))),
    },
    'use --agents N, --storm-s S, --idle-s S, --kills K',
  )
  if (o.agents < 3 || o.agents > 100) throw new Error('--agents takes 3 to 100')
  if (o.kills >= o.agents - 1) throw new Error('--kills must leave at least two agents')
  if (o.idleS > 3600 || o.stormS > 300) throw new Error('--idle-s is at most 3600 and --storm-s 300')
  return o
}

// MESH_BENCH_PROF=DIR: every agent writes a CPU profile of its whole run into DIR (cpu-prof.ts);
// the agents are then stopped with SIGTERM at the end, not killed (a SIGKILL leaves no profile)
const PROF = process.env.MESH_BENCH_PROF
const ENV: Record<string, string> = {
  MESH_OVERLAY__INTERFACE: 'false',
  ...(PROF === undefined
    ? {}
    : { MESH_BENCH_PROF: PROF, NODE_OPTIONS: `--import ${join(import.meta.dirname, 'cpu-prof.js')}` }),
}
/** One agent's connections as /v1/peers lists them (streams: only agents that report them). */
interface PeerConn {
  peerId: string
  direction: string
  path: string
  streams?: string[]
}

const SYNCS = 'mesh_membership_syncs_total'

/**
 * Each agent's membership bytes sent and V8 heap (MiB) from its /metrics, asked one agent at a
 * time (see connectionCensus).
 */
async function metricsOneByOne(agents: BenchAgent[]) {
  const out: Array<{
    bytesOut: number
    /** membership bytes sent by channel, and syncs started (initiator roles) */
    channels: { probe: number; sync: number; gossip: number; syncsStarted: number; catchups: number }
    heap: { committed: number; used: number; external: number; major: number; minor: number }
    /** work done since the agent started: admissions, duplicate connections closed, syncs, probes */
    work: {
      auths: number
      authFailed: number
      /** of the failed: the handshake's deadline passed; the connection closed before it ended */
      authTimeout: number
      authClosed: number
      duplicatesClosed: number
      syncs: number
      probes: number
    }
  }> = []
  for (const a of agents) {
    const m = await a.metrics().catch(() => undefined)
    const get = (name: string, labels?: Record<string, string>) =>
      m === undefined ? Number.NaN : m.get(name, labels)
    out.push({
      bytesOut: m === undefined ? Number.NaN : membershipBytesOut(m),
      channels: {
        probe: get('mesh_membership_bytes_total', { channel: 'probe', direction: 'out' }),
        sync: get('mesh_membership_bytes_total', { channel: 'sync', direction: 'out' }),
        gossip: get('mesh_membership_bytes_total', { channel: 'gossip', direction: 'out' }),
        syncsStarted: get(SYNCS) - get(SYNCS, { role: 'responder' }),
        catchups: get(SYNCS, { role: 'catchup' }),
      },
      heap: {
        committed: get('mesh_process_nodejs_heap_size_total_bytes') / 2 ** 20,
        used: get('mesh_process_nodejs_heap_size_used_bytes') / 2 ** 20,
        external: get('mesh_process_nodejs_external_memory_bytes') / 2 ** 20,
        // full and young-generation collections so far
        major: get('mesh_process_nodejs_gc_duration_seconds_count', { kind: 'major' }),
        minor: get('mesh_process_nodejs_gc_duration_seconds_count', { kind: 'minor' }),
      },
      work: {
        auths: get('mesh_node_auth_total'),
        authFailed:
          get('mesh_node_auth_total') -
          get('mesh_node_auth_total', { result: 'ok' }) -
          get('mesh_node_auth_total', { result: 'joiner' }),
        authTimeout: get('mesh_node_auth_total', { result: 'timeout' }),
        authClosed: get('mesh_node_auth_total', { result: 'closed' }),
        duplicatesClosed: get('mesh_node_duplicate_connections_closed_total'),
        syncs: get(SYNCS),
        probes: get('mesh_membership_probes_total'),
      },
    })
  }
  return out
}

/**
 * How many connections the agents hold, per agent and per peer, and what streams ride the
 * connections of pairs that hold more than one (protocol ids without the cluster prefix).
 */
async function connectionCensus(agents: BenchAgent[]) {
  // one agent at a time: 50 agents answering at once on 2 cores starve each other's probes
  const views: Array<PeerConn[] | undefined> = []
  for (const a of agents)
    views.push(
      await a.api
        .call<{ connections: PeerConn[] }>('GET', '/v1/peers', undefined, 10_000)
        .then((r) => r.connections)
        .catch(() => undefined),
    )
  const ok = views.filter((v) => v !== undefined)
  const perAgent = ok.map((v) => v.length)
  const perPeer = ok.map((v) => v.length / Math.max(1, new Set(v.map((c) => c.peerId)).size))
  const streams = new Map<string, number>()
  // the duplicated pairs' connections by direction and path ('inbound tcp + outbound tcp' is a
  // crossed dial one-connection settles; different paths are left alone by design)
  const shapes = new Map<string, number>()
  let duplicated = 0
  for (const v of ok) {
    const byPeer = new Map<string, PeerConn[]>()
    for (const c of v) byPeer.set(c.peerId, [...(byPeer.get(c.peerId) ?? []), c])
    for (const cs of byPeer.values()) {
      if (cs.length < 2) continue
      duplicated++
      const shape = cs
        .map((c) => `${c.direction} ${c.path}`)
        .sort()
        .join(' + ')
      shapes.set(shape, (shapes.get(shape) ?? 0) + 1)
      for (const c of cs)
        for (const st of c.streams ?? []) {
          const key = st.replace(/\/mesh\/[0-9a-f]+\//, '')
          streams.set(key, (streams.get(key) ?? 0) + 1)
        }
    }
  }
  return {
    agents: ok.length,
    perAgent: stats(perAgent),
    perAgentMedian: median(perAgent),
    perPeerMedian: median(perPeer),
    /** (agent, peer) pairs with two or more connections, counted from each side */
    duplicated,
    streamsOnDuplicated: Object.fromEntries([...streams].sort((x, y) => y[1] - x[1])),
    duplicatedShapes: Object.fromEntries(shapes),
  }
}

/**
 * What rode the two connections of the pairs that settled on one (each agent logs it once per
 * pair it settles, one-connection.ts): streams by protocol on the kept and the dropped one.
 * The line is at info level: run with MESH_BENCH_LOG_LEVEL=info (the agents log warn and up).
 */
function settledPairs(agents: BenchAgent[]) {
  const level = process.env.MESH_BENCH_LOG_LEVEL
  if (level !== 'info' && level !== 'debug' && level !== 'trace')
    return 'not logged (run with MESH_BENCH_LOG_LEVEL=info to count them)'
  const tally = { pairs: 0, keep: new Map<string, number>(), drop: new Map<string, number>() }
  for (const a of agents)
    for (const line of a.out.split('\n')) {
      if (!line.includes('two connections to one member')) continue
      try {
        const j = JSON.parse(line.slice(line.indexOf('{'))) as Record<'keep' | 'drop', { streams: string[] }>
        tally.pairs++
        for (const side of ['keep', 'drop'] as const)
          for (const st of j[side].streams) {
            const key = st.replace(/\/mesh\/[0-9a-f]+\//, '')
            tally[side].set(key, (tally[side].get(key) ?? 0) + 1)
          }
      } catch {}
    }
  const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort((x, y) => y[1] - x[1]))
  return { pairs: tally.pairs, keep: sorted(tally.keep), drop: sorted(tally.drop) }
}

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}

async function run(o: Options) {
  const base = mkdtempSync(join(tmpdir(), 'mesh-fleet-'))
  const agents: BenchAgent[] = []
  try {
    const name = (i: number) => `f${String(i).padStart(3, '0')}`
    const founder = new BenchAgent(name(1), join(base, name(1)))
    const init = await runBounded(
      process.execPath,
      [CLI, '--data-dir', founder.dir, 'init', '--cluster', 'fleet'],
      {
        timeoutMs: 30_000,
      },
    )
    if (init.code !== 0) throw new Error(`mesh init failed: ${init.stderr || init.stdout}`)
    founder.start([], ENV)
    agents.push(founder)
    await founder.ready()
    // one token each, made before the storm so that it only measures joining
    const tokens: string[] = []
    for (let i = 2; i <= o.agents; i++)
      tokens.push(
        (await founder.api.call<{ token: string }>('POST', '/v1/invite', { ttlMs: 3_600_000 })).token,
      )
    process.stderr.write(`fleet: starting ${o.agents - 1} joiners within ${o.stormS} s\n`)
    const t0 = Date.now()
    for (let i = 2; i <= o.agents; i++) {
      const a = new BenchAgent(name(i), join(base, name(i)))
      a.start(['--join', tokens[i - 2]], ENV)
      agents.push(a)
      await sleep((o.stormS * 1000) / (o.agents - 1))
    }
    const startedS = (Date.now() - t0) / 1000
    // how the storm settles, every 10 s: agents answering, members each lists alive, connections
    const progress: Array<{
      s: number
      answering: number
      aliveMin: number
      aliveMedian: number
      connsMedian: number
      /** the agents' CPU over the last interval, in cores (from /proc: what the storm costs) */
      cores: number
    }> = []
    let cpuPrev = { at: t0, s: 0 }
    let sampling = false
    const sampler = setInterval(() => {
      if (sampling) return
      sampling = true
      void Promise.all(
        agents.map(async (a) => {
          try {
            const [ms, st] = await Promise.all([
              a.members(),
              a.api.call<{ connections: unknown[] }>('GET', '/v1/peers', undefined, 5_000),
            ])
            return { alive: ms.filter((m) => m.status === 'alive').length, conns: st.connections.length }
          } catch {
            return undefined
          }
        }),
      )
        .then((views) => {
          const ok = views.filter((v) => v !== undefined)
          const cpu = { at: Date.now(), s: agents.reduce((t, a) => t + (cpuSeconds(a.child?.pid) || 0), 0) }
          const cores = (cpu.s - cpuPrev.s) / ((cpu.at - cpuPrev.at) / 1000)
          cpuPrev = cpu
          const p = {
            s: Math.round((Date.now() - t0) / 1000),
            answering: ok.length,
            aliveMin: ok.length === agents.length ? Math.min(...ok.map((v) => v.alive)) : 0,
            aliveMedian: ok.length > 0 ? median(ok.map((v) => v.alive)) : 0,
            connsMedian: ok.length > 0 ? median(ok.map((v) => v.conns)) : 0,
            cores,
          }
          progress.push(p)
          process.stderr.write(
            `fleet: ${p.s} s: ${p.answering}/${agents.length} answering, alive in views min ${p.aliveMin} median ${p.aliveMedian}, connections median ${p.connsMedian}, agents' CPU ${p.cores.toFixed(2)} cores, load ${loadavg()[0].toFixed(0)}\n`,
          )
        })
        .finally(() => {
          sampling = false
        })
    }, 10_000)
    let readyS = 0
    let convergedS = 0
    try {
      await Promise.all(agents.map((a) => a.ready(600_000)))
      readyS = (Date.now() - t0) / 1000
      // why joiners waited: what they logged while retrying the inviter (warn level)
      const retried = agents.filter((a) => a.out.includes('could not reach the inviter'))
      const why = retried.flatMap((a) => [...a.out.matchAll(/"err":"([^"]{0,160})/g)].map((m) => m[1]))
      const counts = new Map<string, number>()
      for (const w of why) counts.set(w, (counts.get(w) ?? 0) + 1)
      process.stderr.write(
        `fleet: ${retried.length} joiners retried the inviter; errors seen: ${JSON.stringify([...counts].sort((x, y) => y[1] - x[1]).slice(0, 5))}\n`,
      )
      await until(
        `all ${o.agents} agents to list ${o.agents} alive`,
        () => allAlive(agents, o.agents),
        600_000,
        2000,
      )
      convergedS = (Date.now() - t0) / 1000
    } finally {
      clearInterval(sampler)
    }
    // CPU-seconds of every agent from its start to convergence: what the storm cost, a figure
    // that a busy machine stretches less than the wall-clock time
    const stormCpuS = agents.reduce((t, a) => t + (cpuSeconds(a.child?.pid) || 0), 0)
    process.stderr.write(
      `fleet: converged ${convergedS.toFixed(1)} s after the storm began; the agents used ${stormCpuS.toFixed(0)} CPU-s (${(stormCpuS / agents.length).toFixed(1)} each)\n`,
    )

    const connsConverged = await connectionCensus(agents)
    process.stderr.write(`fleet: connections at convergence: ${JSON.stringify(connsConverged)}\n`)
    process.stderr.write(
      `fleet: pairs settled on one connection so far: ${JSON.stringify(settledPairs(agents))}\n`,
    )
    // idle: from here on nothing fails, so every suspicion is a false one
    for (const a of agents) a.listen()
    await sleep(10_000)
    const tIdle = Date.now()
    const cpu0 = agents.map((a) => cpuSeconds(a.child?.pid))
    const read0 = await metricsOneByOne(agents)
    const bytes0 = read0.map((r) => r.bytesOut)
    // what the storm cost in protocol work, summed over the agents (a churned connection is paid
    // for again: a handshake, identify, a sync)
    const sum = (k: keyof (typeof read0)[number]['work']) => read0.reduce((t, r) => t + r.work[k], 0)
    process.stderr.write(
      `fleet: storm work, all agents: ${sum('auths')} admissions (${sum('authFailed')} not ok: ${sum('authTimeout')} timed out, ${sum('authClosed')} closed first), ${sum('duplicatesClosed')} duplicate connections closed, ${sum('syncs')} syncs, ${sum('probes')} probes\n`,
    )
    const heap0 = read0.map((r) => r.heap)
    const load0 = loadavg()[0]
    // RSS through the window, from /proc only (asking the agents would load them): whether it
    // climbs steadily (something kept) or saw-tooths (garbage up to the next full GC)
    const rssTimeline: Array<{ s: number; median: number; max: number }> = []
    while (Date.now() - tIdle < o.idleS * 1000) {
      await sleep(Math.min(60_000, o.idleS * 1000 - (Date.now() - tIdle)))
      const now = agents.map((a) => rssMiB(a.child?.pid ?? 0)?.rss ?? Number.NaN)
      rssTimeline.push({
        s: Math.round((Date.now() - tIdle) / 1000),
        median: median(now),
        max: Math.max(...now),
      })
    }
    process.stderr.write(
      `fleet: idle RSS median by minute: ${rssTimeline.map((r) => r.median.toFixed(1)).join(' ')}\n`,
    )
    const tEnd = Date.now()
    const idleWall = (tEnd - tIdle) / 1000
    const cpuPct = agents.map((a, i) => (100 * (cpuSeconds(a.child?.pid) - cpu0[i])) / idleWall)
    const rss = agents.map((a) => rssMiB(a.child?.pid ?? 0)?.rss ?? Number.NaN)
    const smaps = agents.map((a) => pssMiB(a.child?.pid ?? 0))
    const pss = smaps.map((m) => m?.pss ?? Number.NaN)
    const privateDirty = smaps.map((m) => m?.privateDirty ?? Number.NaN)
    const read1 = await metricsOneByOne(agents)
    const bytes1 = read1.map((r) => r.bytesOut)
    const heap = read1.map((r) => r.heap)
    const bps = bytes1.map((b, i) => (b - bytes0[i]) / idleWall)
    // which channel the idle bytes went to (a sync that teaches something starts another)
    const perChannel = (k: keyof (typeof read1)[number]['channels']) =>
      stats(read1.map((r, i) => (r.channels[k] - read0[i].channels[k]) / idleWall))
    const channels = {
      probe: perChannel('probe'),
      sync: perChannel('sync'),
      gossip: perChannel('gossip'),
      syncsStartedPerMin: stats(
        read1.map((r, i) => ((r.channels.syncsStarted - read0[i].channels.syncsStarted) * 60) / idleWall),
      ),
      catchupsPerMin: stats(
        read1.map((r, i) => ((r.channels.catchups - read0[i].channels.catchups) * 60) / idleWall),
      ),
    }
    const load1 = loadavg()[0]
    const connsIdle = await connectionCensus(agents)
    process.stderr.write(`fleet: connections after the idle window: ${JSON.stringify(connsIdle)}\n`)
    const settledIdle = settledPairs(agents)
    process.stderr.write(`fleet: pairs settled on one connection in all: ${JSON.stringify(settledIdle)}\n`)
    // in the idle window, and apart: while the bench read every agent after it (the reads load
    // the machine too; both 50-agent runs of 2026-12-06 19:23 and 19:58 saw their only
    // suspicions there, seconds after the window)
    const suspectedIn = (from: number, to: number) =>
      agents.flatMap((a) =>
        a.changes
          .filter((c) => c.after === 'suspect' && c.time >= from && c.time < to)
          .map((c) => ({ by: a.name, ...c })),
      )
    const suspicions = suspectedIn(tIdle, tEnd)
    const suspicionsWhileRead = suspectedIn(tEnd, Date.now())
    const falseDeaths = agents.flatMap((a) => a.changes.filter((c) => c.after === 'dead' && c.time >= tIdle))
    process.stderr.write(
      `fleet: idle ${idleWall.toFixed(0)} s: CPU median ${median(cpuPct).toFixed(2)}%, ` +
        `${suspicions.length} suspicions (${suspicionsWhileRead.length} more while the bench read the agents after it), ` +
        `${falseDeaths.length} deaths\n`,
    )

    // kill -9, one after another
    const detections: Array<{ victim: string; suspectS: number; firstS: number; allS: number }> = []
    const alive = [...agents]
    for (let k = 0; k < o.kills; k++) {
      const victim = alive[1 + ((k * 17) % (alive.length - 1))]
      alive.splice(alive.indexOf(victim), 1)
      const tKill = Date.now()
      await victim.kill9()
      await until(
        `every agent to mark ${victim.name} dead`,
        async () => alive.every((a) => a.first(victim.peerId, 'dead', tKill) !== undefined),
        120_000,
        250,
      )
      const times = alive.map((a) => (a.first(victim.peerId, 'dead', tKill) ?? Number.NaN) - tKill)
      // the phases: waiting to be probed, then the suspicion, then the spread of the verdict
      const suspected = alive.map((a) => (a.first(victim.peerId, 'suspect', tKill) ?? Number.NaN) - tKill)
      detections.push({
        victim: victim.name,
        suspectS: Math.min(...suspected.filter((t) => !Number.isNaN(t))) / 1000,
        firstS: Math.min(...times) / 1000,
        allS: Math.max(...times) / 1000,
      })
      process.stderr.write(
        `fleet: ${victim.name} suspected ${detections[k].suspectS.toFixed(1)} s, dead first ${detections[k].firstS.toFixed(1)} s, everywhere ${detections[k].allS.toFixed(1)} s\n`,
      )
      await sleep(5_000)
    }
    return {
      storm: { startedS, readyS, convergedS, cpuS: stormCpuS, progress },
      idle: {
        seconds: idleWall,
        load: [load0, load1],
        cpuPct: stats(cpuPct),
        cpuP90: pct(cpuPct, 0.9),
        rssMiB: stats(rss),
        pssMiB: stats(pss),
        privateDirtyMiB: stats(privateDirty),
        rssTimeline,
        heapMiB: {
          committed: stats(heap.map((h) => h.committed)),
          used: stats(heap.map((h) => h.used)),
          external: stats(heap.map((h) => h.external)),
          atStart: { committed: stats(heap0.map((h) => h.committed)), used: stats(heap0.map((h) => h.used)) },
          // per agent over the window: full collections, young-generation ones per minute
          majorGcs: stats(heap.map((h, k) => h.major - heap0[k].major)),
          minorGcsPerMin: stats(heap.map((h, k) => ((h.minor - heap0[k].minor) * 60) / idleWall)),
        },
        bytesPerS: stats(bps),
        channels,
        suspicions,
        suspicionsWhileRead,
        falseDeaths: falseDeaths.length,
        connections: { converged: connsConverged, idleEnd: connsIdle, settled: settledIdle },
      },
      detections,
    }
  } finally {
    if (PROF !== undefined) await Promise.all(agents.map((a) => a.stop(15_000)))
    await Promise.all(agents.map((a) => a.kill9()))
    // MESH_BENCH_LOG_LEVEL=debug MESH_BENCH_LOG_DIR=DIR: every agent's whole log, for a storm that went wrong
    const logDir = process.env.MESH_BENCH_LOG_DIR
    if (logDir !== undefined) {
      mkdirSync(logDir, { recursive: true })
      for (const a of agents) writeFileSync(join(logDir, `${a.name}.log`), a.out)
    }
    rmSync(base, { recursive: true, force: true })
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const machine = machineInfo()
  const r = await run(o)
  const i = r.idle
  const rows = [
    [
      'join storm',
      `${o.agents - 1} joiners started within ${r.storm.startedS.toFixed(1)} s`,
      `every agent answering ${r.storm.readyS.toFixed(1)} s, all ${o.agents} alive everywhere ${r.storm.convergedS.toFixed(1)} s`,
    ],
    [
      "agents' CPU from start to all alive",
      '-',
      `${r.storm.cpuS.toFixed(0)} CPU-s, ${(r.storm.cpuS / o.agents).toFixed(1)} per agent`,
    ],
    [
      'idle CPU per agent',
      '<= 1% of a core',
      `median ${fmt(i.cpuPct.median, 2)}%, p90 ${fmt(i.cpuP90, 2)}%, max ${fmt(i.cpuPct.max, 2)}%`,
    ],
    ['idle RSS per agent', '<= 100 MB', `median ${fmt(i.rssMiB.median)} MiB, max ${fmt(i.rssMiB.max)} MiB`],
    [
      'idle PSS per agent (shared node binary split among the agents)',
      '-',
      `median ${fmt(i.pssMiB.median)} MiB, max ${fmt(i.pssMiB.max)} MiB`,
    ],
    [
      'idle memory per agent: private dirty; V8 heap committed / used; external',
      '-',
      `median ${fmt(i.privateDirtyMiB.median)}; ${fmt(i.heapMiB.committed.median)} / ${fmt(i.heapMiB.used.median)} (${fmt(i.heapMiB.atStart.committed.median)} / ${fmt(i.heapMiB.atStart.used.median)} at its start); ${fmt(i.heapMiB.external.median)} MiB; in it ${fmt(i.heapMiB.majorGcs.median, 0)} full GCs, ${fmt(i.heapMiB.minorGcsPerMin.median, 1)} scavenges a minute`,
    ],
    ['idle RSS median, each minute of the window', '-', i.rssTimeline.map((r) => fmt(r.median)).join(', ')],
    [
      'idle membership bytes sent per agent',
      '-',
      `median ${fmt(i.bytesPerS.median, 0)} B/s (probes ${fmt(i.channels.probe.median, 0)}, syncs ${fmt(i.channels.sync.median, 0)}, gossipsub ${fmt(i.channels.gossip.median, 0)}); ${fmt(i.channels.syncsStartedPerMin.median, 1)} syncs started a minute, ${fmt(i.channels.catchupsPerMin.median, 1)} of them catch-ups`,
    ],
    ...(
      [
        ['at convergence', i.connections.converged],
        ['after the idle window', i.connections.idleEnd],
      ] as const
    ).map(([when, c]) => [
      `connections per agent ${when}`,
      `${o.agents - 1} (one per peer)`,
      `median ${fmt(c.perAgentMedian, 1)}, max ${fmt(c.perAgent.max, 0)}; ${fmt(c.perPeerMedian, 2)} per peer; ${c.duplicated} agent-peer pairs with 2+`,
    ]),
    [
      `false suspicions in ${i.seconds >= 120 ? `${Math.round(i.seconds / 60)} idle minutes` : `${Math.round(i.seconds)} idle s`}`,
      '0',
      `${i.suspicions.length} (${i.falseDeaths} false deaths); ${i.suspicionsWhileRead?.length ?? '-'} while the bench read the agents after the window`,
    ],
    ...r.detections.map((d, k) => [
      `kill -9 #${k + 1} (${d.victim}): dead everywhere`,
      '<= 8 s',
      `first suspicion ${d.suspectS.toFixed(1)} s, first dead ${d.firstS.toFixed(1)} s, all ${d.allS.toFixed(1)} s`,
    ]),
  ]
  process.stdout.write(
    `## ${o.agents} agents on one machine (${new Date().toISOString().slice(0, 16)}Z)\n\n` +
      markdownTable(['what', 'target', 'measured'], rows, ['l', 'r', 'r']) +
      `\n${machineMarkdown(machine)}; load average during the idle window ${i.load.map((l) => l.toFixed(1)).join(' -> ')}\n`,
  )
  const path = writeReport('fleet', { machine, options: o, ...r })
  process.stderr.write(`wrote ${path}\n`)
}

killAgentsOnExit('fleet')
main().catch((err) => {
  for (const c of children) c.kill('SIGKILL')
  process.stderr.write(`fleet failed: ${(err as Error).stack ?? err}\n`)
  process.exit(1)
})
