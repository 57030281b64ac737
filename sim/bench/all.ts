// npm run bench: every benchmark script in sim/bench, one after the other, each as a child
// process with a time bound, and ONE report: sim/out/bench-report.md and .json, with the
// machine, what ran / was skipped / failed and why, each script's own tables (figures next to
// their same-run references: raw TCP, bare libp2p stream, direct scp, @helia/bitswap), and
// every ratio the scripts recorded, collected from their JSON.
//
//   node dist/sim/bench/all.js [--quick] [--only a,b] [--skip a,b]
//
// To add a benchmark: one entry in BENCHES. A script missing from this build (another branch
// adds it) is reported as skipped, not as a failure.
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { machineInfo, machineMarkdown, markdownTable, ROOT } from './report.js'

interface Bench {
  /** the script (dist/sim/bench/<name>.js) and its JSON report (sim/out/<name>-latest.json) */
  name: string
  what: string
  args: string[]
  quickArgs: string[]
  timeoutS: number
  quickTimeoutS: number
  /** parts that need root (network namespaces): without it, these args and the reason */
  withoutRoot?: { args: string[]; why: string }
  /** run under flock /tmp/mesh-system.lock (netns, system-wide state) */
  systemLock?: boolean
}

export const BENCHES: Bench[] = [
  {
    // first: every other figure depends on agents that do not spin when idle
    name: 'idle',
    what: 'idle agents: CPU, RSS and bytes per agent alone, in a pair, orphaned, behind NAT',
    args: ['--idle-s', '60', '--settle-s', '15'],
    quickArgs: ['--idle-s', '10', '--settle-s', '5'],
    timeoutS: 900,
    quickTimeoutS: 240,
    withoutRoot: {
      args: ['--only', 'alone,pair,orphan'],
      why: 'the NAT shape needs root for network namespaces',
    },
    systemLock: true,
  },
  {
    name: 'foundation',
    what: 'agent stream vs raw TCP and bare libp2p; idle cost',
    args: [],
    quickArgs: ['--repeats', '1', '--bytes', '16777216', '--idle-s', '5'],
    timeoutS: 900,
    quickTimeoutS: 120,
  },
  {
    name: 'tunnel',
    what: 'ssh over the mesh tunnel vs direct scp; relayed path in the netns lab',
    args: [],
    quickArgs: [
      '--scp-mib',
      '16',
      '--repeats',
      '1',
      '--rtt-samples',
      '50',
      '--connects',
      '3',
      '--lab-mib',
      '16',
    ],
    timeoutS: 1200,
    quickTimeoutS: 180,
    withoutRoot: { args: ['--skip-lab'], why: 'the relayed-path lab needs root for network namespaces' },
    systemLock: true,
  },
  {
    name: 'backpressure',
    what: 'memory of both agents and the CLI while a reader pauses: mesh proxy both ways, mesh cat',
    args: ['--mib', '1024', '--pause-s', '15'],
    quickArgs: ['--mib', '64', '--pause-s', '3'],
    timeoutS: 1200,
    quickTimeoutS: 180,
  },
  {
    name: 'overlay',
    what: 'TCP on a clean link and on a userspace impaired one (none, 2 ms + 0.25% loss + 0.5% reorder, 4 ms + 1% + 2.5%), ssh, ping RTT and agent CPU through mesh0 vs direct, both carriers, in the netns lab',
    args: ['--mib', '128', '--pings', '100', '--lossy-mib', '32'],
    quickArgs: ['--mib', '16', '--pings', '20', '--repeats', '1', '--ssh-mib', '16', '--lossy-mib', '8'],
    timeoutS: 1800,
    quickTimeoutS: 600,
    withoutRoot: { args: ['--skip'], why: 'mesh0 and the netns lab need root' },
    systemLock: true,
  },
  {
    name: 'nat',
    what: 'WebRTC paths between NATed members through the cluster STUN: success rate, time, scp vs relay',
    args: ['--attempts', '20', '--mib', '50'],
    quickArgs: ['--attempts', '3', '--mib', '8'],
    timeoutS: 900,
    quickTimeoutS: 240,
    systemLock: true,
  },
  {
    name: 'membership',
    what: 'real agents on loopback: join, detection, convergence, idle bytes',
    args: [],
    quickArgs: ['--sizes', '5', '--repeats', '1', '--idle-s', '10', '--settle-s', '20'],
    timeoutS: 1200,
    quickTimeoutS: 240,
  },
  {
    name: 'blocks',
    what: 'block transfer vs @helia/bitswap and the raw stream ceiling, then with providers limited to 15 MB/s each; dedup vs fixed-size chunks',
    args: ['--limited', '15000000'],
    quickArgs: ['--bytes', '4194304', '--repeats', '1', '--providers', '1'],
    // the first run also installs the Helia reference (about a minute)
    timeoutS: 1800,
    quickTimeoutS: 300,
  },
  {
    name: 'sim-vs-real',
    what: 'simulator vs real agents: crash one member at 5 and 20',
    args: [],
    quickArgs: ['--sizes', '5', '--repeats', '1', '--seeds', '5', '--settle-s', '20'],
    timeoutS: 1500,
    quickTimeoutS: 240,
  },
  {
    name: 'spawn',
    what: 'work placement: spawn',
    args: [],
    quickArgs: ['--quick'],
    timeoutS: 900,
    quickTimeoutS: 180,
  },
  {
    name: 'election',
    what: 'elections on real agents',
    args: [],
    quickArgs: ['--quick'],
    timeoutS: 900,
    quickTimeoutS: 180,
  },
]

