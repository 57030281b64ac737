import type { Command } from 'commander'
import { action, client, type GlobalOpts, printJson, table } from './common.js'

export function trustCommands(program: Command): void {
  program
    .command('revoke <member>')
    .description(
      'revoke a member (NAME, NAME.mesh, overlay address or peer ID): every member cuts it off and refuses it from now on (admins only)',
    )
    .action(
      action(async (member: string) => {
        const g = program.opts<GlobalOpts>()
        const r = await client(g).call<{ peerId: string; already?: boolean }>('POST', '/v1/revoke', {
          member,
        })
        if (g.json) return printJson(r)
        process.stdout.write(
          r.already === true
            ? `${r.peerId} was already revoked\n`
            : `revoked ${r.peerId}; the cluster is cutting it off\n`,
        )
      }),
    )

  const admin = program.command('admin').description('cluster admins: who may invite, revoke and grant')
  admin
    .command('grant <member>')
    .description('make a member an admin (admins only)')
    .action(
      action(async (member: string) => {
        const g = program.opts<GlobalOpts>()
        const r = await client(g).call<{ peerId: string; already?: boolean }>('POST', '/v1/admin/grant', {
          member,
        })
        if (g.json) return printJson(r)
        process.stdout.write(
          r.already === true ? `${r.peerId} is already an admin\n` : `${r.peerId} is now an admin\n`,
        )
      }),
    )
  admin
    .command('list')
    .description('list admins and revoked members')
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const r = await client(g).call<{
          admins: string[]
          revoked: Array<{ peerId: string; issuer: string; issued: number }>
          self: string
        }>('GET', '/v1/admin')
        if (g.json) return printJson(r)
        process.stdout.write(
          table(
            ['PEER', 'ROLE'],
            [
              ...r.admins.map((a) => [a === r.self ? `${a} (this node)` : a, 'admin']),
              ...r.revoked.map((x) => [x.peerId, `revoked ${new Date(x.issued).toISOString()}`]),
            ],
          ),
        )
      }),
    )
}
