// Running a scenario and summing it up: the figures per run, the stdout table, the JSON.
import { type Dist, dist, type FalsePositives, quantile } from './metrics.js'
import { PARAM_DEFAULTS, SCENARIOS, type ScenarioParams, scenarioRng } from './scenarios.js'
import { CHANNELS, type Channel, Sim, type SimOptions } from './sim.js'

export interface Violation {
  member: number
  kind: 'never-converged'
  /** observers still holding a wrong view at the end */
  wrongViews: number
  /** when the member was last disturbed (s) */
  sinceS: number
  running: boolean
}

export interface Summary {
  scenario: string
  seed: number
  nodes: number
  /** full nodes (all of them below fullMax): the figures are over their views */
  observers: number
  liveAtEnd: number
  membersEver: number
  durationS: number
  wallS: number
  events: number
  config: {
    latency: string
    loss: number
    lossMode: string
    bandwidthMbps: number
    nat: number
    slowFraction: number
    slowMs: number
    sync: string
    announceOnStart: boolean
    probeOnClose: boolean
  }
  /** from a crash until every observer holds the member dead or left */
  detection: Dist & { undetected: number; pending: number }
  /** the detection time in three parts: crash to first suspicion, to first death claim, to seen dead by all */
  detectionPhases: { suspect: Dist; suspicion: Dist; spread: Dist }
  convergence: { join: Dist; restart: Dist; leave: Dist }
  /** from the last disruption until every observer first holds the right view of every member; null: never */
  settleS: number | null
  lastDisruptionS: number | null
  /** share of the run during which every view was right */
  convergedFraction: number
  falsePositives: FalsePositives
  refutations: number
  /** bytes sent per running node per second, by channel */
  bytesPerNodePerS: Record<Channel | 'total', number>
  perNodeBytesPerS: { p50: number; p99: number; max: number }
  /** crashes not seen dead by every observer by the end: crash -> first suspicion, -> first death claim */
  pendingPhases: { suspect: Dist; firstDeath: Dist }
  /**
   * With light members: the full members' mean bytes/s. A light member drops news about members
   * outside its sample and so forwards less than a member of a real cluster; a full one forwards
   * everything, as every member of a cluster of full members would.
   */
  fullNodeBytesPerS: number | null
  syncs: Sim['syncs']
  counters: Sim['counters']
  violations: Violation[]
  extensions: Record<string, unknown>
  /** [t s, wrong views, observers] once a second: for the timeline chart */
  series: Array<[number, number, number]>
}

export interface RunOptions {
  scenario: string
  params: Partial<ScenarioParams> & { nodes: number; durationMs: number; seed: number }
  sim?: Partial<SimOptions>
  /** a member still wrong at the end counts as a violation if it was last disturbed this long before the end */
  graceMs?: number
}

export function runScenario(o: RunOptions): { summary: Summary; sim: Sim } {
  const sc = SCENARIOS[o.scenario]
  if (sc === undefined)
    throw new Error(`unknown scenario '${o.scenario}' (${Object.keys(SCENARIOS).join(', ')})`)
  if (!sc.available) throw new Error(`scenario '${o.scenario}' is not available: ${sc.why}`)
  const p: ScenarioParams = { ...PARAM_DEFAULTS, ...o.params }
  const t0 = performance.now()
  const sim = new Sim({
    ...o.sim,
    seed: p.seed,
    expectedNodes: Math.max(sc.expected(p), o.sim?.expectedNodes ?? 0),
  })
  for (const x of sc.extensions?.(p) ?? []) sim.use(x)
  sim.form(sc.initial(p))
  const last = sc.plan(sim, p, scenarioRng(p.seed))
  sim.run(p.durationMs)
  const wallS = (performance.now() - t0) / 1000
  return {
    summary: summarize(sim, o.scenario, p, last, wallS, o.graceMs ?? Math.min(120_000, p.durationMs / 4)),
    sim,
  }
}

const mean = (xs: readonly number[]): number =>
  xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length

