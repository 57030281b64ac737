// Membership benchmark (not a test): real agent processes on 127.0.0.1, at 5 and 20 agents.
//
//   npm run bench:membership            (build, then node dist/sim/bench/membership.js)
//   node dist/sim/bench/membership.js --sizes 5,20 --repeats 3 --idle-s 60
//
// Per cluster size it measures
// - convergence after a join: from spawning a joiner until every member (the joiner too) lists
//   every member alive; the last `repeats` joins, median. The existing members' side comes from
//   the time stamps of their cluster_change events (SSE), the joiner's from polling its table;
//   also given from the moment the joiner's control API first answered (without process start).
// - idle traffic per node over `idle-s` seconds, two ways:
//   (1) membership bytes: the agents' own mesh_membership_bytes_total counters (gossip, sync and
//       probe payloads, before libp2p framing and encryption);
//   (2) all TCP bytes of each agent process: bytes_sent / bytes_received of its TCP sockets from
//       the kernel (ss -tin), i.e. everything libp2p puts on the wire (membership, gossipsub
//       heartbeats, identify, ping, DHT, relay reservations, yamux, Noise), headers excluded.
//   Suspicions raised while idle are counted (false positives).
// - detection after kill -9: from the kill until every other member has raised a cluster_change
//   'dead' event for the victim; `repeats` victims, median; each is restarted afterwards and the
//   time until it is alive everywhere again (with a higher incarnation) is recorded too.
//
// Prints a markdown table and writes sim/out/membership-<time>.json. Every wait is bounded and
// every process started here is stopped, also on failure.
import '../../src/shim.js'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ApiClient } from '../../src/api/client.js'
import type { MemberView } from '../../src/api/routes-members.js'
import type { MeshEvent } from '../../src/kernel/events.js'
import { MeshAgent } from './agents.js'
import { intList, parseFlags, positive } from './args.js'
import {
  CLI,
  cpuSeconds,
  fetchMetrics,
  fmt,
  fmtStats,
  machineInfo,
  machineMarkdown,
  markdownTable,
  runBounded,
  type Stats,
  sleep,
  stats,
  until,
  writeReport,
} from './report.js'

const NODE = process.execPath

interface Options {
  sizes: number[]
  repeats: number
  idleS: number
  settleS: number
  webrtc: boolean
}

function parseArgs(argv: string[]): Options {
  const o: Options = { sizes: [5, 20], repeats: 3, idleS: 60, settleS: 10, webrtc: true }
  parseFlags(argv, {
    '--sizes': (next) => {
      o.sizes = intList(next(), 3, 64)
      if (o.sizes.length === 0) throw new Error('--sizes needs cluster sizes between 3 and 64, e.g. 5,20')
    },
    '--repeats': (next) => (o.repeats = Math.min(10, Math.floor(positive('--repeats', next())))),
    '--idle-s': (next) => (o.idleS = Math.min(600, positive('--idle-s', next()))),
    '--settle-s': (next) => (o.settleS = Math.min(120, positive('--settle-s', next()))),
    '--no-webrtc': () => (o.webrtc = false),
  })
  return o
}

// ---------------------------------------------------------------------------------------
// agents

class Agent extends MeshAgent {
  private events: EventStream | undefined

  constructor(
    readonly name: string,
    dir: string,
  ) {
    super(dir, { name, keep: 4000 })
  }

  override start(extra: string[] = []): this {
    this.down = false
    live.agents.add(this)
    return super.start(extra, {
      MESH_LOG_LEVEL: 'warn',
      ...(agentEnv.webrtc ? {} : { MESH_WEBRTC__ENABLED: 'false' }),
    })
  }

  /** Resolves once the control API answers; ms since `t0`. */
  async readyAfter(t0: number, timeoutMs = 60_000): Promise<number> {
    await this.ready(timeoutMs, 50)
    return Date.now() - t0
  }

  async members(): Promise<MemberView[]> {
    return (await this.api.call<{ members: MemberView[] }>('GET', '/v1/members', undefined, 10_000)).members
  }

  /** the Prometheus text (for a dump of whole lines) */
  metricsText(): Promise<string> {
    return fetchMetrics(join(this.dir, 'mesh.sock'))
  }

  subscribe(): EventStream {
    this.events?.close()
    this.events = new EventStream(this.api)
    return this.events
  }

  get stream(): EventStream {
    if (this.events === undefined) throw new Error(`no event stream for ${this.name}`)
    return this.events
  }

