// Tunnel benchmark (not a test): ssh and scp through the overlay against the same ssh and scp
// straight over loopback, side by side in one run; and, with root, tunnel throughput on a
// relayed path (two NATed members through a public hub) against a direct one, in the netns lab.
//
//   npm run build && node dist/sim/bench/tunnel.js
//   node dist/sim/bench/tunnel.js --scp-mib 512 --repeats 2 --rtt-samples 300 --connects 10 --lab-mib 128 [--skip-lab] [--skip-loopback]
//
// Prints markdown tables and writes sim/out/tunnel-<time>.json. Traffic stays on 127.0.0.1 and
// in the lab's own namespaces (198.18.0.0/16); every wait is bounded; every process it starts is
// stopped and every namespace removed, also when a step fails.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { newCluster } from '../../src/node/cluster.js'
import { type Host, Lab, sshdSetup } from '../../test/system/harness.js'
import { MeshAgent } from './agents.js'
import { parseFlags, positive } from './args.js'
import {
  cpuSeconds,
  fmt,
  fmtStats,
  machineInfo,
  machineMarkdown,
  markdownTable,
  ROOT,
  runBounded,
  type Stats,
  sleep,
  stats,
  stopProcess,
  waitForLine,
  writeReport,
} from './report.js'
import { streamRun } from './stream-run.js'

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js')
const NODE = process.execPath

interface Options {
  scpMiB: number
  repeats: number
  rttSamples: number
  connects: number
  labMiB: number
  skipLab: boolean
  skipLoopback: boolean
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    scpMiB: 512,
    repeats: 2,
    rttSamples: 300,
    connects: 10,
    labMiB: 128,
    skipLab: false,
    skipLoopback: false,
  }
  const int = (flag: string, value: string) => Math.floor(positive(flag, value))
  parseFlags(argv, {
    '--scp-mib': (next) => (o.scpMiB = Math.min(4096, int('--scp-mib', next()))),
    '--repeats': (next) => (o.repeats = Math.min(10, int('--repeats', next()))),
    '--rtt-samples': (next) => (o.rttSamples = Math.min(5000, int('--rtt-samples', next()))),
    '--connects': (next) => (o.connects = Math.min(100, int('--connects', next()))),
    '--lab-mib': (next) => (o.labMiB = Math.min(2048, int('--lab-mib', next()))),
    '--skip-lab': () => (o.skipLab = true),
    '--skip-loopback': () => (o.skipLoopback = true),
  })
  return o
}

/** p-th percentile (nearest rank) of samples. */
function pct(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

function keepTail(child: ChildProcess, keepChars = 4096): () => string {
  let out = ''
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-keepChars)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return () => out.trim()
}

async function meshOk(dir: string, args: string[], timeoutMs = 30_000): Promise<string> {
  const r = await runBounded(NODE, [CLI, '--data-dir', dir, ...args], { timeoutMs })
  if (r.code !== 0)
    throw new Error(`mesh ${args.join(' ')}: ${r.timedOut ? 'timed out' : r.code}: ${r.stderr.trim()}`)
  return r.stdout
}