function summarize(
  sim: Sim,
  scenario: string,
  p: ScenarioParams,
  last: number | undefined,
  wallS: number,
  graceMs: number,
): Summary {
  const tr = sim.tracker
  const end = sim.now
  const nodeS = sim.nodeMs / 1000
  const per = (n: number) => (nodeS > 0 ? Math.round((n / nodeS) * 10) / 10 : 0)
  const bytes = {} as Record<Channel | 'total', number>
  let total = 0
  for (const c of CHANNELS) {
    bytes[c] = per(sim.bytes[c])
    total += sim.bytes[c]
  }
  bytes.total = per(total)
  const rates = sim.perNodeRates()
  const pending = tr.pendingPhases()
  const r = (x: number | undefined) => Math.round((x ?? 0) * 10) / 10

  // converged time: walk the 0 <-> >0 transitions
  let wrongSince: number | undefined
  let wrongMs = 0
  for (const [t, up] of tr.transitions) {
    if (up) wrongSince = t
    else if (wrongSince !== undefined) {
      wrongMs += t - wrongSince
      wrongSince = undefined
    }
  }
  if (wrongSince !== undefined) wrongMs += end - wrongSince
  // the first moment after the last disruption at which every view was right
  let settleS: number | null = null
  const from = last ?? 0
  let wrongAtFrom = false
  for (const [t, up] of tr.transitions) if (t <= from) wrongAtFrom = up
  if (!wrongAtFrom) settleS = 0
  else {
    const back = tr.transitions.find(([t, up]) => !up && t > from)
    if (back !== undefined) settleS = Math.round(back[0] - from) / 1000
  }
  const violations: Violation[] = tr
    .unsettled()
    .filter((u) => u.since < end - graceMs)
    .map((u) => ({
      member: u.member,
      kind: 'never-converged',
      wrongViews: u.wrong,
      sinceS: Math.round(u.since) / 1000,
      running: u.up,
    }))
  const ext: Record<string, unknown> = {}
  for (const x of sim.extensions) if (x.report !== undefined) ext[x.name] = x.report()
  const net = sim.net.opts
  return {
    scenario,
    seed: p.seed,
    nodes: p.nodes,
    observers: sim.nodes.filter((n) => n.full).length,
    liveAtEnd: sim.live,
    membersEver: sim.size,
    durationS: p.durationMs / 1000,
    wallS: Math.round(wallS * 100) / 100,
    events: sim.counters.events,
    config: {
      latency: net.latency,
      loss: net.loss,
      lossMode: net.lossMode,
      bandwidthMbps: net.bandwidthMbps,
      nat: net.nat,
      slowFraction: sim.opts.slowFraction,
      slowMs: sim.opts.slowMs,
      sync: sim.opts.sync,
      announceOnStart: sim.opts.announceOnStart,
      probeOnClose: sim.opts.probeOnClose,
    },
    detection: { ...dist(tr.detections), undetected: tr.undetected, pending: tr.pendingDetections() },
    detectionPhases: {
      suspect: dist(tr.phases.suspect),
      suspicion: dist(tr.phases.suspicion),
      spread: dist(tr.phases.spread),
    },
    pendingPhases: { suspect: dist(pending.suspect), firstDeath: dist(pending.firstDeath) },
    convergence: {
      join: dist(tr.convergence.join),
      restart: dist(tr.convergence.restart),
      leave: dist(tr.convergence.leave),
    },
    settleS,
    lastDisruptionS: last === undefined ? null : Math.round(last) / 1000,
    convergedFraction: end > 0 ? Math.round((1 - wrongMs / end) * 1000) / 1000 : 1,
    falsePositives: { ...tr.fp },
    refutations: sim.counters.refutations,
    bytesPerNodePerS: bytes,
    perNodeBytesPerS: {
      p50: r(quantile(rates, 0.5)),
      p99: r(quantile(rates, 0.99)),
      max: r(quantile(rates, 1)),
    },
    fullNodeBytesPerS: sim.nodes.some((n) => !n.full) ? r(mean(sim.perNodeRates(true))) : null,
    syncs: { ...sim.syncs },
    counters: { ...sim.counters },
    violations,
    extensions: ext,
    series: tr.series.map(([t, w, o]) => [Math.round(t) / 1000, w, o]),
  }
}

// ---- text output ---------------------------------------------------------------------------

const f = (v: number | null | undefined, digits = 1): string =>
  v === undefined || v === null ? '-' : v.toFixed(digits)

