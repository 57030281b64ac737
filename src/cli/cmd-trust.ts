import type { Command } from 'commander'
import type { AdminReply, TrustChangeReply } from '../api/contract.js'
import { action, client, type GlobalOpts, memberNames, printJson, shortId, table } from './common.js'

export function trustCommands(program: Command): void {
  program
    .command('revoke <member>')
    .description(
      'revoke a member (NAME, NAME.mesh, overlay address or peer ID): every member cuts it off and refuses it from now on (admins only)',
    )
    .action(
      action(async (member: string) => {
        const g = program.opts<GlobalOpts>()
        const api = client(g)
        const r = await api.call<TrustChangeReply>('POST', '/v1/revoke', { member })
        const who = await named(api, r.peerId)
        if (g.json) return printJson({ name: who.name, ...r })
        process.stdout.write(
          r.already === true
            ? `${who.label} was already revoked\n`
            : `revoked ${who.label}; the cluster is cutting it off\n`,
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
        const api = client(g)
        const r = await api.call<TrustChangeReply>('POST', '/v1/admin/grant', { member })
        const who = await named(api, r.peerId)
        if (g.json) return printJson({ name: who.name, ...r })
        process.stdout.write(
          r.already === true ? `${who.label} is already an admin\n` : `${who.label} is now an admin\n`,
        )
      }),
    )
  admin
    .command('list')
    .description('list admins and revoked members, by name')
    .option('-v, --verbose', 'with full peer IDs')
    .action(
      action(async (opts: { verbose?: boolean }) => {
        const g = program.opts<GlobalOpts>()
        const api = client(g)
        const r = await api.call<AdminReply>('GET', '/v1/admin')
        const { names, nameOf } = await memberNames(api)
        if (g.json)
          return printJson({
            ...r,
            names: Object.fromEntries(
              [...r.admins, ...r.revoked.map((x) => x.peerId)].flatMap((p) => {
                const n = names.get(p)
                return n === undefined ? [] : [[p, n]]
              }),
            ),
          })
        const rows = [
          ...r.admins.map((a) => [a === r.self ? `${nameOf(a)} (this node)` : nameOf(a), 'admin', '-', a]),
          ...r.revoked.map((x) => [
            nameOf(x.peerId),
            'revoked',
            `${new Date(x.issued).toISOString()} by ${nameOf(x.issuer)}`,
            x.peerId,
          ]),
        ]
        process.stdout.write(
          opts.verbose === true
            ? table(['NAME', 'ROLE', 'SINCE', 'PEER ID'], rows)
            : table(
                ['NAME', 'ROLE', 'SINCE'],
                rows.map((row) => row.slice(0, 3)),
              ),
        )
      }),
    )
}

/** A member as people read it: `node-c (12D3KooW…x7Yq)`; the bare short ID when it has no record. */
async function named(
  api: ReturnType<typeof client>,
  peerId: string,
): Promise<{ name?: string; label: string }> {
  const { names } = await memberNames(api)
  const name = names.get(peerId)
  return { name, label: name === undefined ? shortId(peerId) : `${name} (${shortId(peerId)})` }
}