async function waitUntil<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(300)
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`)
}

// ---------------------------------------------------------------------------------------
// (a) loopback: sshd on 127.0.0.1, two agents, ssh/scp direct vs through the overlay

/** direct: ssh to sshd; overlay: through `mesh proxy` (a process copies the bytes); fdpass: `mesh proxy --fdpass` (ssh talks to the agent's socket) */
type SshPath = 'direct' | 'overlay' | 'fdpass'
const SSH_PATHS: SshPath[] = ['direct', 'overlay', 'fdpass']

interface LoopbackResult {
  scp: { direct: Stats; overlay: Stats; fdpass: Stats; ratio: number; fdpassRatio: number; mib: number }
  /** CPU seconds per GB of each agent during the scp runs through the overlay (median over repeats) */
  agentCpuPerGB: Record<'overlay' | 'fdpass', { a: number; b: number }>
  /**
   * The reference for that CPU, measured in the same run: a bare js-libp2p stream (TCP + Noise +
   * yamux) of the same size between two processes, CPU seconds per GB of its sender and receiver
   * (median over repeats); agent A sends into the overlay as that sender does, agent B receives.
   */
  bareCpuPerGB: { sender: number; receiver: number; mbps: number }
  /** agent A / bare sender and agent B / bare receiver, with fdpass (issue 14: <= 2) */
  agentCpuVsBare: { a: number; b: number }
  connect: Record<SshPath, number[]>
  rtt: Record<SshPath, number[]>
}

/** The paths in a different order on each repeat, so none always runs first. */
function rotate<T>(xs: T[], i: number): T[] {
  const k = i % xs.length
  return [...xs.slice(k), ...xs.slice(0, k)]
}

class SshSetup {
  readonly dir = mkdtempSync(join(tmpdir(), 'mesh-bench-tunnel-'))
  readonly key = join(this.dir, 'user_ed25519')
  readonly kh = join(this.dir, 'known_hosts')
  readonly children: ChildProcess[] = []
  port = 0

  keygen(path: string): void {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path], {
      stdio: 'pipe',
      timeout: 20_000,
    })
  }

  opts(): string[] {
    return [
      '-i',
      this.key,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      `UserKnownHostsFile=${this.kh}`,
      '-o',
      'StrictHostKeyChecking=accept-new',
      '-o',
      'BatchMode=yes',
      '-o',
      'LogLevel=ERROR',
    ]
  }

  /** sshd on 127.0.0.1:port. */
  async sshd(port: number): Promise<void> {
    const d = join(this.dir, `sshd-${port}-${this.children.length}`)
    if (!existsSync(this.key)) this.keygen(this.key)
    const argv = sshdSetup(d, port, readFileSync(`${this.key}.pub`))
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    this.children.push(child)
    let err = ''
    child.stderr!.on('data', (x: Buffer) => {
      err += x
    })
    await waitUntil(
      'sshd',
      async () => {
        if (child.exitCode !== null) throw new Error(`sshd exited: ${err}`)
        return err.includes('Server listening')
      },
      15_000,
    )
  }

  async cleanup(): Promise<void> {
    for (const c of this.children) await stopProcess(c, 3_000)
    rmSync(this.dir, { recursive: true, force: true })
  }
}

interface Agents {
  a: string
  b: string
  children: MeshAgent[]
}

async function loopbackAgents(base: string, allowPort: number): Promise<Agents> {
  const a = join(base, 'agent-a')
  const b = join(base, 'agent-b')
  const children: MeshAgent[] = []
  await meshOk(a, ['init', '--cluster', 'bench'])
  const env = { MESH_LOG_LEVEL: 'warn', MESH_TUNNEL__ALLOW_PORTS: String(allowPort) }
  const start = (dir: string, name: string, extra: string[]) => {
    const c = new MeshAgent(dir, { name, args: extra, env, keep: 4096 }).start()
    children.push(c)
    return c
  }
  await start(a, 'a', []).ready(60_000)
  const token = JSON.parse(await meshOk(a, ['--json', 'invite'])).token as string
  start(b, 'b', ['--join', token])
  await waitUntil(
    'a and b alive',
    async () => {
      const ms = JSON.parse(await meshOk(a, ['--json', 'members'])) as Array<{ name: string; status: string }>
      return ms.length === 2 && ms.every((m) => m.status === 'alive')
    },
    60_000,
  )
  return { a, b, children }
}

/** One ssh session running `cat`; round trip of a 32-byte line, `n` times. */
async function sshEchoRtt(argv: string[], n: number): Promise<number[]> {
  const child = spawn('ssh', [...argv, 'cat'], { stdio: ['pipe', 'pipe', 'pipe'] })
  const err = keepTail(child)
  const killer = setTimeout(() => child.kill('SIGKILL'), 120_000 + n * 1000)
  try {
    const line = `${'x'.repeat(31)}\n`
    let buf = ''
    let waiting: (() => void) | undefined
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d
      if (buf.length >= line.length && waiting !== undefined) {
        buf = buf.slice(line.length)
        const w = waiting
        waiting = undefined
        w()
      }
    })
    const once = () =>
      new Promise<number>((resolve, reject) => {
        const t0 = performance.now()
        const timer = setTimeout(() => reject(new Error(`no echo within 10 s: ${err()}`)), 10_000)
        waiting = () => {
          clearTimeout(timer)
          resolve(performance.now() - t0)
        }
        child.stdin!.write(line)
      })
    // the first round trip also waits for the session to open
    await waitUntil('the ssh session to echo', async () => (await once()) >= 0, 60_000)
    const out: number[] = []
    for (let i = 0; i < n; i++) out.push(await once())
    return out
  } finally {
    clearTimeout(killer)
    child.stdin!.end()
    await stopProcess(child, 3_000)
  }
}

async function loopback(o: Options, log: (s: string) => void): Promise<LoopbackResult> {
  const ssh = new SshSetup()
  let agents: Agents | undefined
  try {
    ssh.port = await freePort()
    await ssh.sshd(ssh.port)
    agents = await loopbackAgents(ssh.dir, ssh.port)
    const proxy = `${NODE} ${CLI} --data-dir ${agents.a} proxy %h %p`
    const fdProxy = `${NODE} ${CLI} --data-dir ${agents.a} proxy --fdpass %h %p`
    const via = (cmd: string, more: string[] = []) => [
      ...ssh.opts(),
      '-o',
      `ProxyCommand=${cmd}`,
      ...more,
      '-o',
      'HostKeyAlias=bench-overlay',
      '-p',
      String(ssh.port),
    ]
    const optsOf: Record<SshPath, string[]> = {
      direct: [...ssh.opts(), '-p', String(ssh.port)],
      overlay: via(proxy),
      fdpass: via(fdProxy, ['-o', 'ProxyUseFdpass=yes']),
    }
    const targets: Record<SshPath, string> = {
      direct: 'root@127.0.0.1',
      overlay: 'root@b.mesh',
      fdpass: 'root@b.mesh',
    }
    const argvOf = (k: SshPath) => [...optsOf[k], targets[k]]

    // warm every path (host keys, the agent's connection)
    for (const k of SSH_PATHS) {
      const r = await runBounded('ssh', [...argvOf(k), 'true'], { timeoutMs: 60_000 })
      if (r.code !== 0) throw new Error(`ssh ${k}: ${r.stderr.trim()}`)
    }

    // connect + run `true`, in turn
    const connect: Record<SshPath, number[]> = { direct: [], overlay: [], fdpass: [] }
    for (let i = 0; i < o.connects; i++) {
      for (const k of rotate(SSH_PATHS, i)) {
        const r = await runBounded('ssh', [...argvOf(k), 'true'], { timeoutMs: 60_000 })
        if (r.code === 0) connect[k].push(r.ms)
      }
    }
    log(`ssh connect p50: ${SSH_PATHS.map((k) => `${k} ${fmt(pct(connect[k], 50), 0)} ms`).join(', ')}`)

    const rtt: Record<SshPath, number[]> = { direct: [], overlay: [], fdpass: [] }
    for (const k of SSH_PATHS) rtt[k] = await sshEchoRtt(argvOf(k), o.rttSamples)
    log(`ssh echo RTT p50: ${SSH_PATHS.map((k) => `${k} ${fmt(pct(rtt[k], 50), 2)} ms`).join(', ')}`)

    // scp of one random file, in turn
    const src = join(ssh.dir, 'src.bin')
    const dst = join(ssh.dir, 'dst.bin')
    const fd = openSync(src, 'w')
    const chunk = randomBytes(1 << 20)
    for (let i = 0; i < o.scpMiB; i++) writeSync(fd, chunk.subarray(0, chunk.length - (i % 7))) // not one repeated block
    closeSync(fd)
    const size = readFileSync(src).length
    const mbps: Record<SshPath, number[]> = { direct: [], overlay: [], fdpass: [] }
    const [pidA, pidB] = agents.children.map((c) => c.child?.pid)
    const cpu = {
      overlay: { a: [] as number[], b: [] as number[] },
      fdpass: { a: [] as number[], b: [] as number[] },
    }
    const bare = { sender: [] as number[], receiver: [] as number[], mbps: [] as number[] }
    const c = newCluster('bench')
    const clusterEnv = JSON.stringify({ name: c.name, id: c.id, key: Buffer.from(c.key).toString('hex') })
    for (let i = 0; i < o.repeats; i++) {
      log(`bare libp2p stream ${o.scpMiB} MiB (${i + 1}/${o.repeats})`)
      const s = await streamRun('bare', { bytes: size, chunk: 64 << 10 }, clusterEnv)
      bare.sender.push(s.senderCpuMs / 1000 / (s.bytes / 1e9))
      bare.receiver.push(s.receiverCpuMs / 1000 / (s.bytes / 1e9))
      bare.mbps.push(s.mbps)
      for (const k of rotate(SSH_PATHS, i + 1)) {
        log(`scp ${o.scpMiB} MiB ${k} (${i + 1}/${o.repeats})`)
        const scpOpts = optsOf[k].map((x) => (x === '-p' ? '-P' : x))
        const cpu0 = [cpuSeconds(pidA), cpuSeconds(pidB)]
        const r = await runBounded('scp', [...scpOpts, src, `${targets[k]}:${dst}`], { timeoutMs: 1_800_000 })
        if (r.code !== 0) throw new Error(`scp ${k}: ${r.timedOut ? 'timed out' : r.stderr.trim()}`)
        mbps[k].push(size / 1e6 / (r.ms / 1000))
        if (k !== 'direct') {
          cpu[k].a.push((cpuSeconds(pidA) - cpu0[0]) / (size / 1e9))
          cpu[k].b.push((cpuSeconds(pidB) - cpu0[1]) / (size / 1e9))
        }
        rmSync(dst, { force: true })
      }
    }
    rmSync(src, { force: true })
    const direct = stats(mbps.direct)
    const overlay = stats(mbps.overlay)
    const fdpass = stats(mbps.fdpass)
    return {
      scp: {
        direct,
        overlay,
        fdpass,
        ratio: overlay.median / direct.median,
        fdpassRatio: fdpass.median / direct.median,
        mib: o.scpMiB,
      },
      agentCpuPerGB: {
        overlay: { a: pct(cpu.overlay.a, 50), b: pct(cpu.overlay.b, 50) },
        fdpass: { a: pct(cpu.fdpass.a, 50), b: pct(cpu.fdpass.b, 50) },
      },
      bareCpuPerGB: {
        sender: pct(bare.sender, 50),
        receiver: pct(bare.receiver, 50),
        mbps: pct(bare.mbps, 50),
      },
      agentCpuVsBare: {
        a: pct(cpu.fdpass.a, 50) / pct(bare.sender, 50),
        b: pct(cpu.fdpass.b, 50) / pct(bare.receiver, 50),
      },
      connect,
      rtt,
    }
  } finally {
    for (const c of agents?.children ?? []) await c.stop(5_000)
    await ssh.cleanup()
  }
}

// ---------------------------------------------------------------------------------------
// (b) the lab: relayed (A -> B, both behind NAT, through the hub) vs direct (A -> hub)

interface LabResult {
  mib: number
  direct: Stats
  relayed: Stats
  pathToB: string
  openMs: { direct: number[]; relayed: number[] }
}

const SINK_JS = `
const s = require('net').createServer({ allowHalfOpen: true }, (c) => {
  let n = 0
  c.on('data', (d) => { n += d.length })
  c.on('end', () => c.end(String(n) + '\\n'))
  c.on('error', () => {})
})
s.listen(9000, '127.0.0.1', () => console.log('ready'))
setTimeout(() => process.exit(0), 1800000).unref()`

async function labRun(o: Options, log: (s: string) => void): Promise<LabResult> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)')
  const lab = new Lab()
  const base = mkdtempSync(join(tmpdir(), 'mesh-bench-lab-'))
  const tails: Array<[string, () => string]> = []
  try {
    const pub = lab.segment('pub')
    const hub = lab.host('hub', pub)
    const ra = lab.natRouter('ra', pub)
    const rb = lab.natRouter('rb', pub)
    const a = lab.host('a', ra.lan)
    const b = lab.host('b', rb.lan)
    const dirs = { hub: join(base, 'hub'), a: join(base, 'a'), b: join(base, 'b') }
    await meshOk(dirs.hub, ['init', '--cluster', 'benchlab'])
    const env = {
      ...process.env,
      MESH_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      MESH_TUNNEL__ALLOW_PORTS: '9000',
    }
    const start = (h: Host, dir: string, extra: string[]) => {
      const c = lab.spawn(
        h,
        [
          NODE,
          CLI,
          '--data-dir',
          dir,
          'agent',
          '--listen',
          '/ip4/0.0.0.0/tcp/4701',
          '--name',
          h.name,
          ...extra,
        ],
        {
          env,
        },
      )
      tails.push([h.name, keepTail(c, 200_000)])
      return c
    }
    for (const h of [hub, b]) {
      const sink = lab.spawn(h, [NODE, '-e', SINK_JS])
      await waitForLine(sink, (l) => (l === 'ready' ? true : undefined), 10_000, `sink in ${h.name}`)
    }
    start(hub, dirs.hub, ['--announce', `/ip4/${hub.ip}/tcp/4701`])
    await waitUntil('hub', async () => meshOk(dirs.hub, ['status']), 60_000)
    const token = async () => JSON.parse(await meshOk(dirs.hub, ['--json', 'invite'])).token as string
    start(a, dirs.a, ['--join', await token()])
    start(b, dirs.b, ['--join', await token()])
    await waitUntil(
      'the lab cluster',
      async () => {
        const ms = JSON.parse(await meshOk(dirs.a, ['--json', 'members'])) as Array<{ status: string }>
        return ms.length === 3 && ms.every((m) => m.status === 'alive')
      },
      90_000,
    )
    const bytes = o.labMiB * 2 ** 20
    const send = async (to: string): Promise<void> => {
      const r = await lab.exec(
        a,
        [
          'sh',
          '-c',
          `head -c ${bytes} /dev/zero | '${NODE}' '${CLI}' --data-dir '${dirs.a}' proxy ${to} 9000`,
        ],
        { timeoutMs: 1_200_000 },
      )
      if (r.code !== 0 || Number(r.stdout.trim()) !== bytes) {
        throw new Error(
          `tunnel to ${to}: ${r.timedOut ? 'timed out' : `${r.code} ${r.stdout.trim()}`} ${r.stderr.trim()}`,
        )
      }
    }
    // open time (the CLI's start, the agent's dial, the handshake) measured with an empty transfer
    const openMs = { direct: [] as number[], relayed: [] as number[] }
    const mbps = { direct: [] as number[], relayed: [] as number[] }
    const target = { direct: 'hub', relayed: 'b' }
    for (let i = 0; i < o.repeats; i++) {
      for (const k of i % 2 === 0 ? (['relayed', 'direct'] as const) : (['direct', 'relayed'] as const)) {
        const t0 = performance.now()
        const e = await lab.exec(a, [NODE, CLI, '--data-dir', dirs.a, 'proxy', target[k], '9000'], {
          timeoutMs: 60_000,
        })
        if (e.code !== 0) throw new Error(`empty tunnel to ${target[k]}: ${e.stderr.trim()}`)
        const open = performance.now() - t0
        openMs[k].push(open)
        log(`lab: ${o.labMiB} MiB ${k} (${i + 1}/${o.repeats})`)
        const t1 = performance.now()
        await send(target[k])
        // the CLI's own start and the open are part of both; subtract the empty run's time
        mbps[k].push(bytes / 1e6 / (Math.max(1, performance.now() - t1 - open) / 1000))
      }
    }
    const members = JSON.parse(await meshOk(dirs.a, ['--json', 'members'])) as Array<{
      name: string
      path: string
    }>
    return {
      mib: o.labMiB,
      direct: stats(mbps.direct),
      relayed: stats(mbps.relayed),
      pathToB: members.find((m) => m.name === 'b')?.path ?? '?',
      openMs,
    }
  } catch (err) {
    // what the agents said last: BENCH_LOG_LEVEL=debug for more
    for (const [name, tail] of tails) log(`--- ${name} ---\n${tail()}`)
    throw err
  } finally {
    await lab.cleanup()
    rmSync(base, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const machine = machineInfo()
  const report: Record<string, unknown> = { options: o, machine }
  const log = (s: string) => console.error(s)
  const out: string[] = [
    `## Tunnel benchmark (${new Date().toISOString().slice(0, 10)})`,
    '',
    `Machine: ${machineMarkdown(machine)}`,
    '',
  ]
  let failed = false

  if (!o.skipLoopback) {
    try {
      const r = await loopback(o, log)
      report.loopback = r
      const p = (xs: number[], q: number) => fmt(pct(xs, q), 2)
      const ratio = (xs: number[], q: number) => fmt(pct(xs, q) / pct(r.rtt.direct, q), 2)
      out.push(
        `### ssh and scp on one machine: straight to sshd on 127.0.0.1 vs through the overlay (agent A -> agent B -> sshd)`,
        '',
        "`mesh proxy` copies the bytes between ssh and agent A; `mesh proxy --fdpass` (ssh's `ProxyUseFdpass`, what `mesh ssh`, `mesh exec` and `mesh ssh-config` use) hands ssh the socket to agent A and exits.",
        '',
        markdownTable(
          [
            'measure',
            'direct (loopback)',
            'through `mesh proxy`',
            'through `mesh proxy --fdpass`',
            'proxy / direct',
            'fdpass / direct',
          ],
          [
            [
              `scp ${r.scp.mib} MiB (MB/s, median of ${r.scp.direct.samples.length}, (min-max))`,
              fmtStats(r.scp.direct, 1),
              fmtStats(r.scp.overlay, 1),
              fmtStats(r.scp.fdpass, 1),
              fmt(r.scp.ratio, 3),
              fmt(r.scp.fdpassRatio, 3),
            ],
            [
              'CPU of agent A / agent B during the scp (s per GB, median)',
              '-',
              `${fmt(r.agentCpuPerGB.overlay.a, 2)} / ${fmt(r.agentCpuPerGB.overlay.b, 2)}`,
              `${fmt(r.agentCpuPerGB.fdpass.a, 2)} / ${fmt(r.agentCpuPerGB.fdpass.b, 2)}`,
              '',
              '',
            ],
            [
              `reference: a bare js-libp2p stream of the same size, sender / receiver CPU (s per GB, median; ${fmt(r.bareCpuPerGB.mbps, 0)} MB/s)`,
              '-',
              '',
              `${fmt(r.bareCpuPerGB.sender, 2)} / ${fmt(r.bareCpuPerGB.receiver, 2)}`,
              '',
              `agents / bare: ${fmt(r.agentCpuVsBare.a, 2)} / ${fmt(r.agentCpuVsBare.b, 2)}`,
            ],
            [
              `ssh echo round trip p50 (ms, ${r.rtt.direct.length} samples in one session)`,
              p(r.rtt.direct, 50),
              p(r.rtt.overlay, 50),
              p(r.rtt.fdpass, 50),
              ratio(r.rtt.overlay, 50),
              ratio(r.rtt.fdpass, 50),
            ],
            [
              'ssh echo round trip p99 (ms)',
              p(r.rtt.direct, 99),
              p(r.rtt.overlay, 99),
              p(r.rtt.fdpass, 99),
              ratio(r.rtt.overlay, 99),
              ratio(r.rtt.fdpass, 99),
            ],
            [
              `ssh connect + \`true\` p50 (ms, ${r.connect.direct.length} runs)`,
              fmt(pct(r.connect.direct, 50), 0),
              fmt(pct(r.connect.overlay, 50), 0),
              fmt(pct(r.connect.fdpass, 50), 0),
              fmt(pct(r.connect.overlay, 50) / pct(r.connect.direct, 50), 2),
              fmt(pct(r.connect.fdpass, 50) / pct(r.connect.direct, 50), 2),
            ],
            [
              'ssh connect + `true` p99 (ms)',
              fmt(pct(r.connect.direct, 99), 0),
              fmt(pct(r.connect.overlay, 99), 0),
              fmt(pct(r.connect.fdpass, 99), 0),
              '',
              '',
            ],
          ],
          ['l', 'r', 'r', 'r', 'r', 'r'],
        ),
        '',
        'The overlay connect time includes starting `mesh proxy` (a node process) for every ssh connection.',
        '',
      )
    } catch (err) {
      failed = true
      report.loopback = { error: (err as Error).message }
      out.push(`ssh/scp on loopback: failed or skipped: ${(err as Error).message}`, '')
    }
  }

  if (!o.skipLab) {
    try {
      const r = await labRun(o, log)
      report.lab = r
      out.push(
        `### Tunnel throughput in the netns lab: ${r.mib} MiB through \`mesh proxy\` from A (behind NAT) (median of ${r.direct.samples.length}, (min-max))`,
        '',
        markdownTable(
          ['path', 'MB/s', 'open (ms, incl. CLI start)'],
          [
            ['direct: A -> hub (public)', fmtStats(r.direct, 1), fmtStats(stats(r.openMs.direct), 0)],
            [
              `relayed: A -> B (behind NAT) through the hub (path: ${r.pathToB})`,
              fmtStats(r.relayed, 1),
              fmtStats(stats(r.openMs.relayed), 0),
            ],
            ['relayed / direct', fmt(r.relayed.median / r.direct.median, 3), ''],
          ],
          ['l', 'r', 'r'],
        ),
        '',
      )
    } catch (err) {
      report.lab = { error: (err as Error).message }
      out.push(`netns lab: skipped or failed: ${(err as Error).message}`, '')
      if (!/needs root/.test((err as Error).message)) failed = true
    }
  }

  out.push(
    'Direct paths between NATed members (WebRTC through the cluster STUN: success rate, time, throughput against the relay) are measured by `npm run bench:nat` (sim/bench/nat.ts); TCP DCUtR between these NATs: 0 of 40 (NAT-LAB.md).',
    '',
  )
  const path = writeReport('tunnel', report)
  process.stdout.write(`${out.join('\n')}\nJSON: ${path}\n`)
  process.exit(failed ? 1 : 0)
}

main().catch((err) => {
  console.error(`tunnel bench: ${(err as Error)?.stack ?? String(err)}`)
  process.exit(1)
})
