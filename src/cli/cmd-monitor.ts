import type { Command } from 'commander'
import { action, client, EXIT, type GlobalOpts, memberNames } from './common.js'

interface StreamEvent {
  type: string
  time: number
  data: Record<string, unknown>
}

const clock = (t: number) => new Date(t).toTimeString().slice(0, 8)

/** One line for a person: what happened, to whom (by name), in a few words. */
export function describeEvent(e: StreamEvent, nameOf: (peerId: string) => string): string {
  const d = e.data
  const who = typeof d.peerId === 'string' ? nameOf(d.peerId) : undefined
  let what: string
  switch (e.type) {
    case 'cluster_change':
      what =
        d.before === null || d.before === undefined
          ? `${d.name}: joined (${d.after})`
          : `${d.name}: ${d.before} -> ${d.after}`
      break
    case 'peer:connect':
      what = `connected to ${who}`
      break
    case 'peer:disconnect':
      what = `disconnected from ${who}`
      break
    case 'request_decided':
      what = `request ${d.id}: round ${d.round} won by ${d.winnerName ?? nameOf(String(d.winner))}`
      break
    case 'request_no_candidate':
      what = `request ${d.id}: no member can take it: ${d.message}`
      break
    case 'request_placed_again':
      what = `request ${d.id}: placed again as ${d.as}`
      break
    case 'request_change':
      what = `request ${d.id}: ${d.status}`
      break
    case 'dataset_tag':
      what = `dataset ${Object.entries(d)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ')}`
      break
    case 'agent_stopping':
      what = `agent stopping: ${d.reason}`
      break
    default:
      what = Object.entries(d)
        .map(
          ([k, v]) =>
            `${k}=${k === 'peerId' && who !== undefined ? who : typeof v === 'string' ? v : JSON.stringify(v)}`,
        )
        .join(' ')
  }
  return `${clock(e.time)} ${e.type.padEnd(16)} ${what}`
}

export function monitorCommand(program: Command): void {
  program
    .command('monitor')
    .description(
      "follow the agent's events as they happen: members joining, failing and leaving, connections, requests, datasets (Ctrl-C stops)",
    )
    .option(
      '--type <type>',
      'only events of this type (cluster_change, peer:connect, request_decided, ...), repeatable',
      (v: string, p: string[] = []) => [...p, v],
    )
    .action(
      action(async (opts: { type?: string[] }) => {
        const g = program.opts<GlobalOpts>()
        const api = client(g)
        const { names, nameOf } = await memberNames(api)
        const ctl = new AbortController()
        process.once('SIGINT', () => ctl.abort())
        process.once('SIGTERM', () => ctl.abort())
        let stopping: string | undefined
        if (!g.json) process.stderr.write("following the agent's events (Ctrl-C stops)\n")
        await api.events((raw) => {
          const e = raw as StreamEvent
          if (e.type === 'cluster_change' && typeof e.data.peerId === 'string')
            names.set(e.data.peerId, String(e.data.name))
          if (e.type === 'agent_stopping') stopping = String(e.data.reason)
          if (opts.type !== undefined && !opts.type.includes(e.type)) return
          process.stdout.write(g.json ? `${JSON.stringify(e)}\n` : `${describeEvent(e, nameOf)}\n`)
        }, ctl.signal)
        if (ctl.signal.aborted) return
        // the stream ends when the agent stops: say so, and whether it said why
        if (stopping !== undefined) {
          process.stderr.write(`mesh: the agent stopped (${stopping})\n`)
          return
        }
        process.stderr.write('mesh: the agent went away without saying why (killed?); see its log\n')
        process.exit(EXIT.noAgent)
      }),
    )
}
