import { basename, dirname, join } from 'node:path'
import type { Message } from '@libp2p/gossipsub'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { pbStream } from '@libp2p/utils'
import { DatasetReply, DatasetRequest, TagSet } from '../../protocols/blocks.js'
import type { Component } from '../kernel/component.js'
import { dataPaths } from '../kernel/datadir.js'
import type { EventBus } from '../kernel/events.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import { displayNames } from '../membership/names.js'
import type { MembershipComponent } from '../membership/service.js'
import { type Cluster, protocolPrefix } from '../node/cluster.js'
import { onEveryConnection } from '../node/connections.js'
import { routingTableSize } from '../node/libp2p.js'
import type { NodeComponent } from '../node/node-component.js'
import { Blockstore, MAX_BLOCK } from './blockstore.js'
import { type CID, parseCid } from './cid.js'
import type { BlocksConfig } from './config.js'
import { DatasetWriter, destinationOf, putPath, readManifest, upToDate } from './dataset.js'
import { BlocksError, explainFsError } from './errors.js'
import { RateLimiter, Session, serveExchange } from './exchange.js'
import { decodeRoot, type Entry, type FileEntry, isRoot, type Root } from './manifest.js'
import { type Pin, PinStore } from './pins.js'
import { type MemberStatus, placement, quorum, rank, rankedAbove } from './replication.js'
import { checkTagName, parseRef, type Ref, signTag, type Tag, TagStore } from './tags.js'
import { type Need, type ProviderView, Transfer, type TransferProgress } from './transfer.js'

const MAX_CONTROL = 4 << 20
const CONTROL_TIMEOUT_MS = 10_000
/** how long one provider search may wait on the DHT */
const DHT_BUDGET_MS = 8_000

export interface ProviderReport extends ProviderView {
  name: string
}

export interface GetProgress extends TransferProgress {
  phase: 'root' | 'manifest' | 'files' | 'finishing'
  files: number
  totalFiles: number
}

export interface GetResult {
  root: string
  dest: string
  name: string
  type: 'dir' | 'file'
  files: number
  dirs: number
  symlinks: number
  bytes: number
  /** files already up to date in DEST (resume) */
  skippedFiles: number
  fetchedBytes: number
  fetchedBlocks: number
  localBytes: number
  providers: ProviderReport[]
  corrupt: number
  ms: number
}

export interface ReplicaReport {
  replicas: number
  quorum: number
  targets: Array<{ peerId: string; name: string; ok: boolean; error?: string }>
  confirmed: number
}

export interface PutResult {
  root: string
  name: string
  type: 'dir' | 'file'
  files: number
  dirs: number
  symlinks: number
  bytes: number
  blocks: number
  newBlocks: number
  newBytes: number
  tag?: { dataset: string; tag: string; seq: string }
  replication?: ReplicaReport
  ms: number
}

export interface DatasetView {
  dataset: string
  tag: string
  root: string
  seq: string
  publisher: string
  publisherName: string
  time: number
  replicas: number
  local: boolean
  pinned: boolean
}

/**
 * Blocks and datasets (protocols/blocks.md): the blockstore, the exchange protocol (served to
 * members and used by transfers), the datasets control protocol (tag sync, replicate, holds),
 * tag gossip, pins with replica repair, and eviction of cached blocks under a size budget.
 */
const PROVIDE_ATTEMPTS = 5
const PROVIDE_TIMEOUT_MS = 20_000

export class BlocksComponent implements Component {
  readonly name = 'blocks'
  readonly store: Blockstore
  readonly tags: TagStore
  readonly pins: PinStore
  readonly exchangeProtocol: string
  readonly controlProtocol: string
  readonly topic: string
  private limiter: RateLimiter
  private readonly timers: NodeJS.Timeout[] = []
  /** CIDs running transfers need: never evicted meanwhile */
  private readonly protect = new Set<Set<string>>()
  /** pinned root -> every CID under it, computed from its manifest */
  private readonly closure = new Map<string, Set<string>>()
  private readonly replicating = new Map<string, Promise<void>>()
  private repairing = false
  private gcRunning: Promise<void> | undefined
  private started = false
  readonly metrics