  /** Close the event stream first: an open SSE client keeps the agent from stopping. */
  override async stop(): Promise<void> {
    this.events?.close()
    this.events = undefined
    await super.stop(5_000)
  }

  /** set by kill9 (and cleared by start): the agent is down on purpose */
  down = false

  kill9(): Promise<void> {
    this.down = true
    this.events?.close()
    this.events = undefined
    return this.kill('SIGKILL')
  }
}

interface Change {
  time: number
  peerId: string
  before: string | null
  after: string
  incarnation: number
}

class EventStream {
  readonly changes: Change[] = []
  private readonly ctl = new AbortController()

  constructor(api: ApiClient) {
    void api
      .events((e) => {
        const ev = e as MeshEvent
        if (ev.type === 'cluster_change')
          this.changes.push({ time: ev.time, ...(ev.data as Omit<Change, 'time'>) })
      }, this.ctl.signal)
      .catch(() => {})
  }

  first(peerId: string, after: string, since: number, minIncarnation = -1): Change | undefined {
    return this.changes.find(
      (c) => c.peerId === peerId && c.after === after && c.time >= since && c.incarnation >= minIncarnation,
    )
  }

  close(): void {
    this.ctl.abort()
  }
}

class CrashError extends Error {}

/** A wait on agents ends at once when one of them crashed meanwhile. */
const onCrash = (err: unknown) => err instanceof CrashError

// ---------------------------------------------------------------------------------------
// measurements

/** TCP bytes sent and received per pid, summed over the pid's sockets (kernel tcp_info via ss). */
function tcpBytesByPid(pids: Set<number>): Map<number, { sent: number; received: number; sockets: number }> {
  const out = new Map<number, { sent: number; received: number; sockets: number }>()
  let text = ''
  try {
    text = execFileSync('ss', ['-tinpH'], { encoding: 'utf8', timeout: 10_000, maxBuffer: 64 << 20 })
  } catch {
    return out
  }
  // one socket: a line with addresses and users:(("node",pid=N,fd=M)), then an indented info line
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const pm = /pid=(\d+)/.exec(lines[i])
    if (pm === null || lines[i].startsWith('\t') || lines[i].startsWith(' ')) continue
    const pid = Number(pm[1])
    const info = lines[i + 1] ?? ''
    if (!pids.has(pid)) continue
    const sent = Number(/bytes_sent:(\d+)/.exec(info)?.[1] ?? 0)
    const received = Number(/bytes_received:(\d+)/.exec(info)?.[1] ?? 0)
    const cur = out.get(pid) ?? { sent: 0, received: 0, sockets: 0 }
    cur.sent += sent
    cur.received += received
    cur.sockets++
    out.set(pid, cur)
  }
  return out
}

interface SizeResult {
  agents: number
  convergenceMs: Stats
  convergenceFromReadyMs: Stats
  detectionMs: Stats
  /** per repeat: the times at which each other member saw the victim dead */
  detectionSpreadMs: number[][]
  rejoinMs: Stats
  idle: {
    seconds: number
    membershipSentBps: Stats
    membershipTotalBps: Stats
    membershipByChannelBps: Record<string, number>
    tcpSentBps?: Stats
    tcpTotalBps?: Stats
    tcpSocketsPerNode?: Stats
    falseSuspicions: number
    falseDeaths: number
    /** CPU use of one agent process while idle, % of one core */
    cpuPercentPerNode: Stats
    /** 1-minute load average at the start and end of the idle window */
    loadAvg1: number[]
  }
  /** joins that timed out and were retried with a new token */
  failedJoins: number
  /** agents that crashed on their own during the run (restarted, see errors) */
  crashes: number
  /** waits for every member to list everyone alive that ran out (stuck false positives) */
  notAgreed: number
  /** from the last join until every member listed everyone alive */
  agreeAfterJoinsMs: number
  errors: string[]
}

/** '18 alive, 1 suspect (m07)' */
function describeView(v: MemberView[]): string {
  const by = new Map<string, string[]>()
  for (const r of v) by.set(r.status, [...(by.get(r.status) ?? []), r.name])
  return [...by]
    .map(([st, names]) => `${names.length} ${st}${st === 'alive' ? '' : ` (${names.join(', ')})`}`)
    .join(', ')
}

