// Foundation benchmark (not a test): how fast one agent starts and how much memory it holds
// idle, and what the mesh stack (TCP + Noise with the cluster prologue + yamux, with admission) carries on one
// stream between two processes against raw TCP between two processes, in the same run.
//
//   npm run bench                      (build, then node dist/sim/bench/foundation.js)
//   node dist/sim/bench/foundation.js --repeats 3 --bytes 268435456 --idle-s 10 [--skip-agent] [--skip-stream]
//
// Prints markdown tables and writes sim/out/foundation-<time>.json. Everything runs on
// 127.0.0.1; every wait is bounded and every process it starts is stopped.
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { newCluster } from '../../src/node/cluster.js'
import { parseFlags, positive } from './args.js'
import {
  fmt,
  fmtStats,
  machineInfo,
  machineMarkdown,
  markdownTable,
  ROOT,
  rssMiB,
  runBounded,
  type Stats,
  sleep,
  stats,
  stopProcess,
  waitForLine,
  writeReport,
} from './report.js'
import { type Kind, type StreamSample, streamRun, tail } from './stream-run.js'

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js')
const NODE = process.execPath

interface Options {
  repeats: number
  bytes: number
  chunk: number
  idleS: number
  skipAgent: boolean
  skipStream: boolean
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    repeats: 3,
    bytes: 256 * 2 ** 20,
    chunk: 64 * 2 ** 10,
    idleS: 10,
    skipAgent: false,
    skipStream: false,
  }
  const int = (flag: string, value: string) => Math.floor(positive(flag, value))
  parseFlags(argv, {
    '--repeats': (next) => (o.repeats = Math.min(20, int('--repeats', next()))),
    '--bytes': (next) => (o.bytes = int('--bytes', next())),
    '--chunk': (next) => (o.chunk = int('--chunk', next())),
    '--idle-s': (next) => (o.idleS = Math.min(600, positive('--idle-s', next()))),
    '--skip-agent': () => (o.skipAgent = true),
    '--skip-stream': () => (o.skipStream = true),
  })
  return o
}

/** Keeps the last few KiB of a child's output (for error messages) and keeps its pipes flowing. */

// ---------------------------------------------------------------------------------------
// (a) cold start and (b) idle RSS

interface AgentSample {
  toListeningLineMs?: number
  toStatusOkMs: number
  statusCallMs: number
  statusCalls: number
  idleRssMiB?: number
  idlePeakMiB?: number
  stopMs: number
  stopKilled: boolean
  anchorStartMs: number
  anchorRssMiB?: number
}

