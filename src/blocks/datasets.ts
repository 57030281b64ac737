import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import type { BlockCache, InUse } from './cache.js'
import { parseCid } from './cid.js'
import type { BlocksContext } from './context.js'
import { CONTROL_TIMEOUT_MS } from './control.js'
import { putPath } from './dataset.js'
import { BlocksError } from './errors.js'
import type { ExchangeService, ProviderReport } from './exchange-service.js'
import type { Entry, Root } from './manifest.js'
import { isRoot } from './manifest.js'
import type { ReplicaReport, Replicas } from './replicas.js'
import type { TagSync } from './tag-sync.js'
import { checkTagName, parseRef } from './tags.js'
import type { TransferProgress } from './transfer.js'
import { ChunkWaiter, planWrite, writePlanned } from './write-plan.js'

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

/** Datasets as users see them: put, get, cat, ls and the list of tagged datasets. */
/**
 * A put with --replicas and a tag is acknowledged only once a write quorum of the replica
 * holders (the publisher counts when it is one) took the tag in hand: a holder that never
 * answered may be gone, and the tag with it. Throws a 'quorum' error saying how many took it.
 * The data stays pinned here and the tag stays here: it is signed and may already be on its way
 * by gossip, so it cannot be taken back.
 */
function tagNotHeld(replication: ReplicaReport, tag: string, failed: string[]): void {
  const took = replication.confirmed - failed.length
  if (took >= replication.quorum) return
  throw new BlocksError(
    'quorum',
    `tag ${tag} was taken by ${took} of ${replication.replicas} replica holders within ` +
      `${CONTROL_TIMEOUT_MS / 1000} s, a write needs ${replication.quorum} (no answer from ${failed.join(', ')}). ` +
      'Not acknowledged: the data stays pinned here and the tag stays here (gossip may still carry it to them). ' +
      `Retry the put once they answer ('mesh members' shows who is alive), or put with --replicas ${Math.max(1, took)}`,
  )
}

export class Datasets {
  constructor(
    private readonly ctx: BlocksContext,
    private readonly parts: {
      inUse: InUse
      exchange: ExchangeService
      cache: BlockCache
      replicas: Replicas
      tagSync: TagSync
    },
  ) {}

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
    const { ctx, parts } = this
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
    const keep = parts.inUse.hold(new Set<string>())
    try {
      const r = await putPath(ctx.store, path, {
        signal: opts.signal,
        onProgress: (p) => opts.onProgress?.({ phase: 'chunking', ...p }),
      })
      const root = r.root.toString()
      await ctx.pins.set(root, { kind: 'dataset', replicas, complete: true, since: Date.now() })
      parts.cache.forget(root)
      void parts.exchange.provide(r.root)
      let replication: ReplicaReport | undefined
      if (replicas > 0) {
        opts.onProgress?.({
          phase: 'replicating',
          bytes: r.info.bytes,
          totalBytes: r.info.bytes,
          files: r.info.files,
          totalFiles: r.info.files,
        })
        replication = await parts.replicas.replicate(r.root, replicas, opts.signal)
      }
      let published: PutResult['tag']
      if (tag !== undefined) {
        const rec = await parts.tagSync.publish(tag.dataset, tag.tag, root, replicas)
        published = { dataset: rec.dataset, tag: rec.tag, seq: rec.seq.toString() }
        // acknowledge only once the tag is on disk here and held by the replica holders: gossip
        // alone may not have left this process when it is killed right after the answer
        const holders = (replication?.targets ?? [])
          .filter((x) => x.ok && x.peerId !== ctx.self)
          .map((x) => ({ peerId: peerIdFromString(x.peerId), name: x.name }))
        const failed = holders.length > 0 ? await parts.tagSync.hand(rec, holders) : []
        await ctx.tags.flush()
        if (replication !== undefined) tagNotHeld(replication, `${rec.dataset}:${rec.tag}`, failed)
      }
      ctx.metrics.transfers.inc({ kind: 'put', result: 'ok' })
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
      ctx.metrics.transfers.inc({ kind: 'put', result: 'error' })
      if (storeFull(ctx, err)) {
        parts.inUse.release(keep)
        await parts.cache.freeSpace()
      }
      throw err
    } finally {
      parts.inUse.release(keep)
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
    const { ctx, parts } = this
    const t0 = performance.now()
    const root = ctx.resolve(parseRef(refText))
    const ac = new AbortController()
    const signal = opts.signal === undefined ? ac.signal : AbortSignal.any([opts.signal, ac.signal])
    const t = parts.exchange.transfer(root, opts.hints ?? [], signal)
    const keep = parts.inUse.hold(new Set<string>([root.toString()]))
    let full = false
    let files = 0
    let totalFiles = 0
    let phase: GetProgress['phase'] = 'root'
    const report = (p: TransferProgress) => opts.onProgress?.({ ...p, phase, files, totalFiles })
    try {
      const { info, entries } = await parts.exchange.manifest(root, t, (p, ph) => {
        phase = ph
        report(p)
      })
      for (const [c] of info.manifest) keep.add(c)
      // no DEST: ./NAME, in the caller's directory
      const plan = await planWrite(info, entries, dest ?? join(opts.cwd ?? process.cwd(), info.name))
      totalFiles = plan.totalFiles
      files = plan.skipped
      for (const n of plan.needs) keep.add(n.cid.toString())
      phase = 'files'
      const waiter = new ChunkWaiter(ctx.store)
      const fetching = t.fetch(plan.needs, report).then(
        () => waiter.end(),
        (err: Error) => {
          waiter.fail(err)
          throw err
        },
      )
      t.blockListeners.push((cid, bytes) => waiter.arrived(cid.toString(), bytes))
      const writing = writePlanned(
        plan,
        entries,
        (cid) => waiter.get(cid),
        () => files++,
      )
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
      if (plan.file === undefined) await plan.writer.finish(entries, info)
      void parts.exchange.provide(root)
      ctx.metrics.transfers.inc({ kind: 'get', result: 'ok' })
      const providers = parts.exchange.providerReport(t)
      return {
        root: root.toString(),
        dest: plan.file ?? plan.base,
        name: info.name,
        type: info.type,
        files: info.files,
        dirs: info.dirs,
        symlinks: info.symlinks,
        bytes: info.bytes,
        skippedFiles: plan.skipped,
        fetchedBytes: t.progress.bytes,
        fetchedBlocks: t.progress.blocks,
        localBytes: t.progress.localBytes,
        providers,
        corrupt: providers.reduce((s, p) => s + p.corrupt, 0),
        ms: Math.round(performance.now() - t0),
      }
    } catch (err) {
      ctx.metrics.transfers.inc({ kind: 'get', result: 'error' })
      if (opts.signal?.aborted)
        throw new BlocksError('interrupted', 'the get was interrupted; run it again to resume')
      full = storeFull(ctx, err)
      throw err
    } finally {
      parts.inUse.release(keep)
      await t.close()
      if (full) await parts.cache.freeSpace()
      else void parts.cache.gc()
    }
  }

