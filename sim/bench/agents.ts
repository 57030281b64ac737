// Real agent processes for the benchmarks that need many (sim-vs-real, fleet): start with a
// join token, wait for the control API, read the member table and the agent's own counters,
// record its cluster_change events (stamped by the agent's clock), kill -9.
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { ApiClient } from '../../src/api/client.js'
import type { MemberView } from '../../src/api/routes-members.js'
import type { MeshEvent } from '../../src/kernel/events.js'
import { CLI, fetchMetrics, metric, sleep } from './report.js'

/** every agent process started here, so that a failed or interrupted run kills them all */
export const children = new Set<ChildProcess>()

export class BenchAgent {
  child: ChildProcess | undefined
  peerId = ''
  out = ''
  readonly changes: Array<{ time: number; peerId: string; after: string; incarnation: number }> = []
  private ctl: AbortController | undefined

  constructor(
    readonly name: string,
    readonly dir: string,
  ) {}

  get api(): ApiClient {
    return new ApiClient(join(this.dir, 'mesh.sock'), this.dir)
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  start(extra: string[] = [], env: NodeJS.ProcessEnv = {}): void {
    const child = spawn(
      process.execPath,
      [
        CLI,
        '--data-dir',
        this.dir,
        'agent',
        '--listen',
        '/ip4/127.0.0.1/tcp/0',
        '--name',
        this.name,
        ...extra,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, MESH_LOG_LEVEL: 'warn', ...env },
      },
    )
    const keep = (d: Buffer) => {
      this.out = (this.out + d.toString()).slice(-3000)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    children.add(child)
    child.once('exit', () => children.delete(child))
    this.child = child
  }

  async ready(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`agent ${this.name} exited: ${this.out.trim()}`)
      try {
        this.peerId = (await this.api.call<{ peerId: string }>('GET', '/v1/status', undefined, 5_000)).peerId
        return
      } catch {
        await sleep(100)
      }
    }
    throw new Error(`agent ${this.name} did not answer within ${timeoutMs} ms: ${this.out.trim()}`)
  }

  async members(): Promise<MemberView[]> {
    return (await this.api.call<{ members: MemberView[] }>('GET', '/v1/members', undefined, 10_000)).members
  }

  /** Membership gossip bytes received so far (the agent's own counter). */
  async gossipIn(): Promise<number> {
    const text = await fetchMetrics(join(this.dir, 'mesh.sock'))
    return metric(text, 'mesh_membership_bytes_total', { channel: 'gossip', direction: 'in' })
  }

  /** Membership bytes sent so far, every channel (probe, gossip, sync payloads). */
  async bytesOut(): Promise<number> {
    const text = await fetchMetrics(join(this.dir, 'mesh.sock'))
    return metric(text, 'mesh_membership_bytes_total', { direction: 'out' })
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
    const c = this.child
    if (c === undefined || !this.running) return
    const exited = new Promise<void>((r) => c.once('exit', () => r()))
    c.kill('SIGKILL')
    await exited
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