interface Outcome {
  name: string
  what: string
  status: 'ok' | 'failed' | 'timed out' | 'skipped'
  why?: string
  notes: string[]
  args: string[]
  seconds: number
  stdout: string
  stderrTail: string
  report?: unknown
  ratios: Array<{ path: string; value: number }>
}

const isRoot = (): boolean => process.getuid?.() === 0

/** Runs one script in its own process group; on timeout the whole group is killed. */
function run(
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const child = spawn(cmd, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
      process.stdout.write(d)
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
      if (stderr.length > 200_000) stderr = stderr.slice(-100_000)
    })
    const kill = (sig: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig)
      } catch {
        // already gone
      }
    }
    let hard: NodeJS.Timeout | undefined
    const timer = setTimeout(() => {
      timedOut = true
      kill('SIGTERM')
      hard = setTimeout(() => kill('SIGKILL'), 10_000)
    }, timeoutMs)
    child.on('close', (code) => {
      clearTimeout(timer)
      if (hard !== undefined) clearTimeout(hard)
      // agents the script started and left behind
      kill('SIGKILL')
      resolve({ code, stdout, stderr, timedOut, ms: performance.now() - t0 })
    })
    child.on('error', (err) => {
      clearTimeout(timer)
      resolve({ code: -1, stdout, stderr: `${stderr}\n${err.message}`, timedOut, ms: performance.now() - t0 })
    })
  })
}

/** Every number under a key that names a ratio (`ratio`, `...Ratio`, `vs...`), with its path. */
function ratios(x: unknown, path = '', out: Array<{ path: string; value: number }> = []) {
  if (out.length >= 200 || x === null || typeof x !== 'object') return out
  for (const [k, v] of Object.entries(x as Record<string, unknown>)) {
    const p = path === '' ? k : `${path}.${k}`
    if (typeof v === 'number' && /ratio|^vs|Vs[A-Z]|overhead/i.test(k) && Number.isFinite(v))
      out.push({ path: p, value: v })
    else if (typeof v === 'object') ratios(v, p, out)
  }
  return out
}

