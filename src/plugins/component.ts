import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Component, Lifecycle } from '../kernel/component.js'
import { dataPaths, writePrivateFile } from '../kernel/datadir.js'
import { MeshError } from '../kernel/errors.js'
import type { EventBus, MeshEvent } from '../kernel/events.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import type { MembershipComponent } from '../membership/service.js'
import { PluginError } from './plugin-error.js'
import { type Plugin, Registry } from './registry.js'
import { describeResult, type RunResult, runCommand, tail } from './runner.js'
import type { ComputeTypeDef, HookEvent, Manifest } from './schema.js'

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))
const DEFAULT_TIMEOUT_S = 300
const AVAILABLE_TIMEOUT_MS = 15_000
const HOOK_QUEUE_MAX = 64

/** A spawned (or slaved) instance, as recorded in `<dataDir>/instances.json`. */
export interface InstanceRecord {
  name: string
  computeType: string
  plugin: string
  serverType?: string
  host?: string
  port?: number
  peerId?: string
  overlay?: string
  status: 'starting' | 'running' | 'failed'
  createdAt: number
  /** extra env the instance was started with (the slave path: host, port, user) */
  env?: Record<string, string>
}

export interface SpawnOptions {
  computeType: string
  serverType?: string
  /** how many instances (default 1), started one after the other */
  count?: number
  /** false: skip the server type's bootstrap */
  provision?: boolean
  /** false: skip after_start_instance, after_slave and after_join hooks */
  afterHooks?: boolean
  /** how long to wait for the new member to be alive (default 180 s) */
  joinTimeoutMs?: number
  /** extra environment for the plugin commands (MESH_SLAVE_HOST ... for the ssh type) */
  env?: Record<string, string>
  /** fire after_slave as well (the `mesh slave` path) */
  slave?: boolean
}

export interface SpawnedInstance {
  name: string
  computeType: string
  serverType?: string
  peerId?: string
  overlay?: string
  host?: string
  port?: number
  ms: number
}

export interface PluginView {
  name: string
  builtin: boolean
  dir: string
  source?: string
  commit?: string
  ref?: string
  installedAt?: number
  description?: string
  computeTypes: Array<{ name: string; available: boolean; reason?: string }>
  serverTypes: string[]
  hooks: Array<{ event: string; count: number }>
}

/**
 * The plugins component: the registry of plugins (built-in and installed from git), the
 * compute types offered here, spawned instances, and hooks.
 *
 * Internal API (the elections engine calls these; everything else goes through the local
 * control API, so a plugin is only ever installed or run on the local admin's command):
 *   availableComputeTypes(): string[]            compute types whose `available` succeeded here
 *                                                (empty until the first check ends: await ready())
 *   ready(): Promise<void>                       the `available` checks under way have finished
 *   spawn(opts: SpawnOptions): Promise<{ instances: SpawnedInstance[] }>
 *                                                start, provision, hooks, wait until alive; throws
 *                                                MeshError/PluginError with what went wrong, after
 *                                                cleaning up what it started
 *   destroy(name: string): Promise<{ name, removed }>  clean_up_instance + forget the record
 */
export class PluginsComponent implements Component {
  readonly name = 'plugins'
  readonly lifecycle = new Lifecycle()
  readonly registry: Registry
  private plugins: Plugin[] = []
  private loadErrors: string[] = []
  private checking: Promise<unknown> = Promise.resolve()
  private readonly avail = new Map<string, { ok: boolean; reason?: string }>()
  private readonly instancesFile: string
  private hookQueue: MeshEvent[] = []
  private hookRunning = false
  private stopping = new AbortController()
  private readonly metrics