async function allAgree(agents: Agent[], n: number): Promise<boolean> {
  const views = await Promise.all(agents.map((a) => a.members()))
  const ok = views.every((v) => v.length === n && v.every((r) => r.status === 'alive'))
  if (!ok) {
    // kept for the error message when the wait runs out
    lastDisagreement = agents
      .map((a, i) => [a.name, views[i]] as const)
      .filter(([, v]) => v.length !== n || v.some((r) => r.status !== 'alive'))
      .map(([name, v]) => `${name} sees ${describeView(v)}`)
      .join('; ')
  }
  return ok
}

let lastDisagreement = ''

async function untilAllAgree(agents: Agent[], n: number, timeoutMs: number): Promise<void> {
  lastDisagreement = ''
  await until(`all ${n} agents to list ${n} alive members`, () => allAgree(agents, n), timeoutMs, 1000).catch(
    async (err) => {
      await dumpDisagreement(agents).catch(() => {})
      throw new Error(`${(err as Error).message} (${lastDisagreement})`)
    },
  )
}

/** For a failed wait: every agent's row of each disputed member, and its sync and drop counters. */
async function dumpDisagreement(agents: Agent[]): Promise<void> {
  const views = await Promise.all(agents.map((a) => a.members()))
  const disputed = new Set(views.flatMap((v) => v.filter((r) => r.status !== 'alive').map((r) => r.peerId)))
  for (const [i, a] of agents.entries()) {
    const m = await a.metricsText()
    const rows = views[i]
      .filter((r) => disputed.has(r.peerId))
      .map(
        (r) =>
          `${r.name}=${r.status}@${r.incarnation} since ${new Date(r.since).toISOString().slice(11, 23)}`,
      )
    const counters = m
      .split('\n')
      .filter((l) => /^mesh_membership_(syncs_total|dropped_total|inputs|changes_total|probes_total)/.test(l))
      .map((l) => l.replace('mesh_membership_', ''))
      .join(' ')
    process.stderr.write(`  [dump] ${a.name}: ${rows.join(', ')} | ${counters}\n`)
  }
}

/** CPU time (user + system) of a process in ms, from /proc. */
function cpuMs(pid: number): number | undefined {
  const s = cpuSeconds(pid)
  return Number.isNaN(s) ? undefined : s * 1000
}

/**
 * Agents that exited by themselves (a crash) are noted and started again (same data dir, no
 * token), so that one crash does not end the run; returns how many.
 */
async function reviveCrashed(agents: Agent[], n: number, errors: string[]): Promise<number> {
  const crashed = agents.filter((a) => a.child !== undefined && !a.running && !a.down)
  for (const a of crashed) {
    const why = a
      .tail()
      .split('\n')
      .find((l) => /Error/.test(l) && !l.startsWith('{'))
    errors.push(`${a.name} crashed and was restarted: ${why ?? a.tail().slice(-300)}`)
    process.stderr.write(`  ${a.name} crashed (${why ?? 'see JSON report'}); restarting it\n`)
    const t0 = Date.now()
    a.start()
    await a.readyAfter(t0)
    a.subscribe()
  }
  if (crashed.length > 0) {
    await untilAllAgree(agents, n, 120_000).catch((err) =>
      errors.push(`after a restart: ${(err as Error).message}`),
    )
  }
  return crashed.length
}

