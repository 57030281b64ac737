/**
 * What runs the work a member wins. The election component asks an Executor whether it can
 * run a request (its answer becomes the vote), to allocate when elected, and to deallocate
 * when it stands down or the request is cancelled.
 *
 * CommandExecutor is the simplest real one: a compute type is a shell command from config,
 * started as a detached process group on allocate and killed on deallocate. The plugins
 * component plugs in the same way (see PluginsExecutor notes in the README draft).
 */
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { processAlive, processStart } from '../kernel/pid.js'
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

export interface LocalState {
  name: string
  tags: Record<string, string>
  maintenance: boolean
}

/** The default vote on this machine: its compute types, its totals as free capacity (no accounting yet). */
export function assessHere(request: Request, local: LocalState, computeTypes: string[]): Assessment {
  const total = { cpus: cpus().length, memoryBytes: totalmem(), diskBytes: 0 }
  return assess(request, {
    name: local.name,
    tags: local.tags,
    computeTypes,
    maintenance: local.maintenance,
    free: { ...total, diskBytes: Number.MAX_SAFE_INTEGER },
    total,
  })
}

/** what allocate started: `start` is undefined in files written before it was recorded */
interface Started {
  instance: string
  pid: number
  start?: string
}

export class CommandExecutor implements Executor {
  /**
   * request id -> instance and process group (with the leader's start time: a pid alone may be
   * another process's by now, and deallocate signals the whole group); also in
   * `<stateDir>/<id>.json`, so a restarted agent adopts what it started
   */
  private readonly running = new Map<string, Started>()

  constructor(
    private readonly commands: Record<string, string>,
    private readonly stateDir?: string,
  ) {}

  computeTypes(): string[] {
    return Object.keys(this.commands).sort()
  }

  canRun(request: Request, local: LocalState) {
    return assessHere(request, local, this.computeTypes())
  }

  private file(id: string): string | undefined {
    return this.stateDir === undefined ? undefined : join(this.stateDir, `${id}.json`)
  }

  /** What we started for the request, in this process or before a restart, if it still runs. */
  private find(id: string): Started | undefined {
    let r = this.running.get(id)
    const f = this.file(id)
    if (r === undefined && f !== undefined) {
      try {
        r = JSON.parse(readFileSync(f, 'utf8')) as Started
      } catch {}
    }
    if (r === undefined || !processAlive(r.pid, r.start)) return undefined
    this.running.set(id, r)
    return r
  }

  async allocate(request: Request): Promise<{ instance: string }> {
    const have = this.find(request.id)
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
    const pid = child.pid as number
    const r: Started = { instance, pid, start: processStart(pid) }
    this.running.set(request.id, r)
    const f = this.file(request.id)
    if (f !== undefined && this.stateDir !== undefined) {
      mkdirSync(this.stateDir, { recursive: true })
      writeFileSync(f, JSON.stringify(r))
    }
    return { instance }
  }

  async deallocate(requestId: string): Promise<void> {
    const r = this.find(requestId)
    this.running.delete(requestId)
    const f = this.file(requestId)
    if (f !== undefined) rmSync(f, { force: true })
    if (r === undefined) return
    try {
      process.kill(-r.pid, 'SIGTERM')
    } catch {
      return
    }
    // bounded: 3 s for SIGTERM, then SIGKILL
    const running = () => processAlive(r.pid, r.start)
    for (let i = 0; i < 30 && running(); i++) await new Promise((res) => setTimeout(res, 100))
    try {
      if (running()) process.kill(-r.pid, 'SIGKILL')
    } catch {}
  }
}
