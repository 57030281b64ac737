/**
 * What runs the work a member wins. The election component asks an Executor whether it can
 * run a request (its answer becomes the vote), to allocate when elected, and to deallocate
 * when it stands down or the request is cancelled.
 *
 * CommandExecutor is the simplest real one: a compute type is a shell command from config,
 * started as a detached process group on allocate and killed on deallocate. The plugins
 * component plugs in the same way (see PluginsExecutor notes in the README draft).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { cpus, totalmem } from 'node:os'
import type { Request } from './messages.js'
import { type Assessment, assess } from './rule.js'

export interface Executor {
  /** compute types available here, for the member record and the vote */
  computeTypes(): string[]
  /** the vote's content: yes with a score, or no with reasons and a note */
  canRun(
    request: Request,
    local: { name: string; tags: Record<string, string>; maintenance: boolean },
  ): Assessment
  /** start the work; resolves with the instance name once it runs */
  allocate(request: Request): Promise<{ instance: string }>
  /** stop and remove it (idempotent: no-op when nothing runs for the request) */
  deallocate(requestId: string): Promise<void>
}

export class CommandExecutor implements Executor {
  private readonly running = new Map<string, { instance: string; child: ChildProcess }>()

  constructor(private readonly commands: Record<string, string>) {}

  computeTypes(): string[] {
    return Object.keys(this.commands).sort()
  }

  canRun(request: Request, local: { name: string; tags: Record<string, string>; maintenance: boolean }) {
    const total = { cpus: cpus().length, memoryBytes: totalmem(), diskBytes: 0 }
    return assess(request, {
      name: local.name,
      tags: local.tags,
      computeTypes: this.computeTypes(),
      maintenance: local.maintenance,
      free: { ...total, diskBytes: Number.MAX_SAFE_INTEGER },
      total,
    })
  }

  async allocate(request: Request): Promise<{ instance: string }> {
    const have = this.running.get(request.id)
    if (have !== undefined) return { instance: have.instance }
    const cmd = this.commands[request.computeType]
    if (cmd === undefined) throw new Error(`compute type ${request.computeType} not available here`)
    const instance = `${request.computeType}-${request.id.slice(0, 8)}`
    const child = spawn('/bin/sh', ['-c', cmd], {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, MESH_REQUEST_ID: request.id, MESH_INSTANCE: instance },
    })
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve)
      child.once('error', reject)
    })
    child.unref()
    this.running.set(request.id, { instance, child })
    return { instance }
  }

  async deallocate(requestId: string): Promise<void> {
    const r = this.running.get(requestId)
    if (r === undefined) return
    this.running.delete(requestId)
    if (r.child.exitCode !== null || r.child.pid === undefined) return
    const gone = new Promise<void>((resolve) => r.child.once('exit', () => resolve()))
    try {
      process.kill(-r.child.pid, 'SIGTERM')
    } catch {
      return
    }
    const t = setTimeout(() => {
      try {
        process.kill(-(r.child.pid as number), 'SIGKILL')
      } catch {}
    }, 3000)
    await gone
    clearTimeout(t)
  }

  /** stop everything (agent shutdown) */
  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((id) => this.deallocate(id)))
  }
}