  constructor(
    private readonly deps: {
      dataDir: string
      membership: MembershipComponent
      events: EventBus
      reporter: ComponentReporter
      /** a fresh single-use join token (the same as `mesh invite`), and who redeemed it */
      makeInvite: (ttlMs: number) => { token: string; redeemedBy: () => string | undefined }
      clusterName: string
      builtinDir?: string
      /** the addresses a join token carries (what a new instance dials) */
      reachableAddrs?: () => string[]
    },
  ) {
    this.registry = new Registry(deps.dataDir, deps.builtinDir)
    this.instancesFile = dataPaths(deps.dataDir).pluginInstances
    const r = deps.reporter
    this.metrics = {
      commands: r.counter('commands_total', 'plugin commands run, by kind and result', ['kind', 'result']),
      spawns: r.counter('spawns_total', 'instances spawned, by compute type and result', ['type', 'result']),
    }
    // a plugin that does not load is reported (mesh plugins) but does not make the agent unhealthy
    r.health(() => ({
      ok: true,
      detail: `${this.plugins.length} plugins${this.loadErrors.length > 0 ? `, ${this.loadErrors.length} not loaded` : ''}`,
    }))
  }

  async start(): Promise<void> {
    await this.reload()
    for (const e of this.loadErrors) this.deps.reporter.log.warn({ err: e }, 'plugin not loaded')
    // checked in the background: a slow `available` (docker info on a busy host) must not delay
    // the agent; `mesh plugins` and spawn wait for it (bounded by the check's own timeout)
    this.checking = this.checkAvailable().catch((err) =>
      this.deps.reporter.log.warn({ err: (err as Error).message }, 'checking compute types failed'),
    )
    this.lifecycle.add(
      this.deps.events.subscribe((e) => {
        if (e.type !== 'cluster_change' || !this.hasHooks('cluster_change')) return
        if (this.hookQueue.length >= HOOK_QUEUE_MAX) this.hookQueue.shift()
        this.hookQueue.push(e)
        void this.drainHooks()
      }),
    )
  }

  async stop(): Promise<void> {
    this.stopping.abort()
  }

  // ---- the registry ------------------------------------------------------------------------

  private async reload(): Promise<void> {
    const { plugins, errors } = await this.registry.load()
    this.plugins = plugins
    this.loadErrors = errors
  }

  /** Compute types whose `available` command succeeded at start (or the last install). */
  availableComputeTypes(): string[] {
    return [...this.avail.entries()].filter(([, v]) => v.ok).map(([k]) => k)
  }

  /** Record a check's outcome; a change also changes the compute types in our member record. */
  private setAvailable(name: string, ok: boolean, r: RunResult): void {
    const before = this.avail.get(name)?.ok
    this.avail.set(name, {
      ok,
      reason: ok ? undefined : `available ${describeResult(r, AVAILABLE_TIMEOUT_MS)}`,
    })
    if (before !== ok) this.deps.membership.setComputeTypes(this.availableComputeTypes())
  }

  private async checkAvailable(): Promise<void> {
    this.avail.clear()
    await Promise.all(
      this.computeTypes().map(async ({ name, def, plugin }) => {
        const r = await this.run('available', def.available, plugin, {}, AVAILABLE_TIMEOUT_MS)
        this.avail.set(name, {
          ok: r.code === 0 && !r.timedOut,
          reason: r.code === 0 ? undefined : `available ${describeResult(r, AVAILABLE_TIMEOUT_MS)}`,
        })
      }),
    )
    this.deps.membership.setComputeTypes(this.availableComputeTypes())
  }

  private computeTypes(): Array<{ name: string; def: ComputeTypeDef; plugin: Plugin }> {
    return this.plugins.flatMap((p) =>
      Object.entries(p.manifest.compute_types).map(([name, def]) => ({ name, def, plugin: p })),
    )
  }

  /** A new or updated plugin must not take a type name another plugin already has. */
  private readonly taken = (m: Manifest, name: string): string | undefined => {
    for (const p of this.plugins) {
      if (p.name === name) continue
      for (const t of Object.keys(m.compute_types))
        if (t in p.manifest.compute_types)
          return `compute type '${t}' is already provided by plugin '${p.name}'; rename it in the plugin's mesh.json`
      for (const t of Object.keys(m.server_types))
        if (t in p.manifest.server_types)
          return `server type '${t}' is already provided by plugin '${p.name}'; rename it in the plugin's mesh.json`
    }
    return undefined
  }

  /** Resolves once the compute types' `available` checks that are under way have finished. */
  async ready(): Promise<void> {
    await this.checking
  }

