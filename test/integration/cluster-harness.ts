import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fetchMetrics, metric, until } from '../../sim/bench/report.js'
import { ConfigSchema } from '../../src/agent/config.js'
import { prepareDataDir } from '../../src/agent/setup.js'
import { Reporter } from '../../src/kernel/reporter.js'
import { NodeComponent } from '../../src/node/node-component.js'

/** The built CLI, as users run it. */
export const CLI = resolve(import.meta.dirname, '../../src/cli/main.js')

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => res(p))
    })
    s.on('error', rej)
  })
}

/** Words quoted for sh -c (to run a command on a pseudo-terminal through `script -c`). */
export function shQuote(words: string[]): string {
  return words.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ')
}

/** Run `mesh ARGS` to completion (bounded by timeoutMs). */
export function mesh(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolvePromise({ code: code ?? (signal === null ? -1 : 128), stdout, stderr })
    })
  })
}

/** `mesh --json ARGS`, parsed; throws with stderr when it fails. */
export async function meshJson<T = any>(dataDir: string, args: string[]): Promise<T> {
  const r = await mesh(['--data-dir', dataDir, '--json', ...args])
  if (r.code !== 0) throw new Error(`mesh ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as T
}

/** Poll `fn` until it returns a truthy value; bounded by time, so a test can never hang. */
export function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
  everyMs = 200,
): Promise<T> {
  return until(what, fn, timeoutMs, everyMs)
}

export class AgentProcess {
  child: ChildProcess | undefined
  stderr = ''
  stdout = ''
  exitCode: number | null = null
  private exited: Promise<void> = Promise.resolve()

  constructor(
    readonly dataDir: string,
    readonly args: string[] = [],
  ) {}

  start(extra: string[] = [], env: NodeJS.ProcessEnv = {}): this {
    this.stderr = ''
    this.stdout = ''
    this.exitCode = null
    const child = spawn(
      process.execPath,
      [CLI, '--data-dir', this.dataDir, 'agent', '--listen', '/ip4/127.0.0.1/tcp/0', ...this.args, ...extra],
      {
        env: {
          ...process.env,
          MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'info',
          // the sshds tests tunnel to have their own host keys, never this machine's: publish none
          // unless a test says which (tags then hold only what each test sets)
          MESH_TUNNEL__SSH_HOST_KEYS: join(this.dataDir, 'no-ssh-host-key.pub'),
          // no mesh0 and no /etc/hosts block on the machine running the tests, also when a file
          // is run alone without .mocharc's setup (test/setup.ts); the netns tests turn it on
          MESH_OVERLAY__INTERFACE: process.env.MESH_OVERLAY__INTERFACE ?? 'false',
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    child.stdout?.on('data', (d) => (this.stdout += d))
    child.stderr?.on('data', (d) => (this.stderr += d))
    this.exited = new Promise((r) =>
      child.on('exit', (code, signal) => {
        this.exitCode = code ?? (signal === null ? -1 : 128)
        r()
      }),
    )
    this.child = child
    return this
  }

  /**
   * Wait until the control API answers. Start-up is CPU-bound: at load 30 on 2 cores a restarted
   * agent got about 1 s of CPU in 20 s, so the default bound is a minute.
   */
  async ready(timeoutMs = 60_000): Promise<any> {
    return waitFor(
      `agent in ${this.dataDir} to answer (stderr: ${this.stderr.slice(-500)})`,
      async () => {
        if (this.exitCode !== null)
          throw new Error(`agent exited with ${this.exitCode}: ${this.stderr.slice(-2000)}`)
        return meshJson(this.dataDir, ['status'])
      },
      timeoutMs,
    )
  }

  async status(): Promise<any> {
    return meshJson(this.dataDir, ['status'])
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child !== undefined && this.exitCode === null) {
      this.child.kill(signal)
      await this.exited
    }
  }

  waitExit(): Promise<void> {
    return this.exited
  }
}

/** Deterministic pseudo-random bytes (xorshift): incompressible, distinct per seed, reproducible. */
export function seededBytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n)
  let x = seed | 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** Temp dirs and agents of one test file, all removed in `after` even when a test fails. */
export class Fixture {
  private readonly dirs: string[] = []
  readonly agents: AgentProcess[] = []

  tempDir(prefix = 'mesh-it-'): string {
    const d = mkdtempSync(join(tmpdir(), prefix))
    this.dirs.push(d)
    return d
  }

  agent(dataDir: string, args: string[] = []): AgentProcess {
    const a = new AgentProcess(dataDir, args)
    this.agents.push(a)
    return a
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.kill('SIGKILL')))
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true })
  }
}

/**
 * A member inside the test process: it joins with an invite like any machine (a certificate
 * from `inviterDir`'s agent) but runs only the libp2p node, so a test can put anything on the
 * wire or look inside gossipsub. Not started; the caller stops it.
 */
export async function inProcessMember(dir: string, inviterDir: string, name: string): Promise<NodeComponent> {
  const token = (await meshJson<{ token: string }>(inviterDir, ['invite'])).token
  const setup = await prepareDataDir(dir, { join: token })
  return new NodeComponent({
    config: ConfigSchema.parse({
      name,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      logLevel: 'silent',
      relay: { server: false, reservations: 0 },
      webrtc: { enabled: false, iceServers: [] },
    }),
    cluster: setup.cluster,
    dataDir: dir,
    seeds: setup.cluster.seeds ?? [],
    reporter: new Reporter({ level: 'silent' }).forComponent('node'),
  })
}

/** The agent's Prometheus metrics, over its control socket. */
export function metricsText(a: AgentProcess): Promise<string> {
  return fetchMetrics(join(a.dataDir, 'mesh.sock'))
}

// the sum of a metric's samples whose labels include the given ones (shared with the benchmarks)
export { metric }
