import { randomBytes } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import { JoinToken } from '../../protocols/token.js'
import type { Cluster } from './cluster.js'

export const TOKEN_PREFIX = 'mesh1'

export class TokenError extends Error {
  override name = 'TokenError'
}

export interface Invite {
  /** the cluster, with the founding admins in `admins` */
  cluster: Cluster
  addrs: string[]
  expires: number
  inviteId: Uint8Array
}

export function makeToken(
  cluster: Cluster,
  addrs: string[],
  ttlMs: number,
  now = Date.now(),
): { token: string; invite: Invite } {
  const invite: Invite = { cluster, addrs, expires: now + ttlMs, inviteId: new Uint8Array(randomBytes(16)) }
  const bytes = JoinToken.encode({
    version: 1,
    clusterName: cluster.name,
    clusterId: Buffer.from(cluster.id, 'hex'),
    clusterKey: new Uint8Array(cluster.key),
    addrs,
    expires: BigInt(invite.expires),
    inviteId: new Uint8Array(invite.inviteId),
    admins: cluster.admins ?? [],
  })
  return { token: TOKEN_PREFIX + Buffer.from(bytes).toString('base64url'), invite }
}

/** Parse a token; every way it can be wrong gets its own message. */
export function parseToken(token: string, now = Date.now()): Invite {
  const t = token.trim()
  if (!t.startsWith(TOKEN_PREFIX)) {
    throw new TokenError(
      `not a mesh join token: it should start with '${TOKEN_PREFIX}'. Ask a member for one with 'mesh invite'.`,
    )
  }
  const body = t.slice(TOKEN_PREFIX.length)
  if (!/^[A-Za-z0-9_-]+$/.test(body)) {
    throw new TokenError(
      'the join token has characters that do not belong in it: was it cut or wrapped when copied?',
    )
  }
  let msg: JoinToken
  try {
    msg = JoinToken.decode(Buffer.from(body, 'base64url'))
  } catch {
    throw new TokenError('the join token is damaged (it does not decode): copy it again in full')
  }
  if (msg.version === 0) throw new TokenError('the join token is damaged (no version): copy it again in full')
  if (msg.version !== 1)
    throw new TokenError(`join token version ${msg.version} is not supported by this mesh; upgrade mesh`)
  if (msg.clusterId.length !== 16 || msg.clusterKey.length !== 32 || msg.inviteId.length !== 16) {
    throw new TokenError('the join token is damaged (wrong field sizes): copy it again in full')
  }
  if (msg.admins.length === 0)
    throw new TokenError('the join token names no admin: it was made by an older mesh; ask for a new one')
  if (msg.addrs.length === 0) throw new TokenError('the join token names no address to reach the cluster at')
  for (const a of msg.addrs) {
    try {
      multiaddr(a)
    } catch {
      throw new TokenError(`the join token holds an invalid address '${a}'`)
    }
  }
  const expires = Number(msg.expires)
  if (expires <= now) {
    throw new TokenError(
      `the join token expired at ${new Date(expires).toISOString()}; ask a member for a new one with 'mesh invite'`,
    )
  }
  return {
    cluster: {
      name: msg.clusterName,
      id: Buffer.from(msg.clusterId).toString('hex'),
      key: msg.clusterKey,
      admins: msg.admins,
    },
    addrs: msg.addrs,
    expires,
    inviteId: msg.inviteId,
  }
}