  /**
   * Run the `available` checks again (`mesh plugins`): an image built or a daemon started since
   * the last check shows, and the member record's compute types follow.
   */
  async recheck(): Promise<void> {
    await this.checking
    this.checking = this.checkAvailable().catch((err) =>
      this.deps.reporter.log.warn({ err: (err as Error).message }, 'checking compute types failed'),
    )
    await this.checking
  }

  list(): { plugins: PluginView[]; errors: string[] } {
    return {
      errors: this.loadErrors,
      plugins: this.plugins.map((p) => ({
        name: p.name,
        builtin: p.builtin,
        dir: p.dir,
        source: p.record?.source ?? (p.builtin ? 'built-in' : undefined),
        commit: p.record?.commit,
        ref: p.record?.ref,
        installedAt: p.record?.installedAt,
        description: p.manifest.description,
        computeTypes: Object.keys(p.manifest.compute_types).map((t) => ({
          name: t,
          available: this.avail.get(t)?.ok ?? false,
          reason: this.avail.get(t)?.reason,
        })),
        serverTypes: Object.keys(p.manifest.server_types),
        hooks: Object.entries(p.manifest.hooks)
          .filter(([, hs]) => (hs?.length ?? 0) > 0)
          .map(([event, hs]) => ({ event, count: hs?.length ?? 0 })),
      })),
    }
  }

  async install(source: string, ref?: string, name?: string) {
    const { record } = await this.registry.install(source, { ref, name, taken: this.taken })
    await this.reload()
    await this.checkAvailable()
    this.deps.reporter.log.info({ plugin: record.name, source, commit: record.commit }, 'plugin installed')
    return { plugin: this.list().plugins.find((p) => p.name === record.name), record }
  }

  async update(name: string, ref?: string) {
    const res = await this.registry.update(name, { ref, taken: this.taken })
    await this.reload()
    await this.checkAvailable()
    this.deps.reporter.log.info({ plugin: name, from: res.from, to: res.to }, 'plugin updated')
    return res
  }

  async uninstall(name: string) {
    const rec = this.registry.uninstall(name)
    await this.reload()
    await this.checkAvailable()
    this.deps.reporter.log.info({ plugin: name }, 'plugin uninstalled')
    return rec
  }

  // ---- running commands --------------------------------------------------------------------

  private baseEnv(plugin: Plugin): Record<string, string> {
    return {
      MESH_PLUGIN_DIR: plugin.dir,
      MESH_PLUGIN_NAME: plugin.name,
      MESH_DATA_DIR: this.deps.dataDir,
      MESH_CLI: CLI,
      MESH_NODE: process.execPath,
      MESH_CLUSTER: this.deps.clusterName,
      MESH_SELF: this.deps.membership.selfPeerId,
      MESH_MEMBERS: JSON.stringify(this.members()),
      MESH_SSH_PUBKEY: sshPublicKey() ?? '',
      MESH_SSH_IDENTITY: sshIdentity() ?? '',
    }
  }

  private members() {
    return this.deps.membership
      .rows()
      .map((r) => ({
        name: r.entry.signed.info.name,
        peerId: r.peerId,
        overlay: r.entry.signed.info.overlay,
        status: r.status,
        computeTypes: r.entry.signed.info.computeTypes,
      }))
      .slice(0, 2000)
  }

  private async run(
    kind: string,
    command: string,
    plugin: Plugin,
    env: Record<string, string>,
    timeoutMs: number,
    stdin?: string,
  ): Promise<RunResult> {
    const r = await runCommand(command, {
      cwd: plugin.dir,
      env: { ...this.baseEnv(plugin), ...env },
      timeoutMs,
      stdin,
      signal: this.stopping.signal,
    })
    const ok = r.code === 0 && !r.timedOut
    this.metrics.commands.inc({ kind, result: r.timedOut ? 'timeout' : ok ? 'ok' : 'error' })
    const level = ok || kind === 'available' || kind === 'detect_stale_instance' ? 'debug' : 'warn'
    this.deps.reporter.log[level](
      {
        plugin: plugin.name,
        kind,
        code: r.code,
        signal: r.signal,
        timedOut: r.timedOut,
        ms: Math.round(r.ms),
        stdout: r.stdout.slice(-4096),
        stderr: r.stderr.slice(-4096),
      },
      'plugin command',
    )
    return r
  }