  /** `mesh cat`: one file's bytes, in order, fetched as needed. */
  async *cat(refText: string, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const { ctx, parts } = this
    const ref = parseRef(refText, true)
    const root = ctx.resolve(ref)
    const t = parts.exchange.transfer(root, [], signal)
    const keep = parts.inUse.hold(new Set<string>([root.toString()]))
    try {
      if (!ctx.store.has(root)) await parts.exchange.fetchOrNotFound(t, [{ cid: root, size: 0 }], root)
      const rootBytes = (await ctx.store.get(root))!
      if (!isRoot(rootBytes)) {
        if (ref.path !== undefined)
          throw new BlocksError('not-a-dataset', `${root} is a plain block: it has no paths`)
        yield rootBytes
        return
      }
      const { info, entries } = await parts.exchange.manifest(root, t)
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
          const bytes = await ctx.store.get(n.cid)
          if (bytes === undefined)
            throw new BlocksError('unavailable', `block ${n.cid} vanished from the store`)
          yield bytes
        }
      }
    } finally {
      parts.inUse.release(keep)
      await t.close()
    }
  }

  async ls(refText: string): Promise<{ root: string; info: Root; entries: Entry[] }> {
    const root = this.ctx.resolve(parseRef(refText))
    const { info, entries } = await this.parts.exchange.manifest(root)
    return { root: root.toString(), info, entries }
  }

  /** Every tagged dataset this member knows, with whether it holds and pins it. */
  list(): DatasetView[] {
    const ctx = this.ctx
    const names = ctx.names()
    return ctx.tags.all().map((t) => ({
      dataset: t.dataset,
      tag: t.tag,
      root: t.root,
      seq: t.seq.toString(),
      publisher: t.publisher,
      publisherName: ctx.nameOf(t.publisher, names),
      time: Number(t.time),
      replicas: t.replicas,
      local: ctx.store.has(t.root),
      pinned: ctx.pins.has(t.root),
    }))
  }
}

/** ENOSPC on the blockstore itself (not on a get's DEST, which has its own disk). */
function storeFull(ctx: BlocksContext, err: unknown): boolean {
  return err instanceof BlocksError && err.code === 'no-space' && err.message.includes(ctx.store.dir)
}
