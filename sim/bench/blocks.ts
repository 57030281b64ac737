// Blocks benchmark (not a test): a dataset fetched with `mesh get` from 1, 2 and 4 provider
// agents on loopback, against the raw stream ceiling (one libp2p stream between two processes,
// the mesh stack, and plain TCP) in the same run; and how much of version 2 of the data is new,
// with content-defined chunking against fixed-size chunks (and what a real get of version 2
// moves). With --limited, the provider sweep runs a second time with every provider serving at
// most that many bytes a second: where unlimited providers share the fetcher's cores, this shows
// what more providers give when each is slower than the fetcher.
//
//   npm run build && node dist/sim/bench/blocks.js [--bytes 1073741824] [--repeats 1]
//        [--providers 4,2,1] [--serve-limit BYTES_PER_S] [--limited BYTES_PER_S]
//        [--skip-ceiling] [--skip-fetch] [--skip-dedup]
//        [--skip-helia] [--helia-dir DIR] [--profile-fetcher DIR]
//
// The reference, @helia/bitswap, is the same fetch done by Helia 7 processes (helia.ts): one
// `unixfs cat` from 1, 2 and 4 Helia providers holding the file as 256 KiB raw leaves.
//
// Prints markdown tables and writes sim/out/blocks-<time>.json. Real agent processes, started
// through the CLI; everything listens and dials on 127.0.0.1 only; every wait is bounded and
// every process and temporary directory is removed at the end, also on failure.
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AVG_CHUNK, chunkLengths, fixedLengths } from '../../src/blocks/chunker.js'
import { MALLOC_TUNABLES } from '../../src/cli/service-unit.js'
import { newCluster } from '../../src/node/cluster.js'
import { MeshAgent } from './agents.js'
import { intList, parseFlags, positive } from './args.js'
import { DEFAULT_HELIA_DIR, type HeliaFetch, heliaFetch, heliaSetup } from './helia.js'
import {
  cpuSeconds,
  fmt,
  fmtStats,
  machineInfo,
  machineMarkdown,
  markdownTable,
  minorFaults,
  ROOT,
  runBounded,
  type Stats,
  sleep,
  stats,
  stopProcess,
  waitForLine,
  wcharBytes,
  writeReport,
} from './report.js'

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js')
const PEER = join(ROOT, 'dist', 'sim', 'bench', 'stream-peer.js')
const NODE = process.execPath
const MiB = 2 ** 20

interface Options {
  bytes: number
  repeats: number
  providers: number[]
  skipCeiling: boolean
  skipFetch: boolean
  skipDedup: boolean
  /** blocks.serveBytesPerSec on every provider (0: unlimited) */
  serveLimit: number
  /** a second sweep with every provider limited to this (0: none), after the first */
  limited: number
  skipHelia: boolean
  heliaDir: string
  /** write a V8 CPU profile of each fetcher agent here (node --cpu-prof) */
  profileDir: string | undefined
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    bytes: 1024 * MiB,
    repeats: 1,
    providers: [4, 2, 1],
    skipCeiling: false,
    skipFetch: false,
    skipDedup: false,
    serveLimit: 0,
    limited: 0,
    skipHelia: false,
    heliaDir: DEFAULT_HELIA_DIR,
    profileDir: undefined,
  }
  const int = (flag: string, value: string) => Math.floor(positive(flag, value))
  parseFlags(argv, {
    '--bytes': (next) => (o.bytes = int('--bytes', next())),
    '--repeats': (next) => (o.repeats = Math.min(10, int('--repeats', next()))),
    '--providers': (next) => {
      o.providers = intList(next(), 1, 4).sort((x, y) => y - x)
      if (o.providers.length === 0) throw new Error('--providers takes a list of 1..4, e.g. 4,2,1')
    },
    '--skip-ceiling': () => (o.skipCeiling = true),
    '--skip-fetch': () => (o.skipFetch = true),
    '--skip-dedup': () => (o.skipDedup = true),
    '--serve-limit': (next) => (o.serveLimit = int('--serve-limit', next())),
    '--limited': (next) => (o.limited = int('--limited', next())),
    '--skip-helia': () => (o.skipHelia = true),
    '--helia-dir': (next) => (o.heliaDir = next()),
    '--profile-fetcher': (next) => (o.profileDir = next()),
  })
  return o
}

