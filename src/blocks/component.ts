import type { Connection, Stream } from '@libp2p/interface'
import type { DatasetReply, DatasetRequest } from '../../protocols/blocks.js'
import { type Component, Lifecycle } from '../kernel/component.js'
import { BlockCache, InUse } from './cache.js'
import { parseCid } from './cid.js'
import { BlocksContext, type BlocksDeps } from './context.js'
import { serveControl } from './control.js'
import { Datasets } from './datasets.js'
import { explainFsError } from './errors.js'
import { ExchangeService } from './exchange-service.js'
import { Replicas } from './replicas.js'
import { TagSync } from './tag-sync.js'

export type { DatasetView, GetProgress, GetResult, PutResult } from './datasets.js'
export type { ProviderReport } from './exchange-service.js'
export type { ReplicaReport } from './replicas.js'

/**
 * Blocks and datasets (protocols/blocks.md), composed of its parts: the exchange service
 * (serving and fetching blocks, the DHT), the cache (pins and eviction under a size budget),
 * tag sync (gossip and push-pull), replicas (replicate, hold, repair) and datasets
 * (put/get/cat/ls). This file starts and stops them and routes the control protocol.
 */
export class BlocksComponent implements Component {
  readonly name = 'blocks'
  readonly exchange: ExchangeService
  readonly cache: BlockCache
  readonly tagSync: TagSync
  readonly replicas: Replicas
  readonly datasets: Datasets
  private readonly ctx: BlocksContext
  private readonly running = new Lifecycle()

  constructor(deps: BlocksDeps) {
    const ctx = new BlocksContext(deps)
    this.ctx = ctx
    const inUse = new InUse()
    this.exchange = new ExchangeService(ctx, inUse)
    this.cache = new BlockCache(ctx, inUse, this.exchange)
    this.tagSync = new TagSync(ctx)
    this.replicas = new Replicas(ctx, this.exchange, this.cache)
    this.datasets = new Datasets(ctx, {
      inUse,
      exchange: this.exchange,
      cache: this.cache,
      replicas: this.replicas,
      tagSync: this.tagSync,
    })
    deps.reporter.health(() => ({
      ok: ctx.started,
      detail: `${ctx.store.count} blocks, ${ctx.store.totalBytes} bytes`,
    }))
  }

  get store() {
    return this.ctx.store
  }

  async start(): Promise<void> {
    const ctx = this.ctx
    try {
      await ctx.store.open()
    } catch (err) {
      throw explainFsError(err, `holding ${ctx.store.dir}`)
    }
    ctx.tags.load()
    ctx.pins.load()
    await this.exchange.start()
    await ctx.node.handle(ctx.controlProtocol, (s, c) => void this.onControl(s, c), {
      runOnLimitedConnection: true,
      maxInboundStreams: 64,
    })
    this.tagSync.start(this.running)
    const life = this.running
    life.every(ctx.config.repairIntervalMs, () => void this.replicas.repair())
    life.every(5 * 60_000, () => void this.cache.gc())
    // re-announce what we pin: provider records expire
    const provideAll = () => {
      for (const [root] of ctx.pins.entries()) void this.exchange.provide(parseCid(root))
    }
    life.every(12 * 3_600_000, provideAll)
    life.after(5_000, provideAll)
    ctx.started = true
  }

  async stop(): Promise<void> {
    const ctx = this.ctx
    ctx.started = false
    this.running.dispose()
    await ctx.node.unhandle([ctx.exchangeProtocol, ctx.controlProtocol]).catch(() => {})
    await ctx.tags.flush()
    await ctx.store.close()
  }

  /** A member's control request: tag sync, which roots we hold, hold a replica. */
  private onControl(stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer.toString()
    const ctx = this.ctx
    return serveControl(ctx, stream, async (req: DatasetRequest) => {
      const reply: DatasetReply = { ok: false, held: [], error: '' }
      if (req.tagSync !== undefined) {
        this.tagSync.ingest(req.tagSync.tags)
        reply.tags = { tags: ctx.tags.all() }
        reply.ok = true
      }
      for (const h of req.holds.slice(0, 1024)) reply.held.push(ctx.pins.get(h)?.complete === true)
      if (req.replicate !== undefined) {
        try {
          await this.replicas.hold(parseCid(req.replicate.root), req.replicate.replicas, peer)
          reply.ok = true
        } catch (err) {
          reply.ok = false
          reply.error = (err as Error).message
        }
      }
      return reply
    })
  }
}
