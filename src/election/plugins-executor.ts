/**
 * Elections run work through the plugins a member has installed: a request for compute type T
 * is run with `mesh spawn --compute-type T` here when this member wins. Compute types from the
 * `elections.commands` config (CommandExecutor) come first; every other type goes to plugins.
 *
 * Which instance serves which request is kept in `<dataDir>/elections-instances.json`, so a
 * winner that restarts finds the instance it spawned instead of spawning a second one.
 */
import { readFileSync } from 'node:fs'
import { writePrivateFile } from '../kernel/datadir.js'
import type { PluginsComponent } from '../plugins/component.js'
import { assessHere, type CommandExecutor, type Executor, type LocalState } from './executor.js'
import type { Request } from './messages.js'

export class PluginsExecutor implements Executor {
  /** request id -> the instance that served it; read from stateFile at first use */
  private servedMap: Record<string, string> | undefined

  constructor(
    private readonly commands: CommandExecutor,
    private readonly plugins: PluginsComponent,
    private readonly stateFile: string,
    /** a spawned instance joins with an invite, and only admins issue those */
    private readonly canInvite: () => boolean,
  ) {}

  private get served(): Record<string, string> {
    if (this.servedMap === undefined) {
      let saved: Record<string, string> = {}
      try {
        saved = JSON.parse(readFileSync(this.stateFile, 'utf8')) as Record<string, string>
      } catch {}
      this.servedMap = saved
    }
    return this.servedMap
  }

  computeTypes(): string[] {
    return [...new Set([...this.commands.computeTypes(), ...this.plugins.availableComputeTypes()])].sort()
  }

  canRun(request: Request, local: LocalState) {
    if (this.commands.computeTypes().includes(request.computeType))
      return this.commands.canRun(request, local)
    if (this.computeTypes().includes(request.computeType) && !this.canInvite()) {
      return {
        yes: false,
        reasons: ['other' as const],
        score: 0,
        note: 'not an admin: a spawned instance joins with an invite, which only admins issue',
      }
    }
    return assessHere(request, local, this.computeTypes())
  }

  async allocate(request: Request): Promise<{ instance: string }> {
    if (this.commands.computeTypes().includes(request.computeType)) return this.commands.allocate(request)
    const have = this.served[request.id]
    if (have !== undefined && this.plugins.instanceViews().some((i) => i.name === have))
      return { instance: have }
    const r = await this.plugins.spawn({
      computeType: request.computeType,
      ...(request.serverType !== '' ? { serverType: request.serverType } : {}),
    })
    const instance = r.instances[0]?.name
    if (instance === undefined) throw new Error(`spawning a ${request.computeType} instance started nothing`)
    this.served[request.id] = instance
    await this.save()
    return { instance }
  }

  async deallocate(requestId: string): Promise<void> {
    const instance = this.served[requestId]
    if (instance === undefined) return this.commands.deallocate(requestId)
    if (this.plugins.instanceViews().some((i) => i.name === instance)) {
      await this.plugins.destroy(instance, { force: true })
    }
    delete this.served[requestId]
    await this.save()
  }

  private async save(): Promise<void> {
    writePrivateFile(this.stateFile, `${JSON.stringify(this.served, null, 2)}\n`)
  }
}
