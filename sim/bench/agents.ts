// Real agent processes for tests and benchmarks: MeshAgent is the one launcher (the test
// harness's AgentProcess and every benchmark's agent build on it); BenchAgent adds what the
// benchmarks with many agents (sim-vs-real, fleet) read: the member table, the agent's own
// counters and its cluster_change events (stamped by the agent's clock).
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { ApiClient } from '../../src/api/client.js'
import type { MetricsView } from '../../src/api/contract.js'
import type { MemberView } from '../../src/api/routes-members.js'
import type { MeshEvent } from '../../src/kernel/events.js'
import { MetricsSnapshot } from '../../src/kernel/metric-samples.js'
import { CLI, sleep, stopProcess } from './report.js'

/** every agent process started here, so that a failed or interrupted run kills them all */
export const children = new Set<ChildProcess>()

export interface AgentOptions {
  /** `--name` */
  name?: string
  /** agent flags after `--listen /ip4/127.0.0.1/tcp/0` (always given: tests and benches stay on loopback) */
  args?: string[]
  /** environment over process.env */
  env?: NodeJS.ProcessEnv
  /** flags for node itself, before the CLI */
  nodeArgs?: string[]
  /** characters of output kept (the tail), for a failure report; all of it by default */
  keep?: number
}

/**
 * The one launcher of agent processes for tests and benchmarks: `mesh --data-dir DIR agent`
 * on loopback with a data dir, arguments and environment; ready() waits for the control
 * socket; stop() is SIGTERM then SIGKILL; kill() a signal; the output is kept for a failure
 * report (stdout, stderr and both interleaved in `out`).
 */
export class MeshAgent {
  child: ChildProcess | undefined
  stdout = ''
  stderr = ''
  /** stdout and stderr as they came */
  out = ''
  exitCode: number | null = null
  peerId = ''
  private exited: Promise<void> = Promise.resolve()

  constructor(
    readonly dir: string,
    readonly opts: AgentOptions = {},
  ) {}

  get label(): string {
    return this.opts.name ?? this.dir
  }

  get api(): ApiClient {
    return new ApiClient(join(this.dir, 'mesh.sock'), this.dir)
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  start(extra: string[] = [], env: NodeJS.ProcessEnv = {}): this {
    this.stdout = ''
    this.stderr = ''
    this.out = ''
    this.exitCode = null
    const o = this.opts
    const child = spawn(
      process.execPath,
      [
        ...(o.nodeArgs ?? []),
        CLI,
        '--data-dir',
        this.dir,
        'agent',
        '--listen',
        '/ip4/127.0.0.1/tcp/0',
        ...(o.name === undefined ? [] : ['--name', o.name]),
        ...(o.args ?? []),
        ...extra,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        // no mesh0 unless asked (bench:overlay, the overlay tests): run as root, an agent on this
        // machine would create the device and write this machine's /etc/hosts, and a kill -9
        // leaves its NAME.mesh block there until the next agent with an interface writes
        env: { MESH_OVERLAY__INTERFACE: 'false', ...process.env, ...o.env, ...env },
      },
    )
    const keep = o.keep ?? Number.POSITIVE_INFINITY
    const tail = (s: string) => (s.length > keep ? s.slice(-keep) : s)
    child.stdout?.on('data', (d: Buffer) => {
      this.stdout = tail(this.stdout + d)
      this.out = tail(this.out + d)
    })
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr = tail(this.stderr + d)
      this.out = tail(this.out + d)
    })
    children.add(child)
    this.exited = new Promise((r) =>
      child.once('exit', (code, signal) => {
        children.delete(child)
        this.exitCode = code ?? (signal === null ? -1 : 128)
        r()
      }),
    )
    this.child = child
    return this
  }

  /**
   * Wait until the control API answers; returns its status (what `mesh --json status` prints).
   * Start-up is CPU-bound: at load 30 on 2 cores a restarted agent got about 1 s of CPU in
   * 20 s, so the default bound is a minute.
   */
  async ready<S extends { peerId: string } = any>(timeoutMs = 60_000, everyMs = 200): Promise<S> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`agent ${this.label} exited with ${this.exitCode}: ${this.tail()}`)
      try {
        const s = await this.api.call<S>('GET', '/v1/status', undefined, 5_000)
        this.peerId = s.peerId
        return s
      } catch {
        await sleep(everyMs)
      }
    }
    throw new Error(`agent ${this.label} did not answer within ${timeoutMs} ms: ${this.tail()}`)
  }

  /** The agent's metrics as values, through the control API (GET /v1/metrics). */
  async metrics(): Promise<MetricsSnapshot> {
    return new MetricsSnapshot(
      (await this.api.call<MetricsView>('GET', '/v1/metrics', undefined, 10_000)).samples,
    )
  }

  /** The sum of a metric's samples whose labels include `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return (await this.metrics()).get(name, labels)
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.child !== undefined) await stopProcess(this.child, graceMs)
    await this.exited
  }

  /** Send `signal` (kill -9 by default) and wait for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child !== undefined && this.running) {
      this.child.kill(signal)
      await this.exited
    }
  }

  waitExit(): Promise<void> {
    return this.exited
  }

  /** the end of what the agent printed, for an error message */
  tail(chars = 3000): string {
    return this.out.trim().slice(-chars)
  }
}

