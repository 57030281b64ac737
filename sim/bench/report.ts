// Shared by the benchmarks: statistics, markdown tables, machine details, the JSON report
// under sim/out/, and bounded child processes (every benchmark step has a time limit).
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, type as osType, release, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The project root, from dist/sim/bench/report.js (three levels up). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

/**
 * The built mesh CLI; MESH_BENCH_CLI runs another build's agents under this bench (to compare
 * two builds with one harness)
 */
export const CLI = process.env.MESH_BENCH_CLI ?? join(ROOT, 'dist', 'src', 'cli', 'main.js')

// ---------------------------------------------------------------------------------------
// statistics

export interface Stats {
  median: number
  min: number
  max: number
  samples: number[]
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

export function stats(xs: number[]): Stats {
  return {
    median: median(xs),
    min: xs.length === 0 ? Number.NaN : Math.min(...xs),
    max: xs.length === 0 ? Number.NaN : Math.max(...xs),
    samples: xs,
  }
}

/** A number for a table: fixed digits, thousands kept plain, '-' for missing. */
export function fmt(n: number | undefined, digits = 1): string {
  if (n === undefined || !Number.isFinite(n)) return '-'
  return n.toFixed(digits)
}

/** 'median (min-max)' for a table cell. */
export function fmtStats(s: Stats | undefined, digits = 1): string {
  if (s === undefined || s.samples.length === 0) return '-'
  if (s.samples.length === 1) return fmt(s.median, digits)
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}-${fmt(s.max, digits)})`
}

// ---------------------------------------------------------------------------------------
// markdown

/** A GitHub markdown table; `align` per column: 'l' (default) or 'r' for numbers. */
export function markdownTable(headers: string[], rows: string[][], align: ('l' | 'r')[] = []): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ')
  const cells = [headers, ...rows].map((r) => headers.map((_, i) => esc(r[i] ?? '')))
  const widths = headers.map((_, i) => Math.max(3, ...cells.map((r) => r[i].length)))
  const line = (r: string[]) =>
    `| ${r.map((c, i) => (align[i] === 'r' ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`
  const rule = `| ${widths.map((w, i) => (align[i] === 'r' ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`
  return [line(cells[0]), rule, ...cells.slice(1).map(line)].join('\n')
}

// ---------------------------------------------------------------------------------------
// machine and report

export interface Machine {
  cpu: string
  cores: number
  ramGiB: number
  node: string
  kernel: string
  os: string
  packages: Record<string, string>
  /** 1, 5 and 15 minute load averages when the run started: a busy machine skews every number */
  loadAvg: number[]
}

/** What a reader needs to compare runs: hardware, runtime and the versions of the stack. */
export function machineInfo(packages: string[] = DEFAULT_PACKAGES): Machine {
  const c = cpus()
  const versions: Record<string, string> = {}
  for (const p of packages) {
    try {
      versions[p] = JSON.parse(readFileSync(join(ROOT, 'node_modules', p, 'package.json'), 'utf8')).version
    } catch {
      versions[p] = 'missing'
    }
  }
  return {
    cpu: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: release(),
    os: `${osType()} ${osRelease()}`.trim(),
    packages: versions,
    loadAvg: loadavg().map((l) => Math.round(l * 100) / 100),
  }
}

const DEFAULT_PACKAGES = ['libp2p', '@libp2p/tcp', '@chainsafe/libp2p-noise', '@chainsafe/libp2p-yamux']

function osRelease(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))
    return m?.[1] ?? ''
  } catch {
    return ''
  }
}

export function machineMarkdown(m: Machine): string {
  const pk = Object.entries(m.packages)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')
  return `${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB RAM; Node ${m.node}; Linux ${m.kernel} (${m.os}); ${pk}; load average at start ${m.loadAvg.join(' / ')}`
}

/**
 * Writes `sim/out/<name>-<timestamp>.json` and `sim/out/<name>-latest.json`; returns the first path.
 * sim/out/ is gitignored: results go to the README by hand, with the machine line.
 */
export function writeReport(name: string, data: Record<string, unknown>): string {
  const dir = join(ROOT, 'sim', 'out')
  mkdirSync(dir, { recursive: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const body = `${JSON.stringify({ benchmark: name, date: new Date().toISOString(), ...data }, null, 2)}\n`
  const path = join(dir, `${name}-${stamp}.json`)
  writeFileSync(path, body)
  writeFileSync(join(dir, `${name}-latest.json`), body)
  return path
}

// ---------------------------------------------------------------------------------------
// bounded child processes

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
  timedOut: boolean
}

/** Runs a command to its end, killed after `timeoutMs`; never rejects for a non-zero exit. */
export function runBounded(
  cmd: string,
  args: string[],
  opts: SpawnOptions & { timeoutMs: number },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
    })
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, opts.timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, timedOut })
    })
  })
}

/**
 * Resolves with the first stdout line of `child` that `match` accepts, or rejects when the
 * child exits first or `timeoutMs` passes. Lines are kept in `lines` for error messages.
 */
export function waitForLine<T>(
  child: ChildProcess,
  match: (line: string) => T | undefined,
  timeoutMs: number,
  what: string,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = ''
    let err = ''
    const onErr = (d: Buffer) => {
      err = (err + d.toString()).slice(-4000)
    }
    const done = (fn: () => void) => {
      clearTimeout(timer)
      child.stdout!.off('data', onData)
      child.stderr?.off('data', onErr)
      child.off('exit', onExit)
      fn()
    }
    const onData = (d: Buffer) => {
      buf += d.toString()
      let i = buf.indexOf('\n')
      while (i >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        const v = match(line)
        if (v !== undefined) {
          done(() => resolve(v))
          return
        }
        i = buf.indexOf('\n')
      }
    }
    const onExit = (code: number | null, signal: string | null) =>
      done(() => reject(new Error(`${what}: exited (${code ?? signal}) before it was ready: ${err.trim()}`)))
    const timer = setTimeout(
      () => done(() => reject(new Error(`${what}: not ready after ${timeoutMs} ms: ${err.trim()}`))),
      timeoutMs,
    )
    child.stdout!.on('data', onData)
    child.stderr?.on('data', onErr)
    child.on('exit', onExit)
  })
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves with how long the process took to exit. */
export async function stopProcess(
  child: ChildProcess,
  graceMs = 10_000,
): Promise<{ ms: number; killed: boolean }> {
  const t0 = performance.now()
  if (child.exitCode !== null || child.signalCode !== null) return { ms: 0, killed: false }
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  child.kill('SIGTERM')
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    child.kill('SIGKILL')
  }, graceMs)
  await exited
  clearTimeout(timer)
  return { ms: performance.now() - t0, killed }
}

/** The fields of /proc/PID/stat after the command name (field 3 first), or undefined when gone. */
function statFields(pid: number | undefined): string[] | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name (field 2) may hold spaces
    return f.slice(f.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** CPU time (user + system) a live process has used, in seconds, from /proc/PID/stat. */
export function cpuSeconds(pid: number | undefined): number {
  const rest = statFields(pid)
  // utime and stime are fields 14 and 15
  return rest === undefined ? Number.NaN : (Number(rest[11]) + Number(rest[12])) / 100
}

/** Minor page faults of a live process so far (field 10 of /proc/PID/stat): fresh pages touched. */
export function minorFaults(pid: number | undefined): number {
  const rest = statFields(pid)
  return rest === undefined ? Number.NaN : Number(rest[7])
}

/**
 * CPU seconds of a live process per thread name (the comm file of each task under /proc/PID/task): the main thread
 * ('node' or 'MainThread'), V8's GC helpers, libuv's pool, native libraries' own threads
 * (node-datachannel's ICE and SCTP). Threads of one name are summed.
 */
export function cpuSecondsByThread(pid: number | undefined): Map<string, number> {
  const out = new Map<string, number>()
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
        const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
        const rest = f.slice(f.lastIndexOf(')') + 2).split(' ')
        out.set(comm, (out.get(comm) ?? 0) + (Number(rest[11]) + Number(rest[12])) / 100)
      } catch {}
    }
  } catch {}
  return out
}

/**
 * Bytes a live process has written with write(2) and friends, from /proc/PID/io (wchar): for a
 * block provider, what it sent on its sockets (it writes nothing else while serving).
 */
export function wcharBytes(pid: number | undefined): number {
  try {
    const line = readFileSync(`/proc/${pid}/io`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('wchar:'))
    return Number(line?.split(/\s+/)[1] ?? Number.NaN)
  } catch {
    return Number.NaN
  }
}

/** `Key:   N kB` fields of a /proc file, in MiB (undefined when the process is gone). */
function procMiB<K extends string>(path: string, keys: Record<K, string>): Record<K, number> | undefined {
  try {
    const s = readFileSync(path, 'utf8')
    const out = {} as Record<K, number>
    for (const [name, field] of Object.entries(keys) as Array<[K, string]>)
      out[name] = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? Number.NaN) / 1024
    return out
  } catch {
    return undefined
  }
}

/** Resident memory of a live process, in MiB, from /proc (VmRSS; VmHWM is the peak). */
export const rssMiB = (pid: number) => procMiB(`/proc/${pid}/status`, { rss: 'VmRSS', peak: 'VmHWM' })

/** Proportional and private memory (MiB) from smaps_rollup: what an agent costs the machine when
 *  many share one node binary (RSS counts the shared binary's pages in full in every agent). */
export const pssMiB = (pid: number) =>
  procMiB(`/proc/${pid}/smaps_rollup`, { pss: 'Pss', privateDirty: 'Private_Dirty' })

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/**
 * Poll `fn` every `everyMs` until it returns something truthy; bounded by `timeoutMs`. Errors
 * from `fn` count as "not yet", except those `fatal` accepts: they end the wait at once.
 */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
  everyMs = 200,
  fatal: (err: unknown) => boolean = () => false,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      if (fatal(err)) throw err
      last = err
    }
    await sleep(everyMs)
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
  )
}

// ---------------------------------------------------------------------------------------
// an agent's Prometheus metrics

/** GET /metrics from an agent's control socket. */
export async function fetchMetrics(socketPath: string, timeoutMs = 10_000): Promise<string> {
  const { request } = await import('node:http')
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/metrics', timeout: timeoutMs }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve(body))
    })
    req.on('timeout', () => req.destroy(new Error('/metrics timed out')))
    req.on('error', reject)
    req.end()
  })
}

/** Sum of a metric's samples whose labels include `labels`. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line)
    if (m === null || m[1] !== name) continue
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[3])
  }
  return sum
}
