import type { Command } from 'commander'
import type {
  DestroyReply,
  InstancesReply,
  PluginInstallReply,
  PluginsReply,
  PluginUpdateReply,
  PruneReply,
  SpawnReply,
} from '../api/contract.js'
import { requestAndWait } from './cmd-requests.js'
import { action, client, fmtDuration, type GlobalOpts, printJson, table, UsageError } from './common.js'

// spawning waits for the instance to join; the agent bounds every step itself
const LONG_MS = 60 * 60_000

export function pluginCommands(program: Command): void {
  program
    .command('plugins')
    .description(
      'compute types, server types and hooks: which plugin each comes from and whether it is available here',
    )
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const res = await client(g).call<PluginsReply>('GET', '/v1/plugins')
        if (g.json) return printJson(res)
        const rows: Array<Array<string | undefined>> = []
        for (const p of res.plugins) {
          const from = p.builtin ? 'built-in' : `${p.source}@${p.commit?.slice(0, 12)}`
          for (const t of p.computeTypes)
            rows.push([
              'compute_type',
              t.name,
              p.name,
              from,
              t.available ? 'yes' : `no (${t.reason ?? 'unchecked'})`,
            ])
          for (const t of p.serverTypes) rows.push(['server_type', t, p.name, from, '-'])
          for (const h of p.hooks)
            rows.push(['hook', `${h.event}${h.count > 1 ? ` x${h.count}` : ''}`, p.name, from, '-'])
          if (p.computeTypes.length + p.serverTypes.length + p.hooks.length === 0)
            rows.push(['(empty)', '-', p.name, from, '-'])
        }
        process.stdout.write(table(['KIND', 'NAME', 'PLUGIN', 'FROM', 'AVAILABLE HERE'], rows))
        for (const e of res.errors) process.stderr.write(`broken plugin, not loaded: ${e}\n`)
      }),
    )

  program
    .command('install')
    .description(
      'install a plugin from a git repo: URL, owner/repo (GitHub) or a local path; pins the exact commit',
    )
    .argument('<source>', 'git URL, owner/repo, or path of a local git repo')
    .option('--ref <ref>', 'branch, tag or commit to check out (default: the default branch)')
    .option('--name <name>', 'install under this name (default: from the repo name)')
    .action(
      action(async (source: string, opts: { ref?: string; name?: string }) => {
        const g = program.opts<GlobalOpts>()
        const res = await client(g).call<PluginInstallReply>(
          'POST',
          '/v1/plugins/install',
          { source, ref: opts.ref, name: opts.name },
          10 * 60_000,
        )
        if (g.json) return printJson(res)
        const types = res.plugin.computeTypes.map(
          (t) => `${t.name}${t.available ? '' : ' (not available here)'}`,
        )
        process.stdout.write(
          `installed plugin '${res.record.name}' at ${res.record.commit}\n` +
            (types.length > 0 ? `compute types: ${types.join(', ')}\n` : '') +
            (res.plugin.serverTypes.length > 0
              ? `server types: ${res.plugin.serverTypes.join(', ')}\n`
              : '') +
            (res.plugin.hooks.length > 0
              ? `hooks: ${res.plugin.hooks.map((h) => h.event).join(', ')}\n`
              : ''),
        )
      }),
    )

  program
    .command('update')
    .description(
      'move an installed plugin to a new commit (only when you ask): the latest of its ref, or --ref',
    )
    .argument('<name>', 'the installed plugin')
    .option('--ref <ref>', 'branch, tag or commit to move to (default: the one it was installed with)')
    .action(
      action(async (name: string, opts: { ref?: string }) => {
        const g = program.opts<GlobalOpts>()
        const res = await client(g).call<PluginUpdateReply>(
          'POST',
          `/v1/plugins/${encodeURIComponent(name)}/update`,
          { ref: opts.ref },
          10 * 60_000,
        )
        if (g.json) return printJson(res)
        process.stdout.write(
          res.from === res.to ? `${name} is already at ${res.to}\n` : `${name}: ${res.from} -> ${res.to}\n`,
        )
      }),
    )

  program
    .command('uninstall')
    .description('remove an installed plugin')
    .argument('<name>', 'the installed plugin')
    .action(
      action(async (name: string) => {
        const g = program.opts<GlobalOpts>()
        const res = await client(g).call('DELETE', `/v1/plugins/${encodeURIComponent(name)}`)
        if (g.json) return printJson(res)
        process.stdout.write(`uninstalled plugin '${name}'\n`)
      }),
    )

  program
    .command('spawn')
    .description('start new instances of a compute type; each joins the cluster by itself')
    .requiredOption('--compute-type <type>', "what to start (see 'mesh plugins'), e.g. docker or process")
    .option('--server-type <type>', "provision it with this server type's bootstrap")
    .option('--count <n>', 'how many instances', '1')
    .option('--no-provision', "skip the server type's bootstrap")
    .option('--no-after-hooks', 'skip the after_start_instance, after_slave and after_join hooks')
    .option('--timeout <seconds>', 'how long to wait for each instance to be alive', '180')
    .option('--anywhere', 'let the cluster elect a member that can run it (this one need not)')
    .option(
      '--filter <key=value>',
      'with --anywhere: only members with this tag, repeatable',
      (v: string, p: string[] = []) => [...p, v],
    )
    .action(
      action(
        async (opts: {
          computeType: string
          serverType?: string
          count: string
          provision: boolean
          afterHooks: boolean
          timeout: string
          anywhere?: boolean
          filter?: string[]
        }) => {
          const g = program.opts<GlobalOpts>()
          if (opts.anywhere === true) {
            if (opts.count !== '1')
              throw new UsageError('--anywhere starts one instance per election: leave out --count')
            return requestAndWait(g, {
              computeType: opts.computeType,
              serverType: opts.serverType,
              filter: opts.filter,
              wait: true,
              timeout: String(Number(opts.timeout) * 1000),
            })
          }
          if (opts.filter !== undefined) throw new UsageError('--filter goes with --anywhere')
          const count = Number(opts.count)
          if (!Number.isInteger(count) || count < 1 || count > 64)
            throw new UsageError(`invalid --count '${opts.count}': use a whole number from 1 to 64`)
          const timeout = Number(opts.timeout)
          if (!Number.isFinite(timeout) || timeout < 1 || timeout > 3600)
            throw new UsageError(`invalid --timeout '${opts.timeout}': use seconds from 1 to 3600`)
          const res = await client(g).call<SpawnReply>(
            'POST',
            '/v1/spawn',
            {
              computeType: opts.computeType,
              serverType: opts.serverType,
              count,
              provision: opts.provision,
              afterHooks: opts.afterHooks,
              joinTimeoutMs: Math.round(timeout * 1000),
            },
            LONG_MS,
          )
          if (g.json) return printJson(res.instances)
          process.stdout.write(
            table(
              ['NAME', 'OVERLAY', 'PEER', 'TOOK'],
              res.instances.map((i) => [i.name, i.overlay, i.peerId, `${(i.ms / 1000).toFixed(1)}s`]),
            ),
          )
        },
      ),
    )

  program
    .command('slave')
    .description('bootstrap an existing machine into the cluster over SSH (it needs mesh installed)')
    .argument('<host>', '[USER@]HOST')
    .option('--port <port>', 'SSH port', '22')
    .option('--server-type <type>', "provision it with this server type's bootstrap")
    .option('--no-provision', "skip the server type's bootstrap")
    .option('--no-after-hooks', 'skip the after_slave and after_join hooks')
    .action(
      action(
        async (
          target: string,
          opts: { port: string; serverType?: string; provision: boolean; afterHooks: boolean },
        ) => {
          const g = program.opts<GlobalOpts>()
          const at = target.lastIndexOf('@')
          const user = at > 0 ? target.slice(0, at) : undefined
          const host = at > 0 ? target.slice(at + 1) : target
          const port = Number(opts.port)
          if (!Number.isInteger(port) || port < 1 || port > 65535)
            throw new UsageError(`invalid --port '${opts.port}': use a TCP port 1-65535`)
          const res = await client(g).call<SpawnReply>(
            'POST',
            '/v1/slave',
            {
              host,
              port,
              user,
              serverType: opts.serverType,
              provision: opts.provision,
              afterHooks: opts.afterHooks,
            },
            LONG_MS,
          )
          if (g.json) return printJson(res.instances)
          for (const i of res.instances) process.stdout.write(`${i.name}  ${i.overlay}  joined\n`)
        },
      ),
    )

  program
    .command('instances')
    .description('instances spawned from this member: compute type, member status, address')
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const { instances } = await client(g).call<InstancesReply>('GET', '/v1/instances')
        if (g.json) return printJson(instances)
        process.stdout.write(
          table(
            ['NAME', 'COMPUTE', 'SERVER', 'STATE', 'MEMBER', 'OVERLAY', 'AGE'],
            instances.map((i) => [
              i.name,
              i.computeType,
              i.serverType,
              i.status,
              i.member,
              i.overlay,
              fmtDuration(Date.now() - i.createdAt),
            ]),
          ),
        )
      }),
    )

  program
    .command('destroy')
    .description('remove a spawned instance (its compute type cleans it up; it leaves the cluster)')
    .argument('<name>', "the instance, as 'mesh instances' shows it")
    .option('--force', 'forget the instance even when its clean-up fails (it may still run)')
    .action(
      action(async (name: string, opts: { force?: boolean }) => {
        const g = program.opts<GlobalOpts>()
        const res = await client(g).call<DestroyReply>(
          'DELETE',
          `/v1/instances/${encodeURIComponent(name)}${opts.force === true ? '?force=1' : ''}`,
          undefined,
          LONG_MS,
        )
        if (g.json) return printJson(res)
        if (res.cleanUp !== undefined)
          process.stderr.write(`clean-up failed, forgotten anyway (--force): ${res.cleanUp}\n`)
        process.stdout.write(`destroyed ${name}\n`)
      }),
    )

  program
    .command('prune')
    .description('find instances that are gone or broken (detect_stale_instance) and clean them up')
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const res = await client(g).call<PruneReply>('POST', '/v1/prune', undefined, LONG_MS)
        if (g.json) return printJson(res)
        process.stdout.write(
          `checked ${res.checked} instances; pruned ${res.pruned.length}${res.pruned.length > 0 ? `: ${res.pruned.join(', ')}` : ''}\n`,
        )
        for (const f of res.failed) process.stderr.write(`could not prune ${f.name}: ${f.error}\n`)
        if (res.failed.length > 0) process.exitCode = 1
      }),
    )
}
