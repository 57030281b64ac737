// Backpressure benchmark (not a test): what a paused reader costs in memory. Two agents on
// 127.0.0.1; 1 GiB goes (1) through `mesh proxy` to a TCP server that stops reading, (2) from a
// TCP server through `mesh proxy` to a client that stops reading its stdout, (3) out of `mesh cat`
// of a 1 GiB dataset held by the other member, with `mesh cat`'s stdout unread. Each reader
// pauses for --pause-s, then reads to the end; the bytes are checked. Sampled once a second:
// RSS of both agents and of the CLI process, and how many bytes sit between writer and reader.
//
//   npm run build && node dist/sim/bench/backpressure.js [--mib 1024] [--pause-s 15]
//
// Prints a markdown table and writes sim/out/backpressure-<time>.json. Traffic stays on
// 127.0.0.1; every wait is bounded; agents and CLI processes are stopped, temp dirs removed.

import { type ChildProcess, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, openSync, writeSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import {
  type AgentProcess,
  CLI,
  Fixture,
  mesh,
  meshJson,
  waitFor,
} from '../../test/integration/cluster-harness.js'
import { parseFlags, positive } from './args.js'
import {
  fmt,
  machineInfo,
  machineMarkdown,
  markdownTable,
  rssMiB,
  sleep,
  stopProcess,
  writeReport,
} from './report.js'

const MiB = 2 ** 20

interface Options {
  mib: number
  pauseS: number
}

function parseArgs(argv: string[]): Options {
  const o: Options = { mib: 1024, pauseS: 15 }
  parseFlags(
    argv,
    {
      '--mib': (next) => {
        o.mib = positive('--mib', next())
      },
      '--pause-s': (next) => {
        o.pauseS = positive('--pause-s', next())
      },
    },
    'use --mib N --pause-s S',
  )
  return o
}

interface Phase {
  case: string
  /** RSS before the transfer began, MiB */
  base: Record<string, number>
  /** highest RSS while the reader was paused, MiB */
  pausedPeak: Record<string, number>
  /** highest RSS over the whole transfer, MiB */
  peak: Record<string, number>
  /** bytes accepted from the writer but not yet read, at the end of the pause */
  inFlightMiB: number
  seconds: number
  /** bytes the reader got, and whether they are the bytes sent */
  received: number
  ok: boolean
}

/** A chunk source: 1 MiB of random bytes reused (incompressible), hashed as it goes. */
class Source {
  private readonly chunk = randomBytes(MiB)
  readonly hash = createHash('sha256')
  sent = 0
  constructor(readonly total: number) {}
  next(): Buffer | undefined {
    if (this.sent >= this.total) return undefined
    const n = Math.min(MiB, this.total - this.sent)
    const b = this.chunk.subarray(0, n)
    this.hash.update(b)
    this.sent += n
    return b
  }
}

/** Write `src` into a writable with backpressure (wait for drain), until done or closed. */
async function pump(w: NodeJS.WritableStream & { destroyed?: boolean }, src: Source): Promise<void> {
  for (let b = src.next(); b !== undefined; b = src.next()) {
    if (w.destroyed === true) return
    if (!w.write(b)) await new Promise((r) => w.once('drain', r))
  }
  w.end()
}

/** Counts and hashes what a readable delivers; paused until resume(). */
class Sink {
  received = 0
  readonly hash = createHash('sha256')
  readonly done: Promise<void>
  constructor(private readonly r: NodeJS.ReadableStream) {
    r.pause() // before the 'data' listener, so adding it does not start the flow
    this.done = new Promise((resolve, reject) => {
      r.on('data', (d: Buffer) => {
        this.received += d.length
        this.hash.update(d)
      })
      r.on('end', () => resolve())
      r.on('error', reject)
    })
  }
  resume(): void {
    this.r.resume()
  }
}

type Procs = Record<string, number | undefined>

function sampleRss(procs: Procs, into: Record<string, number>): void {
  for (const [name, pid] of Object.entries(procs)) {
    if (pid === undefined) continue
    const r = rssMiB(pid)
    if (r !== undefined) into[name] = Math.max(into[name] ?? 0, r.rss)
  }
}

/** Run one paused-reader transfer: sample while paused, resume, wait for the end (bounded). */
/** `p`, or an error after `ms`; the timer ends with `p` (a pending 600 s sleep kept the bench alive after its report) */
async function within<T>(p: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms)
  })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(timer)
  }
}