async function runSize(n: number, o: Options): Promise<SizeResult> {
  const base = mkdtempSync(join(tmpdir(), `mesh-bench-members-${n}-`))
  live.dirs.add(base)
  const agents: Agent[] = []
  const errors: string[] = []
  const conv: number[] = []
  const convReady: number[] = []
  let failedJoins = 0
  let crashes = 0
  let notAgreed = 0
  try {
    const first = new Agent('m01', join(base, 'm01'))
    const init = await runBounded(NODE, [CLI, '--data-dir', first.dir, 'init', '--cluster', 'bench'], {
      timeoutMs: 30_000,
    })
    if (init.code !== 0) throw new Error(`mesh init failed: ${init.stderr || init.stdout}`)
    first.start()
    agents.push(first)
    await first.readyAfter(Date.now())
    first.subscribe()

    // joins, one after the other; the last `repeats` are timed
    for (let i = 2; i <= n; i++) {
      const a = new Agent(`m${String(i).padStart(2, '0')}`, join(base, `m${String(i).padStart(2, '0')}`))
      const timed = i > n - o.repeats
      agents.push(a)
      // a join can time out on a busy machine (the agent then exits): count it and try again
      let t0 = 0
      let readyMs = 0
      for (let attempt = 1; ; attempt++) {
        const { token } = await first.api.call<{ token: string }>('POST', '/v1/invite', { ttlMs: 3_600_000 })
        t0 = Date.now()
        a.start(['--join', token])
        try {
          readyMs = await a.readyAfter(t0)
          break
        } catch (err) {
          if (attempt >= 3) throw err
          failedJoins++
          errors.push(`join of ${a.name} failed (attempt ${attempt}): ${a.tail().split('\n').pop()}`)
          if (a.running) await a.kill9()
        }
      }
      if (timed) {
        // the joiner's side: its own table holds all i members (their status is not the join's
        // business: a false suspicion elsewhere is reported by the wait below, not here)
        let lastView = ''
        const joinerDone = await until(
          `${a.name} to list ${i} members`,
          async () => {
            const v = await a.members()
            lastView = describeView(v)
            return v.length === i ? Date.now() : undefined
          },
          60_000,
          100,
        ).catch(async (err) => {
          await dumpDisagreement(agents).catch(() => {})
          throw new Error(`${(err as Error).message} (last view: ${lastView})`)
        })
        // the others' side: the first 'alive' event each raised for the joiner
        const seen = await until(
          `every member to raise cluster_change alive for ${a.name}`,
          async () => {
            const ts = agents.slice(0, -1).map((x) => x.stream.first(a.peerId, 'alive', t0)?.time)
            return ts.every((t) => t !== undefined) ? (ts as number[]) : undefined
          },
          60_000,
          100,
        )
        const done = Math.max(joinerDone, ...seen)
        conv.push(done - t0)
        convReady.push(done - t0 - readyMs)
        process.stderr.write(
          `  ${n} agents: join of ${a.name} converged in ${done - t0} ms (${readyMs} ms to API ready)\n`,
        )
      }
      a.subscribe()
    }
    // everyone alive on every member; a member stuck as falsely dead is a finding, not the end
    const tAgree = Date.now()
    await untilAllAgree(agents, n, 120_000).catch((err) => {
      notAgreed++
      errors.push(`after the joins: ${(err as Error).message}`)
      process.stderr.write(`  after the joins: ${(err as Error).message}\n`)
    })
    const agreeMs = Date.now() - tAgree

    // idle traffic
    await sleep(o.settleS * 1000)
    const pids = new Set(agents.map((a) => a.child!.pid!))
    const before = await Promise.all(agents.map((a) => a.metrics()))
    const tcp0 = tcpBytesByPid(pids)
    const cpu0 = [...pids].map((p) => cpuMs(p))
    const load0 = loadavg()[0]
    const tIdle = Date.now()
    await sleep(o.idleS * 1000)
    const after = await Promise.all(agents.map((a) => a.metrics()))
    const tcp1 = tcpBytesByPid(pids)
    const secs = (Date.now() - tIdle) / 1000
    const cpuPct = [...pids]
      .map((p, i) => {
        const a0 = cpu0[i]
        const a1 = cpuMs(p)
        return a0 === undefined || a1 === undefined ? undefined : ((a1 - a0) / (secs * 1000)) * 100
      })
      .filter((x): x is number => x !== undefined)
    const load1 = loadavg()[0]
    const sent: number[] = []
    const total: number[] = []
    const byChannel: Record<string, number> = {}
    for (let i = 0; i < agents.length; i++) {
      const d = (labels: Record<string, string>) =>
        after[i].get('mesh_membership_bytes_total', labels) -
        before[i].get('mesh_membership_bytes_total', labels)
      sent.push(d({ direction: 'out' }) / secs)
      total.push(d({}) / secs)
      for (const ch of ['gossip', 'sync', 'probe'])
        byChannel[ch] = (byChannel[ch] ?? 0) + d({ channel: ch }) / secs / agents.length
    }
    let tcpSent: number[] | undefined
    let tcpTotal: number[] | undefined
    let sockets: number[] | undefined
    if (tcp0.size > 0 && tcp1.size > 0) {
      tcpSent = []
      tcpTotal = []
      sockets = []
      for (const pid of pids) {
        const x0 = tcp0.get(pid)
        const x1 = tcp1.get(pid)
        if (x0 === undefined || x1 === undefined) continue
        // a socket that closed in the window takes its count with it: floor at 0
        tcpSent.push(Math.max(0, x1.sent - x0.sent) / secs)
        tcpTotal.push(Math.max(0, x1.sent + x1.received - x0.sent - x0.received) / secs)
        sockets.push(x1.sockets)
      }
    } else errors.push('ss gave no per-process TCP counters; TCP bytes not measured')
    const idleChanges = agents.flatMap((a) => a.stream.changes.filter((c) => c.time >= tIdle))
    const falseSuspicions = idleChanges.filter((c) => c.after === 'suspect').length
    const falseDeaths = idleChanges.filter((c) => c.after === 'dead').length
    process.stderr.write(
      `  ${n} agents idle: membership ${fmt(stats(sent).median, 0)} B/s sent per node; TCP ${fmt(tcpSent ? stats(tcpSent).median : undefined, 0)} B/s sent per node; ` +
        `CPU ${fmt(stats(cpuPct).median, 1)} % per node; load ${fmt(load0, 1)} -> ${fmt(load1, 1)}\n`,
    )

    // detection after kill -9, then restart
    const detection: number[] = []
    const spread: number[][] = []
    const rejoin: number[] = []
    // a crash (a libp2p bug, not membership) spoils a round: it is noted and the round is run
    // again, at most `repeats` extra times
    let spoiled = 0
    for (let r = 0; r < o.repeats; r++) {
      crashes += await reviveCrashed(agents, n, errors)
      const victim = agents[1 + ((r * 7) % (agents.length - 1))]
      const others = agents.filter((a) => a !== victim)
      try {
        const inc = (await others[0].members()).find((m) => m.peerId === victim.peerId)?.incarnation ?? 0
        const tKill = Date.now()
        await victim.kill9()
        const seen = await until(
          `every other member to mark ${victim.name} dead`,
          async () => {
            const crashed = others.filter((x) => !x.running)
            if (crashed.length > 0)
              throw new CrashError(`${crashed.map((x) => x.name).join(', ')} crashed meanwhile`)
            const ts = others.map((x) => x.stream.first(victim.peerId, 'dead', tKill)?.time)
            return ts.every((t) => t !== undefined) ? (ts as number[]) : undefined
          },
          120_000,
          200,
          onCrash,
        )
        const rel = seen.map((t) => t - tKill).sort((a, b) => a - b)
        spread.push(rel)
        detection.push(rel[rel.length - 1])
        process.stderr.write(
          `  ${n} agents: kill -9 of ${victim.name} detected everywhere after ${rel[rel.length - 1]} ms (first ${rel[0]} ms)\n`,
        )

        const tStart = Date.now()
        victim.start()
        await victim.readyAfter(tStart).catch((err) => {
          throw new CrashError(
            `restarted ${victim.name} did not come up: ${(err as Error).message.slice(0, 300)}`,
          )
        })
        const back = await until(
          `${victim.name} alive again everywhere`,
          async () => {
            const crashed = agents.filter((x) => !x.running)
            if (crashed.length > 0)
              throw new CrashError(`${crashed.map((x) => x.name).join(', ')} crashed meanwhile`)
            const ts = others.map((x) => x.stream.first(victim.peerId, 'alive', tStart, inc + 1)?.time)
            return ts.every((t) => t !== undefined) ? (ts as number[]) : undefined
          },
          120_000,
          200,
          onCrash,
        )
        rejoin.push(Math.max(...back) - tStart)
        victim.subscribe()
        await untilAllAgree(agents, n, 120_000).catch((err) => {
          notAgreed++
          errors.push(`after round ${r + 1}: ${(err as Error).message}`)
        })
        await sleep(3_000)
      } catch (err) {
        if (!(err instanceof CrashError) || ++spoiled > o.repeats) throw err
        errors.push(`round ${r + 1} spoiled: ${err.message}`)
        process.stderr.write(`  round ${r + 1} spoiled (${err.message.split('\n')[0]}); running it again\n`)
        // the victim of a spoiled round may be down on purpose: bring it back too
        if (!victim.running) victim.down = false
        r--
      }
    }

    return {
      agents: n,
      convergenceMs: stats(conv),
      convergenceFromReadyMs: stats(convReady),
      detectionMs: stats(detection),
      detectionSpreadMs: spread,
      rejoinMs: stats(rejoin),
      idle: {
        seconds: secs,
        membershipSentBps: stats(sent),
        membershipTotalBps: stats(total),
        membershipByChannelBps: byChannel,
        tcpSentBps: tcpSent && stats(tcpSent),
        tcpTotalBps: tcpTotal && stats(tcpTotal),
        tcpSocketsPerNode: sockets && stats(sockets),
        falseSuspicions,
        falseDeaths,
        cpuPercentPerNode: stats(cpuPct),
        loadAvg1: [load0, load1],
      },
      failedJoins,
      crashes,
      notAgreed,
      agreeAfterJoinsMs: agreeMs,
      errors,
    }
  } catch (err) {
    const crashed = agents
      .filter((a) => !a.running && a.child !== undefined)
      .map((a) => `${a.name}: ${a.tail().slice(-1500)}`)
    throw new Error(
      `${(err as Error).message}${crashed.length > 0 ? `\nexited agents:\n${crashed.join('\n')}` : ''}`,
    )
  } finally {
    await Promise.all(agents.map((a) => a.stop().catch(() => {})))
    for (const a of agents) if (a.running) a.child!.kill('SIGKILL')
    rmSync(base, { recursive: true, force: true })
    live.dirs.delete(base)
    for (const a of agents) live.agents.delete(a)
  }
}