async function main(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick')
  const list = (flag: string) => {
    const i = argv.indexOf(flag)
    return i >= 0 ? String(argv[i + 1]).split(',') : undefined
  }
  const only = list('--only')
  const skip = list('--skip') ?? []
  const machine = machineInfo()
  const started = new Date()
  const outcomes: Outcome[] = []
  for (const b of BENCHES) {
    const o: Outcome = {
      name: b.name,
      what: b.what,
      status: 'skipped',
      notes: [],
      args: [],
      seconds: 0,
      stdout: '',
      stderrTail: '',
      ratios: [],
    }
    outcomes.push(o)
    const script = join(ROOT, 'dist', 'sim', 'bench', `${b.name}.js`)
    if ((only !== undefined && !only.includes(b.name)) || skip.includes(b.name)) {
      o.why = 'not selected (--only / --skip)'
      continue
    }
    if (!existsSync(script)) {
      o.why = `no sim/bench/${b.name}.ts in this build (added on another branch)`
      continue
    }
    const args = [...(quick ? b.quickArgs : b.args)]
    if (b.withoutRoot !== undefined && !isRoot()) {
      args.push(...b.withoutRoot.args)
      o.notes.push(`partly skipped: ${b.withoutRoot.why} (not root)`)
    }
    o.args = args
    const timeoutS = quick ? b.quickTimeoutS : b.timeoutS
    const useLock = b.systemLock === true && isRoot() && existsSync('/usr/bin/flock')
    const [cmd, cmdArgs] = useLock
      ? ['flock', ['/tmp/mesh-system.lock', process.execPath, script, ...args]]
      : [process.execPath, [script, ...args]]
    process.stdout.write(`\n## ${b.name} ${args.join(' ')} (bound ${timeoutS} s)\n\n`)
    const t0 = Date.now()
    const r = await run(cmd as string, cmdArgs as string[], timeoutS * 1000)
    o.seconds = Math.round(r.ms / 100) / 10
    o.stdout = r.stdout
    o.stderrTail = r.stderr.split('\n').slice(-15).join('\n')
    o.status = r.timedOut ? 'timed out' : r.code === 0 ? 'ok' : 'failed'
    if (r.timedOut) o.why = `killed after ${timeoutS} s`
    else if (r.code !== 0)
      o.why = `exit ${r.code}: ${o.stderrTail.split('\n').filter(Boolean).slice(-1)[0] ?? ''}`
    const json = join(ROOT, 'sim', 'out', `${b.name}-latest.json`)
    if (existsSync(json) && statSync(json).mtimeMs >= t0) {
      o.report = JSON.parse(readFileSync(json, 'utf8'))
      o.ratios = ratios(o.report)
    } else if (o.status === 'ok') o.notes.push('wrote no JSON report this run')
  }
  const finished = new Date()
  const md: string[] = [
    `# mesh benchmark report${quick ? ' (quick: small sizes, smoke test only)' : ''}`,
    '',
    `${started.toISOString()} to ${finished.toISOString()}; \`node dist/sim/bench/all.js ${argv.join(' ')}\``,
    '',
    `Machine: ${machineMarkdown(machine)}; load average at the end ${(await import('node:os'))
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' / ')}. Wall-time figures are only as quiet as the machine was.`,
    '',
    markdownTable(
      ['benchmark', 'what', 'status', 's', 'why / notes'],
      outcomes.map((o) => [
        o.name,
        o.what,
        o.status,
        String(o.seconds),
        [o.why, ...o.notes].filter(Boolean).join('; '),
      ]),
      ['l', 'l', 'l', 'r', 'l'],
    ),
    '',
  ]
  for (const o of outcomes) {
    if (o.status === 'skipped') continue
    md.push(`## ${o.name}`, '', `\`node dist/sim/bench/${o.name}.js ${o.args.join(' ')}\` — ${o.status}`, '')
    if (o.ratios.length > 0) {
      md.push('Ratios against the same-run references:', '')
      md.push(
        markdownTable(
          ['figure', 'ratio'],
          o.ratios.map((r) => [r.path, r.value.toFixed(3)]),
          ['l', 'r'],
        ),
        '',
      )
    }
    md.push(o.stdout.trim() === '' ? '(no output)' : o.stdout.trim(), '')
    if (o.status !== 'ok') md.push('```', o.stderrTail, '```', '')
  }
  const dir = join(ROOT, 'sim', 'out')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'bench-report.md'), `${md.join('\n')}\n`)
  writeFileSync(
    join(dir, 'bench-report.json'),
    `${JSON.stringify({ started, finished, quick, machine, outcomes: outcomes.map((o) => ({ ...o, stdout: undefined })) }, null, 2)}\n`,
  )
  process.stdout.write(
    `\n${md.slice(0, 8).join('\n')}\nwrote sim/out/bench-report.md and sim/out/bench-report.json\n`,
  )
  if (outcomes.some((o) => o.status === 'failed' || o.status === 'timed out')) process.exitCode = 1
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
