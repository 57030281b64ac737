import type { Command } from 'commander'
import { AgentNotRunningError } from '../api/client.js'
import type { MembersReply, MemberView, RejoinReply } from '../api/contract.js'
import { action, client, fmtMs, type GlobalOpts, printJson, table, UsageError } from './common.js'

const STATUSES = ['alive', 'suspect', 'dead', 'left']

export function membersCommand(program: Command): void {
  program
    .command('members')
    .description(
      'the cluster as this member sees it: name, overlay address, status, path, RTT, version, tags',
    )
    .option('--status <status>', `only members with this status (${STATUSES.join(', ')})`)
    .option('--tag <key=value>', 'only members with this tag, repeatable', (v: string, p: string[] = []) => [
      ...p,
      v,
    ])
    .option('--rejoin', 're-dial every known member and sync with it first')
    .option('-v, --verbose', "also each member's peer ID and its clock's offset from ours")
    .action(
      action(async (opts: { status?: string; tag?: string[]; rejoin?: boolean; verbose?: boolean }) => {
        const g = program.opts<GlobalOpts>()
        if (opts.status !== undefined && !STATUSES.includes(opts.status)) {
          throw new UsageError(`unknown status '${opts.status}': use one of ${STATUSES.join(', ')}`)
        }
        const tags = (opts.tag ?? []).map((t) => {
          const i = t.indexOf('=')
          if (i <= 0) throw new UsageError(`invalid tag filter '${t}': use key=value`)
          return [t.slice(0, i), t.slice(i + 1)] as const
        })
        const api = client(g)
        if (opts.rejoin === true) {
          const r = await api.call<RejoinReply>('POST', '/v1/rejoin')
          if (!g.json) process.stderr.write(`rejoin: dialled ${r.tried} members, ${r.connected} connected\n`)
        }
        const { members } = await api.call<MembersReply>('GET', '/v1/members')
        const shown = members.filter(
          (m) =>
            (opts.status === undefined || m.status === opts.status) &&
            tags.every(([k, v]) => m.tags[k] === v),
        )
        if (g.json) return printJson(shown)
        const v = opts.verbose === true
        process.stdout.write(
          table(
            [
              'NAME',
              'OVERLAY',
              'STATUS',
              'PATH',
              'RTT',
              ...(v ? ['CLOCK', 'PEER ID'] : []),
              'VERSION',
              'TAGS',
            ],
            shown.map((m) => [
              m.self ? `${m.name}*` : m.name,
              m.overlay,
              m.maintenance ? `${m.status} (maint)` : m.status,
              m.path,
              fmtMs(m.rttMs),
              ...(v ? [fmtOffset(m), m.peerId] : []),
              m.version,
              Object.entries(m.tags)
                // host keys are long and for ssh, not people (they are in --json)
                .filter(([k]) => !k.startsWith('mesh.ssh.'))
                .map(([k, v]) => `${k}=${v}`)
                .join(','),
            ]),
          ),
        )
      }),
    )

  program
    .command('leave')
    .description(
      'leave the cluster gracefully: every member marks this one left at once, then the agent stops',
    )
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const api = client(g)
        await api.call('POST', '/v1/leave')
        if (!g.json)
          process.stdout.write('left the cluster: every member marks this one left; the agent is stopping\n')
        // wait (bounded) until the agent is really gone, so a script can go on from here
        const deadline = Date.now() + 15_000
        let stopped = false
        while (!stopped && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 200))
          stopped = await api.call('GET', '/v1/status').then(
            () => false,
            (err) => err instanceof AgentNotRunningError,
          )
        }
        if (g.json) return printJson({ left: true, stopped })
        process.stdout.write(
          stopped ? 'the agent stopped\n' : 'the agent is still stopping after 15 s; see its log\n',
        )
      }),
    )
}

/** A member's clock against ours: '+12ms' ahead, '-3ms' behind, '-' for us or not measured yet. */
function fmtOffset(m: MemberView): string {
  if (m.self || m.clockOffsetMs === undefined) return '-'
  return `${m.clockOffsetMs >= 0 ? '+' : ''}${m.clockOffsetMs}ms`
}