// ---------------------------------------------------------------------------------------
// agents

const AGENT_ENV = {
  MESH_WEBRTC__ENABLED: 'false',
  MESH_LOG_LEVEL: 'warn',
  MESH_BLOCKS__CACHE_BYTES: String(64 * 2 ** 30),
  MESH_DHT__ENABLED: 'true',
  // as `mesh service install`'s unit and the docker image run the agent (src/cli/service-unit.ts)
  GLIBC_TUNABLES: MALLOC_TUNABLES,
}

class Agent extends MeshAgent {
  constructor(
    readonly name: string,
    dir: string,
    env: NodeJS.ProcessEnv = {},
  ) {
    super(dir, { name, env: { ...AGENT_ENV, ...env }, keep: 20_000 })
  }

  /** start and wait for the control API */
  async launch(extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<void> {
    this.start(extra, env)
    await this.ready(60_000, 300)
  }

  async cli(args: string[], timeoutMs = 600_000): Promise<any> {
    const r = await runBounded(NODE, [CLI, '--data-dir', this.dir, '--json', ...args], { timeoutMs })
    if (r.code !== 0)
      throw new Error(`${this.name}: mesh ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`)
    return JSON.parse(r.stdout)
  }

  /** what the agent logged last (for a failure report) */
  logTail(): string {
    return this.out
  }

  /** user + system CPU seconds of the agent so far (from /proc). */
  cpuS(): number {
    return cpuSeconds(this.child?.pid)
  }

  override async stop(): Promise<void> {
    if (this.child !== undefined && this.child.exitCode !== null)
      this.out += `\nexited with ${this.child.exitCode}`
    await super.stop(10_000)
    this.child = undefined
  }
}

async function found(dir: string): Promise<void> {
  const r = await runBounded(NODE, [CLI, '--data-dir', dir, 'init', '--cluster', 'bench'], {
    timeoutMs: 30_000,
  })
  if (r.code !== 0) throw new Error(`init: ${r.stderr}`)
}

async function joinAgent(
  first: Agent,
  name: string,
  dir: string,
  env: NodeJS.ProcessEnv = {},
): Promise<Agent> {
  const { token } = await first.cli(['invite'])
  const a = new Agent(name, dir, env)
  await a.launch(['--join', token])
  return a
}

async function waitAlive(a: Agent, n: number): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const m = (await a.cli(['members']).catch(() => [])) as Array<{ status: string }>
    if (m.filter((x) => x.status === 'alive').length >= n) return
    await sleep(500)
  }
  throw new Error(`${a.name} does not see ${n} alive members`)
}

/** A file of `bytes` pseudo-random bytes (incompressible, like real data), written in 16 MiB pieces. */
function writeData(path: string, bytes: number, seed: string): void {
  const fd = openSync(path, 'w')
  try {
    let block = createHash('sha256').update(seed).digest()
    for (let off = 0; off < bytes; ) {
      const n = Math.min(16 * MiB, bytes - off)
      // fresh random bytes per piece, seeded so two runs differ only where we say
      const piece = randomBytes(n)
      block = createHash('sha256').update(block).digest()
      piece.set(block.subarray(0, Math.min(32, n)))
      writeSync(fd, piece)
      off += n
    }
  } finally {
    closeSync(fd)
  }
}

interface FetchSample {
  providers: number
  bytes: number
  ms: number
  mbps: number
  fetcherCpuS: number
  providerCpuS: number
  /** what the providers wrote to their sockets during the fetch */
  providerSentBytes: number
  perProvider: Array<{ name: string; bytes: number }>
}

// ---------------------------------------------------------------------------------------
// raw stream ceiling (same peers as the foundation benchmark)