  constructor(
    private readonly deps: {
      node: NodeComponent
      membership: MembershipComponent
      cluster: Cluster
      config: BlocksConfig
      /** providers are announced and found on the DHT too (dht.enabled) */
      dhtEnabled: boolean
      dataDir: string
      reporter: ComponentReporter
      events?: EventBus
    },
  ) {
    const prefix = protocolPrefix(deps.cluster)
    this.exchangeProtocol = `${prefix}/blocks/1.0.0`
    this.controlProtocol = `${prefix}/datasets/1.0.0`
    this.topic = `${prefix}/blocks/tags/1`
    const r = deps.reporter
    this.metrics = {
      blocks: r.gauge('store_blocks', 'blocks in the local store', [], () => {
        this.metrics.blocks.set(this.store.count)
      }),
      bytes: r.gauge('store_bytes', 'bytes in the local store', [], () => {
        this.metrics.bytes.set(this.store.totalBytes)
      }),
      corrupt: r.counter(
        'corrupt_blocks_total',
        'blocks dropped because they did not hash to their CID, by where',
        ['source'],
      ),
      received: r.counter('received_bytes_total', 'block bytes fetched from other members'),
      receivedBlocks: r.counter('received_blocks_total', 'blocks fetched from other members'),
      served: r.counter('served_bytes_total', 'block bytes served to other members'),
      servedBlocks: r.counter('served_blocks_total', 'blocks served to other members'),
      wants: r.counter('wants_received_total', 'exchange messages received, by kind', ['kind']),
      transfers: r.counter('transfers_total', 'gets, puts and replications, by kind and result', [
        'kind',
        'result',
      ]),
      tags: r.counter('tags_total', 'tag records received, by outcome', ['outcome']),
      evicted: r.counter('evicted_bytes_total', 'cached block bytes evicted under the size budget'),
      repairs: r.counter('repairs_total', 'replica repairs started, by result', ['result']),
      provides: r.counter('dht_provides_total', 'DHT provider records announced, by result', ['result']),
      dhtPeers: r.gauge('dht_peers', "peers in the DHT's routing table", [], () => {
        let size = 0
        try {
          size = routingTableSize(this.node.services.dht)
        } catch {} // the node is not started
        this.metrics.dhtPeers.set(size)
      }),
    }
    this.store = new Blockstore(dataPaths(deps.dataDir).blocks, {
      onCorrupt: () => this.metrics.corrupt.inc({ source: 'disk' }),
    })
    this.tags = new TagStore(
      deps.cluster.id,
      dataPaths(deps.dataDir).blockTags,
      (p) => deps.node.trust?.isRevoked(p) ?? false,
    )
    this.pins = new PinStore(dataPaths(deps.dataDir).blockPins)
    this.limiter = new RateLimiter(deps.config.serveBytesPerSec)
    r.health(() => ({
      ok: this.started,
      detail: `${this.store.count} blocks, ${this.store.totalBytes} bytes`,
    }))
  }

  private get node() {
    return this.deps.node.node
  }

  private get self(): string {
    return this.node.peerId.toString()
  }

  private get log() {
    return this.deps.reporter.log
  }

  async start(): Promise<void> {
    try {
      await this.store.open()
    } catch (err) {
      throw explainFsError(err, `holding ${this.store.dir}`)
    }
    this.tags.load()
    this.pins.load()
    const node = this.node
    await node.handle(
      this.exchangeProtocol,
      (stream, conn) =>
        void serveExchange(
          stream,
          conn,
          this.store,
          this.limiter,
          {
            onServed: (n) => {
              this.metrics.served.inc(n)
              this.metrics.servedBlocks.inc()
            },
            onMessage: (kind, n = 1) => this.metrics.wants.inc({ kind }, n),
          },
          this.deps.config.idleStreamMs,
        ),
      { runOnLimitedConnection: true, maxInboundStreams: 256, maxOutboundStreams: 256 },
    )
    await node.handle(this.controlProtocol, (s, c) => void this.onControl(s, c), {
      runOnLimitedConnection: true,
      maxInboundStreams: 64,
    })
    node.services.pubsub.subscribe(this.topic)
    node.services.pubsub.addEventListener('message', this.onGossip)
    // a restarted member syncs over the connections made while it started, too
    this.stopConnections = onEveryConnection(node, this.onConnection)
    const b = this.deps.config
    this.every(b.tagSyncIntervalMs, () => void this.syncTagsRandom())
    this.every(b.repairIntervalMs, () => void this.repair())
    this.every(5 * 60_000, () => void this.gc())
    // re-announce what we pin: provider records expire
    this.every(12 * 3_600_000, () => {
      for (const [root] of this.pins.entries()) void this.provide(parseCid(root))
    })
    setTimeout(() => {
      for (const [root] of this.pins.entries()) void this.provide(parseCid(root))
    }, 5_000).unref()
    this.started = true
  }