export class BenchAgent extends MeshAgent {
  readonly changes: Array<{ time: number; peerId: string; after: string; incarnation: number }> = []
  private ctl: AbortController | undefined

  constructor(
    readonly name: string,
    dir: string,
  ) {
    // MESH_BENCH_LOG_LEVEL (e.g. debug) keeps the agent's whole log at that level
    const level = process.env.MESH_BENCH_LOG_LEVEL
    super(dir, {
      name,
      env: { MESH_LOG_LEVEL: level ?? 'warn' },
      keep: level === undefined ? 3000 : undefined,
    })
  }

  async members(): Promise<MemberView[]> {
    return (await this.api.call<{ members: MemberView[] }>('GET', '/v1/members', undefined, 10_000)).members
  }

  /** Membership gossip bytes received so far (the agent's own counter). */
  async gossipIn(): Promise<number> {
    return this.metric('mesh_membership_bytes_total', { channel: 'gossip', direction: 'in' })
  }

  /** Record cluster_change events (the agent stamps them with its clock, the same machine's). */
  listen(): void {
    this.ctl?.abort()
    this.ctl = new AbortController()
    void this.api
      .events((e) => {
        const ev = e as MeshEvent
        if (ev.type === 'cluster_change') {
          const d = ev.data as { peerId: string; after: string; incarnation: number }
          this.changes.push({ time: ev.time, peerId: d.peerId, after: d.after, incarnation: d.incarnation })
        }
      }, this.ctl.signal)
      .catch(() => {})
  }

  first(peerId: string, after: string, since: number, minInc = -1): number | undefined {
    return this.firstChange(peerId, after, since, minInc)?.time
  }

  firstChange(peerId: string, after: string, since: number, minInc = -1) {
    return this.changes.find(
      (c) => c.peerId === peerId && c.after === after && c.time >= since && c.incarnation >= minInc,
    )
  }

  async kill9(): Promise<void> {
    this.ctl?.abort()
    await this.kill('SIGKILL')
  }
}

/** Every agent lists `n` members alive. */
export async function allAlive(agents: BenchAgent[], n: number): Promise<boolean> {
  const views = await Promise.all(agents.map((a) => a.members()))
  return views.every((v) => v.filter((m) => m.status === 'alive').length === n)
}

/** Kill every agent when the benchmark is interrupted or fails, then exit. */
export function killAgentsOnExit(name: string): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const c of children) c.kill('SIGKILL')
      process.stderr.write(`${name}: ${sig}, killed every agent\n`)
      process.exit(130)
    })
  }
}

/** Membership bytes sent, from an agent's metrics: probe, gossip and sync payloads. */
export function membershipBytesOut(m: MetricsSnapshot): number {
  // not the `piggyback` channel: those bytes ride inside probes and count there already
  const out = (channel: string) => m.get('mesh_membership_bytes_total', { channel, direction: 'out' })
  return out('probe') + out('gossip') + out('sync')
}
