import type { Command } from 'commander'
import type { InviteReply } from '../api/contract.js'
import { action, client, type GlobalOpts, printJson, UsageError } from './common.js'

export function inviteCommand(program: Command): void {
  program
    .command('invite')
    .description('print a join token for a new member (a secret: share it privately)')
    .option('--ttl <duration>', 'how long the token is valid: 30m, 1h, 2d', '1h')
    .action(
      action(async (opts: { ttl: string }) => {
        const g = program.opts<GlobalOpts>()
        const ttlMs = parseDuration(opts.ttl)
        const res = await client(g).call<InviteReply>('POST', '/v1/invite', { ttlMs })
        if (g.json) return printJson(res)
        process.stdout.write(`${res.token}\n`)
        process.stderr.write(
          `This token is a secret: anyone who has it can join the cluster until ${new Date(res.expires).toISOString()}.\n` +
            'On the new machine: mesh agent --join <token>\n',
        )
      }),
    )
}

export function parseDuration(text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim())
  if (m === null)
    throw new UsageError(`invalid duration '${text}': use a number with s, m, h or d, such as 30m or 2h`)
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms']
  return Number(m[1]) * unit
}
