import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { MeshAgent } from '../../sim/bench/agents.js'
import { until } from '../../sim/bench/report.js'
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
    const bound = opts.timeoutMs ?? 30_000
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, bound)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      // killed (exit 128 here): say so, or a failure reads as an empty error from the CLI
      if (signal !== null)
        stderr += `[test harness: mesh killed by ${signal}${timedOut ? `, still running after its ${bound} ms bound` : ''}]\n`
      resolvePromise({ code: code ?? (signal === null ? -1 : 128), stdout, stderr })
    })
  })
}

/** `mesh --json ARGS`, parsed; throws with stderr when it fails. */
export interface IORun {
  code: number
  stdout: Buffer
  stderr: string
}

/**
 * Run a program with `input` on stdin (then EOF), collecting stdout as bytes; killed at
 * `timeoutMs` (code 128 then). `onSpawn` gets the child, to signal it while it runs.
 */
export function runIO(
  argv: string[],
  input: Uint8Array,
  timeoutMs = 60_000,
  onSpawn?: (child: ChildProcess) => void,
): Promise<IORun> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
    onSpawn?.(child)
    const out: Buffer[] = []
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d) => (stderr += d))
    child.stdin.on('error', () => {})
    child.stdin.end(input)
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolvePromise({ code: code ?? (signal === null ? -1 : 128), stdout: Buffer.concat(out), stderr })
    })
  })
}

export async function meshJson<T = any>(dataDir: string, args: string[], timeoutMs?: number): Promise<T> {
  const r = await mesh(
    ['--data-dir', dataDir, '--json', ...args],
    timeoutMs === undefined ? {} : { timeoutMs },
  )
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

/**
 * An agent of a test: the benchmarks' launcher (sim/bench/agents.ts) with the tests' environment.
 * Its whole output is kept (`stdout`, `stderr`) for assertions on what it logged.
 */
export class AgentProcess extends MeshAgent {
  constructor(
    readonly dataDir: string,
    readonly args: string[] = [],
  ) {
    super(dataDir, {
      args,
      env: {
        MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'info',
        // the sshds tests tunnel to have their own host keys, never this machine's: publish none
        // unless a test says which (tags then hold only what each test sets)
        MESH_TUNNEL__SSH_HOST_KEYS: join(dataDir, 'no-ssh-host-key.pub'),
        // no mesh0 and no /etc/hosts block on the machine running the tests, also when a file
        // is run alone without .mocharc's setup (test/setup.ts); the netns tests turn it on
        MESH_OVERLAY__INTERFACE: process.env.MESH_OVERLAY__INTERFACE ?? 'false',
      },
    })
  }

  async status(): Promise<any> {
    return meshJson(this.dataDir, ['status'])
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

/** Wait (bounded) until every one of `agents` lists exactly `agents.length` members alive. */
export async function allAlive(agents: AgentProcess[], timeoutMs: number, what?: string): Promise<void> {
  await waitFor(
    what ?? `the ${agents.length} members to see each other alive`,
    async () => {
      for (const a of agents) {
        const rows = await meshJson<any[]>(a.dataDir, ['members'])
        if (rows.filter((r) => r.status === 'alive').length !== agents.length) return false
      }
      return true
    },
    timeoutMs,
    500,
  )
}

/**
 * A cluster of agents named `names` on loopback: the first founds cluster `lab`, the others
 * join it with an invite each, one at a time (concurrent joins to one inviter fail on a loaded
 * machine); resolves once every member sees every other alive (bounded by `aliveMs`).
 * `dirs` gives the data dirs (made by the caller, e.g. with a mount inside); otherwise temp
 * dirs of the fixture.
 */
export async function startCluster(
  fx: Fixture,
  names: string[],
  opts: { env?: NodeJS.ProcessEnv; dirs?: string[]; prefix?: string; aliveMs?: number } = {},
): Promise<AgentProcess[]> {
  const dirs = opts.dirs ?? names.map(() => fx.tempDir(opts.prefix))
  const rc = await mesh(['--data-dir', dirs[0], 'init', '--cluster', 'lab'])
  if (rc.code !== 0) throw new Error(`mesh init exited ${rc.code}: ${rc.stderr}`)
  const agents = [fx.agent(dirs[0], ['--name', names[0]]).start([], opts.env)]
  await agents[0].ready()
  for (let i = 1; i < names.length; i++) {
    const { token } = await meshJson<{ token: string }>(dirs[0], ['invite'])
    const a = fx.agent(dirs[i], ['--name', names[i]]).start(['--join', token], opts.env)
    await a.ready()
    agents.push(a)
  }
  await allAlive(agents, opts.aliveMs ?? 120_000)
  return agents
}

/**
 * A member inside the test process: it joins with an invite like any machine (a certificate
 * from `inviterDir`'s agent) but runs only the libp2p node, so a test can put anything on the
 * wire or look inside gossipsub. Not started; the caller stops it.
 */
export async function inProcessMember(
  dir: string,
  inviterDir: string,
  name: string,
  config: Record<string, unknown> = {},
): Promise<NodeComponent> {
  const token = (await meshJson<{ token: string }>(inviterDir, ['invite'])).token
  const setup = await prepareDataDir(dir, { join: token })
  return new NodeComponent({
    config: ConfigSchema.parse({
      ...config,
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

/**
 * A new cluster's agent (`alpha`) and a started in-process member it has admitted, with no
 * connection left between them: for tests of what a dial to the agent meets. The caller stops
 * the member (also when it is returned and a later step fails) and cleans up `fx`.
 */
export async function agentAndDialer(
  fx: Fixture,
  cluster: string,
  config: Record<string, unknown>,
): Promise<{ agent: AgentProcess; member: NodeComponent; addr: Multiaddr; agentId: PeerId }> {
  const dir = fx.tempDir()
  const init = await mesh(['--data-dir', dir, 'init', '--cluster', cluster])
  if (init.code !== 0) throw new Error(`mesh init failed: ${init.stderr}`)
  const agent = fx.agent(dir, ['--name', 'alpha']).start()
  const status = await agent.ready(30_000)
  const addr = multiaddr((await agent.status()).listen[0])
  const agentId = peerIdFromString(status.peerId as string)
  const member = await inProcessMember(fx.tempDir(), dir, 'm', config)
  await member.start()
  try {
    await waitFor(
      'the in-process member admitted by the agent',
      async () =>
        member.node.services.admission.admitted(
          await member.node.dial(addr, { signal: AbortSignal.timeout(10_000) }),
        ),
      30_000,
    )
    await member.node.hangUp(agentId)
  } catch (err) {
    await member.stop().catch(() => {})
    throw err
  }
  return { agent, member, addr, agentId }
}

// an agent's metrics as values: AgentProcess.metrics() and .metric() (GET /v1/metrics)
export { MetricsSnapshot } from '../../src/kernel/metric-samples.js'

/**
 * A bare libp2p node on 127.0.0.1 (TCP, Noise, yamux): no agent, no keep-alive pings and no
 * connection monitor, for tests of one connection-level rule on its own.
 */
export const bareTcpNode = () =>
  createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionMonitor: { enabled: false },
  })
