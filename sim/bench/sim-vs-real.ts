// The simulator against reality (not a test): the same scenario, a steady cluster and then
// kill -9 of one member, at 5 and 20 members (and 50 with --sizes), once with real agent processes on 127.0.0.1 and
// once in the simulator (loopback latency, the agent's default timing), side by side.
//
//   node dist/sim/bench/sim-vs-real.js [--sizes 5,20] [--repeats 3] [--seeds 20] [--settle-s 15]
//
// Figures, per size (median over rounds for the agents, over seeds for the simulator):
// - first detection: from the kill until the first member marks the victim dead;
// - detection (= convergence on the victim): until every other member has marked it dead;
// - restart, the victim started again 3 s after it was seen dead, until every other member holds
//   it alive with a new incarnation: compared from the moment its membership service started
//   (the new incarnation is that wall-clock time; the simulator's restart() boots a process
//   that is already up), and, agents only, from spawning the process (start-up is not simulated);
// - idle membership bytes/s per member over one settle window, as the agent's own counter
//   (mesh_membership_bytes_total, direction out, channels probe + gossip + sync; its 'piggyback'
//   channel counts the gossip inside probes a second time and is left out): payloads only, which
//   the simulator counts the same way in sim.payload (its wire figure is printed in the notes).
//   The notes split both by channel, and count the syncs a restart took.
// Real times come from the agents' own cluster_change events (SSE, time-stamped by the agent).
// Tolerance: a simulated median agrees when it is within max(2 s, 30%) of the real one (the
// probe interval is 1 s and every agent shares two cores with the others); bytes within 50%.
// Prints a markdown table and writes sim/out/sim-vs-real-<time>.json. Every wait is bounded
// and every process started here is killed, also on failure or ^C.
import '../../src/shim.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Change } from '../../src/membership/merge.js'
import { mix32, mulberry32, randInt } from '../rng.js'
import { Sim } from '../sim.js'
import { allAlive, BenchAgent, children, killAgentsOnExit } from './agents.js'
import { parseFlags, positive } from './args.js'
import {
  CLI,
  fmtStats,
  machineInfo,
  machineMarkdown,
  markdownTable,
  median,
  runBounded,
  sleep,
  stats,
  until,
  writeReport,
} from './report.js'

const TOLERANCE = { absMs: 2000, rel: 0.3, bytesRel: 0.5 }

interface Options {
  sizes: number[]
  repeats: number
  seeds: number
  settleS: number
}

function parseArgs(argv: string[]): Options {
  const o: Options = { sizes: [5, 20], repeats: 3, seeds: 20, settleS: 15 }
  parseFlags(argv, {
    '--sizes': (next) => (o.sizes = next().split(',').map(Number)),
    '--repeats': (next) => (o.repeats = Math.min(10, Math.floor(positive('--repeats', next())))),
    '--seeds': (next) => (o.seeds = Math.min(200, Math.floor(positive('--seeds', next())))),
    '--settle-s': (next) => (o.settleS = Math.min(120, positive('--settle-s', next()))),
  })
  if (o.sizes.some((n) => !Number.isInteger(n) || n < 3 || n > 50))
    throw new Error('--sizes takes sizes between 3 and 50, e.g. 5,20')
  return o
}