  async stop(): Promise<void> {
    this.started = false
    for (const t of this.timers) clearInterval(t)
    const node = this.node
    this.stopConnections?.()
    node.services.pubsub.removeEventListener('message', this.onGossip)
    await node.unhandle([this.exchangeProtocol, this.controlProtocol]).catch(() => {})
    await this.tags.flush()
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms)
    t.unref()
    this.timers.push(t)
  }

  // ---- names and references -----------------------------------------------------------------

  private names(): Map<string, string> {
    return displayNames(this.deps.membership.rows().map((r) => r.entry.signed.info))
  }

  nameOf(peerId: string, names = this.names()): string {
    return names.get(peerId) ?? `${peerId.slice(0, 8)}…${peerId.slice(-6)}`
  }

  /** A reference's root CID: a CID as is, DATASET:TAG through the tags. */
  resolve(ref: Ref): CID {
    if (ref.kind === 'cid') return ref.cid
    const t = this.tags.get(ref.dataset, ref.tag)
    if (t === undefined) {
      const known = this.tags
        .all()
        .filter((x) => x.dataset === ref.dataset)
        .map((x) => `${x.dataset}:${x.tag}`)
      throw new BlocksError(
        'not-found',
        `unknown tag ${ref.dataset}:${ref.tag}` +
          (known.length > 0
            ? `; dataset ${ref.dataset} has ${known.slice(0, 8).join(', ')}`
            : "; 'mesh datasets' lists the tags"),
      )
    }
    return parseCid(t.root)
  }

  // ---- providers and transfers ----------------------------------------------------------------

  /** Hints first, then connected members, then every alive member, then DHT provider records. */
  private async *candidates(key: CID, signal: AbortSignal, hints: readonly string[]): AsyncIterable<PeerId> {
    const seen = new Set<string>([this.self])
    const admission = this.node.services.admission
    const emit = (p: string) => {
      if (seen.has(p)) return false
      seen.add(p)
      return true
    }
    for (const h of hints) if (emit(h)) yield peerIdFromString(h)
    for (const c of this.node.getConnections()) {
      const p = c.remotePeer.toString()
      if (admission.isAdmitted(c.remotePeer) && emit(p)) yield c.remotePeer
    }
    for (const r of this.deps.membership.rows()) {
      if (r.status === 'alive' && emit(r.peerId)) yield peerIdFromString(r.peerId)
    }
    if (!this.deps.dhtEnabled || signal.aborted) return
    // a timer of our own: a timeout signal inside AbortSignal.any can be collected before it fires
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(new Error('DHT search budget spent')), DHT_BUDGET_MS)
    const onAbort = () => ac.abort(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      for await (const prov of this.node.contentRouting.findProviders(key, { signal: ac.signal })) {
        const p = prov.id.toString()
        if (!emit(p)) continue
        if (prov.multiaddrs.length > 0)
          await this.node.peerStore.merge(prov.id, { multiaddrs: prov.multiaddrs }).catch(() => {})
        yield prov.id
      }
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'DHT provider search ended')
    } finally {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
    }
  }

  private async openSession(peer: PeerId, signal: AbortSignal): Promise<Session> {
    const stream = await this.node.dialProtocol(peer, this.exchangeProtocol, {
      signal,
      runOnLimitedConnection: true,
    })
    const b = this.deps.config
    return new Session(peer, stream, {
      maxBufferBytes: b.windowBytes + 4 * MAX_BLOCK,
      onUnwanted: () => this.metrics.wants.inc({ kind: 'unwanted-block' }),
    })
  }

  private transfer(key: CID, hints: readonly string[], signal?: AbortSignal): Transfer {
    const b = this.deps.config
    return new Transfer(
      key,
      {
        self: this.self,
        store: this.store,
        open: (p, s) => this.openSession(p, s),
        candidates: (k, s) => this.candidates(k, s, hints),
        windowBytes: b.windowBytes,
        maxWants: b.maxWants,
        providerTimeoutMs: b.providerTimeoutMs,
        stallTimeoutMs: b.stallTimeoutMs,
        nameOf: (peer) => this.nameOf(peer),
        onCorrupt: (peer) => {
          this.metrics.corrupt.inc({ source: 'network' })
          this.log.warn(
            { peer },
            'a provider sent a block that does not match its CID: dropped, provider not asked again',
          )
        },
        onBlock: (_cid, size) => {
          this.metrics.received.inc(size)
          this.metrics.receivedBlocks.inc()
        },
        log: this.log,
      },
      signal,
    )
  }

  private providerReport(t: Transfer): ProviderReport[] {
    const names = this.names()
    return t.providerViews().map((p) => ({ ...p, name: this.nameOf(p.peerId, names) }))
  }

  /** Announce on the DHT that we hold `cid` (background; the DHT is private to the cluster). */
  /**
   * Announce `cid` on the cluster's DHT. A young or shrinking cluster may have no DHT peers to
   * take the record yet: retry a few times, a little later each time, while the agent runs
   * (members also find providers by asking each other, so this is a second way, not the only one).
   */
  async provide(cid: CID): Promise<void> {
    if (!this.deps.dhtEnabled) return
    for (let attempt = 1; attempt <= PROVIDE_ATTEMPTS && this.started; attempt++) {
      try {
        await this.node.contentRouting.provide(cid, { signal: AbortSignal.timeout(PROVIDE_TIMEOUT_MS) })
        this.metrics.provides.inc({ result: 'ok' })
        return
      } catch (err) {
        this.metrics.provides.inc({ result: 'error' })
        this.log.debug({ cid: cid.toString(), attempt, err: (err as Error).message }, 'DHT provide failed')
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
    const dht = this.deps.dhtEnabled ? this.node.services.dht : undefined
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
      this.log.debug({ err: (err as Error).message }, 'DHT provider search ended')
    } finally {
      clearTimeout(timer)
    }
    const names = this.names()
    return {
      routingTable: routingTableSize(dht),
      providers: [...found].map(([peerId, via]) => ({
        peerId,
        name: this.nameOf(peerId, names),
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
    const { cid, added } = await this.store.add(bytes)
    await this.pins.set(cid.toString(), { kind: 'block', replicas: 0, complete: true, since: Date.now() })
    void this.provide(cid)
    return { cid: cid.toString(), size: bytes.byteLength, added }
  }

  /** A block's bytes: from the store, or fetched from members (and then kept in the cache). */
  async blockGet(cid: CID, signal?: AbortSignal): Promise<{ bytes: Uint8Array; from: ProviderReport[] }> {
    const local = await this.store.get(cid)
    if (local !== undefined) return { bytes: local, from: [] }
    const t = this.transfer(cid, [], signal)
    const keep = new Set([cid.toString()])
    this.protect.add(keep)
    try {
      await this.fetchOrNotFound(t, [{ cid, size: 0 }], cid)
      const bytes = await this.store.get(cid)
      if (bytes === undefined) throw new BlocksError('unavailable', `block ${cid} vanished from the store`)
      return { bytes, from: this.providerReport(t) }
    } finally {
      this.protect.delete(keep)
      await t.close()
    }
  }

  /** The first fetch of a transfer: nobody having the key is a clear 404. */
  private async fetchOrNotFound(
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

  async blockStat(cid: CID): Promise<{
    cid: string
    local: boolean
    size?: number
    pinned: boolean
    dataset?: Partial<Root>
    providers: Array<{ peerId: string; name: string }>
  }> {
    let dataset: Partial<Root> | undefined
    const bytes = await this.store.get(cid)
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
      pinned: this.pins.has(cid.toString()),
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
    const names = this.names()
    return (await Promise.all(asks))
      .filter((p): p is string => p !== undefined)
      .map((peerId) => ({ peerId, name: this.nameOf(peerId, names) }))
  }

  // ---- datasets -----------------------------------------------------------------------------

  /** Root and manifest of a dataset, fetched when not local. */
  async manifest(
    root: CID,
    t?: Transfer,
    onProgress?: (p: TransferProgress, phase: 'root' | 'manifest') => void,
  ): Promise<{ info: Root; entries: Entry[] }> {
    const own = t === undefined
    const tr = t ?? this.transfer(root, [])
    try {
      if (!this.store.has(root))
        await this.fetchOrNotFound(tr, [{ cid: root, size: 0 }], root, (p) => onProgress?.(p, 'root'))
      const bytes = await this.store.get(root)
      if (bytes === undefined) throw new BlocksError('unavailable', `block ${root} vanished from the store`)
      const info = decodeRoot(bytes, root)
      await tr.fetch(
        info.manifest.map(([c, size]) => ({ cid: parseCid(c), size })),
        (p) => onProgress?.(p, 'manifest'),
      )
      return await readManifest(this.store, root)
    } finally {
      if (own) await tr.close()
    }
  }

  /** `mesh put`: chunk and store, pin, announce; replicate (quorum) before the tag moves. */
  async put(
    path: string,
    opts: {
      tag?: string
      replicas?: number
      signal?: AbortSignal
      onProgress?: (p: {
        phase: string
        bytes: number
        totalBytes: number
        files: number
        totalFiles: number
      }) => void
    } = {},
  ): Promise<PutResult> {
    const t0 = performance.now()
    let tag: { dataset: string; tag: string } | undefined
    if (opts.tag !== undefined) {
      const colon = opts.tag.indexOf(':')
      if (colon < 0)
        throw new BlocksError('bad-request', `--tag '${opts.tag}' must be DATASET:TAG, e.g. maps:v2`)
      tag = { dataset: opts.tag.slice(0, colon), tag: opts.tag.slice(colon + 1) }
      checkTagName(tag.dataset, tag.tag)
    }
    const replicas = opts.replicas ?? 0
    if (!Number.isInteger(replicas) || replicas < 0 || replicas > 64) {
      throw new BlocksError(
        'bad-request',
        `--replicas must be a whole number from 1 to 64, not ${opts.replicas}`,
      )
    }
    const keep = new Set<string>()
    this.protect.add(keep)
    try {
      const r = await putPath(this.store, path, {
        signal: opts.signal,
        onProgress: (p) => opts.onProgress?.({ phase: 'chunking', ...p }),
      })
      const root = r.root.toString()
      await this.pins.set(root, { kind: 'dataset', replicas, complete: true, since: Date.now() })
      this.closure.delete(root)
      void this.provide(r.root)
      let replication: ReplicaReport | undefined
      if (replicas > 0) {
        opts.onProgress?.({
          phase: 'replicating',
          bytes: r.info.bytes,
          totalBytes: r.info.bytes,
          files: r.info.files,
          totalFiles: r.info.files,
        })
        replication = await this.replicate(r.root, replicas, opts.signal)
      }
      let published: PutResult['tag']
      if (tag !== undefined) {
        const rec = await this.publishTag(tag.dataset, tag.tag, root, replicas)
        published = { dataset: rec.dataset, tag: rec.tag, seq: rec.seq.toString() }
      }
      this.metrics.transfers.inc({ kind: 'put', result: 'ok' })
      return {
        root,
        name: r.info.name,
        type: r.info.type,
        files: r.info.files,
        dirs: r.info.dirs,
        symlinks: r.info.symlinks,
        bytes: r.info.bytes,
        blocks: r.blocks,
        newBlocks: r.newBlocks,
        newBytes: r.newBytes,
        tag: published,
        replication,
        ms: Math.round(performance.now() - t0),
      }
    } catch (err) {
      this.metrics.transfers.inc({ kind: 'put', result: 'error' })
      throw err
    } finally {
      this.protect.delete(keep)
    }
  }

  /**
   * `mesh get`: fetch what DEST lacks from every provider at once while writing files in
   * order; files already up to date in DEST and blocks already in the store are not fetched
   * again (resume). Fetched blocks stay in the store (cached) so we serve them too.
   */
  async get(
    refText: string,
    dest: string | undefined,
    opts: {
      signal?: AbortSignal
      onProgress?: (p: GetProgress) => void
      hints?: string[]
      cwd?: string
    } = {},
  ): Promise<GetResult> {
    const t0 = performance.now()
    const root = this.resolve(parseRef(refText))
    const ac = new AbortController()
    const signal = opts.signal === undefined ? ac.signal : AbortSignal.any([opts.signal, ac.signal])
    const t = this.transfer(root, opts.hints ?? [], signal)
    const keep = new Set<string>([root.toString()])
    this.protect.add(keep)
    let files = 0
    let totalFiles = 0
    let phase: GetProgress['phase'] = 'root'
    const report = (p: TransferProgress) => opts.onProgress?.({ ...p, phase, files, totalFiles })
    try {
      const { info, entries } = await this.manifest(root, t, (p, ph) => {
        phase = ph
        report(p)
      })
      for (const [c] of info.manifest) keep.add(c)
      // no DEST: ./NAME, in the caller's directory
      const where = await destinationOf(info, dest ?? join(opts.cwd ?? process.cwd(), info.name))
      const writer = new DatasetWriter(where.base)
      const fileEntries = entries.filter((e): e is FileEntry => e.type === 'file')
      totalFiles = fileEntries.length
      const todo: Array<{ e: FileEntry; target: string }> = []
      for (const e of fileEntries) {
        const target = where.file ?? writer.abs(e.path)
        if (await upToDate(target, e)) files++
        else todo.push({ e, target })
      }
      const skipped = files
      const needs: Need[] = []
      for (const { e } of todo) {
        for (const [c, size] of e.chunks) {
          keep.add(c)
          needs.push({ cid: parseCid(c), size })
        }
      }
      phase = 'files'
      const waiter = new ChunkWaiter(this.store)
      const fetching = t.fetch(needs, report).then(
        () => waiter.end(),
        (err: Error) => {
          waiter.fail(err)
          throw err
        },
      )
      t.blockListeners.push((cid, bytes) => waiter.arrived(cid.toString(), bytes))
      const writing = (async () => {
        await writer.prepareBase()
        // leftovers of an interrupted run, next to the files this run writes
        const byDir = new Map<string, Set<string>>()
        for (const { target } of todo) {
          const d = dirname(target)
          const set = byDir.get(d) ?? new Set<string>()
          set.add(basename(target).slice(0, 100))
          byDir.set(d, set)
        }
        for (const [d, names] of byDir) await writer.removeStale(d, names)
        for (const e of entries) if (e.type === 'dir') await writer.ensureDir(e.path)
        for (const { e, target } of todo) {
          if (where.file === undefined) {
            const slash = e.path.lastIndexOf('/')
            if (slash > 0) await writer.ensureDir(e.path.slice(0, slash))
          }
          await writer.writeFile(e, target, (cid) => waiter.get(cid))
          files++
        }
      })()
      const [f, w] = await Promise.allSettled([
        fetching,
        writing.catch((err) => {
          ac.abort(err)
          throw err
        }),
      ])
      if (w.status === 'rejected') throw w.reason
      if (f.status === 'rejected') throw f.reason
      phase = 'finishing'
      report(t.progress)
      if (where.file === undefined) await writer.finish(entries, info)
      void this.provide(root)
      this.metrics.transfers.inc({ kind: 'get', result: 'ok' })
      const providers = this.providerReport(t)
      return {
        root: root.toString(),
        dest: where.file ?? where.base,
        name: info.name,
        type: info.type,
        files: info.files,
        dirs: info.dirs,
        symlinks: info.symlinks,
        bytes: info.bytes,
        skippedFiles: skipped,
        fetchedBytes: t.progress.bytes,
        fetchedBlocks: t.progress.blocks,
        localBytes: t.progress.localBytes,
        providers,
        corrupt: providers.reduce((s, p) => s + p.corrupt, 0),
        ms: Math.round(performance.now() - t0),
      }
    } catch (err) {
      this.metrics.transfers.inc({ kind: 'get', result: 'error' })
      if (opts.signal?.aborted)
        throw new BlocksError('interrupted', 'the get was interrupted; run it again to resume')
      throw err
    } finally {
      this.protect.delete(keep)
      await t.close()
      void this.gc()
    }
  }

  /** Every block of a dataset into the store (pin, replicate): no files are written. */
  async fetchAll(
    root: CID,
    hints: readonly string[],
    signal?: AbortSignal,
  ): Promise<{ bytes: number; fetched: number }> {
    const t = this.transfer(root, hints, signal)
    const keep = new Set<string>([root.toString()])
    this.protect.add(keep)
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
      this.protect.delete(keep)
      await t.close()
    }
  }

  /** `mesh cat`: one file's bytes, in order, fetched as needed. */
  async *cat(refText: string, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const ref = parseRef(refText, true)
    const root = this.resolve(ref)
    const t = this.transfer(root, [], signal)
    const keep = new Set<string>([root.toString()])
    this.protect.add(keep)
    try {
      if (!this.store.has(root)) await this.fetchOrNotFound(t, [{ cid: root, size: 0 }], root)
      const rootBytes = (await this.store.get(root))!
      if (!isRoot(rootBytes)) {
        if (ref.path !== undefined)
          throw new BlocksError('not-a-dataset', `${root} is a plain block: it has no paths`)
        yield rootBytes
        return
      }
      const { info, entries } = await this.manifest(root, t)
      const path = ref.path ?? (info.type === 'file' ? info.name : undefined)
      if (path === undefined) {
        throw new BlocksError(
          'bad-request',
          `${refText} is a directory dataset: name a file, e.g. ${refText}/${entries.find((e) => e.type === 'file')?.path ?? 'PATH'}`,
        )
      }
      const e = entries.find((x) => x.path === path)
      if (e === undefined)
        throw new BlocksError(
          'not-found',
          `dataset ${root} (${refText.split('/')[0]}) has no ${path}; 'mesh ls' lists its files`,
        )
      if (e.type !== 'file')
        throw new BlocksError('bad-request', `${path} in ${refText} is a ${e.type}, not a file`)
      // fetch ahead in batches so a large file streams
      const batch = 32
      for (let i = 0; i < e.chunks.length; i += batch) {
        const part = e.chunks.slice(i, i + batch).map(([c, size]) => ({ cid: parseCid(c), size }))
        for (const n of part) keep.add(n.cid.toString())
        await t.fetch(part)
        for (const n of part) {
          const bytes = await this.store.get(n.cid)
          if (bytes === undefined)
            throw new BlocksError('unavailable', `block ${n.cid} vanished from the store`)
          yield bytes
        }
      }
    } finally {
      this.protect.delete(keep)
      await t.close()
    }
  }

  async ls(refText: string): Promise<{ root: string; info: Root; entries: Entry[] }> {
    const root = this.resolve(parseRef(refText))
    const { info, entries } = await this.manifest(root)
    return { root: root.toString(), info, entries }
  }

  datasets(): DatasetView[] {
    const names = this.names()
    return this.tags.all().map((t) => ({
      dataset: t.dataset,
      tag: t.tag,
      root: t.root,
      seq: t.seq.toString(),
      publisher: t.publisher,
      publisherName: this.nameOf(t.publisher, names),
      time: Number(t.time),
      replicas: t.replicas,
      local: this.store.has(t.root),
      pinned: this.pins.has(t.root),
    }))
  }

  // ---- pins and eviction ------------------------------------------------------------------

  async pin(
    refText: string,
    signal?: AbortSignal,
  ): Promise<{ root: string; bytes: number; fetched: number }> {
    const root = this.resolve(parseRef(refText))
    const key = root.toString()
    const { bytes, fetched } = await this.fetchAll(root, [], signal)
    const prev = this.pins.get(key)
    await this.pins.set(key, {
      kind: 'dataset',
      replicas: prev?.replicas ?? 0,
      complete: true,
      since: prev?.since ?? Date.now(),
    })
    this.closure.delete(key)
    void this.provide(root)
    return { root: key, bytes, fetched }
  }

  async unpin(refText: string): Promise<{ root: string; unpinned: boolean }> {
    const root = this.resolve(parseRef(refText)).toString()
    const had = await this.pins.delete(root)
    if (!had) throw new BlocksError('not-found', `${refText} is not pinned here ('mesh pins' lists what is)`)
    this.closure.delete(root)
    void this.gc()
    return { root, unpinned: true }
  }

  pinList(): Array<{ root: string } & Pin> {
    return this.pins.entries().map(([root, p]) => ({ root, ...p }))
  }

  /** Every CID under a pinned root (from its manifest; what is missing is simply not there). */
  private async pinnedClosure(root: string, pin: Pin): Promise<Set<string>> {
    const cached = this.closure.get(root)
    if (cached !== undefined) return cached
    const set = new Set<string>([root])
    if (pin.kind === 'dataset') {
      try {
        const { info, entries } = await readManifest(this.store, parseCid(root))
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

  /** Evict unpinned, unused blocks down to blocks.cacheBytes. */
  gc(): Promise<void> {
    this.gcRunning ??= (async () => {
      try {
        const budget = this.deps.config.cacheBytes
        if (this.store.totalBytes <= budget) return
        const pinned = new Set<string>()
        for (const [root, pin] of this.pins.entries())
          for (const c of await this.pinnedClosure(root, pin)) pinned.add(c)
        const keep = (c: string) => pinned.has(c) || [...this.protect].some((s) => s.has(c))
        const r = await this.store.evict(budget, keep)
        if (r.blocks > 0) {
          this.metrics.evicted.inc(r.bytes)
          this.log.info({ blocks: r.blocks, bytes: r.bytes }, 'evicted cached blocks over the budget')
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'eviction failed')
      }
    })().finally(() => {
      this.gcRunning = undefined
    })
    return this.gcRunning
  }

  // ---- tags ---------------------------------------------------------------------------------

  async publishTag(dataset: string, tag: string, root: string, replicas: number): Promise<Tag> {
    checkTagName(dataset, tag)
    parseCid(root)
    const rec = signTag(this.deps.node.privateKey, this.deps.cluster.id, {
      dataset,
      tag,
      root,
      seq: this.tags.nextSeq(dataset, tag),
      time: BigInt(Date.now()),
      replicas,
    })
    this.tags.apply(rec)
    this.deps.events?.publish('dataset_tag', {
      dataset,
      tag,
      root,
      seq: rec.seq.toString(),
      publisher: rec.publisher,
    })
    try {
      await this.node.services.pubsub.publish(this.topic, TagSet.encode({ tags: [rec] }))
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'tag gossip failed; push-pull sync will carry it')
    }
    // gossip may still be forming its mesh: push to connected members too
    void this.syncTagsWithConnected()
    return rec
  }

  private ingestTags(tags: readonly Tag[]): number {
    let n = 0
    for (const t of tags) {
      const outcome = this.tags.apply(t)
      this.metrics.tags.inc({ outcome })
      if (outcome === 'new') {
        n++
        this.deps.events?.publish('dataset_tag', {
          dataset: t.dataset,
          tag: t.tag,
          root: t.root,
          seq: t.seq.toString(),
          publisher: t.publisher,
        })
      }
    }
    return n
  }

  private readonly onGossip = (evt: CustomEvent<Message>): void => {
    const msg = evt.detail
    if (msg.topic !== this.topic) return
    try {
      this.ingestTags(TagSet.decode(msg.data, { limits: { tags: 1024 } }).tags)
    } catch {
      this.metrics.tags.inc({ outcome: 'undecodable' })
    }
  }

  private stopConnections: (() => void) | undefined

  private readonly onConnection = (conn: Connection): void => {
    void (async () => {
      if (!(await this.node.services.admission.admitted(conn))) return
      // the dialer syncs, so one connection costs one sync
      if (conn.direction === 'outbound') await this.syncTags(conn.remotePeer)
    })()
  }

  private async syncTagsRandom(): Promise<void> {
    const peers = this.node.getPeers().filter((p) => this.node.services.admission.isAdmitted(p))
    if (peers.length === 0) return
    await this.syncTags(peers[Math.floor(Math.random() * peers.length)])
  }

  private async syncTagsWithConnected(): Promise<void> {
    const peers = this.node.getPeers().filter((p) => this.node.services.admission.isAdmitted(p))
    await Promise.allSettled(peers.slice(0, 32).map((p) => this.syncTags(p)))
  }

  async syncTags(peer: PeerId): Promise<void> {
    try {
      const reply = await this.control(peer, { tagSync: { tags: this.tags.all() }, holds: [] })
      if (reply.tags !== undefined) this.ingestTags(reply.tags.tags)
    } catch (err) {
      this.log.debug({ peer: peer.toString(), err: (err as Error).message }, 'tag sync failed')
    }
  }

  // ---- control protocol -----------------------------------------------------------------------

  private async control(
    peer: PeerId,
    req: DatasetRequest,
    timeoutMs = CONTROL_TIMEOUT_MS,
  ): Promise<DatasetReply> {
    const signal = AbortSignal.timeout(timeoutMs)
    const stream = await this.node.dialProtocol(peer, this.controlProtocol, {
      signal,
      runOnLimitedConnection: true,
    })
    // a replication may keep the stream quiet for a long time
    stream.inactivityTimeout = timeoutMs + 5_000
    try {
      const pb = pbStream(stream, { maxDataLength: MAX_CONTROL })
      await pb.write(req, DatasetRequest, { signal })
      const reply = await pb.read(DatasetReply, { signal })
      await stream.close({ signal }).catch(() => {})
      return reply
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  private async onControl(stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer.toString()
    const b = this.deps.config
    stream.inactivityTimeout = b.replicateTimeoutMs + 5_000
    try {
      const pb = pbStream(stream, { maxDataLength: MAX_CONTROL })
      const req = await pb.read(DatasetRequest, {
        signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
        limits: { holds: 1024 },
      } as never)
      const reply: DatasetReply = { ok: false, held: [], error: '' }
      if (req.tagSync !== undefined) {
        this.ingestTags(req.tagSync.tags)
        reply.tags = { tags: this.tags.all() }
        reply.ok = true
      }
      for (const h of req.holds.slice(0, 1024)) reply.held.push(this.pins.get(h)?.complete === true)
      if (req.replicate !== undefined) {
        try {
          await this.replicaOf(parseCid(req.replicate.root), req.replicate.replicas, peer)
          reply.ok = true
        } catch (err) {
          reply.ok = false
          reply.error = (err as Error).message
        }
      }
      await pb.write(reply, DatasetReply, { signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS) })
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  // ---- replication --------------------------------------------------------------------------

  /** Hold a complete, verified, pinned copy of `root` (a target's side of replicate). */
  private replicaOf(root: CID, replicas: number, from: string): Promise<void> {
    const key = root.toString()
    const running = this.replicating.get(key)
    if (running !== undefined) return running
    const p = (async () => {
      const pin = this.pins.get(key)
      if (pin?.complete === true) {
        if (pin.replicas < replicas) await this.pins.set(key, { ...pin, replicas })
        return
      }
      // pinned as incomplete first: the blocks we fetch are never evicted meanwhile
      await this.pins.set(key, { kind: 'dataset', replicas, complete: false, since: Date.now() })
      try {
        await this.fetchAll(root, [from], AbortSignal.timeout(this.deps.config.replicateTimeoutMs))
      } catch (err) {
        this.metrics.transfers.inc({ kind: 'replica', result: 'error' })
        throw err
      }
      await this.pins.set(key, { kind: 'dataset', replicas, complete: true, since: Date.now() })
      this.closure.delete(key)
      this.metrics.transfers.inc({ kind: 'replica', result: 'ok' })
      this.log.info({ root: key, from }, 'holding a replica')
      void this.provide(root)
    })().finally(() => this.replicating.delete(key))
    this.replicating.set(key, p)
    return p
  }

  private memberStatuses(): Array<{ peerId: string; status: MemberStatus }> {
    return this.deps.membership.rows().map((r) => ({
      peerId: r.peerId,
      status: this.deps.node.trust.isRevoked(r.peerId) ? 'left' : (r.status as MemberStatus),
    }))
  }

  /**
   * Place `n` copies on the alive members rendezvous hashing picks; resolves once a quorum
   * (n/2+1) confirmed a verified copy, else throws a 'quorum' BlocksError naming who is missing.
   */
  async replicate(root: CID, n: number, signal?: AbortSignal): Promise<ReplicaReport> {
    const key = root.toString()
    const members = this.memberStatuses()
    if (!members.some((m) => m.peerId === this.self)) members.push({ peerId: this.self, status: 'alive' })
    const plan = placement(key, n, members)
    const need = quorum(n)
    const names = this.names()
    const timeout = this.deps.config.replicateTimeoutMs
    const results = await Promise.all(
      plan.targets.map(async (peerId) => {
        if (peerId === this.self)
          return { peerId, name: this.nameOf(peerId, names), ok: this.pins.get(key)?.complete === true }
        try {
          signal?.throwIfAborted()
          const reply = await this.control(
            peerIdFromString(peerId),
            { replicate: { root: key, replicas: n }, holds: [] },
            timeout,
          )
          return {
            peerId,
            name: this.nameOf(peerId, names),
            ok: reply.ok,
            error: reply.ok ? undefined : reply.error,
          }
        } catch (err) {
          return {
            peerId,
            name: this.nameOf(peerId, names),
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
        ...plan.missing.map((m) => `${this.nameOf(m.peerId, names)} (${m.status})`),
      ]
      if (plan.targets.length + plan.missing.length < n)
        missing.push(
          `${n - plan.targets.length - plan.missing.length} more member(s): the cluster has too few`,
        )
      this.metrics.transfers.inc({ kind: 'replicate', result: 'quorum-failed' })
      throw new BlocksError(
        'quorum',
        `replication of ${key} failed: ${confirmed} of ${n} replicas confirmed a verified copy, a write needs ${need}. ` +
          `Missing: ${missing.join('; ')}. No tag was published; the blocks stay pinned here, retry once members are back`,
      )
    }
    this.metrics.transfers.inc({ kind: 'replicate', result: 'ok' })
    return report
  }

  /** Which of `roots` a member holds complete and pinned. */
  private async holds(peer: string, roots: string[]): Promise<boolean[]> {
    const reply = await this.control(peerIdFromString(peer), { holds: roots })
    return reply.held
  }

  /**
   * Repair: for each dataset pinned with replicas > 0, the highest-ranked alive member holding
   * it makes sure the n members placement picks now hold it too (a holder died, members joined).
   */
  async repair(): Promise<number> {
    if (this.repairing || !this.started) return 0
    this.repairing = true
    let placed = 0
    try {
      const members = this.memberStatuses()
      const alive = members.filter((m) => m.status === 'alive' && m.peerId !== this.self).map((m) => m.peerId)
      for (const [root, pin] of this.pins.entries()) {
        if (pin.replicas <= 0 || !pin.complete || pin.kind !== 'dataset') continue
        const above = rankedAbove(root, this.self, alive, 2 * pin.replicas)
        let someoneAbove = false
        for (const p of above) {
          const held = await this.holds(p, [root]).catch(() => [false])
          if (held[0] === true) {
            someoneAbove = true
            break
          }
        }
        if (someoneAbove) continue
        const targets = rank(root, [...alive, this.self])
          .slice(0, pin.replicas)
          .filter((p) => p !== this.self)
        for (const p of targets) {
          const held = await this.holds(p, [root]).catch(() => undefined)
          if (held === undefined || held[0] === true) continue
          try {
            const reply = await this.control(
              peerIdFromString(p),
              { replicate: { root, replicas: pin.replicas }, holds: [] },
              this.deps.config.replicateTimeoutMs,
            )
            this.metrics.repairs.inc({ result: reply.ok ? 'ok' : 'error' })
            if (reply.ok) {
              placed++
              this.log.info({ root, to: this.nameOf(p) }, 'repair: placed a missing replica')
            } else
              this.log.warn(
                { root, to: this.nameOf(p), err: reply.error },
                'repair: target could not take a replica',
              )
          } catch (err) {
            this.metrics.repairs.inc({ result: 'error' })
            this.log.debug({ root, to: p, err: (err as Error).message }, 'repair: target unreachable')
          }
        }
      }
    } finally {
      this.repairing = false
    }
    return placed
  }
}

/**
 * Lets the file writer wait for chunks the transfer is still fetching. Blocks that just arrived
 * (verified) are handed over in memory, up to a bound, so the writer does not read and hash
 * them back from the store; the rest are read from the store (and hashed again there).
 */
class ChunkWaiter {
  private readonly waiting = new Map<string, Array<{ resolve: () => void; reject: (e: Error) => void }>>()
  private readonly fresh = new Map<string, Uint8Array>()
  private freshBytes = 0
  private failure: Error | undefined
  private ended = false

  constructor(
    private readonly store: Blockstore,
    private readonly maxFreshBytes = 64 << 20,
  ) {}

  arrived(cid: string, bytes?: Uint8Array): void {
    const w = this.waiting.get(cid)
    if (
      bytes !== undefined &&
      (w !== undefined || this.freshBytes + bytes.byteLength <= this.maxFreshBytes)
    ) {
      if (!this.fresh.has(cid)) {
        this.fresh.set(cid, bytes)
        this.freshBytes += bytes.byteLength
      }
    }
    if (w === undefined) return
    this.waiting.delete(cid)
    for (const x of w) x.resolve()
  }

  fail(err: Error): void {
    this.failure = err
    for (const w of this.waiting.values()) for (const x of w) x.reject(err)
    this.waiting.clear()
  }

  end(): void {
    this.ended = true
    // anything still waited for will not come
    this.fail(new BlocksError('unavailable', 'the transfer ended without some blocks'))
    this.failure = undefined
  }

  private take(key: string): Uint8Array | undefined {
    const b = this.fresh.get(key)
    if (b === undefined) return undefined
    this.fresh.delete(key)
    this.freshBytes -= b.byteLength
    return b
  }

  async get(cid: CID): Promise<Uint8Array> {
    const key = cid.toString()
    for (let attempt = 0; attempt < 3; attempt++) {
      const mem = this.take(key)
      if (mem !== undefined) return mem
      if (this.store.has(cid)) {
        const b = await this.store.get(cid)
        if (b !== undefined) return b
      }
      if (this.failure !== undefined) throw this.failure
      if (this.ended) break
      await new Promise<void>((resolve, reject) => {
        const list = this.waiting.get(key) ?? []
        list.push({ resolve, reject })
        this.waiting.set(key, list)
      })
    }
    throw new BlocksError('unavailable', `block ${cid} is missing from the store`)
  }
}
