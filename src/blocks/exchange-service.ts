import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { routingTableSize } from '../node/libp2p.js'
import { MAX_BLOCK } from './blockstore.js'
import type { InUse } from './cache.js'
import { type CID, parseCid } from './cid.js'
import type { BlocksContext } from './context.js'
import { readManifest } from './dataset.js'
import { BlocksError } from './errors.js'
import { RateLimiter, Session, serveExchange } from './exchange.js'
import { decodeRoot, type Entry, isRoot, type Root } from './manifest.js'
import { type Need, type ProviderView, Transfer, type TransferProgress } from './transfer.js'

/** how long one provider search may wait on the DHT */
const DHT_BUDGET_MS = 8_000
const PROVIDE_ATTEMPTS = 5
const PROVIDE_TIMEOUT_MS = 20_000

export interface ProviderReport extends ProviderView {
  name: string
}

/** What is known of one block (mesh block stat). */
export interface BlockStat {
  cid: string
  local: boolean
  size?: number
  pinned: boolean
  /** set when the block is a dataset root */
  dataset?: Partial<Root>
  providers: Array<{ peerId: string; name: string }>
}

/**
 * The exchange service: serves our blocks to members (protocols/blocks.md) and fetches blocks
 * from them. It finds providers (hints, connected members, alive members, DHT records), runs
 * transfers, announces what we hold on the DHT, and answers the single-block calls.
 */
export class ExchangeService {
  private readonly limiter: RateLimiter

  constructor(
    private readonly ctx: BlocksContext,
    private readonly inUse: InUse,
  ) {
    this.limiter = new RateLimiter(ctx.config.serveBytesPerSec)
  }

  /** Serve the exchange protocol to members. */
  async start(): Promise<void> {
    const ctx = this.ctx
    await ctx.node.handle(
      ctx.exchangeProtocol,
      (stream, conn) =>
        void serveExchange(
          stream,
          conn,
          ctx.store,
          this.limiter,
          {
            onServed: (n) => {
              ctx.metrics.served.inc(n)
              ctx.metrics.servedBlocks.inc()
            },
            onMessage: (kind, n = 1) => ctx.metrics.wants.inc({ kind }, n),
          },
          ctx.config.idleStreamMs,
        ),
      { runOnLimitedConnection: true, maxInboundStreams: 256, maxOutboundStreams: 256 },
    )
  }

  // ---- providers and transfers ----------------------------------------------------------------