export function humanBytes(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`
  return `${n.toFixed(0)} B`
}

/** One line per run: the figures an operator asks for first. */
export function table(rows: Summary[]): string {
  const head = [
    'scenario',
    'N',
    'sim s',
    'wall s',
    'detect p50/p99 s',
    'converge p50/p99 s',
    'settle s',
    'FP dead',
    'FP susp',
    'B/s/node',
    'probe',
    'gossip+ihave',
    'sync',
    'violations',
  ]
  const lines = rows.map((s) => {
    const conv = [...[s.convergence.join, s.convergence.restart, s.convergence.leave]].filter(
      (d) => d.count > 0,
    )
    const cp50 = conv.length === 0 ? undefined : Math.max(...conv.map((d) => d.p50 ?? 0))
    const cp99 = conv.length === 0 ? undefined : Math.max(...conv.map((d) => d.p99 ?? 0))
    const b = s.bytesPerNodePerS
    return [
      s.scenario,
      String(s.nodes),
      f(s.durationS, 0),
      f(s.wallS, 1),
      s.detection.count === 0 ? '-' : `${f(s.detection.p50)}/${f(s.detection.p99)}`,
      cp50 === undefined ? '-' : `${f(cp50)}/${f(cp99)}`,
      f(s.settleS),
      `${s.falsePositives.deadMembers}${s.falsePositives.partitionDeadMembers > 0 ? ` (+${s.falsePositives.partitionDeadMembers} cut)` : ''}`,
      String(s.falsePositives.suspectMembers),
      humanBytes(b.total),
      humanBytes(b.probe),
      humanBytes(b.gossip + b.ihave),
      humanBytes(b.sync),
      String(s.violations.length),
    ]
  })
  const all = [head, ...lines]
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i].length)))
  const fmt = (r: string[]) => r.map((c, i) => (i < 1 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')
  return [fmt(head), w.map((n) => '-'.repeat(n)).join('  '), ...lines.map(fmt)].join('\n')
}

/** A few lines of detail under the table. */
export function details(s: Summary): string {
  const out: string[] = []
  out.push(
    `${s.scenario} N=${s.nodes} seed=${s.seed}: ${s.observers} observers, ${s.liveAtEnd} running at the end, ${s.membersEver} members in all, ${s.events} events in ${s.wallS} s`,
  )
  const d = s.detection
  if (d.count > 0 || d.pending > 0)
    out.push(
      `  detection: ${d.count} crashes seen dead by all, p50 ${f(d.p50)} s, p99 ${f(d.p99)} s, max ${f(d.max)} s; ${d.pending} still pending, ${d.undetected} restarted first`,
    )
  if (s.detectionPhases.spread.count > 0) {
    const ph = s.detectionPhases
    const pq = (x: Dist): string => `${f(x.p50)} / ${f(x.p99)} / ${f(x.max)}`
    out.push(
      `  detection phases p50 / p99 / max s: crash -> first suspicion ${pq(ph.suspect)}; suspicion -> first death claim ${pq(ph.suspicion)}; -> dead on every observer ${pq(ph.spread)}`,
    )
  }
  const pp = s.pendingPhases
  if (pp !== undefined && pp.suspect.count > 0) {
    const pq = (x: Dist): string => `${f(x.p50)} / ${f(x.p99)} / ${f(x.max)}`
    out.push(
      `  still pending, p50 / p99 / max s: crash -> first suspicion ${pq(pp.suspect)} (${pp.suspect.count}); crash -> first death claim ${pq(pp.firstDeath)} (${pp.firstDeath.count})`,
    )
  }
  for (const k of ['join', 'restart', 'leave'] as const) {
    const c = s.convergence[k]
    if (c.count > 0)
      out.push(`  ${k}: ${c.count} converged, p50 ${f(c.p50)} s, p99 ${f(c.p99)} s, max ${f(c.max)} s`)
  }
  out.push(
    `  converged ${(s.convergedFraction * 100).toFixed(1)}% of the time; settle after the last disruption: ${s.settleS === null ? 'never' : `${s.settleS} s`}`,
  )
  const fp = s.falsePositives
  out.push(
    `  false positives: ${fp.deadClaims} dead claims about ${fp.deadMembers} running members; across a cut ${fp.partitionDeadClaims} about ${fp.partitionDeadMembers}; suspicions ${fp.suspectClaims} about ${fp.suspectMembers}; refutations ${s.refutations}`,
  )
  const b = s.bytesPerNodePerS
  out.push(
    `  bytes/s per node: ${humanBytes(b.total)} (probe ${humanBytes(b.probe)}, gossip ${humanBytes(b.gossip)}, ihave ${humanBytes(b.ihave)}, sync ${humanBytes(b.sync)}, dial ${humanBytes(b.dial)}); per node p50 ${humanBytes(s.perNodeBytesPerS.p50)}, p99 ${humanBytes(s.perNodeBytesPerS.p99)}, max ${humanBytes(s.perNodeBytesPerS.max)}`,
  )
  if (s.fullNodeBytesPerS !== null && s.fullNodeBytesPerS !== undefined)
    out.push(
      `  bytes/s per full member (light members forward only news of their sample): ${humanBytes(s.fullNodeBytesPerS)}`,
    )
  const y = s.syncs
  out.push(
    `  syncs: ${y.periodic} periodic, ${y.connect} on connect, ${y.catchup ?? 0} to catch up, ${y.leave} on leave (${y.unsent} never sent before the agent stopped), ${y.failed} failed, ${y.tooLarge} over 8 MiB; ${y.rowsMoved} rows moved`,
  )
  if (s.violations.length > 0) {
    const v = s.violations
      .slice(0, 5)
      .map(
        (x) =>
          `#${x.member} (${x.running ? 'running' : 'gone'}, ${x.wrongViews} wrong views since ${x.sinceS} s)`,
      )
    out.push(
      `  VIOLATIONS: ${s.violations.length} members never converged: ${v.join(', ')}${s.violations.length > 5 ? ', ...' : ''}`,
    )
  }
  return out.join('\n')
}
