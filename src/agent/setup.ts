import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { DataDirError, ensureDataDir } from '../kernel/datadir.js'
import { type Cluster, loadCluster, newCluster, saveCluster } from '../node/cluster.js'
import { loadIdentity } from '../node/identity.js'
import { parseToken } from '../node/token.js'
import { TrustStore } from '../node/trust.js'

export interface SetupResult {
  cluster: Cluster
  created: boolean
  joined: boolean
}

/** `mesh init`: a new cluster key, cluster id and node identity. Never overwrites. */
export async function initDataDir(dir: string, clusterName: string): Promise<SetupResult> {
  ensureDataDir(dir)
  const existing = loadCluster(dir)
  // the same name again (the usage guide after `npm start`): nothing to do, like a second `git init`
  if (existing !== undefined && existing.name === clusterName) {
    await loadIdentity(dir, { create: false })
    return { cluster: existing, created: false, joined: false }
  }
  if (existing !== undefined) {
    throw new DataDirError(
      `${dir} already belongs to cluster '${existing.name}' (${existing.id}); nothing was changed. ` +
        'To start another cluster, use another --data-dir.',
    )
  }
  const key = await loadIdentity(dir, { create: true })
  const self = peerIdFromPrivateKey(key).toString()
  // the founder is the first admin and certifies itself
  const cluster = { ...newCluster(clusterName), admins: [self] }
  const trust = new TrustStore(dir, cluster.id, [self])
  trust.setCertificate(trust.issue(key, self), self)
  saveCluster(dir, cluster)
  return { cluster, created: true, joined: false }
}

/**
 * What `mesh agent` needs before it starts: the cluster this data dir belongs to,
 * from the data dir, from a join token (first join), or new (`--init`).
 */
export async function prepareDataDir(
  dir: string,
  opts: { join?: string; init?: string },
): Promise<SetupResult> {
  ensureDataDir(dir)
  const existing = loadCluster(dir)
  if (opts.join !== undefined) {
    const invite = parseToken(opts.join)
    if (existing !== undefined && existing.id !== invite.cluster.id) {
      throw new DataDirError(
        `this join token is for cluster '${invite.cluster.name}' (${invite.cluster.id}), but ${dir} belongs to ` +
          `cluster '${existing.name}' (${existing.id}). Use another --data-dir to join a different cluster.`,
      )
    }
    await loadIdentity(dir, { create: true })
    const seeds = [...new Set([...(existing?.seeds ?? []), ...invite.addrs])]
    const certified = TrustStore.load(dir, invite.cluster.id, invite.cluster.admins).certificate !== undefined
    // the invite is redeemed for a certificate once the agent reaches the inviter
    const cluster = {
      ...(existing ?? invite.cluster),
      seeds,
      invite: certified ? undefined : Buffer.from(invite.inviteId).toString('hex'),
    }
    saveCluster(dir, cluster)
    return { cluster, created: false, joined: existing === undefined }
  }
  if (existing !== undefined) {
    await loadIdentity(dir, { create: false })
    return { cluster: existing, created: false, joined: false }
  }
  if (opts.init !== undefined) return initDataDir(dir, opts.init)
  throw new DataDirError(
    `${dir} holds no cluster yet. Start a new cluster with 'mesh init --cluster NAME' (or 'mesh agent --init'), ` +
      "or join one with 'mesh agent --join TOKEN' using a token from 'mesh invite' on a member.",
  )
}