interface Round {
  firstMs: number
  allMs: number
  /** restart (agents only): from spawning the victim again until every other member holds it alive */
  rejoinMs?: number
  /** restart (agents only): from spawning the victim until its membership service started */
  startupMs?: number
  /** restart: from the membership service starting (simulator: restart()) until alive everywhere */
  rejoinFromStartMs: number | undefined
  /** real agents: how many of the others received membership gossip between the kill and full detection */
  gossipReceivers?: number
  /** idle membership bytes sent per member per second before the kill (probe + gossip + sync payloads) */
  idleBps?: number
  /** simulator only: the same idle traffic on the wire (framing, streams, gossipsub envelopes, IHAVE) */
  idleWireBps?: number
  /** idleBps by channel (agents: also 'piggyback', the records and claims inside probe messages) */
  idleByChannel?: Record<string, number>
  /** syncs on new connections from the restart until alive everywhere (agents: the restarted one's) */
  restartSyncs?: number
  /** restart, agents only: when each other member first held it alive, ms after its membership start, sorted */
  restartArrivalsMs?: number[]
  /**
   * restart, agents only: syncs on new connections and their retries (service.ts CONNECT_RETRY_MS)
   * by the others, and the restarted one's connect syncs that failed, from spawning it until alive
   * everywhere (each agent's mesh_membership_syncs_total, both results unless named)
   */
  restartOthersSyncs?: {
    connect: number
    connectRetry: number
    connectRetryOk: number
    victimConnectErrors?: number
  }
}

const CHANNELS = ['probe', 'gossip', 'sync'] as const

// ---- the simulator --------------------------------------------------------------------------

function simRound(n: number, seed: number, settleMs: number): Round {
  const sim = new Sim({
    seed,
    expectedNodes: n,
    network: { latency: 'loopback', bandwidthMbps: 10_000 },
    // not announceOnStart: a restarted agent is connected to, and has synced with, every member
    // it knew by the time its membership service runs (the DHT's start-up dials, sim/kad.ts)
  })
  let victimId = ''
  const dead = new Set<string>()
  let first: number | undefined
  sim.use({
    name: 'recorder',
    onChange(node, change: Change) {
      if (change.peerId === victimId && change.after === 'dead' && !dead.has(node.peerId)) {
        dead.add(node.peerId)
        first ??= sim.now
      }
    },
  })
  sim.form(n)
  sim.run(settleMs)
  // idle cost over one more settle window, counted as the agent's mesh_membership_bytes_total
  // counts it: payloads only (probe and sync messages, a gossip MemberSet once per publish).
  // The simulator's wire figure (sim.bytes: + framing, streams, gossipsub envelopes and copies)
  // is kept apart: the agents have no counter to hold it against.
  const idle = () => sim.payload.probe + sim.payload.gossip + sim.payload.sync
  const wire = () => sim.bytes.probe + sim.bytes.gossip + sim.bytes.ihave + sim.bytes.sync
  const b0 = idle()
  const w0 = wire()
  const c0 = CHANNELS.map((c) => sim.payload[c])
  sim.run(2 * settleMs)
  const perMember = (bytes: number) => bytes / n / (settleMs / 1000)
  const idleBps = perMember(idle() - b0)
  const idleWireBps = perMember(wire() - w0)
  const idleByChannel = Object.fromEntries(CHANNELS.map((c, k) => [c, perMember(sim.payload[c] - c0[k])]))
  const victim = 1 + randInt(mulberry32(mix32(seed, 99)), n - 1)
  victimId = sim.nodes[victim].peerId
  const t0 = sim.now
  sim.crash(victim)
  while (sim.tracker.detections.length === 0 && sim.now < t0 + 120_000) sim.run(sim.now + 100)
  const allMs = sim.tracker.detections[0] ?? Number.NaN
  sim.run(sim.now + 3_000)
  const t1 = sim.now
  const connectSyncs = sim.syncs.connect
  sim.restart(victim)
  while (sim.tracker.convergence.restart.length === 0 && sim.now < t1 + 120_000) sim.run(sim.now + 100)
  return {
    firstMs: (first ?? Number.NaN) - t0,
    allMs,
    // restart() boots a member that is already up: this is the agents' interval from their
    // membership service starting, not from spawning the process (start-up is not simulated)
    rejoinFromStartMs: sim.tracker.convergence.restart[0],
    idleBps,
    idleWireBps,
    idleByChannel,
    restartSyncs: sim.syncs.connect - connectSyncs,
  }
}

