// mesh simulator: the membership core at scale, in virtual time.
//
//   node dist/sim/cli.js --nodes 1000 --scenario churn --duration 600 --seed 1 [--loss 0.01] [--json out.json] [--svg dir]
//   node dist/sim/cli.js --scenario crash --sweep 10,100,1000 --svg sim/out
//   node dist/sim/cli.js --scenario all --nodes 100
//
// Prints a table (and details) to stdout; --json writes every summary; --svg writes charts.
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { dirname, join } from 'node:path'
import { oldSpaceCapMb } from './heap-cap.js'
import type { LatencyName } from './network.js'
import { details, runScenario, type Summary, table } from './report.js'
import { type PARAM_DEFAULTS, SCENARIOS } from './scenarios.js'
import { SIM_DEFAULTS, type SimOptions } from './sim.js'
import { writeCharts } from './svg.js'

const HELP = `usage: node dist/sim/cli.js [options]

  --scenario NAME     ${Object.values(SCENARIOS)
    .map((s) => s.name + (s.available ? '' : ' (not yet)'))
    .join(', ')}, or all (default crash)
  --nodes N           members (default 100)
  --sweep N,N,...     run each size in turn (charts against N)
  --duration S        simulated seconds (default 600)
  --seed N            (default 1)
  --latency NAME      loopback, lan or wan (default wan: four regions)
  --loss P            packet loss probability (default 0)
  --loss-mode M       tcp (loss delays; default) or datagram (loss drops)
  --bandwidth MBPS    per-node uplink (default 100)
  --nat F             fraction of NAT-only members (reached through relays; default 0)
  --slow F            fraction of slow members (default 0)
  --slow-ms MS        their mean extra delay per thing they handle (default 250)
  --sync MODE         digest (the agent: sync 2.0.0, default) or full (sync 1.0.0: whole tables)
  --dissemination M   piggyback (the agent: BroadcastQueue on probes + fan-out 3 / 200 ms, default) or gossipsub (older agents)
  --retransmit-mult L piggyback: each update sent L * ceil(log10(N + 1)) times per member (default 2)
  --piggyback-budget B  piggyback: bytes of records and claims per message (default 4000)
  --announce [on|off] a joiner or restarted member queues its record to piggyback on start, as the
                      agent does since 2026-12-07 (default on; off: the agent before, for old figures)
  --probe-on-close [on|off]  a crash's reset connections and refused redials move it up its
                      members' probe order (membership.probeOnClose; default on since 2026-12-07)
  --max-conns N       connections a member keeps for gossip fan-out (libp2p default 300)
  --observers K       full nodes when N > --full-max (default 500)
  --full-max N        above this many members, light nodes are used (default 2000)
  --sample K          members a light node probes and follows (default 300)
  --light-relay on|off  a light node passes on news outside its sample once (default off)
  --light-queue N     the most items a relaying light node's queue holds (default 32; a full node's 4096)
  --start S           first disruption (default 30)
  --crash-frac F      crash: fraction killed (default 0.1)
  --partition-s S     partition: how long (default 60)
  --churn F           churn: events per minute as a fraction of N (default 0.02)
  --storm-s S         join storm: arrival window (default 30)
  --json FILE         write the summaries as JSON
  --svg DIR           write SVG charts
  --quiet             only the table

Exits 1 when a safety violation was seen (a member whose views never converged).
See sim/MODEL.md for what is modelled and how.
`

interface Cli {
  scenarios: string[]
  sizes: number[]
  durationMs: number
  seed: number
  sim: Partial<SimOptions>
  params: Partial<typeof PARAM_DEFAULTS>
  json?: string
  svg?: string
  quiet: boolean
}