  private async must(
    kind: string,
    command: string,
    plugin: Plugin,
    env: Record<string, string>,
    timeoutMs: number,
    stdin?: string,
  ): Promise<RunResult> {
    const r = await this.run(kind, command, plugin, env, timeoutMs, stdin)
    if (r.code !== 0 || r.timedOut)
      throw new PluginError(
        `${kind} of plugin '${plugin.name}' ${describeResult(r, timeoutMs)}${tail(r)}\n  (full output in the agent's log)`,
      )
    return r
  }

  private hooks(
    event: HookEvent,
  ): Array<{ plugin: Plugin; hook: NonNullable<Manifest['hooks'][HookEvent]>[number] }> {
    return this.plugins.flatMap((p) => (p.manifest.hooks[event] ?? []).map((hook) => ({ plugin: p, hook })))
  }

  private hasHooks(event: HookEvent): boolean {
    return this.hooks(event).length > 0
  }

  /** Run every hook for `event`; a failing hook is logged, never fatal. Returns what ran. */
  async fireHooks(
    event: HookEvent,
    env: Record<string, string>,
  ): Promise<Array<{ plugin: string; ran: boolean; ok: boolean }>> {
    const out: Array<{ plugin: string; ran: boolean; ok: boolean }> = []
    for (const { plugin, hook } of this.hooks(event)) {
      const t = (hook.timeout_s ?? 60) * 1000
      const e = { ...env, MESH_EVENT: event }
      if (hook.predicate !== undefined) {
        const p = await this.run(`${event}.predicate`, hook.predicate, plugin, e, t)
        if (p.code !== 0 || p.timedOut) {
          out.push({ plugin: plugin.name, ran: false, ok: true })
          continue
        }
      }
      const r = await this.run(event, hook.command, plugin, e, t)
      out.push({ plugin: plugin.name, ran: true, ok: r.code === 0 && !r.timedOut })
    }
    return out
  }

  private async drainHooks(): Promise<void> {
    if (this.hookRunning) return
    this.hookRunning = true
    try {
      for (let i = 0; i < 10_000 && this.hookQueue.length > 0 && !this.stopping.signal.aborted; i++) {
        const e = this.hookQueue.shift()!
        await this.fireHooks('cluster_change', { MESH_EVENT_DATA: JSON.stringify(e.data) })
      }
    } finally {
      this.hookRunning = false
    }
  }

  // ---- instances ---------------------------------------------------------------------------

  instances(): InstanceRecord[] {
    try {
      return JSON.parse(readFileSync(this.instancesFile, 'utf8')) as InstanceRecord[]
    } catch {
      return []
    }
  }

  private saveInstance(rec: InstanceRecord | { name: string; remove: true }): void {
    const all = this.instances().filter((i) => i.name !== rec.name)
    if (!('remove' in rec)) all.push(rec)
    writePrivateFile(this.instancesFile, `${JSON.stringify(all, null, 2)}\n`)
  }

  private findComputeType(type: string): { def: ComputeTypeDef; plugin: Plugin } {
    const ct = this.computeTypes().find((c) => c.name === type)
    if (ct === undefined) {
      const all = this.computeTypes().map((c) => c.name)
      throw new MeshError(
        'not-found',
        `no compute type '${type}'${all.length > 0 ? ` (known: ${all.join(', ')})` : ''}; install a plugin that provides it with 'mesh install'`,
      )
    }
    return ct
  }

