import type { Connection, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pbStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { JoinReply, JoinRequest } from '../../protocols/trust.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import { closeOrAbort } from '../kernel/streams.js'
import { Backoff } from './backoff.js'
import { type Cluster, protocolPrefix, saveCluster } from './cluster.js'
import { InviteError, type InviteStore } from './invites.js'
import type { MeshLibp2p } from './libp2p.js'
import type { TrustStore } from './trust.js'

const MAX = 256 << 10
/** how long `mesh agent --join` keeps trying the token's addresses (busy or restarting inviter) */
// how long a joiner keeps trying an inviter that does not answer: 49 agents joining one inviter
// from one address within 10 s, on 2 cores, left some joiners still refused (upgrade timeouts,
// the inviter's limit of new connections per address) after 60 s (sim/bench/fleet.ts)
const JOIN_RETRY_FOR_MS = 180_000
/** dials back to the inviter right after a join, before leaving it to the node's redial tick */
const REDIAL_ATTEMPTS = 4
const REDIAL_FOR_MS = 8_000

export class JoinRefusedError extends Error {
  override name = 'JoinRefusedError'
}

export const joinProtocol = (c: Cluster) => `${protocolPrefix(c)}/join/1.0.0`

/**
 * Invite redemption (protocols/trust.md): a joiner that proved the cluster key but has no
 * certificate asks the member that invited it; the inviter checks the invite is known,
 * unused and unexpired, marks it used and answers with a certificate it signs as an admin.
 */
export class Joiner {
  constructor(
    private readonly deps: {
      node: MeshLibp2p
      cluster: Cluster
      dataDir: string
      key: PrivateKey
      trust: TrustStore
      invites: InviteStore
      reporter: ComponentReporter
    },
  ) {}

  /** Serve redemptions (every member does; only admins can issue, others answer why not). */
  async handle(): Promise<void> {
    this.deps.node.services.admission.joinProtocols.add(joinProtocol(this.deps.cluster))
    await this.deps.node.handle(joinProtocol(this.deps.cluster), (s, c) => this.serve(s, c), {
      runOnLimitedConnection: true,
      maxInboundStreams: 4,
    })
  }

  private async serve(stream: Stream, conn: Connection): Promise<void> {
    const signal = AbortSignal.timeout(10_000)
    const pb = pbStream(stream, { maxDataLength: MAX })
    const peer = conn.remotePeer.toString()
    try {
      const req = await pb.read(JoinRequest, { signal })
      let reply: JoinReply
      try {
        this.deps.invites.redeem(req.inviteId, peer)
        const certificate = this.deps.trust.issue(this.deps.key, peer)
        reply = { certificate, statements: this.deps.trust.allStatements(), error: '' }
        this.deps.reporter.log.info({ peer, name: req.name }, 'invite redeemed: issued a member certificate')
      } catch (err) {
        reply = { statements: [], error: (err as Error).message }
        this.deps.reporter.log.warn({ peer, err: (err as Error).message }, 'refused an invite')
      }
      await pb.write(reply, JoinReply, { signal })
      await closeOrAbort(stream, signal)
      // the joiner reconnects with its certificate; this connection only ever served the join
      setTimeout(() => void conn.close().catch(() => {}), 500).unref()
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  /**
   * Redeem our invite with the seeds (the inviter's addresses). Resolves once we hold a
   * certificate; throws JoinRefusedError when an inviter says no (used, expired, unknown).
   * An unreachable or busy inviter is not a refusal: every address is tried again, with
   * back-off, until `retryForMs` has passed.
   */
  async redeem(
    inviteHex: string,
    seeds: string[],
    name: string,
    /** each try's deadline: read at each try (it stretches while our event loop runs late) */
    timeoutMs: () => number,
    retryForMs = JOIN_RETRY_FOR_MS,
  ): Promise<void> {
    const started = Date.now()
    const backoff = new Backoff({ minMs: 500, maxMs: 8_000 })
    let lastErr: Error | undefined
    let rounds = 0
    for (;;) {
      rounds++
      for (const seed of seeds) {
        try {
          await this.redeemWith(seed, inviteHex, name, timeoutMs())
          return
        } catch (err) {
          if (err instanceof JoinRefusedError || err instanceof InviteError) throw err
          lastErr = err as Error
          this.deps.reporter.log.warn(
            { seed, round: rounds, err: lastErr.message },
            'could not reach the inviter',
          )
        }
      }
      backoff.failed()
      const wait = backoff.due()
      if (seeds.length === 0 || Date.now() - started + wait >= retryForMs) break
      await new Promise((r) => setTimeout(r, wait))
    }
    throw new Error(
      `could not reach any member named in the join token (${seeds.length} addresses, ${rounds} tries each ` +
        `over ${Math.round((Date.now() - started) / 1000)} s; last error: ${lastErr?.message ?? 'no address'}); ` +
        whatToCheck(lastErr),
    )
  }

  private async redeemWith(seed: string, inviteHex: string, name: string, timeoutMs: number): Promise<void> {
    const { node, trust, cluster } = this.deps
    const self = peerIdFromPrivateKey(this.deps.key).toString()
    const signal = AbortSignal.timeout(timeoutMs)
    const conn = await node.dial(multiaddr(seed), { signal })
    const stream = await conn.newStream(joinProtocol(cluster), { signal, runOnLimitedConnection: true })
    let reply: JoinReply
    try {
      const pb = pbStream(stream, { maxDataLength: MAX })
      await pb.write({ inviteId: Buffer.from(inviteHex, 'hex'), name }, JoinRequest, { signal })
      reply = await pb.read(JoinReply, { signal })
      await closeOrAbort(stream, signal)
    } catch (err) {
      // an inviter that never answers: end the stream here too (the next try opens a new one)
      stream.abort(err as Error)
      throw err
    }
    if (reply.error !== '') throw new JoinRefusedError(`the cluster refused this join token: ${reply.error}`)
    if (reply.certificate === undefined)
      throw new JoinRefusedError('the inviter answered without a certificate')
    for (const s of reply.statements) trust.add(s)
    trust.setCertificate(reply.certificate, self)
    saveCluster(this.deps.dataDir, { ...cluster, invite: undefined })
    // reconnect as a member: the joining connection served only the invite
    await Promise.allSettled(node.getConnections(conn.remotePeer).map((c) => c.close()))
    await this.redialAsMember(seed, timeoutMs)
  }

  /**
   * Dial the inviter again now, as a member. Its per-address limit on new connections may refuse
   * this dial right after the join's own (several members joining from behind one address);
   * a few short retries beat waiting for the node's redial backoff (10 s, then 20 s).
   */
  private async redialAsMember(seed: string, timeoutMs: number): Promise<void> {
    const backoff = new Backoff({ minMs: 500, maxMs: 2_000 })
    // bounded as a whole: the agent's start waits for this, and the redial tick takes over
    const signal = AbortSignal.timeout(Math.min(timeoutMs, REDIAL_FOR_MS))
    for (let attempt = 1; attempt <= REDIAL_ATTEMPTS && !signal.aborted; attempt++) {
      try {
        await this.deps.node.dial(multiaddr(seed), { signal })
        return
      } catch (err) {
        this.deps.reporter.log.debug(
          { seed, attempt, err: (err as Error).message },
          'redial after joining failed',
        )
      }
      backoff.failed()
      await new Promise((r) => setTimeout(r, backoff.due()))
    }
  }
}

/**
 * libp2p reports any handshake that did not complete as "Encryption failed": a member refusing
 * the connection before the handshake (too many new connections from one address, as when
 * several machines behind one NAT join at once) looks the same as a wrong cluster key.
 */
export function whatToCheck(err: Error | undefined): string {
  // libp2p wraps a dial that timed out during Noise as EncryptionFailedError too: tell them apart
  if (err !== undefined && /abort|time ?out/i.test(err.message))
    return (
      'the inviting member did not finish the handshake in time: it may be busy (many members joining ' +
      'at once, or a loaded machine) or the network between the machines is slow or dropping packets; ' +
      'retry in a minute, or give --join a token from a less busy member'
    )
  if (err?.name === 'EncryptionFailedError')
    return (
      'the handshake did not complete: the inviting member may be refusing new connections from this ' +
      'address for a moment (it accepts a few per second from one address; retry in a minute), or the ' +
      "token is from another cluster (make a fresh one with 'mesh invite' on the inviting member)"
    )
  return 'check the network between the machines and that the inviting agent runs'
}

export type { PeerId }