// ---------------------------------------------------------------------------------------

/** Set from the options before any agent starts. */
const agentEnv = { webrtc: true }

/** Agents and data dirs of the run, so that an interrupted benchmark leaves nothing behind. */
const live = { agents: new Set<Agent>(), dirs: new Set<string>() }

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const a of live.agents) if (a.running) a.child!.kill('SIGKILL')
    for (const d of live.dirs) rmSync(d, { recursive: true, force: true })
    process.stderr.write(`membership benchmark: ${sig}, stopped every agent\n`)
    process.exit(130)
  })
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  agentEnv.webrtc = o.webrtc
  const machine = machineInfo()
  process.stderr.write(
    `membership benchmark: sizes ${o.sizes.join(', ')}, ${o.repeats} repeats, ${o.idleS} s idle\n`,
  )
  const results: SizeResult[] = []
  for (const n of o.sizes) results.push(await runSize(n, o))

  const s = (x: Stats | undefined, div = 1, digits = 1) =>
    x === undefined
      ? '-'
      : fmtStats({ ...x, median: x.median / div, min: x.min / div, max: x.max / div }, digits)
  const table = markdownTable(
    [
      'agents',
      'detection after kill -9, s',
      'convergence after a join, s (from API ready)',
      'restart: alive everywhere, s',
      'membership B/s per node, sent (sent+recv)',
      'all TCP B/s per node, sent (sent+recv)',
      'idle CPU per node, %',
      'idle suspicions / deaths',
      'stuck (no agreement in 120 s)',
    ],
    results.map((r) => [
      String(r.agents),
      s(r.detectionMs, 1000),
      `${s(r.convergenceMs, 1000)} (${s(r.convergenceFromReadyMs, 1000)})`,
      s(r.rejoinMs, 1000),
      `${fmt(r.idle.membershipSentBps.median, 0)} (${fmt(r.idle.membershipTotalBps.median, 0)})`,
      `${fmt(r.idle.tcpSentBps?.median, 0)} (${fmt(r.idle.tcpTotalBps?.median, 0)})`,
      fmtStats(r.idle.cpuPercentPerNode, 1),
      `${r.idle.falseSuspicions} / ${r.idle.falseDeaths}`,
      String(r.notAgreed),
    ]),
    ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  )
  const out = [
    '## Membership',
    '',
    table,
    '',
    `Median (min-max) over the rounds (normally ${o.repeats}; the JSON has every sample). Detection: kill -9 until every other member raised a 'dead' event. ` +
      'Convergence: joiner spawned until every member, the joiner included, lists everyone alive. ' +
      `Idle traffic over ${o.idleS} s after a ${o.settleS} s settle, median over nodes: membership payload bytes from ` +
      'mesh_membership_bytes_total; all TCP bytes of each agent process from the kernel (ss -tin bytes_sent/bytes_received), ' +
      'which includes gossipsub heartbeats, identify, ping, DHT and relay traffic and libp2p framing. Target: membership under 2 KB/s per node at 20 agents.',
    '',
    `Membership bytes by channel (B/s per node, sent+recv): ${results
      .map(
        (r) =>
          `${r.agents} agents: ${Object.entries(r.idle.membershipByChannelBps)
            .map(([k, v]) => `${k} ${fmt(v, 0)}`)
            .join(', ')}`,
      )
      .join('; ')}`,
    '',
    `Machine: ${machineMarkdown(machine)}`,
    ...results.flatMap((r) => r.errors.map((e) => `- note (${r.agents} agents): ${e}`)),
  ].join('\n')
  process.stdout.write(`${out}\n`)
  const path = writeReport('membership', { options: o, machine, results })
  process.stderr.write(`wrote ${path}\n`)
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`membership benchmark failed: ${(err as Error).stack ?? err}\n`)
    process.exit(1)
  },
)