async function ceiling(kind: 'mesh' | 'tcp', bytes: number, clusterEnv: string): Promise<number> {
  // the same malloc as the agents', so the ratio compares the stacks, not the allocators
  const env = {
    ...process.env,
    GLIBC_TUNABLES: MALLOC_TUNABLES,
    MESH_BENCH_CLUSTER: clusterEnv,
    MESH_BENCH_STACK: kind,
  }
  const sink = spawn(NODE, [PEER, `${kind}-sink`], { stdio: ['pipe', 'pipe', 'pipe'], env })
  try {
    const ready = await waitForLine(
      sink,
      (l) =>
        l.startsWith('{') && l.includes('ready')
          ? (JSON.parse(l) as { addrs?: string[]; port?: number })
          : undefined,
      30_000,
      `${kind} sink`,
    )
    const target = kind === 'mesh' ? ready.addrs?.[0] : String(ready.port)
    const src = await runBounded(
      NODE,
      [PEER, `${kind}-source`, String(target), String(bytes), String(256 * 1024)],
      {
        env,
        timeoutMs: 600_000,
      },
    )
    const line = src.stdout.trim().split('\n').pop() ?? ''
    if (src.code !== 0 || !line.startsWith('{')) {
      throw new Error(
        `${kind} source failed (${src.timedOut ? 'timeout' : src.code}): ${src.stderr.trim().slice(-1000)}`,
      )
    }
    const r = JSON.parse(line) as { bytes: number; ms: number }
    return r.bytes / 1e6 / (r.ms / 1000)
  } finally {
    sink.stdin?.end()
    await stopProcess(sink, 5_000)
  }
}

// ---------------------------------------------------------------------------------------
// dedup: version 2 against version 1

