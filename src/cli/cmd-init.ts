import type { Command } from 'commander'
import { overlayAddress } from '../membership/overlay.js'
import { action, dataDirOf, type GlobalOpts, printJson } from './common.js'

export function initCommand(program: Command): void {
  program
    .command('init')
    .description("start a new cluster: a cluster key, cluster id and this node's identity, in the data dir")
    .option('--cluster <name>', 'cluster name (a-z, 0-9, -)', 'mesh')
    .action(
      action(async (opts: { cluster: string }) => {
        const g = program.opts<GlobalOpts>()
        const dir = dataDirOf(g)
        const { initDataDir } = await import('../agent/setup.js')
        const { loadIdentity } = await import('../node/identity.js')
        const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
        const { cluster, created } = await initDataDir(dir, opts.cluster)
        const peerId = peerIdFromPrivateKey(await loadIdentity(dir, { create: false })).toString()
        const out = {
          dataDir: dir,
          cluster: { name: cluster.name, id: cluster.id },
          peerId,
          overlay: overlayAddress(cluster.id, peerId),
          created,
        }
        if (g.json) return printJson(out)
        if (!created) {
          process.stdout.write(
            `${dir} already holds cluster '${cluster.name}' (${cluster.id}); nothing was changed\n` +
              `this node: ${peerId}  ${out.overlay}\n` +
              "next: 'mesh agent' to run it (if it is not running yet), then 'mesh invite' for a join token\n",
          )
          return
        }
        process.stdout.write(
          `initialised cluster '${cluster.name}' (${cluster.id}) in ${dir}\n` +
            `this node: ${peerId}  ${out.overlay}\n` +
            "next: 'mesh agent' to run it, then 'mesh invite' for a token other machines join with\n",
        )
      }),
    )
}