async function measure(name: string, procs: Procs, src: Source, sink: Sink, pauseS: number): Promise<Phase> {
  const base: Record<string, number> = {}
  sampleRss(procs, base)
  const pausedPeak: Record<string, number> = {}
  const started = Date.now()
  for (let i = 0; i < pauseS; i++) {
    await sleep(1000)
    sampleRss(procs, pausedPeak)
  }
  const inFlightMiB = (src.sent - sink.received) / MiB
  const peak = { ...pausedPeak }
  sink.resume()
  const sampler = setInterval(() => sampleRss(procs, peak), 1000)
  try {
    await within(
      sink.done,
      600_000,
      () => `${name}: the transfer did not finish within 600 s (${sink.received} B read)`,
    )
  } finally {
    clearInterval(sampler)
  }
  const ok = sink.received === src.total && sink.hash.digest('hex') === src.hash.digest('hex')
  return {
    case: name,
    base,
    pausedPeak,
    peak,
    inFlightMiB,
    seconds: (Date.now() - started) / 1000,
    received: sink.received,
    ok,
  }
}

function listen(onConn: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer(onConn)
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as { port: number }).port }),
    )
  })
}

function proxy(a: AgentProcess, member: string, port: number): ChildProcess {
  return spawn(process.execPath, [CLI, '--data-dir', a.dataDir, 'proxy', member, String(port)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const bytes = o.mib * MiB
  const fx = new Fixture()
  const started: ChildProcess[] = []
  const servers: Server[] = []
  const phases: Phase[] = []
  // the server's side of each tunnel, closed at the end with everything else the bench opened
  const accepted = new Set<Socket>()
  try {
    // the server side of the tunnel cases is this process; B lets the tunnel reach its port
    let onConn: (s: Socket) => void = (s) => s.destroy()
    const { server, port } = await listen((s) => {
      accepted.add(s)
      onConn(s)
    })
    servers.push(server)
    const dirA = fx.tempDir('mesh-bp-')
    const dirB = fx.tempDir('mesh-bp-')
    const env = {
      MESH_LOG_LEVEL: 'warn',
      MESH_WEBRTC__ENABLED: 'false',
      MESH_TUNNEL__ALLOW_PORTS: `[${port}]`,
    }
    const a = fx.agent(dirA, ['--init', 'bp', '--name', 'alpha']).start([], env)
    await a.ready(60_000)
    const token = (await meshJson(dirA, ['invite'])).token
    const b = fx.agent(dirB, ['--join', token, '--name', 'bravo']).start([], env)
    await b.ready(60_000)
    await waitFor(
      'alpha to see bravo alive',
      async () =>
        (await meshJson(dirA, ['members'])).some((m: any) => m.name === 'bravo' && m.status === 'alive'),
      60_000,
      300,
    )

    // measure one case with the CLI process that runs it, then stop that process
    const phase = async (name: string, cliName: string, cli: ChildProcess, src: Source, sink: Sink) => {
      const procs = { alpha: a.child?.pid, bravo: b.child?.pid, [cliName]: cli.pid }
      const result = await measure(name, procs, src, sink, o.pauseS)
      await stopProcess(cli, 10_000)
      return result
    }

    // 1: upload through the tunnel to a server that stops reading
    {
      const src = new Source(bytes)
      const got = new Promise<Socket>((r) => (onConn = r))
      const p = proxy(a, 'bravo', port)
      started.push(p)
      const sock = await within(got, 30_000, () => 'no tunnel')
      const sink = new Sink(sock)
      void pump(p.stdin!, src)
      phases.push(
        await phase(
          'mesh proxy on alpha to a server on bravo that stops reading',
          'mesh proxy',
          p,
          src,
          sink,
        ),
      )
    }

    // 2: download through the tunnel to a client that stops reading its stdout
    {
      const src = new Source(bytes)
      onConn = (s) => void pump(s, src)
      const p = proxy(a, 'bravo', port)
      started.push(p)
      // stdin stays open: a half-close would end the server's side too (net's allowHalfOpen)
      const sink = new Sink(p.stdout!)
      phases.push(
        await phase('a server on bravo to mesh proxy on alpha, stdout unread', 'mesh proxy', p, src, sink),
      )
    }

    // 3: mesh cat of a dataset the other member holds, its stdout unread
    {
      const file = join(fx.tempDir('mesh-bp-data-'), 'one-gib')
      const src = new Source(bytes)
      const fd = openSync(file, 'w')
      for (let c = src.next(); c !== undefined; c = src.next()) writeSync(fd, c)
      closeSync(fd)
      // hashing and storing 1 GiB takes minutes on a busy machine: meshJson's 30 s is too short
      const put = await mesh(['--data-dir', dirA, '--json', 'put', file, '--tag', 'bp:v1'], {
        timeoutMs: 900_000,
      })
      if (put.code !== 0) throw new Error(`mesh put exited ${put.code}: ${put.stderr}`)
      const root = String(JSON.parse(put.stdout).root)
      const cat = spawn(process.execPath, [CLI, '--data-dir', dirB, 'cat', root], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      started.push(cat)
      const sink = new Sink(cat.stdout!)
      phases.push(
        await phase("mesh cat on bravo of alpha's dataset, stdout unread", 'mesh cat', cat, src, sink),
      )
      // the writer here is alpha's blockstore: nothing counts what left it before cat's pipe
      phases[phases.length - 1].inFlightMiB = Number.NaN
    }
  } finally {
    for (const p of started) await stopProcess(p, 5_000).catch(() => {})
    for (const s of accepted) s.destroy()
    for (const s of servers) s.close()
    await fx.cleanup()
  }

  const machine = machineInfo()
  const cell = (r: Record<string, number>, k: string) => (r[k] === undefined ? '-' : fmt(r[k], 0))
  const rows = phases.map((p) => {
    const cli = Object.keys(p.base).find((k) => k !== 'alpha' && k !== 'bravo') ?? ''
    return [
      p.case,
      `${cell(p.base, 'alpha')} / ${cell(p.pausedPeak, 'alpha')} / ${cell(p.peak, 'alpha')}`,
      `${cell(p.base, 'bravo')} / ${cell(p.pausedPeak, 'bravo')} / ${cell(p.peak, 'bravo')}`,
      `${cell(p.base, cli)} / ${cell(p.pausedPeak, cli)} / ${cell(p.peak, cli)}`,
      Number.isNaN(p.inFlightMiB) ? '-' : fmt(p.inFlightMiB, 1),
      fmt(p.seconds, 1),
      p.ok ? 'intact' : `WRONG (${p.received} B)`,
    ]
  })
  console.log(machineMarkdown(machine))
  console.log(
    `\n${o.mib} MiB to a reader paused for ${o.pauseS} s, then read to the end. RSS in MiB: before / peak while paused / peak overall.\n`,
  )
  console.log(
    markdownTable(
      ['case', 'alpha RSS', 'bravo RSS', 'CLI process RSS', 'MiB between writer and reader', 's', 'bytes'],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
  )
  console.log(`\nreport: ${writeReport('backpressure', { options: o, machine, phases })}`)
  if (phases.some((p) => !p.ok)) process.exitCode = 1
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
