import type { Command } from 'commander'
import type {
  MaintenanceReply,
  RequestCreated,
  RequestDetail,
  RequestSummary,
  RequestsReply,
} from '../api/contract.js'
import {
  action,
  client,
  fmtDuration,
  fmtMs,
  type GlobalOpts,
  printJson,
  table,
  UsageError,
} from './common.js'

const TERMINAL = new Set(['allocated', 'deallocated', 'no-candidate', 'cancelled'])

function parseFilters(fs: string[] | undefined): Record<string, string> {
  const tags: Record<string, string> = {}
  for (const f of fs ?? []) {
    const i = f.indexOf('=')
    if (i <= 0) throw new UsageError(`invalid filter '${f}': use key=value (a tag every candidate must have)`)
    tags[f.slice(0, i)] = f.slice(i + 1)
  }
  return tags
}

export function requestCommands(program: Command): void {
  const req = program.command('request').description('work placed by an election among the members')
  req
    .command('create')
    .description('ask the cluster to elect a member that can run this and have it start it')
    .requiredOption(
      '--compute-type <type>',
      'the compute type to run (a key of elections.commands on members)',
    )
    .option(
      '--filter <key=value>',
      'only members with this tag, repeatable',
      (v: string, p: string[] = []) => [...p, v],
    )
    .option('--name <glob>', 'only members whose name matches, repeatable', (v: string, p: string[] = []) => [
      ...p,
      v,
    ])
    .option('--wait', 'wait for the decision and the result, and print both')
    .option('--timeout <ms>', 'how long --wait waits', '60000')
    .action(
      action(
        async (opts: {
          computeType: string
          filter?: string[]
          name?: string[]
          wait?: boolean
          timeout: string
        }) => {
          await requestAndWait(program.opts<GlobalOpts>(), opts)
        },
      ),
    )
  req
    .command('show <id>')
    .description('one request: state, winner, votes per round with reasons')
    .action(
      action(async (id: string) => {
        const g = program.opts<GlobalOpts>()
        const s = await client(g).call<RequestDetail>('GET', `/v1/requests/${encodeURIComponent(id)}`)
        if (g.json) return printJson(s)
        const lines = [
          `request   ${s.id}`,
          `state     ${s.status}${s.placedAgainAs === undefined ? '' : `, placed again as ${s.placedAgainAs}`}`,
          ...(s.supersedes === undefined ? [] : [`places    ${s.supersedes} again (it ended no-candidate)`]),
          `compute   ${s.computeType}`,
          `winner    ${s.winner === undefined ? '-' : nameOf(s, s.winner)}`,
          `instance  ${s.instance ?? '-'}`,
          `age       ${fmtDuration(s.ageMs)}`,
        ]
        if (s.message) lines.push(s.message)
        for (const r of s.rounds) {
          lines.push(`round ${r.round}:`)
          for (const v of r.votes)
            lines.push(
              `  ${v.name}  ${v.yes ? `yes  score ${v.score}` : `no   ${v.reasons.join(', ')}${v.note ? ` (${v.note})` : ''}`}`,
            )
          for (const p of r.reports)
            lines.push(
              `  report ${p.name}: ${p.state}${p.instance ? ` ${p.instance}` : ''}${p.note ? ` (${p.note})` : ''}`,
            )
        }
        process.stdout.write(`${lines.join('\n')}\n`)
      }),
    )
  req
    .command('cancel <id>')
    .description('call a request off: the winner stops and removes what it started')
    .action(
      action(async (id: string) => {
        const g = program.opts<GlobalOpts>()
        const s = await client(g).call<RequestSummary>(
          'POST',
          `/v1/requests/${encodeURIComponent(id)}/cancel`,
        )
        if (g.json) return printJson(s)
        process.stdout.write(`${s.id}  cancelled\n`)
      }),
    )
  program
    .command('maintenance [state]')
    .description(
      'on: this member votes no on every request (shown in mesh members); off: back to normal; none: show',
    )
    .action(
      action(async (state: string | undefined) => {
        const g = program.opts<GlobalOpts>()
        const api = client(g)
        if (state !== undefined && state !== 'on' && state !== 'off')
          throw new UsageError(
            `unknown state '${state}': use mesh maintenance on, off, or no argument to show it`,
          )
        const r =
          state === undefined
            ? await api.call<MaintenanceReply>('GET', '/v1/maintenance')
            : await api.call<MaintenanceReply>('POST', '/v1/maintenance', { on: state === 'on' })
        if (g.json) return printJson(r)
        process.stdout.write(`maintenance ${r.on ? 'on: this member votes no on every request' : 'off'}\n`)
      }),
    )
  program
    .command('requests')
    .description('election requests this member knows: state, winner, age')
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const { requests } = await client(g).call<RequestsReply>('GET', '/v1/requests')
        if (g.json) return printJson(requests)
        process.stdout.write(
          table(
            ['ID', 'STATE', 'REPORT', 'COMPUTE', 'WINNER', 'INSTANCE', 'AGE'],
            requests.map((r) => [
              r.id.slice(0, 12),
              r.placedAgainAs === undefined
                ? r.status
                : `${r.status}, placed again as ${r.placedAgainAs.slice(0, 12)}`,
              r.report,
              r.computeType,
              r.winnerName,
              r.instance,
              fmtDuration(r.ageMs),
            ]),
          ),
        )
      }),
    )
}