  /** Hints first, then connected members, then every alive member, then DHT provider records. */
  private async *candidates(key: CID, signal: AbortSignal, hints: readonly string[]): AsyncIterable<PeerId> {
    const ctx = this.ctx
    const node = ctx.node
    const seen = new Set<string>([ctx.self])
    const admission = node.services.admission
    const emit = (p: string) => {
      if (seen.has(p)) return false
      seen.add(p)
      return true
    }
    for (const h of hints) if (emit(h)) yield peerIdFromString(h)
    for (const c of node.getConnections()) {
      const p = c.remotePeer.toString()
      if (admission.isAdmitted(c.remotePeer) && emit(p)) yield c.remotePeer
    }
    for (const r of ctx.deps.membership.rows()) {
      if (r.status === 'alive' && emit(r.peerId)) yield peerIdFromString(r.peerId)
    }
    if (!ctx.deps.dhtEnabled || signal.aborted) return
    // a timer of our own: a timeout signal inside AbortSignal.any can be collected before it fires
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(new Error('DHT search budget spent')), DHT_BUDGET_MS)
    const onAbort = () => ac.abort(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      for await (const prov of node.contentRouting.findProviders(key, { signal: ac.signal })) {
        const p = prov.id.toString()
        if (!emit(p)) continue
        if (prov.multiaddrs.length > 0)
          await node.peerStore.merge(prov.id, { multiaddrs: prov.multiaddrs }).catch(() => {})
        yield prov.id
      }
    } catch (err) {
      ctx.log.debug({ err: (err as Error).message }, 'DHT provider search ended')
    } finally {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
    }
  }

  private async openSession(peer: PeerId, signal: AbortSignal): Promise<Session> {
    const ctx = this.ctx
    const stream = await ctx.node.dialProtocol(peer, ctx.exchangeProtocol, {
      signal,
      runOnLimitedConnection: true,
    })
    return new Session(peer, stream, {
      maxBufferBytes: ctx.config.windowBytes + 4 * MAX_BLOCK,
      onUnwanted: () => ctx.metrics.wants.inc({ kind: 'unwanted-block' }),
    })
  }

  /** A transfer of blocks under `key` from whoever has them (`hints` asked first). */
  transfer(key: CID, hints: readonly string[], signal?: AbortSignal): Transfer {
    const ctx = this.ctx
    const b = ctx.config
    return new Transfer(
      key,
      {
        self: ctx.self,
        store: ctx.store,
        open: (p, s) => this.openSession(p, s),
        candidates: (k, s) => this.candidates(k, s, hints),
        windowBytes: b.windowBytes,
        maxWants: b.maxWants,
        providerTimeoutMs: b.providerTimeoutMs,
        stallTimeoutMs: b.stallTimeoutMs,
        nameOf: (peer) => ctx.nameOf(peer),
        onCorrupt: (peer) => {
          ctx.metrics.corrupt.inc({ source: 'network' })
          ctx.log.warn(
            { peer },
            'a provider sent a block that does not match its CID: dropped, provider not asked again',
          )
        },
        onBlock: (_cid, size) => {
          ctx.metrics.received.inc(size)
          ctx.metrics.receivedBlocks.inc()
        },
        log: ctx.log,
      },
      signal,
    )
  }

  providerReport(t: Transfer): ProviderReport[] {
    const names = this.ctx.names()
    return t.providerViews().map((p) => ({ ...p, name: this.ctx.nameOf(p.peerId, names) }))
  }

  /** The first fetch of a transfer: nobody having the key is a clear 404. */
  async fetchOrNotFound(
    t: Transfer,
    needs: Need[],
    key: CID,
    onProgress?: (p: TransferProgress) => void,
  ): Promise<void> {
    try {
      await t.fetch(needs, onProgress)
    } catch (err) {
      if (err instanceof BlocksError && err.code === 'unavailable' && !t.everActive) {
        throw new BlocksError(
          'not-found',
          `no member has ${key}: it is not in the local store and no connected member or DHT provider record has it`,
        )
      }
      throw err
    }
  }

  /** Root and manifest of a dataset, fetched when not local. */
  async manifest(
    root: CID,
    t?: Transfer,
    onProgress?: (p: TransferProgress, phase: 'root' | 'manifest') => void,
  ): Promise<{ info: Root; entries: Entry[] }> {
    const store = this.ctx.store
    const own = t === undefined
    const tr = t ?? this.transfer(root, [])
    try {
      if (!store.has(root))
        await this.fetchOrNotFound(tr, [{ cid: root, size: 0 }], root, (p) => onProgress?.(p, 'root'))
      const bytes = await store.get(root)
      if (bytes === undefined) throw new BlocksError('unavailable', `block ${root} vanished from the store`)
      const info = decodeRoot(bytes, root)
      await tr.fetch(
        info.manifest.map(([c, size]) => ({ cid: parseCid(c), size })),
        (p) => onProgress?.(p, 'manifest'),
      )
      return await readManifest(store, root)
    } finally {
      if (own) await tr.close()
    }
  }

  /** Every block of a dataset into the store (pin, replicate): no files are written. */
  async fetchAll(
    root: CID,
    hints: readonly string[],
    signal?: AbortSignal,
  ): Promise<{ bytes: number; fetched: number }> {
    const t = this.transfer(root, hints, signal)
    const keep = this.inUse.hold(new Set<string>([root.toString()]))
    try {
      const { info, entries } = await this.manifest(root, t)
      for (const [c] of info.manifest) keep.add(c)
      const needs: Need[] = []
      for (const e of entries) {
        if (e.type !== 'file') continue
        for (const [c, size] of e.chunks) {
          keep.add(c)
          needs.push({ cid: parseCid(c), size })
        }
      }
      await t.fetch(needs)
      return { bytes: info.bytes, fetched: t.progress.bytes }
    } finally {
      this.inUse.release(keep)
      await t.close()
    }
  }

  // ---- the DHT ------------------------------------------------------------------------------

  /**
   * Announce `cid` on the cluster's DHT. A young or shrinking cluster may have no DHT peers to
   * take the record yet: retry a few times, a little later each time, while the agent runs
   * (members also find providers by asking each other, so this is a second way, not the only one).
   */
  async provide(cid: CID): Promise<void> {
    const ctx = this.ctx
    if (!ctx.deps.dhtEnabled) return
    for (let attempt = 1; attempt <= PROVIDE_ATTEMPTS && ctx.started; attempt++) {
      try {
        await ctx.node.contentRouting.provide(cid, { signal: AbortSignal.timeout(PROVIDE_TIMEOUT_MS) })
        ctx.metrics.provides.inc({ result: 'ok' })
        return
      } catch (err) {
        ctx.metrics.provides.inc({ result: 'error' })
        ctx.log.debug({ cid: cid.toString(), attempt, err: (err as Error).message }, 'DHT provide failed')
      }
      await new Promise((r) => setTimeout(r, attempt * 5_000).unref())
    }
  }

  /**
   * Providers of `cid` found through the DHT alone (not by asking members): for each, the peers
   * whose DHT answered with its provider record ('via'; our own id when the record is in our own
   * store). Bounded by `timeoutMs`; what was found by then is returned.
   */
  async dhtProviders(
    cid: CID,
    timeoutMs = DHT_BUDGET_MS,
  ): Promise<{ routingTable: number; providers: Array<{ peerId: string; name: string; via: string[] }> }> {
    const ctx = this.ctx
    const dht = ctx.deps.dhtEnabled ? ctx.node.services.dht : undefined
    if (dht === undefined) throw new BlocksError('refused', 'the DHT is off on this member (dht.enabled)')
    const found = new Map<string, Set<string>>()
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(new Error('DHT search budget spent')), timeoutMs)
    try {
      for await (const ev of dht.findProviders(cid, { signal: ac.signal })) {
        if (ev.name !== 'PROVIDER' && ev.name !== 'PEER_RESPONSE') continue
        for (const p of ev.providers) {
          const k = p.id.toString()
          const via = found.get(k) ?? new Set<string>()
          via.add(ev.from.toString())
          found.set(k, via)
        }
      }
    } catch (err) {
      ctx.log.debug({ err: (err as Error).message }, 'DHT provider search ended')
    } finally {
      clearTimeout(timer)
    }
    const names = ctx.names()
    return {
      routingTable: routingTableSize(dht),
      providers: [...found].map(([peerId, via]) => ({
        peerId,
        name: ctx.nameOf(peerId, names),
        via: [...via],
      })),
    }
  }

  // ---- single blocks ------------------------------------------------------------------------

  async blockPut(bytes: Uint8Array): Promise<{ cid: string; size: number; added: boolean }> {
    if (bytes.byteLength > MAX_BLOCK) {
      throw new BlocksError(
        'refused',
        `a block is at most ${MAX_BLOCK} bytes (2 MiB) and this is ${bytes.byteLength}; use 'mesh put' for files of any size`,
      )
    }
    const { cid, added } = await this.ctx.store.add(bytes)
    await this.ctx.pins.set(cid.toString(), { kind: 'block', replicas: 0, complete: true, since: Date.now() })
    void this.provide(cid)
    return { cid: cid.toString(), size: bytes.byteLength, added }
  }

  /** A block's bytes: from the store, or fetched from members (and then kept in the cache). */
  async blockGet(cid: CID, signal?: AbortSignal): Promise<{ bytes: Uint8Array; from: ProviderReport[] }> {
    const store = this.ctx.store
    const local = await store.get(cid)
    if (local !== undefined) return { bytes: local, from: [] }
    const t = this.transfer(cid, [], signal)
    const keep = this.inUse.hold(new Set([cid.toString()]))
    try {
      await this.fetchOrNotFound(t, [{ cid, size: 0 }], cid)
      const bytes = await store.get(cid)
      if (bytes === undefined) throw new BlocksError('unavailable', `block ${cid} vanished from the store`)
      return { bytes, from: this.providerReport(t) }
    } finally {
      this.inUse.release(keep)
      await t.close()
    }
  }

  async blockStat(cid: CID): Promise<BlockStat> {
    let dataset: Partial<Root> | undefined
    const bytes = await this.ctx.store.get(cid)
    if (bytes !== undefined && isRoot(bytes)) {
      try {
        const r = decodeRoot(bytes, cid)
        dataset = {
          name: r.name,
          type: r.type,
          files: r.files,
          dirs: r.dirs,
          symlinks: r.symlinks,
          bytes: r.bytes,
        }
      } catch {}
    }
    const providers = await this.whoHas(cid)
    if (bytes === undefined && providers.length === 0) {
      throw new BlocksError(
        'not-found',
        `no member has ${cid}: it is not in the local store and no member or DHT provider record has it`,
      )
    }
    return {
      cid: cid.toString(),
      local: bytes !== undefined,
      size: bytes?.byteLength,
      pinned: this.ctx.pins.has(cid.toString()),
      dataset,
      providers,
    }
  }

  /** Members that answer HAVE for `cid` (each asked once, bounded in time). */
  async whoHas(cid: CID, timeoutMs = 5_000): Promise<Array<{ peerId: string; name: string }>> {
    const signal = AbortSignal.timeout(timeoutMs)
    const asks: Array<Promise<string | undefined>> = []
    try {
      for await (const peer of this.candidates(cid, signal, [])) {
        asks.push(
          (async () => {
            let s: Session | undefined
            try {
              s = await this.openSession(peer, signal)
              const have = await Promise.race([
                s.wantHave(cid),
                new Promise<boolean>((r) => signal.addEventListener('abort', () => r(false), { once: true })),
              ])
              return have ? peer.toString() : undefined
            } catch {
              return undefined
            } finally {
              await s?.close()
            }
          })(),
        )
        if (asks.length >= 64) break
      }
    } catch {}
    const names = this.ctx.names()
    return (await Promise.all(asks))
      .filter((p): p is string => p !== undefined)
      .map((peerId) => ({ peerId, name: this.ctx.nameOf(peerId, names) }))
  }
}