function dedup(data: Buffer, edits: number): { cdcNew: number; fixedNew: number; total: number } {
  // insert 100 bytes at `edits` evenly spread places: what an edited file looks like
  const parts: Buffer[] = []
  let prev = 0
  for (let i = 1; i <= edits; i++) {
    const at = Math.floor((data.length * i) / (edits + 1))
    parts.push(data.subarray(prev, at), Buffer.from(`edit ${i} `.padEnd(100, '.')))
    prev = at
  }
  parts.push(data.subarray(prev))
  const v2 = Buffer.concat(parts)
  const keys = (buf: Buffer, lens: number[]) => {
    const out: Array<[string, number]> = []
    let p = 0
    for (const l of lens) {
      out.push([
        createHash('sha256')
          .update(buf.subarray(p, p + l))
          .digest('hex'),
        l,
      ])
      p += l
    }
    return out
  }
  const newBytes = (a: Array<[string, number]>, b: Array<[string, number]>) => {
    const have = new Set(a.map((x) => x[0]))
    return b.filter((x) => !have.has(x[0])).reduce((s, x) => s + x[1], 0)
  }
  const cdc = newBytes(keys(data, chunkLengths(data)), keys(v2, chunkLengths(v2)))
  const fixed = newBytes(keys(data, fixedLengths(data.length)), keys(v2, fixedLengths(v2.length)))
  return { cdcNew: cdc, fixedNew: fixed, total: v2.length }
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const machine = machineInfo([
    'libp2p',
    '@libp2p/tcp',
    '@chainsafe/libp2p-noise',
    '@chainsafe/libp2p-yamux',
    'multiformats',
  ])
  const report: Record<string, unknown> = { options: o, machine }
  const out: string[] = [
    `## Blocks benchmark (${new Date().toISOString().slice(0, 10)})`,
    '',
    `Machine: ${machineMarkdown(machine)}`,
    '',
  ]
  const work = mkdtempSync(join(tmpdir(), 'mesh-bench-blocks-'))
  const agents: Agent[] = []
  const fetchers: Agent[] = []
  let failed = false
  try {
    // -- dedup (in process: the chunker alone)
    if (!o.skipDedup) {
      const n = Math.min(o.bytes, 256 * MiB)
      const data = randomBytes(n)
      const rows: string[][] = []
      const res: Record<string, unknown> = {}
      for (const edits of [1, 10, 100]) {
        const d = dedup(data, edits)
        res[`edits${edits}`] = d
        rows.push([
          String(edits),
          `${fmt(d.cdcNew / MiB, 2)} (${fmt((100 * d.cdcNew) / d.total, 2)} %)`,
          `${fmt(d.fixedNew / MiB, 2)} (${fmt((100 * d.fixedNew) / d.total, 2)} %)`,
        ])
      }
      const t0 = performance.now()
      chunkLengths(data)
      const cdcMBps = n / 1e6 / ((performance.now() - t0) / 1000)
      report.dedup = { bytes: n, ...res, chunkerMBps: cdcMBps }
      out.push(
        `### Version 2 of a ${fmt(n / MiB, 0)} MiB file: bytes not shared with version 1 (100-byte insertions)`,
        '',
        markdownTable(
          [
            'insertions',
            `content-defined (FastCDC, avg ${AVG_CHUNK / 1024} KiB)`,
            `fixed-size ${AVG_CHUNK / 1024} KiB chunks`,
          ],
          rows,
          ['r', 'r', 'r'],
        ),
        '',
        `Chunker alone: ${fmt(cdcMBps, 0)} MB/s on this machine.`,
        '',
      )
      console.error(out.slice(-8).join('\n'))
    }

    const cluster = newCluster('bench')
    const clusterEnv = JSON.stringify({
      name: cluster.name,
      id: cluster.id,
      key: Buffer.from(cluster.key).toString('hex'),
    })

    // -- raw ceiling
    const ceil: Record<string, Stats> = {}
    if (!o.skipCeiling) {
      for (const kind of ['mesh', 'tcp'] as const) {
        const xs: number[] = []
        for (let i = 0; i < o.repeats; i++) {
          console.error(`ceiling: ${kind} stream ${i + 1}/${o.repeats}`)
          try {
            xs.push(await ceiling(kind, o.bytes, clusterEnv))
          } catch (err) {
            failed = true
            console.error(`ceiling ${kind} failed: ${(err as Error).message}`)
          }
        }
        ceil[kind] = stats(xs)
      }
      report.ceiling = ceil
    }

    // -- fetches
    if (!o.skipFetch) {
      const src = join(work, 'data')
      mkdirSync(src)
      console.error(`writing ${fmt(o.bytes / MiB, 0)} MiB of data`)
      writeData(join(src, 'data.bin'), o.bytes, 'v1')
      const dirs = (name: string) => join(work, name)
      // -- the reference first, while no mesh agent runs
      const helia: Array<HeliaFetch & { providers: number }> = []
      if (!o.skipHelia) {
        try {
          const h = await heliaSetup(o.heliaDir, (l) => console.error(l))
          report.helia = { versions: h.versions }
          for (let rep = 0; rep < o.repeats; rep++)
            for (const k of o.providers) {
              const hw = join(work, `helia-${rep}-${k}`)
              mkdirSync(hw)
              const r = await heliaFetch(h, k, join(src, 'data.bin'), hw)
              helia.push({ ...r, providers: k })
              console.error(
                `helia get from ${k}: ${fmt(r.bytes / 1e6 / (r.ms / 1000), 1)} MB/s (${fmt(r.ms, 0)} ms, fetcher CPU ${fmt(r.fetcherCpuS, 1)} s, providers ${fmt(r.providerCpuS, 1)} s)`,
              )
              rmSync(hw, { recursive: true, force: true })
            }
        } catch (err) {
          failed = true
          console.error(`helia reference failed: ${(err as Error).message}`)
          report.heliaError = (err as Error).message
        }
        report.heliaFetch = helia
      }

      await found(dirs('p1'))
      const limit = o.serveLimit > 0 ? { MESH_BLOCKS__SERVE_BYTES_PER_SEC: String(o.serveLimit) } : {}
      const p1 = new Agent('p1', dirs('p1'), limit)
      await p1.launch()
      agents.push(p1)
      const maxK = Math.max(...o.providers)
      for (let i = 2; i <= maxK; i++) agents.push(await joinAgent(p1, `p${i}`, dirs(`p${i}`), limit))
      await waitAlive(p1, maxK)
      const puts: number[] = []
      let root = ''
      for (const p of agents) {
        const t0 = performance.now()
        const r = await p.cli(['put', src])
        puts.push(o.bytes / 1e6 / ((performance.now() - t0) / 1000))
        root = r.root
        console.error(`put on ${p.name}: ${r.root} in ${fmt(performance.now() - t0, 0)} ms`)
      }
      const putStats = stats(puts)
      report.put = putStats
      let fetcherN = 0
      let lastFetcher: Agent | undefined
      // one pass over the provider counts, the providers started with `env`
      const sweep = async (env: NodeJS.ProcessEnv, what: string): Promise<FetchSample[]> => {
        const samples: FetchSample[] = []
        for (let rep = 0; rep < o.repeats; rep++) {
          for (const k of o.providers) {
            // exactly k providers run: stop the others (restarted for the next repeat)
            for (const p of agents.slice(k)) if (p.child !== undefined) await p.stop()
            const fname = `f${++fetcherN}`
            // the fetcher logs at info: a failed run says which providers were dropped and why
            const f = new Agent(fname, dirs(fname), { MESH_LOG_LEVEL: 'info' })
            if (o.profileDir !== undefined) f.opts.nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`]
            fetchers.push(f)
            await f.launch(['--join', (await p1.cli(['invite'])).token])
            await waitAlive(f, k + 1)
            const dest = join(work, `out${fetcherN}`)
            const cpu0 = f.cpuS()
            const faults0 = minorFaults(f.child?.pid)
            const running = agents.filter((p) => p.child !== undefined)
            const pcpu0 = running.reduce((s, p) => s + p.cpuS(), 0)
            const sent0 = running.reduce((s, p) => s + wcharBytes(p.child?.pid), 0)
            const r = await f.cli(['get', root, dest], 1_800_000).catch((err: Error) => {
              const dropped = f
                .logTail()
                .split('\n')
                .filter((l) => /dropped|error|warn/i.test(l))
                .slice(-20)
              throw new Error(`${err.message}\nfetcher log:\n${dropped.join('\n')}`)
            })
            const cpu = f.cpuS() - cpu0
            const faults = minorFaults(f.child?.pid) - faults0
            const pcpu = running.reduce((s, p) => s + p.cpuS(), 0) - pcpu0
            const sent = running.reduce((s, p) => s + wcharBytes(p.child?.pid), 0) - sent0
            const s: FetchSample = {
              providers: k,
              bytes: r.bytes,
              ms: r.ms,
              mbps: r.bytes / 1e6 / (r.ms / 1000),
              fetcherCpuS: cpu,
              providerCpuS: pcpu,
              providerSentBytes: sent,
              perProvider: r.providers.map((p: any) => ({ name: p.name, bytes: p.bytes })),
            }
            samples.push(s)
            console.error(
              `${what}get from ${k}: ${fmt(s.mbps, 1)} MB/s (${s.ms} ms, fetcher CPU ${fmt(cpu, 2)} s, ${faults} faults, providers ${fmt(pcpu, 1)} s) ` +
                s.perProvider.map((p) => `${p.name} ${fmt(p.bytes / MiB, 0)} MiB`).join(', '),
            )
            rmSync(dest, { recursive: true, force: true })
            // the next fetch must not find this one as a provider
            if (lastFetcher !== undefined) rmSync(lastFetcher.dir, { recursive: true, force: true })
            await f.stop()
            lastFetcher = f
          }
          if (rep < o.repeats - 1) for (const p of agents) if (p.child === undefined) await p.launch([], env)
        }
        return samples
      }
      const samples = await sweep(limit, '')
      report.fetch = samples
      let limitedSamples: FetchSample[] = []
      if (o.limited > 0) {
        // every provider again, now serving at most o.limited bytes a second
        const env = { MESH_BLOCKS__SERVE_BYTES_PER_SEC: String(o.limited) }
        // (the others first, while p1 runs: every agent listens on a new port when it starts,
        // so a member restarted alone finds the others at their addresses, not two at once)
        for (const p of agents.slice(1)) {
          if (p.child !== undefined) await p.stop()
          await p.launch([], env)
        }
        await waitAlive(p1, maxK)
        await p1.stop()
        await p1.launch([], env)
        await waitAlive(p1, maxK)
        limitedSamples = await sweep(env, `limited to ${fmt(o.limited / 1e6, 0)} MB/s: `)
        report.fetchLimited = { bytesPerSec: o.limited, samples: limitedSamples }
      }

      // -- version 2 over the wire: p1 puts it, the last fetcher (holding version 1) gets it
      let v2: { fetched: number; total: number; ms: number } | undefined
      if (lastFetcher !== undefined) {
        await lastFetcher.launch()
        await waitAlive(lastFetcher, 2)
        const data = readFileSync(join(src, 'data.bin'))
        const mid = data.length >> 1
        const src2 = join(work, 'data2')
        mkdirSync(src2)
        const fd = openSync(join(src2, 'data.bin'), 'w')
        writeSync(fd, data.subarray(0, mid))
        writeSync(fd, Buffer.from('a small edit in version 2 '))
        writeSync(fd, data.subarray(mid))
        closeSync(fd)
        const put2 = await p1.cli(['put', src2])
        const r = await lastFetcher.cli(['get', put2.root, join(work, 'v2out')], 1_800_000)
        v2 = { fetched: r.fetchedBytes, total: r.bytes, ms: r.ms }
        report.version2 = v2
        rmSync(join(work, 'v2out'), { recursive: true, force: true })
      }

      const byProviders = (xs: FetchSample[]) => {
        const m = new Map<number, FetchSample[]>()
        for (const x of xs) m.set(x.providers, [...(m.get(x.providers) ?? []), x])
        return m
      }
      const byK = byProviders(samples)
      const limitedByK = byProviders(limitedSamples)
      const rows: string[][] = []
      const meshRows = (m: Map<number, FetchSample[]>, suffix: string) => {
        for (const k of o.providers) {
          const xs = m.get(k) ?? []
          if (xs.length === 0) continue
          const share = xs[0]?.perProvider.map((p) => `${p.name} ${fmt(p.bytes / MiB, 0)}`).join(', ') ?? '-'
          rows.push([
            `mesh get, ${k} provider agent${k > 1 ? 's' : ''}${suffix}`,
            fmtStats(stats(xs.map((x) => x.mbps)), 1),
            fmtStats(stats(xs.map((x) => x.fetcherCpuS)), 1),
            fmtStats(stats(xs.map((x) => x.providerCpuS)), 1),
            fmtStats(stats(xs.map((x) => x.providerSentBytes / x.bytes)), 2),
            share,
          ])
        }
      }
      meshRows(byK, '')
      meshRows(limitedByK, `, each serving at most ${fmt(o.limited / 1e6, 0)} MB/s`)
      for (const k of o.providers) {
        const xs = helia.filter((x) => x.providers === k)
        if (xs.length === 0) continue
        rows.push([
          `@helia/bitswap (Helia ${String((report.helia as any)?.versions?.helia ?? '7')}, unixfs cat), ${k} provider${k > 1 ? 's' : ''}`,
          fmtStats(stats(xs.map((x) => x.bytes / 1e6 / (x.ms / 1000))), 1),
          fmtStats(stats(xs.map((x) => x.fetcherCpuS)), 1),
          fmtStats(stats(xs.map((x) => x.providerCpuS)), 1),
          fmtStats(stats(xs.map((x) => x.providerSentBytes / x.bytes)), 2),
          '-',
        ])
      }
      // mesh against the reference, per provider count (medians)
      const ratioRows: Record<string, number> = {}
      for (const k of o.providers) {
        const m = stats((byK.get(k) ?? []).map((x) => x.mbps)).median
        const hx = helia.filter((x) => x.providers === k).map((x) => x.bytes / 1e6 / (x.ms / 1000))
        if (hx.length > 0 && Number.isFinite(m)) ratioRows[`meshVsHelia${k}`] = m / stats(hx).median
        if (ceil.mesh !== undefined && Number.isFinite(m))
          ratioRows[`meshVsStreamCeiling${k}`] = m / ceil.mesh.median
      }
      // more providers against one, unlimited and (where run) limited
      const scaling = (m: Map<number, FetchSample[]>, key: string) => {
        const one = stats((m.get(1) ?? []).map((x) => x.mbps)).median
        for (const k of o.providers) {
          const mk = stats((m.get(k) ?? []).map((x) => x.mbps)).median
          if (k > 1 && Number.isFinite(one) && Number.isFinite(mk)) ratioRows[`${key}${k}VsFrom1`] = mk / one
        }
      }
      scaling(byK, 'from')
      scaling(limitedByK, 'limitedFrom')
      report.ratios = ratioRows
      for (const k of o.providers)
        if (ratioRows[`meshVsHelia${k}`] !== undefined)
          rows.push([
            `**mesh / @helia/bitswap, ${k} provider${k > 1 ? 's' : ''}**`,
            `**${fmt(ratioRows[`meshVsHelia${k}`], 2)}**`,
            '',
            '',
            '',
            '',
          ])
      for (const [key, what] of [
        ['from', 'unlimited'],
        ['limitedFrom', `each at most ${fmt(o.limited / 1e6, 0)} MB/s`],
      ])
        for (const k of o.providers)
          if (ratioRows[`${key}${k}VsFrom1`] !== undefined)
            rows.push([
              `**mesh from ${k} providers / from 1, ${what}**`,
              `**${fmt(ratioRows[`${key}${k}VsFrom1`], 2)}**`,
              '',
              '',
              '',
              '',
            ])
      if (ceil.mesh !== undefined)
        rows.push([
          'ceiling: one mesh stream (TCP+Noise+yamux, admitted), 256 KiB writes',
          fmtStats(ceil.mesh, 1),
          '-',
          '-',
          '-',
          '-',
        ])
      if (ceil.tcp !== undefined)
        rows.push(['ceiling: one raw TCP connection', fmtStats(ceil.tcp, 1), '-', '-', '-', '-'])
      rows.push(['mesh put (chunk, hash, store), per provider', fmtStats(putStats, 1), '-', '-', '-', '-'])
      out.push(
        `### ${fmt(o.bytes / MiB, 0)} MiB dataset (one file) fetched on loopback` +
          `${o.serveLimit > 0 ? `, each provider serving at most ${fmt(o.serveLimit / 1e6, 0)} MB/s` : ''}: MB/s (10^6 bytes/s), median of ${o.repeats}`,
        '',
        markdownTable(
          [
            'run',
            'MB/s',
            'fetcher CPU (s)',
            'providers CPU (s)',
            'providers sent / file size',
            'MiB served per provider',
          ],
          rows,
          ['l', 'r', 'r', 'r', 'r', 'l'],
        ),
        '',
      )
      if (v2 !== undefined) {
        out.push(
          `Version 2 (a 26-byte insertion in the middle of the ${fmt(o.bytes / MiB, 0)} MiB file), fetched by a member holding ` +
            `version 1: ${fmt(v2.fetched / MiB, 2)} MiB moved (${fmt((100 * v2.fetched) / v2.total, 3)} %), ${v2.ms} ms.`,
          '',
        )
      }
    }
  } catch (err) {
    failed = true
    console.error(`benchmark failed: ${(err as Error).stack ?? err}`)
    for (const a of [...agents, ...fetchers]) {
      const bad = a
        .logTail()
        .split('\n')
        .filter((l) => /"level":(40|50|60)|rror|unhandled|exited|FATAL/i.test(l))
        .slice(-8)
      if (bad.length > 0)
        console.error(`--- ${a.name} (${a.child?.exitCode ?? 'running'}):\n${bad.join('\n')}`)
    }
    out.push(`Failed: ${(err as Error).message}`, '')
  } finally {
    await Promise.allSettled([...agents, ...fetchers].map((a) => a.stop()))
    rmSync(work, { recursive: true, force: true })
  }
  const path = writeReport('blocks', report)
  process.stdout.write(`${out.join('\n')}\nReport: ${path}\n`)
  process.exit(failed ? 1 : 0)
}

await main()