function parse(argv: string[]): Cli {
  const c: Cli = {
    scenarios: ['crash'],
    sizes: [100],
    durationMs: 600_000,
    seed: 1,
    sim: { network: {} },
    params: {},
    quiet: false,
  }
  const net = c.sim.network!
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${a} needs a value`)
      return v
    }
    const num = (min = 0): number => {
      const n = Number(val())
      if (!Number.isFinite(n) || n < min) throw new Error(`${a} needs a number >= ${min}`)
      return n
    }
    switch (a) {
      case '--scenario': {
        const s = val()
        c.scenarios =
          s === 'all'
            ? Object.values(SCENARIOS)
                .filter((x) => x.available)
                .map((x) => x.name)
            : s.split(',')
        break
      }
      case '--nodes':
        c.sizes = [num(2)]
        break
      case '--sweep':
        c.sizes = val()
          .split(',')
          .map((x) => Number(x))
        if (c.sizes.some((n) => !Number.isInteger(n) || n < 2))
          throw new Error('--sweep takes sizes like 10,100,1000')
        break
      case '--duration':
        c.durationMs = num(1) * 1000
        break
      case '--seed':
        c.seed = num()
        break
      case '--latency':
        net.latency = val() as LatencyName
        break
      case '--loss':
        net.loss = num()
        break
      case '--loss-mode': {
        const m = val()
        if (m !== 'tcp' && m !== 'datagram') throw new Error('--loss-mode is tcp or datagram')
        net.lossMode = m
        break
      }
      case '--bandwidth':
        net.bandwidthMbps = num(0.001)
        break
      case '--nat':
        net.nat = num()
        break
      case '--slow':
        c.sim.slowFraction = num()
        break
      case '--slow-ms':
        c.sim.slowMs = num()
        break
      case '--sync': {
        const m = val()
        if (m !== 'full' && m !== 'digest') throw new Error('--sync is full or digest')
        c.sim.sync = m
        break
      }
      case '--dissemination': {
        const m = val()
        if (m !== 'gossipsub' && m !== 'piggyback')
          throw new Error('--dissemination is gossipsub or piggyback')
        c.sim.dissemination = m
        break
      }
      case '--piggyback-budget':
        c.sim.piggybackBudget = num(1)
        break
      case '--retransmit-mult':
        c.sim.retransmitMult = num(1)
        break
      case '--announce': {
        // bare --announce (on) as before; on/off when given
        const v = argv[i + 1]
        if (v === 'on' || v === 'off') i++
        c.sim.announceOnStart = v !== 'off'
        break
      }
      case '--probe-on-close': {
        // bare --probe-on-close (on) as before; on/off when given
        const v = argv[i + 1]
        if (v === 'on' || v === 'off') i++
        c.sim.probeOnClose = v !== 'off'
        break
      }
      case '--max-conns':
        c.sim.maxConnections = num(1)
        break
      case '--observers':
        c.sim.observers = num(1)
        break
      case '--full-max':
        c.sim.fullMax = num(2)
        break
      case '--sample':
        c.sim.sample = num(1)
        break
      case '--light-relay': {
        const v = val()
        if (v !== 'on' && v !== 'off') throw new Error('--light-relay takes on or off')
        c.sim.lightRelay = v === 'on'
        break
      }
      case '--light-queue':
        c.sim.lightQueue = num(1)
        break
      case '--start':
        c.params.startMs = num() * 1000
        break
      case '--crash-frac':
        c.params.crashFraction = num()
        break
      case '--partition-s':
        c.params.partitionMs = num() * 1000
        break
      case '--churn':
        c.params.churnPerMin = num()
        break
      case '--storm-s':
        c.params.stormMs = num() * 1000
        break
      case '--json':
        c.json = val()
        break
      case '--svg':
        c.svg = val()
        break
      case '--quiet':
        c.quiet = true
        break
      case '-h':
      case '--help':
        process.stdout.write(HELP)
        process.exit(0)
        break
      default:
        throw new Error(`unknown option ${a}\n\n${HELP}`)
    }
  }
  for (const s of c.scenarios) {
    const sc = SCENARIOS[s]
    if (sc === undefined) throw new Error(`unknown scenario '${s}'`)
    if (!sc.available) throw new Error(`scenario '${s}' is not available yet: ${sc.why}`)
  }
  return c
}

/**
 * Run again in a child node with the old-generation cap for this size (heap-cap.ts), unless node
 * was given a cap already: V8 sets its heap limits when it starts. True when the child ran.
 */
function rerunCapped(c: Cli): boolean {
  const capped = (flags: string) => /--max-old-space-size/.test(flags)
  if (capped(process.execArgv.join(' ')) || capped(process.env.NODE_OPTIONS ?? '')) return false
  const cap = oldSpaceCapMb(c.sizes, { ...SIM_DEFAULTS, ...c.sim })
  if (cap === undefined) return false
  const child = spawn(
    process.execPath,
    [...process.execArgv, `--max-old-space-size=${cap}`, process.argv[1], ...process.argv.slice(2)],
    { stdio: 'inherit' },
  )
  // a signal to this process (a timeout's kill) stops the run too, not only this wrapper
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
  for (const sig of signals) process.on(sig, () => child.kill(sig))
  child.on('exit', (code, signal) => {
    process.exitCode = code ?? (signal !== null ? 128 + (osConstants.signals[signal] ?? 0) : 1)
  })
  return true
}

function main(): void {
  let c: Cli
  try {
    c = parse(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`)
    process.exit(2)
  }
  if (rerunCapped(c)) return
  const results: Summary[] = []
  for (const scenario of c.scenarios) {
    for (const nodes of c.sizes) {
      if (!c.quiet)
        process.stderr.write(
          `running ${scenario} with ${nodes} members for ${c.durationMs / 1000} s (seed ${c.seed})...\n`,
        )
      const { summary } = runScenario({
        scenario,
        params: { ...c.params, nodes, durationMs: c.durationMs, seed: c.seed },
        sim: c.sim,
      })
      results.push(summary)
      if (!c.quiet) process.stderr.write(`  done in ${summary.wallS} s of wall time\n`)
    }
  }
  process.stdout.write(`${table(results)}\n`)
  if (!c.quiet) process.stdout.write(`\n${results.map(details).join('\n\n')}\n`)
  if (c.json !== undefined) {
    mkdirSync(dirname(c.json), { recursive: true })
    writeFileSync(
      c.json,
      `${JSON.stringify({ generated: new Date().toISOString(), argv: process.argv.slice(2), results }, null, 2)}\n`,
    )
    process.stderr.write(`wrote ${c.json}\n`)
  }
  if (c.svg !== undefined) {
    mkdirSync(c.svg, { recursive: true })
    for (const f of writeCharts(results, c.svg)) process.stderr.write(`wrote ${join(f)}\n`)
  }
  const bad = results.reduce((n, s) => n + s.violations.length, 0)
  process.exitCode = bad > 0 ? 1 : 0
}

main()
