import { basename, dirname } from 'node:path'
import { type BlockBytes, sizeOf } from './block-bytes.js'
import type { Blockstore } from './blockstore.js'
import { type CID, parseCid } from './cid.js'
import { DatasetWriter, destinationOf, upToDate } from './dataset.js'
import { BlocksError } from './errors.js'
import type { Entry, FileEntry, Root } from './manifest.js'
import type { Need } from './transfer.js'

/** What `mesh get` writes where, and which chunks it still needs (files up to date are skipped). */
export interface WritePlan {
  /** a file dataset: the one file written; else undefined and files go under `writer`'s base */
  file?: string
  /** the directory files are written under */
  base: string
  writer: DatasetWriter
  todo: Array<{ e: FileEntry; target: string }>
  totalFiles: number
  /** files already up to date in DEST (resume) */
  skipped: number
  needs: Need[]
}

export async function planWrite(info: Root, entries: readonly Entry[], dest: string): Promise<WritePlan> {
  const where = await destinationOf(info, dest)
  const writer = new DatasetWriter(where.base)
  const fileEntries = entries.filter((e): e is FileEntry => e.type === 'file')
  const todo: WritePlan['todo'] = []
  let skipped = 0
  for (const e of fileEntries) {
    const target = where.file ?? writer.abs(e.path)
    if (await upToDate(target, e)) skipped++
    else todo.push({ e, target })
  }
  const needs: Need[] = []
  for (const { e } of todo) for (const [c, size] of e.chunks) needs.push({ cid: parseCid(c), size })
  return { file: where.file, base: where.base, writer, todo, totalFiles: fileEntries.length, skipped, needs }
}

/** Write the plan's files in order, each chunk from `chunk` (which waits for the transfer). */
export async function writePlanned(
  plan: WritePlan,
  entries: readonly Entry[],
  chunk: (cid: CID) => Promise<BlockBytes>,
  onFile: () => void,
): Promise<void> {
  const { writer, todo } = plan
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
    if (plan.file === undefined) {
      const slash = e.path.lastIndexOf('/')
      if (slash > 0) await writer.ensureDir(e.path.slice(0, slash))
    }
    await writer.writeFile(e, target, chunk)
    onFile()
  }
}

/**
 * Lets the file writer wait for chunks the transfer is still fetching. Blocks that just arrived
 * (verified) are handed over in memory, up to a bound, so the writer does not read and hash
 * them back from the store; the rest are read from the store (and hashed again there).
 */
export class ChunkWaiter {
  private readonly waiting = new Map<string, Array<{ resolve: () => void; reject: (e: Error) => void }>>()
  private readonly fresh = new Map<string, BlockBytes>()
  private freshBytes = 0
  private failure: Error | undefined
  private ended = false

  constructor(
    private readonly store: Blockstore,
    private readonly maxFreshBytes = 64 << 20,
  ) {}

  arrived(cid: string, bytes?: BlockBytes): void {
    const w = this.waiting.get(cid)
    const size = bytes === undefined ? 0 : sizeOf(bytes)
    if (bytes !== undefined && (w !== undefined || this.freshBytes + size <= this.maxFreshBytes)) {
      if (!this.fresh.has(cid)) {
        this.fresh.set(cid, bytes)
        this.freshBytes += size
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

  private take(key: string): BlockBytes | undefined {
    const b = this.fresh.get(key)
    if (b === undefined) return undefined
    this.fresh.delete(key)
    this.freshBytes -= sizeOf(b)
    return b
  }

  async get(cid: CID): Promise<BlockBytes> {
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