async function agentRun(o: Options): Promise<AgentSample> {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-bench-agent-'))
  const children: ChildProcess[] = []
  try {
    const init = await runBounded(NODE, [CLI, 'init', '--data-dir', dir, '--cluster', 'bench'], {
      timeoutMs: 30_000,
    })
    if (init.code !== 0)
      throw new Error(`mesh init failed (${init.code ?? 'timeout'}): ${(init.stderr || init.stdout).trim()}`)

    // the floor: a bare node process listening on TCP, timed to its own ready line
    const a0 = performance.now()
    const anchor = spawn(NODE, ['-e', ANCHOR_JS], { stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(anchor)
    await waitForLine(anchor, (l) => (l === 'ready' ? true : undefined), 10_000, 'anchor')
    const anchorStartMs = performance.now() - a0
    tail(anchor)

    const t0 = performance.now()
    const agent = spawn(NODE, [CLI, 'agent', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(agent)
    const agentOut = tail(agent)
    let toListeningLineMs: number | undefined
    // the agent prints 'listening on ...' on stdout; a finer mark than the status poll
    void waitForLine(agent, (l) => (l.startsWith('listening on') ? true : undefined), 30_000, 'agent')
      .then(() => {
        toListeningLineMs = performance.now() - t0
      })
      .catch(() => {})

    // "listening" by contract: `mesh status --json` succeeds and reports a listen address
    const deadline = t0 + 30_000
    let calls = 0
    let statusCallMs = 0
    let toStatusOkMs: number | undefined
    while (performance.now() < deadline) {
      if (agent.exitCode !== null || agent.signalCode !== null) {
        throw new Error(
          `the agent exited (${agent.exitCode ?? agent.signalCode}) before it was ready: ${agentOut()}`,
        )
      }
      calls++
      const r = await runBounded(NODE, [CLI, 'status', '--data-dir', dir, '--json'], { timeoutMs: 10_000 })
      if (r.code === 0 && listens(r.stdout)) {
        toStatusOkMs = performance.now() - t0
        statusCallMs = r.ms
        break
      }
      await sleep(20)
    }
    if (toStatusOkMs === undefined) throw new Error(`the agent was not ready after 30 s: ${agentOut()}`)

    await sleep(o.idleS * 1000)
    const mem = agent.pid === undefined ? undefined : rssMiB(agent.pid)
    const anchorMem = anchor.pid === undefined ? undefined : rssMiB(anchor.pid)
    const stop = await stopProcess(agent, 10_000)
    await stopProcess(anchor, 2_000)
    return {
      toListeningLineMs,
      toStatusOkMs,
      statusCallMs,
      statusCalls: calls,
      idleRssMiB: mem?.rss,
      idlePeakMiB: mem?.peak,
      stopMs: stop.ms,
      stopKilled: stop.killed,
      anchorStartMs,
      anchorRssMiB: anchorMem?.rss,
    }
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

const ANCHOR_JS =
  "require('net').createServer().listen(0, '127.0.0.1', () => console.log('ready'));setTimeout(() => process.exit(0), 600000)"

function listens(stdout: string): boolean {
  try {
    const s = JSON.parse(stdout) as { listen?: unknown }
    return Array.isArray(s.listen) && s.listen.length > 0
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------
// (c) stream throughput, mesh vs raw TCP

// ---------------------------------------------------------------------------------------

const pick = <T>(xs: T[], f: (x: T) => number | undefined): Stats =>
  stats(xs.map(f).filter((v): v is number => v !== undefined && Number.isFinite(v)))

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const machine = machineInfo()
  const report: Record<string, unknown> = { options: o, machine }
  const out: string[] = [
    `## Foundation benchmark (${new Date().toISOString().slice(0, 10)})`,
    '',
    `Machine: ${machineMarkdown(machine)}`,
    '',
  ]
  let failed = false

  if (!o.skipAgent) {
    if (!existsSync(CLI)) {
      const why = `skipped: ${CLI} does not exist yet (build the CLI first)`
      report.agent = { skipped: why }
      out.push(`Agent: ${why}`, '')
      console.error(`agent: ${why}`)
    } else {
      const samples: AgentSample[] = []
      const errors: string[] = []
      for (let i = 0; i < o.repeats; i++) {
        console.error(`agent run ${i + 1}/${o.repeats} (idle ${o.idleS} s)`)
        try {
          samples.push(await agentRun(o))
        } catch (err) {
          errors.push((err as Error).message)
          console.error(`agent run ${i + 1} failed: ${(err as Error).message}`)
        }
      }
      const s = {
        toListeningLineMs: pick(samples, (x) => x.toListeningLineMs),
        toStatusOkMs: pick(samples, (x) => x.toStatusOkMs),
        statusCallMs: pick(samples, (x) => x.statusCallMs),
        idleRssMiB: pick(samples, (x) => x.idleRssMiB),
        idlePeakMiB: pick(samples, (x) => x.idlePeakMiB),
        stopMs: pick(samples, (x) => x.stopMs),
        anchorStartMs: pick(samples, (x) => x.anchorStartMs),
        anchorRssMiB: pick(samples, (x) => x.anchorRssMiB),
      }
      report.agent = { samples, errors, stats: s }
      if (errors.length > 0) failed = true
      out.push(
        `### One agent: cold start and idle memory (median of ${samples.length}, (min-max))`,
        '',
        markdownTable(
          ['measure', 'mesh agent', 'anchor: bare node TCP server'],
          [
            [
              'spawn to "listening on" line (ms)',
              fmtStats(s.toListeningLineMs, 0),
              fmtStats(s.anchorStartMs, 0),
            ],
            ['spawn to `mesh status --json` OK (ms)', fmtStats(s.toStatusOkMs, 0), '-'],
            ['the successful `mesh status` call alone (ms)', fmtStats(s.statusCallMs, 0), '-'],
            [`RSS after ${o.idleS} s idle (MiB)`, fmtStats(s.idleRssMiB, 1), fmtStats(s.anchorRssMiB, 1)],
            ['peak RSS (MiB)', fmtStats(s.idlePeakMiB, 1), '-'],
            ['SIGTERM to exit (ms)', fmtStats(s.stopMs, 0), '-'],
          ],
          ['l', 'r', 'r'],
        ),
        '',
      )
      for (const e of errors) out.push(`- failed run: ${e}`)
      if (errors.length > 0) out.push('')
    }
  }

  if (!o.skipStream) {
    const c = newCluster('bench')
    const clusterEnv = JSON.stringify({ name: c.name, id: c.id, key: Buffer.from(c.key).toString('hex') })
    const samples: StreamSample[] = []
    const errors: string[] = []
    for (let i = 0; i < o.repeats; i++) {
      // alternate which goes first, so neither always gets the quieter moment
      const order: Kind[] = i % 2 === 0 ? ['mesh', 'bare', 'tcp'] : ['tcp', 'bare', 'mesh']
      for (const kind of order) {
        console.error(`stream run ${i + 1}/${o.repeats}: ${kind}, ${o.bytes} bytes`)
        try {
          samples.push(await streamRun(kind, o, clusterEnv))
        } catch (err) {
          errors.push(`${kind}: ${(err as Error).message}`)
          console.error(`stream run ${i + 1} (${kind}) failed: ${(err as Error).message}`)
        }
      }
    }
    const by = (k: Kind) => samples.filter((x) => x.kind === k)
    const perGB = (cpuMs: number, bytes: number) => cpuMs / 1000 / (bytes / 1e9)
    const row = (k: Kind) => ({
      mbps: pick(by(k), (x) => x.mbps),
      senderCpuSPerGB: pick(by(k), (x) => perGB(x.senderCpuMs, x.bytes)),
      receiverCpuSPerGB: pick(by(k), (x) => perGB(x.receiverCpuMs, x.bytes)),
      setupMs: pick(by(k), (x) => x.setupMs),
    })
    const mesh = row('mesh')
    const bare = row('bare')
    const tcp = row('tcp')
    const ratio = mesh.mbps.median / tcp.mbps.median
    const ratioBare = mesh.mbps.median / bare.mbps.median
    report.stream = {
      samples,
      errors,
      stats: { mesh, bare, tcp, ratioMeshToTcp: ratio, ratioMeshToBare: ratioBare },
    }
    if (errors.length > 0) failed = true
    const MiB = o.bytes / 2 ** 20
    out.push(
      `### Stream throughput between two processes on 127.0.0.1: ${fmt(MiB, 0)} MiB on one stream, ${o.chunk / 1024} KiB writes (median of ${o.repeats}, (min-max))`,
      '',
      markdownTable(
        ['stack', 'MB/s', 'sender CPU s/GB', 'receiver CPU s/GB', 'dial + first stream (ms)'],
        [
          [
            'mesh: TCP + Noise (cluster prologue) + yamux, admitted member',
            fmtStats(mesh.mbps, 0),
            fmtStats(mesh.senderCpuSPerGB, 2),
            fmtStats(mesh.receiverCpuSPerGB, 2),
            fmtStats(mesh.setupMs, 0),
          ],
          [
            'bare libp2p: TCP + Noise + yamux',
            fmtStats(bare.mbps, 0),
            fmtStats(bare.senderCpuSPerGB, 2),
            fmtStats(bare.receiverCpuSPerGB, 2),
            fmtStats(bare.setupMs, 0),
          ],
          [
            'raw TCP (node:net)',
            fmtStats(tcp.mbps, 0),
            fmtStats(tcp.senderCpuSPerGB, 2),
            fmtStats(tcp.receiverCpuSPerGB, 2),
            fmtStats(tcp.setupMs, 1),
          ],
          ['mesh / raw TCP', fmt(ratio, 3), '', '', ''],
          ['mesh / bare libp2p', fmt(ratioBare, 3), '', '', ''],
        ],
        ['l', 'r', 'r', 'r', 'r'],
      ),
      '',
    )
    for (const e of errors) out.push(`- failed run: ${e}`)
    if (errors.length > 0) out.push('')
  }

  const path = writeReport('foundation', report)
  out.push(`JSON: ${path}`)
  console.log(out.join('\n'))
  process.exitCode = failed ? 1 : 0
}

main().catch((err) => {
  console.error(`foundation benchmark: ${(err as Error)?.stack ?? String(err)}`)
  process.exit(1)
})