// ---- real agents ----------------------------------------------------------------------------

async function realSize(n: number, o: Options): Promise<{ rounds: Round[]; errors: string[] }> {
  const base = mkdtempSync(join(tmpdir(), `mesh-simvsreal-${n}-`))
  const agents: BenchAgent[] = []
  const rounds: Round[] = []
  const errors: string[] = []
  const note = (e: string) => {
    errors.push(e.slice(0, 300))
    process.stderr.write(`  ${n} agents: ${e.slice(0, 300)}\n`)
  }
  try {
    const first = new BenchAgent('r01', join(base, 'r01'))
    const init = await runBounded(
      process.execPath,
      [CLI, '--data-dir', first.dir, 'init', '--cluster', 'simcheck'],
      { timeoutMs: 30_000 },
    )
    if (init.code !== 0) throw new Error(`mesh init failed: ${init.stderr || init.stdout}`)
    first.start()
    agents.push(first)
    await first.ready()
    for (let i = 2; i <= n; i++) {
      const a = new BenchAgent(`r${String(i).padStart(2, '0')}`, join(base, `r${String(i).padStart(2, '0')}`))
      agents.push(a)
      for (let attempt = 1; ; attempt++) {
        const { token } = await first.api.call<{ token: string }>('POST', '/v1/invite', { ttlMs: 3_600_000 })
        a.start(['--join', token])
        try {
          await a.ready()
          break
        } catch (err) {
          if (attempt >= 3) throw err
          errors.push(`join of ${a.name} failed (attempt ${attempt})`)
          await a.kill9()
        }
      }
    }
    process.stderr.write(`  ${n} agents started; waiting until every one lists ${n} alive\n`)
    // a full mesh of 50 on two cores takes minutes to settle (README, A fleet on one machine)
    const formMs = Math.max(180_000, n * 12_000)
    await until(`all ${n} agents to list ${n} alive members`, () => allAlive(agents, n), formMs, 1000)
    for (const a of agents) a.listen()
    await sleep(o.settleS * 1000)
    // idle: membership bytes every agent sent over one more settle window, by channel
    const sent = async (channel: string) =>
      (
        await Promise.all(
          agents.map((a) =>
            a.metric('mesh_membership_bytes_total', { direction: 'out', channel }).catch(() => Number.NaN),
          ),
        )
      ).reduce((x, y) => x + y, 0)
    const all = [...CHANNELS, 'piggyback']
    // which syncs ran in the window (a sync that finds digests differing carries records)
    const ROLES = ['periodic', 'periodic_dead', 'connect', 'connect_retry', 'responder', 'statement']
    const syncs = async () =>
      Promise.all(
        ROLES.map(async (role) =>
          (
            await Promise.all(
              agents.map((a) => a.metric('mesh_membership_syncs_total', { role }).catch(() => Number.NaN)),
            )
          ).reduce((x, y) => x + y, 0),
        ),
      )
    const out0 = await Promise.all(all.map(sent))
    const syncs0 = await syncs()
    const tIdle = Date.now()
    await sleep(o.settleS * 1000)
    const out1 = await Promise.all(all.map(sent))
    const syncs1 = await syncs()
    process.stderr.write(
      `  ${n} agents, idle window: syncs by role ${ROLES.map((r, k) => `${r} ${syncs1[k] - syncs0[k]}`).join(', ')}\n`,
    )
    const secs = (Date.now() - tIdle) / 1000
    const idleByChannel = Object.fromEntries(all.map((c, k) => [c, (out1[k] - out0[k]) / n / secs]))
    const idleBps = CHANNELS.reduce((x, c) => x + idleByChannel[c], 0)
    for (let r = 0; r < o.repeats; r++) {
      const victim = agents[1 + ((r * 7) % (n - 1))]
      const others = agents.filter((a) => a !== victim)
      const inc = (await others[0].members()).find((m) => m.peerId === victim.peerId)?.incarnation ?? 0
      const gossipBefore = await Promise.all(others.map((x) => x.gossipIn().catch(() => Number.NaN)))
      const tKill = Date.now()
      await victim.kill9()
      const seen = await until(
        `every other member to mark ${victim.name} dead`,
        async () => {
          const ts = others.map((x) => x.first(victim.peerId, 'dead', tKill))
          return ts.every((t) => t !== undefined) ? (ts as number[]) : undefined
        },
        120_000,
      ).catch((err) => void note(`round ${r + 1}: ${(err as Error).message}`))
      const gossipAfter = await Promise.all(others.map((x) => x.gossipIn().catch(() => Number.NaN)))
      const gossipReceivers = gossipAfter.filter((b, k) => b > gossipBefore[k]).length
      await sleep(3_000)
      // from the moment the process is spawned (the control API answers only after the node and
      // membership components have started, by which time the others may already hold the new
      // incarnation alive: the old reference point, taken there, read 0 s). The new incarnation
      // is the wall clock when the membership service started (service.ts start()), which is
      // where the simulator's restart() stands: start-up before it is not simulated.
      // the others' syncs on new connections and their retries (service.ts onConnection)
      const retrySyncs = async () => {
        const snaps = await Promise.all(others.map((x) => x.metrics().catch(() => undefined)))
        const sum = (labels: Record<string, string>) =>
          snaps.reduce((x, m) => x + (m?.get('mesh_membership_syncs_total', labels) ?? Number.NaN), 0)
        return {
          connect: sum({ role: 'connect' }),
          connectRetry: sum({ role: 'connect_retry' }),
          connectRetryOk: sum({ role: 'connect_retry', result: 'ok' }),
        }
      }
      const retry0 = await retrySyncs()
      let restartOthersSyncs: Round['restartOthersSyncs']
      let restartArrivalsMs: number[] | undefined
      const tSpawn = Date.now()
      victim.start()
      let restartSyncs: number | undefined
      let rejoinMs: number | undefined
      let startupMs: number | undefined
      let rejoinFromStartMs: number | undefined
      try {
        await victim.ready()
        const back = await until(
          `${victim.name} alive again everywhere`,
          async () => {
            const cs = others.map((x) => x.firstChange(victim.peerId, 'alive', tSpawn, inc + 1))
            return cs.every((c) => c !== undefined) ? cs.map((c) => c!) : undefined
          },
          120_000,
        )
        const tBack = Math.max(...back.map((c) => c.time))
        const tMembership = Math.min(...back.map((c) => c.incarnation))
        rejoinMs = tBack - tSpawn
        startupMs = tMembership - tSpawn
        rejoinFromStartMs = tBack - tMembership
        restartSyncs = await victim
          .metric('mesh_membership_syncs_total', { role: 'connect' })
          .catch(() => undefined)
        restartArrivalsMs = back.map((c) => c.time - tMembership).sort((a, b) => a - b)
        const retry1 = await retrySyncs()
        restartOthersSyncs = {
          connect: retry1.connect - retry0.connect,
          connectRetry: retry1.connectRetry - retry0.connectRetry,
          connectRetryOk: retry1.connectRetryOk - retry0.connectRetryOk,
          victimConnectErrors: await victim
            .metric('mesh_membership_syncs_total', { role: 'connect', result: 'error' })
            .catch(() => undefined),
        }
        process.stderr.write(
          `  ${n} agents, round ${r + 1}: restart seen alive by the others at ${restartArrivalsMs.join(' ')} ms after its membership start; the others' connect syncs ${restartOthersSyncs.connect}, their connect_retry syncs ${restartOthersSyncs.connectRetry} (${restartOthersSyncs.connectRetryOk} ok); the restarted one's connect syncs ${restartSyncs ?? '-'} (${restartOthersSyncs.victimConnectErrors ?? '-'} failed)\n`,
        )
      } catch (err) {
        note(`round ${r + 1}: ${(err as Error).message}`)
      }
      victim.listen()
      const rel = (seen ?? [Number.NaN]).map((t) => t - tKill)
      rounds.push({
        firstMs: Math.min(...rel),
        allMs: Math.max(...rel),
        rejoinMs,
        startupMs,
        rejoinFromStartMs,
        gossipReceivers,
        idleBps,
        idleByChannel,
        restartSyncs,
        restartArrivalsMs,
        restartOthersSyncs,
      })
      process.stderr.write(
        `  ${n} agents, round ${r + 1}: first ${Math.min(...rel)} ms, all ${Math.max(...rel)} ms, restart: alive everywhere ${rejoinMs ?? '-'} ms after spawn, membership started after ${startupMs ?? '-'} ms\n`,
      )
      // the next round starts from a settled cluster; one that does not settle ends this size
      const settled = await until(`all ${n} alive again`, () => allAlive(agents, n), 120_000, 1000).catch(
        (err) => void note(`after round ${r + 1}, stopping: ${(err as Error).message}`),
      )
      if (!settled) break
      await sleep(3_000)
    }
    return { rounds, errors }
  } finally {
    await Promise.all(agents.map((a) => a.kill9()))
    rmSync(base, { recursive: true, force: true })
  }
}