function nameOf(s: RequestDetail, peer: string | undefined): string {
  if (peer === undefined) return '-'
  for (const r of s.rounds) {
    for (const v of r.votes) if ((v as unknown as { voter: string }).voter === peer) return v.name
  }
  return peer
}

/**
 * Make a request (an election among the alive members) and, with `wait`, print the decision
 * and the result: `mesh request create` and `mesh spawn --anywhere`.
 */
export async function requestAndWait(
  g: GlobalOpts,
  opts: {
    computeType: string
    serverType?: string
    filter?: string[]
    name?: string[]
    wait?: boolean
    timeout: string
  },
): Promise<void> {
  const api = client(g)
  const body = {
    computeType: opts.computeType,
    ...(opts.serverType !== undefined ? { serverType: opts.serverType } : {}),
    tags: parseFilters(opts.filter),
    names: opts.name ?? [],
  }
  const { id, voters } = await api.call<RequestCreated>('POST', '/v1/requests', body)
  if (opts.wait !== true) {
    if (g.json) printJson({ id, voters })
    else process.stdout.write(`${id}  request sent to ${voters} voters\n`)
    return
  }
  const limit = Number(opts.timeout)
  if (!Number.isFinite(limit) || limit <= 0) throw new UsageError('--timeout must be a positive number of ms')
  const start = Date.now()
  let shown: RequestDetail | undefined
  let printedDecision = false
  // bounded: at most limit / 50 polls
  for (let i = 0; i < Math.ceil(limit / 50); i++) {
    shown = await api.call<RequestDetail>('GET', `/v1/requests/${id}`)
    if (!g.json && !printedDecision && shown.winner !== undefined) {
      printedDecision = true
      process.stdout.write(
        `decided: ${nameOf(shown, shown.winner)} won round ${shown.round} after ${fmtMs(shown.decidedMs ?? Date.now() - start)}\n`,
      )
    }
    if (TERMINAL.has(shown.status)) break
    if (Date.now() - start > limit) break
    await new Promise((r) => setTimeout(r, 50))
  }
  if (shown === undefined) return
  if (g.json) return printJson(shown)
  if (shown.status === 'allocated')
    process.stdout.write(
      `allocated: ${shown.instance} on ${nameOf(shown, shown.winner)} after ${fmtMs(shown.allocatedMs ?? Date.now() - start)}\n`,
    )
  else if (shown.status === 'no-candidate') throw new Error(`${shown.message ?? 'no member can run this'}`)
  else
    process.stdout.write(
      `${shown.status} after ${fmtMs(Date.now() - start)} (still going: mesh request show ${id.slice(0, 8)})\n`,
    )
  process.stdout.write(`${id}\n`)
}