  private instanceEnv(rec: InstanceRecord, extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...(rec.env ?? {}),
      ...extra,
      MESH_INSTANCE_ID: rec.name,
      MESH_COMPUTE_TYPE: rec.computeType,
      MESH_INSTANCE_DIR: join(dataPaths(this.deps.dataDir).instancesDir, rec.name),
      ...(rec.host !== undefined ? { MESH_INSTANCE_HOST: rec.host } : {}),
      ...(rec.port !== undefined ? { MESH_INSTANCE_PORT: String(rec.port) } : {}),
      ...(rec.serverType !== undefined ? { MESH_SERVER_TYPE: rec.serverType } : {}),
    }
  }

  async spawn(opts: SpawnOptions): Promise<{ instances: SpawnedInstance[] }> {
    await this.ready()
    const count = opts.count ?? 1
    if (!Number.isInteger(count) || count < 1 || count > 64)
      throw new MeshError('bad-request', 'count must be a whole number from 1 to 64')
    const { def, plugin } = this.findComputeType(opts.computeType)
    let server: { plugin: Plugin; bootstrap: string; source?: string; timeoutMs: number } | undefined
    if (opts.serverType !== undefined) {
      const p = this.plugins.find((x) => opts.serverType! in x.manifest.server_types)
      if (p === undefined) {
        const all = this.plugins.flatMap((x) => Object.keys(x.manifest.server_types))
        throw new MeshError(
          'not-found',
          `no server type '${opts.serverType}'${all.length > 0 ? ` (known: ${all.join(', ')})` : ''}; install a plugin that provides it with 'mesh install'`,
        )
      }
      const st = p.manifest.server_types[opts.serverType]
      server = {
        plugin: p,
        bootstrap: st.bootstrap,
        source: st.source,
        timeoutMs: (st.timeout_s ?? DEFAULT_TIMEOUT_S) * 1000,
      }
    }
    // a container reaches the agent over the docker bridge, never over our loopback: say so now,
    // not after the join timeout
    const addrs = this.deps.reachableAddrs?.()
    if (
      plugin.name === 'docker' &&
      addrs !== undefined &&
      addrs.every((a) => /^\/ip4\/127\.|^\/ip6\/::1\//.test(a))
    )
      throw new MeshError(
        'conflict',
        `a container cannot reach this agent: it listens on loopback only (${addrs.join(' ') || 'no address'}). ` +
          `Restart it listening where containers can reach it: --listen /ip4/0.0.0.0/tcp/4701, or the docker bridge address (${dockerBridge()}).`,
      )
    // availability is checked again now: the machine may have changed since the agent started,
    // and what this check finds is what `mesh plugins` and our member record say from now on
    const av = await this.run('available', def.available, plugin, opts.env ?? {}, AVAILABLE_TIMEOUT_MS)
    this.setAvailable(opts.computeType, av.code === 0 && !av.timedOut, av)
    if (av.code !== 0 || av.timedOut) {
      throw new MeshError(
        'conflict',
        `compute type '${opts.computeType}' is not available on this machine: its check (${def.available}) ${describeResult(av, AVAILABLE_TIMEOUT_MS)}${tail(av, 3)}\n  Fix that (see 'mesh plugins'), or spawn from a member that offers it.`,
      )
    }
    const out: SpawnedInstance[] = []
    for (let i = 0; i < count; i++) out.push(await this.spawnOne(opts, def, plugin, server))
    return { instances: out }
  }

  private async spawnOne(
    opts: SpawnOptions,
    def: ComputeTypeDef,
    plugin: Plugin,
    server: { plugin: Plugin; bootstrap: string; source?: string; timeoutMs: number } | undefined,
  ): Promise<SpawnedInstance> {
    const t0 = Date.now()
    const timeoutMs = (def.timeout_s ?? DEFAULT_TIMEOUT_S) * 1000
    const rec: InstanceRecord = {
      name: `${opts.computeType}-${randomBytes(3).toString('hex')}`.slice(0, 63),
      computeType: opts.computeType,
      plugin: plugin.name,
      serverType: opts.serverType,
      status: 'starting',
      createdAt: t0,
      env: opts.env,
    }
    this.saveInstance(rec)
    const log = this.deps.reporter.log.child({ instance: rec.name })
    log.info({ computeType: rec.computeType, serverType: rec.serverType }, 'spawning an instance')
    try {
      const { token, redeemedBy } = this.deps.makeInvite(Math.max(timeoutMs, 600_000))
      await this.must(
        'start_instance',
        def.start_instance,
        plugin,
        this.instanceEnv(rec, { MESH_JOIN_TOKEN: token }),
        timeoutMs,
      )
      if (def.get_hostname !== undefined) {
        const h = await this.must('get_hostname', def.get_hostname, plugin, this.instanceEnv(rec), 60_000)
        rec.host = h.stdout.trim().split('\n').pop()?.trim() || undefined
        if (def.get_port !== undefined) {
          const p = await this.must('get_port', def.get_port, plugin, this.instanceEnv(rec), 60_000)
          const port = Number(p.stdout.trim().split('\n').pop())
          if (!Number.isInteger(port) || port < 1 || port > 65535)
            throw new PluginError(
              `get_port of plugin '${plugin.name}' printed '${p.stdout.trim()}', not a TCP port`,
            )
          rec.port = port
        } else rec.port = 22
      }
      this.saveInstance(rec)
      if (opts.afterHooks !== false) await this.fireHooks('after_start_instance', this.instanceEnv(rec))
      // the instance joins by itself; provisioning waits for that (sshd is up by then too)
      const member = await this.waitAlive(rec.name, redeemedBy, opts.joinTimeoutMs ?? 180_000)
      rec.peerId = member.peerId
      rec.overlay = member.overlay
      this.saveInstance(rec)
      if (server !== undefined && opts.provision !== false) {
        const env = this.instanceEnv(
          rec,
          server.source !== undefined ? { MESH_SERVER_SOURCE: server.source } : {},
        )
        if (rec.host !== undefined) {
          // on the instance, over SSH: the script goes on stdin, the environment as a prefix
          const exports = Object.entries(env)
            .filter(([k]) => k !== 'MESH_JOIN_TOKEN')
            .map(([k, v]) => `${k}=${shellQuote(v)}; export ${k}`)
            .join('\n')
          await this.must(
            'bootstrap',
            `exec ssh \${MESH_SSH_IDENTITY:+-i "$MESH_SSH_IDENTITY"} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=15 -p "$MESH_INSTANCE_PORT" "\${MESH_SLAVE_USER:-root}@$MESH_INSTANCE_HOST" sh -s`,
            server.plugin,
            env,
            server.timeoutMs,
            `${exports}\n${server.bootstrap}\n`,
          )
        } else {
          await this.must('bootstrap', server.bootstrap, server.plugin, env, server.timeoutMs)
        }
      }
      rec.status = 'running'
      this.saveInstance(rec)
      if (opts.afterHooks !== false) {
        const env = this.instanceEnv(rec, {
          MESH_INSTANCE_PEER_ID: member.peerId,
          MESH_INSTANCE_OVERLAY: member.overlay,
        })
        if (opts.slave === true) await this.fireHooks('after_slave', env)
        await this.fireHooks('after_join', env)
      }
      this.metrics.spawns.inc({ type: rec.computeType, result: 'ok' })
      const ms = Date.now() - t0
      log.info({ peerId: rec.peerId, overlay: rec.overlay, ms }, 'instance joined')
      return {
        name: rec.name,
        computeType: rec.computeType,
        serverType: rec.serverType,
        peerId: rec.peerId,
        overlay: rec.overlay,
        host: rec.host,
        port: rec.port,
        ms,
      }
    } catch (err) {
      this.metrics.spawns.inc({ type: rec.computeType, result: 'error' })
      // what the instance said last, before clean-up removes it (a container's log, say)
      let logs = ''
      if (def.instance_logs !== undefined) {
        const l = await this.run('instance_logs', def.instance_logs, plugin, this.instanceEnv(rec), 15_000)
        const lines = `${l.stdout}${l.stderr}`
          .trimEnd()
          .split('\n')
          .filter((x) => x !== '')
          .slice(-20)
        if (lines.length > 0) logs = `\n  its last log lines:\n    ${lines.join('\n    ')}`
      }
      // nothing half-made: remove what start_instance may have created, and the record
      const c = await this.run(
        'clean_up_instance',
        def.clean_up_instance,
        plugin,
        this.instanceEnv(rec),
        timeoutMs,
      )
      if (c.code === 0 && !c.timedOut) this.saveInstance({ name: rec.name, remove: true })
      else {
        rec.status = 'failed'
        this.saveInstance(rec)
      }
      const e = err as Error
      const cleaned =
        c.code === 0 && !c.timedOut
          ? 'what it had started was cleaned up'
          : `cleaning up failed too (kept as failed in 'mesh instances'; retry with 'mesh destroy ${rec.name}', or --force to forget it)`
      throw new MeshError(
        e instanceof MeshError ? e.code : 'upstream',
        `spawning ${rec.name} failed: ${e.message}${logs}\n  ${cleaned}`,
      )
    }
  }

  /**
   * The instance is the member that redeemed its invite, found by peer ID: a name is only a
   * claim, and another member could make it (issue 16.10).
   */
  private async waitAlive(
    name: string,
    redeemedBy: () => string | undefined,
    timeoutMs: number,
  ): Promise<{ peerId: string; overlay: string }> {
    const deadline = Date.now() + timeoutMs
    for (let i = 0; Date.now() < deadline && !this.stopping.signal.aborted; i++) {
      const peerId = redeemedBy()
      const row =
        peerId === undefined
          ? undefined
          : this.deps.membership.rows().find((r) => r.peerId === peerId && r.status === 'alive')
      if (row !== undefined) return { peerId: row.peerId, overlay: row.entry.signed.info.overlay }
      await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** Math.min(i, 3), 500)))
    }
    const who = redeemedBy()
    throw new PluginError(
      who === undefined
        ? `the instance '${name}' did not redeem its join token within ${Math.round(timeoutMs / 1000)} s`
        : `the instance '${name}' redeemed its join token (as ${who}) but was not alive in the cluster within ${Math.round(timeoutMs / 1000)} s`,
    )
  }

  /** `mesh slave [USER@]HOST`: the ssh compute type with the host as its input. */
  async slave(opts: {
    host: string
    port?: number
    user?: string
    serverType?: string
    provision?: boolean
    afterHooks?: boolean
  }) {
    if (!/^[A-Za-z0-9._:-]+$/.test(opts.host))
      throw new MeshError('bad-request', `invalid host '${opts.host}'`)
    if (opts.user !== undefined && !/^[a-z_][a-z0-9_.-]*$/i.test(opts.user))
      throw new MeshError('bad-request', `invalid user '${opts.user}'`)
    return this.spawn({
      computeType: 'ssh',
      serverType: opts.serverType,
      provision: opts.provision,
      afterHooks: opts.afterHooks,
      slave: true,
      env: {
        MESH_SLAVE_HOST: opts.host,
        MESH_SLAVE_PORT: String(opts.port ?? 22),
        MESH_SLAVE_USER: opts.user ?? 'root',
      },
    })
  }

  /** Clean up an instance and forget it; `force` forgets it even when the clean-up fails. */
  async destroy(
    name: string,
    opts: { force?: boolean } = {},
  ): Promise<{ name: string; removed: boolean; cleanUp?: string }> {
    const rec = this.instances().find((i) => i.name === name)
    if (rec === undefined) {
      const all = this.instances().map((i) => i.name)
      throw new MeshError(
        'not-found',
        `no instance named '${name}'${all.length > 0 ? ` (instances: ${all.join(', ')})` : ''}; see 'mesh instances'`,
      )
    }
    const { def, plugin } = this.findComputeType(rec.computeType)
    let cleanUp: string | undefined
    try {
      await this.must(
        'clean_up_instance',
        def.clean_up_instance,
        plugin,
        this.instanceEnv(rec),
        (def.timeout_s ?? DEFAULT_TIMEOUT_S) * 1000,
      )
    } catch (err) {
      if (opts.force !== true)
        throw new PluginError(
          `${(err as Error).message}\n  the instance is kept; retry, or 'mesh destroy --force ${name}' to forget it anyway`,
        )
      cleanUp = (err as Error).message
    }
    this.saveInstance({ name, remove: true })
    this.deps.reporter.log.info({ instance: name, forced: cleanUp !== undefined }, 'instance destroyed')
    return { name, removed: true, cleanUp }
  }

  /** Ask every instance's compute type whether it is stale; clean up those that are. */
  async prune(): Promise<{
    checked: number
    pruned: string[]
    failed: Array<{ name: string; error: string }>
  }> {
    const pruned: string[] = []
    const failed: Array<{ name: string; error: string }> = []
    const all = this.instances()
    for (const rec of all) {
      let ct: { def: ComputeTypeDef; plugin: Plugin }
      try {
        ct = this.findComputeType(rec.computeType)
      } catch (err) {
        failed.push({ name: rec.name, error: (err as Error).message })
        continue
      }
      const s = await this.run(
        'detect_stale_instance',
        ct.def.detect_stale_instance,
        ct.plugin,
        this.instanceEnv(rec),
        60_000,
      )
      if (s.timedOut || s.code !== 0) continue // still there
      try {
        await this.destroy(rec.name)
        pruned.push(rec.name)
      } catch (err) {
        failed.push({ name: rec.name, error: (err as Error).message })
      }
    }
    return { checked: all.length, pruned, failed }
  }

  /**
   * `mesh instances`: the views, with each running instance's compute type asked whether it is
   * still there (`detect_stale_instance`, in parallel, bounded): one removed behind our back
   * shows `gone` until `mesh prune` cleans it up. The records are not changed here.
   */
  async checkedInstanceViews() {
    const records = this.instances()
    return Promise.all(
      this.instanceViews().map(async (v, i) => {
        let status: string = v.status
        if (v.status === 'running') {
          try {
            const ct = this.findComputeType(v.computeType)
            const s = await this.run(
              'detect_stale_instance',
              ct.def.detect_stale_instance,
              ct.plugin,
              this.instanceEnv(records[i]), // the record's own env (a view has none)
              15_000,
            )
            if (!s.timedOut && s.code === 0) status = 'gone'
          } catch {} // its plugin is gone: keep what the record says
        }
        return { ...v, status }
      }),
    )
  }

  /** Members each instance currently is, for `mesh instances`. */
  instanceViews() {
    const rows = new Map(this.deps.membership.rows().map((r) => [r.peerId, r.status]))
    return this.instances().map((i) => ({
      ...i,
      env: undefined,
      member: i.peerId !== undefined ? (rows.get(i.peerId) ?? 'unknown') : '-',
    }))
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

/** The user's public key, as raptiformica does: the ssh agent first, then ~/.ssh/*.pub. */
/** The user's private key file, for the SSH commands mesh runs itself (ssh reads the passwd home, not $HOME). */
export function sshIdentity(): string | undefined {
  return ['id_ed25519', 'id_ecdsa', 'id_rsa']
    .map((f) => join(homedir(), '.ssh', f))
    .find((p) => existsSync(p))
}

let keyCache: { at: number; key: string | undefined } | undefined
export function sshPublicKey(): string | undefined {
  if (keyCache !== undefined && Date.now() - keyCache.at < 60_000) return keyCache.key
  keyCache = { at: Date.now(), key: readKeys() }
  return keyCache.key
}

function readKeys(): string | undefined {
  const keys: string[] = []
  if (process.env.SSH_AUTH_SOCK !== undefined) {
    try {
      keys.push(...execFileSync('ssh-add', ['-L'], { timeout: 3000, encoding: 'utf8' }).split('\n'))
    } catch {}
  }
  for (const f of ['id_ed25519.pub', 'id_ecdsa.pub', 'id_rsa.pub']) {
    const p = join(homedir(), '.ssh', f)
    if (existsSync(p)) {
      try {
        keys.push(readFileSync(p, 'utf8'))
      } catch {}
    }
  }
  const k = keys.map((s) => s.trim()).filter((s) => /^(ssh-|ecdsa-)/.test(s))
  return k.length > 0 ? k.join('\n') : undefined
}

/** The docker bridge's gateway address as a multiaddr, for a message (best effort). */
function dockerBridge(): string {
  const r = spawnSync(
    'docker',
    ['network', 'inspect', 'bridge', '--format', '{{range .IPAM.Config}}{{.Gateway}}{{end}}'],
    {
      encoding: 'utf8',
      timeout: 5_000,
    },
  )
  const ip = r.status === 0 ? r.stdout.trim() : ''
  return /^\d+\.\d+\.\d+\.\d+$/.test(ip)
    ? `--listen /ip4/${ip}/tcp/4701`
    : 'docker network inspect bridge shows it'
}
