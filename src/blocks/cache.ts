import { parseCid } from './cid.js'
import type { BlocksContext } from './context.js'
import { readManifest } from './dataset.js'
import { BlocksError } from './errors.js'
import type { ExchangeService } from './exchange-service.js'
import type { Pin } from './pins.js'
import { parseRef } from './tags.js'

/** CIDs running transfers need: the cache never evicts them meanwhile. */
export class InUse {
  private readonly sets = new Set<Set<string>>()

  /** Hold every CID in `keep` (the caller may add to it later) until release(keep). */
  hold(keep: Set<string>): Set<string> {
    this.sets.add(keep)
    return keep
  }

  release(keep: Set<string>): void {
    this.sets.delete(keep)
  }

  has(cid: string): boolean {
    for (const s of this.sets) if (s.has(cid)) return true
    return false
  }
}

/**
 * Pins and the cache: what is pinned stays, everything else the store holds is a cache that
 * gc() evicts down to blocks.cacheBytes, sparing blocks a running transfer holds (InUse).
 */
export class BlockCache {
  /** pinned root -> every CID under it, computed from its manifest */
  private readonly closure = new Map<string, Set<string>>()
  private gcRunning: Promise<void> | undefined

  constructor(
    private readonly ctx: BlocksContext,
    private readonly inUse: InUse,
    private readonly exchange: ExchangeService,
  ) {}

  /** A pin of `root` changed: its closure is computed again at the next gc. */
  forget(root: string): void {
    this.closure.delete(root)
  }

  async pin(
    refText: string,
    signal?: AbortSignal,
  ): Promise<{ root: string; bytes: number; fetched: number }> {
    const ctx = this.ctx
    const root = ctx.resolve(parseRef(refText))
    const key = root.toString()
    const { bytes, fetched } = await this.exchange.fetchAll(root, [], signal)
    const prev = ctx.pins.get(key)
    await ctx.pins.set(key, {
      kind: 'dataset',
      replicas: prev?.replicas ?? 0,
      complete: true,
      since: prev?.since ?? Date.now(),
    })
    this.forget(key)
    void this.exchange.provide(root)
    return { root: key, bytes, fetched }
  }

  async unpin(refText: string): Promise<{ root: string; unpinned: boolean }> {
    const root = this.ctx.resolve(parseRef(refText)).toString()
    const had = await this.ctx.pins.delete(root)
    if (!had) throw new BlocksError('not-found', `${refText} is not pinned here ('mesh pins' lists what is)`)
    this.forget(root)
    void this.gc()
    return { root, unpinned: true }
  }

  pinList(): Array<{ root: string } & Pin> {
    return this.ctx.pins.entries().map(([root, p]) => ({ root, ...p }))
  }

  /** Every CID under a pinned root (from its manifest; what is missing is simply not there). */
  private async pinnedClosure(root: string, pin: Pin): Promise<Set<string>> {
    const cached = this.closure.get(root)
    if (cached !== undefined) return cached
    const set = new Set<string>([root])
    if (pin.kind === 'dataset') {
      try {
        const { info, entries } = await readManifest(this.ctx.store, parseCid(root))
        for (const [c] of info.manifest) set.add(c)
        for (const e of entries) if (e.type === 'file') for (const [c] of e.chunks) set.add(c)
        this.closure.set(root, set)
      } catch {
        // incomplete: keep the root and retry next time
      }
    } else {
      this.closure.set(root, set)
    }
    return set
  }

  /**
   * After ENOSPC on the store: drop every unpinned block no transfer uses (the cache, and what
   * the failed put or get had written), so the space comes back without the user hunting for it.
   */
  async freeSpace(): Promise<void> {
    await this.gcRunning
    await this.gc(0)
  }

  /** Evict unpinned, unused blocks down to `budget` (blocks.cacheBytes). */
  gc(budget = this.ctx.config.cacheBytes): Promise<void> {
    const ctx = this.ctx
    this.gcRunning ??= (async () => {
      try {
        if (ctx.store.totalBytes <= budget) return
        const pinned = new Set<string>()
        for (const [root, pin] of ctx.pins.entries())
          for (const c of await this.pinnedClosure(root, pin)) pinned.add(c)
        const keep = (c: string) => pinned.has(c) || this.inUse.has(c)
        const r = await ctx.store.evict(budget, keep)
        if (r.blocks > 0) {
          ctx.metrics.evicted.inc(r.bytes)
          ctx.log.info({ blocks: r.blocks, bytes: r.bytes }, 'evicted cached blocks over the budget')
        }
      } catch (err) {
        ctx.log.warn({ err: (err as Error).message }, 'eviction failed')
      }
    })().finally(() => {
      this.gcRunning = undefined
    })
    return this.gcRunning
  }
}
