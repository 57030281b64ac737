import { peerIdFromString } from '@libp2p/peer-id'
import type { BlockCache } from './cache.js'
import type { CID } from './cid.js'
import type { BlocksContext } from './context.js'
import { callControl } from './control.js'
import { BlocksError } from './errors.js'
import type { ExchangeService } from './exchange-service.js'
import { type MemberStatus, placement, quorum, rank, rankedAbove } from './replication.js'

export interface ReplicaReport {
  replicas: number
  quorum: number
  targets: Array<{ peerId: string; name: string; ok: boolean; error?: string }>
  confirmed: number
}

/**
 * Replicas: place n verified copies of a dataset on the members rendezvous hashing picks
 * (replication.ts), hold a copy when asked, and repair what is missing when members change.
 */
export class Replicas {
  private readonly replicating = new Map<string, Promise<void>>()
  private repairing = false

  constructor(
    private readonly ctx: BlocksContext,
    private readonly exchange: ExchangeService,
    private readonly cache: BlockCache,
  ) {}

  /** Hold a complete, verified, pinned copy of `root` (a target's side of replicate). */
  hold(root: CID, replicas: number, from: string): Promise<void> {
    const ctx = this.ctx
    const key = root.toString()
    const running = this.replicating.get(key)
    if (running !== undefined) return running
    const p = (async () => {
      const pin = ctx.pins.get(key)
      if (pin?.complete === true) {
        if (pin.replicas < replicas) await ctx.pins.set(key, { ...pin, replicas })
        return
      }
      // pinned as incomplete first: the blocks we fetch are never evicted meanwhile
      await ctx.pins.set(key, { kind: 'dataset', replicas, complete: false, since: Date.now() })
      try {
        await this.exchange.fetchAll(root, [from], AbortSignal.timeout(ctx.config.replicateTimeoutMs))
      } catch (err) {
        ctx.metrics.transfers.inc({ kind: 'replica', result: 'error' })
        throw err
      }
      await ctx.pins.set(key, { kind: 'dataset', replicas, complete: true, since: Date.now() })
      this.cache.forget(key)
      ctx.metrics.transfers.inc({ kind: 'replica', result: 'ok' })
      ctx.log.info({ root: key, from }, 'holding a replica')
      void this.exchange.provide(root)
    })().finally(() => this.replicating.delete(key))
    this.replicating.set(key, p)
    return p
  }

  private memberStatuses(): Array<{ peerId: string; status: MemberStatus }> {
    const ctx = this.ctx
    return ctx.deps.membership.rows().map((r) => ({
      peerId: r.peerId,
      status: ctx.deps.node.trust.isRevoked(r.peerId) ? 'left' : (r.status as MemberStatus),
    }))
  }

  /**
   * Place `n` copies on the alive members rendezvous hashing picks; resolves once a quorum
   * (n/2+1) confirmed a verified copy, else throws a 'quorum' BlocksError naming who is missing.
   */
  async replicate(root: CID, n: number, signal?: AbortSignal): Promise<ReplicaReport> {
    const ctx = this.ctx
    const self = ctx.self
    const key = root.toString()
    const members = this.memberStatuses()
    if (!members.some((m) => m.peerId === self)) members.push({ peerId: self, status: 'alive' })
    const plan = placement(key, n, members)
    const need = quorum(n)
    const names = ctx.names()
    const timeout = ctx.config.replicateTimeoutMs
    const results = await Promise.all(
      plan.targets.map(async (peerId) => {
        if (peerId === self)
          return { peerId, name: ctx.nameOf(peerId, names), ok: ctx.pins.get(key)?.complete === true }
        try {
          signal?.throwIfAborted()
          const reply = await callControl(
            ctx,
            peerIdFromString(peerId),
            { replicate: { root: key, replicas: n }, holds: [] },
            timeout,
          )
          return {
            peerId,
            name: ctx.nameOf(peerId, names),
            ok: reply.ok,
            error: reply.ok ? undefined : reply.error,
          }
        } catch (err) {
          return {
            peerId,
            name: ctx.nameOf(peerId, names),
            ok: false,
            error: `no answer: ${(err as Error).message}`,
          }
        }
      }),
    )
    const confirmed = results.filter((r) => r.ok).length
    const report: ReplicaReport = { replicas: n, quorum: need, targets: results, confirmed }
    if (confirmed < need) {
      const missing = [
        ...results.filter((r) => !r.ok).map((r) => `${r.name} (${r.error ?? 'failed'})`),
        ...plan.missing.map((m) => `${ctx.nameOf(m.peerId, names)} (${m.status})`),
      ]
      if (plan.targets.length + plan.missing.length < n)
        missing.push(
          `${n - plan.targets.length - plan.missing.length} more member(s): the cluster has too few`,
        )
      ctx.metrics.transfers.inc({ kind: 'replicate', result: 'quorum-failed' })
      throw new BlocksError(
        'quorum',
        `replication of ${key} failed: ${confirmed} of ${n} replicas confirmed a verified copy, a write needs ${need}. ` +
          `Missing: ${missing.join('; ')}. No tag was published; the blocks stay pinned here, retry once members are back`,
      )
    }
    ctx.metrics.transfers.inc({ kind: 'replicate', result: 'ok' })
    return report
  }

  /** Which of `roots` a member holds complete and pinned. */
  private async holds(peer: string, roots: string[]): Promise<boolean[]> {
    const reply = await callControl(this.ctx, peerIdFromString(peer), { holds: roots })
    return reply.held
  }

  /**
   * Repair: for each dataset pinned with replicas > 0, the highest-ranked alive member holding
   * it makes sure the n members placement picks now hold it too (a holder died, members joined).
   */
  async repair(): Promise<number> {
    const ctx = this.ctx
    if (this.repairing || !ctx.started) return 0
    this.repairing = true
    let placed = 0
    try {
      const self = ctx.self
      const members = this.memberStatuses()
      const alive = members.filter((m) => m.status === 'alive' && m.peerId !== self).map((m) => m.peerId)
      for (const [root, pin] of ctx.pins.entries()) {
        if (pin.replicas <= 0 || !pin.complete || pin.kind !== 'dataset') continue
        const above = rankedAbove(root, self, alive, 2 * pin.replicas)
        let someoneAbove = false
        for (const p of above) {
          const held = await this.holds(p, [root]).catch(() => [false])
          if (held[0] === true) {
            someoneAbove = true
            break
          }
        }
        if (someoneAbove) continue
        const targets = rank(root, [...alive, self])
          .slice(0, pin.replicas)
          .filter((p) => p !== self)
        for (const p of targets) {
          const held = await this.holds(p, [root]).catch(() => undefined)
          if (held === undefined || held[0] === true) continue
          try {
            const reply = await callControl(
              ctx,
              peerIdFromString(p),
              { replicate: { root, replicas: pin.replicas }, holds: [] },
              ctx.config.replicateTimeoutMs,
            )
            ctx.metrics.repairs.inc({ result: reply.ok ? 'ok' : 'error' })
            if (reply.ok) {
              placed++
              ctx.log.info({ root, to: ctx.nameOf(p) }, 'repair: placed a missing replica')
            } else
              ctx.log.warn(
                { root, to: ctx.nameOf(p), err: reply.error },
                'repair: target could not take a replica',
              )
          } catch (err) {
            ctx.metrics.repairs.inc({ result: 'error' })
            ctx.log.debug({ root, to: p, err: (err as Error).message }, 'repair: target unreachable')
          }
        }
      }
    } finally {
      this.repairing = false
    }
    return placed
  }
}