// ---- the comparison -------------------------------------------------------------------------

const within = (sim: number, real: number, bytes = false) =>
  bytes
    ? Math.abs(sim - real) <= TOLERANCE.bytesRel * real
    : Math.abs(sim - real) <= Math.max(TOLERANCE.absMs, TOLERANCE.rel * real)
const s = (ms: number | undefined) =>
  ms === undefined || !Number.isFinite(ms) ? '-' : (ms / 1000).toFixed(1)
const bFmt = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : `${x.toFixed(0)} B/s`)
const finite = (xs: Array<number | undefined>) =>
  xs.filter((x): x is number => x !== undefined && Number.isFinite(x))
const med = (xs: Array<number | undefined>) => {
  const v = finite(xs)
  return v.length === 0 ? undefined : median(v)
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const machine = machineInfo()
  const rows: string[][] = []
  const notes: string[] = []
  const results: unknown[] = []
  let agree = true
  for (const n of o.sizes) {
    process.stderr.write(`simulator: ${n} members, ${o.seeds} seeds\n`)
    const simRounds = Array.from({ length: o.seeds }, (_, k) => simRound(n, k + 1, o.settleS * 1000))
    process.stderr.write(`real agents: ${n} members, ${o.repeats} rounds\n`)
    const real = await realSize(n, o)
    /** a row: medians compared, each side's 'median (min-max)' shown; `judged` false: agents only */
    const fig = (name: string, pick: (r: Round) => number | undefined, bytes = false, judged = true) => {
      const sv = finite(simRounds.map(pick))
      const rv = finite(real.rounds.map(pick))
      const a = sv.length === 0 ? undefined : median(sv)
      const b = rv.length === 0 ? undefined : median(rv)
      const ok = judged ? a !== undefined && b !== undefined && within(a, b, bytes) : undefined
      if (ok === false) agree = false
      const cell = (v: number[]) =>
        bytes
          ? v.length === 0
            ? '-'
            : `${fmtStats(stats(v), 0)} B/s`
          : fmtStats(stats(v.map((x) => x / 1000)), 1)
      rows.push([
        String(n),
        name,
        cell(sv),
        cell(rv),
        a !== undefined && b !== undefined && b > 0 ? `${(((a - b) / b) * 100).toFixed(0)}%` : '-',
        ok === undefined ? 'not compared' : ok ? 'yes' : 'NO',
      ])
      return { figure: name, sim: a, real: b, agrees: ok }
    }
    const figures = [
      fig('first detection', (r) => r.firstMs),
      fig('detection by all (convergence)', (r) => r.allMs),
      fig('restart: membership start to alive everywhere', (r) => r.rejoinFromStartMs),
      fig('restart: spawn to alive everywhere (start-up not simulated)', (r) => r.rejoinMs, false, false),
      fig('idle membership bytes/s per member', (r) => r.idleBps, true),
    ]
    notes.push(
      `${n} members: agents' rounds ${real.rounds.map((r) => `first ${s(r.firstMs)} s / all ${s(r.allMs)} s, gossip received by ${r.gossipReceivers ?? '-'} of ${n - 1}, restart: membership started ${s(r.startupMs)} s after spawn`).join('; ')}` +
        `; simulator: spread first-to-all median ${s(med(simRounds.map((r) => r.allMs - r.firstMs)))} s, idle wire bytes/s per member (framing, streams, envelopes, IHAVE) median ${bFmt(med(simRounds.map((r) => r.idleWireBps)))}` +
        `; idle payload by channel, simulator / agents (medians): ${[...CHANNELS, 'piggyback']
          .map(
            (c) =>
              `${c} ${bFmt(med(simRounds.map((r) => r.idleByChannel?.[c])))} / ${bFmt(med(real.rounds.map((r) => r.idleByChannel?.[c])))}`,
          )
          .join(', ')} (piggyback: inside probe)` +
        `; syncs on connect during a restart, simulator (all members) / agents (the restarted one): ${med(simRounds.map((r) => r.restartSyncs)) ?? '-'} / ${med(real.rounds.map((r) => r.restartSyncs)) ?? '-'}` +
        `; restart, agents' rounds: others alive after p50 / p90 / max ${real.rounds
          .map((r) => {
            const a = r.restartArrivalsMs
            if (a === undefined || a.length === 0) return '-'
            const q = (f: number) => s(a[Math.min(a.length - 1, Math.floor(f * a.length))])
            return `${q(0.5)} / ${q(0.9)} / ${s(a[a.length - 1])} s`
          })
          .join(', ')}, others' connect / connect_retry (ok) syncs ${real.rounds
          .map((r) => {
            const x = r.restartOthersSyncs
            return x === undefined ? '-' : `${x.connect} / ${x.connectRetry} (${x.connectRetryOk})`
          })
          .join(
            ', ',
          )}, the restarted one's failed connect syncs ${real.rounds.map((r) => r.restartOthersSyncs?.victimConnectErrors ?? '-').join(', ')}` +
        (real.errors.length > 0 ? `; errors: ${real.errors.join('; ')}` : ''),
    )
    results.push({
      members: n,
      figures,
      sim: simRounds,
      real: real.rounds,
      errors: real.errors,
    })
  }
  const table = markdownTable(
    [
      'members',
      'figure',
      'simulator',
      'agents',
      'diff',
      `within max(${TOLERANCE.absMs / 1000} s, ${TOLERANCE.rel * 100}%); bytes ${TOLERANCE.bytesRel * 100}%`,
    ],
    rows,
    ['r', 'l', 'r', 'r', 'r', 'l'],
  )
  process.stdout.write(
    `\n${table}\n\nMedians (min-max): simulator over ${o.seeds} seeds, agents over ${o.repeats} kill -9 rounds on 127.0.0.1. ${machineMarkdown(machine)}; load average at the end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' / ')}\n\n${notes.map((x) => `- ${x}`).join('\n')}\n`,
  )
  const path = writeReport('sim-vs-real', { machine, options: o, tolerance: TOLERANCE, agree, results })
  process.stderr.write(`wrote ${path}\n`)
  process.exitCode = agree ? 0 : 1
}

killAgentsOnExit('sim-vs-real')

main().catch((err) => {
  for (const c of children) c.kill('SIGKILL')
  process.stderr.write(`sim-vs-real failed: ${(err as Error).stack ?? err}\n`)
  process.exit(1)
})
