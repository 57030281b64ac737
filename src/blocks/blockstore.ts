import { close, open, read } from 'node:fs'
import { appendFile, mkdir, readdir, readFile, rm, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { type BlockBytes, piecesOf, sizeOf } from './block-bytes.js'
import { type CID, cidOf, matches } from './cid.js'
import { BlocksError, explainFsError } from './errors.js'
import { type BlockIO, defaultIO, openFd, Pack, recordHeader } from './pack.js'
import { loadPunchHole, type PunchHole } from './punch-hole.js'

export type { BlockIO } from './pack.js'

/** The largest block the store (and the exchange) accepts: the chunker's maximum is 1 MiB. */
export const MAX_BLOCK = 2 << 20

/**
 * A block file of the old layout (one file per block) when the index knows its size: open, one
 * positional read, close (no fstat, no FileHandle, as readFile needs). A file of another size
 * reads short or long, and the hash check after it catches that.
 */
function readBlockFile(path: string, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    open(path, 'r', (err, fd) => {
      if (err) return reject(err)
      // one byte more than expected: a longer file must not hash-match by being cut short
      const buf = Buffer.allocUnsafe(size + 1)
      const more = (filled: number) =>
        read(fd, buf, filled, buf.length - filled, filled, (rerr, n) => {
          // a read may return less than asked (a signal): go on until EOF or the buffer is full
          if (rerr === null && n > 0 && filled + n < buf.length) return more(filled + n)
          close(fd, () => (rerr ? reject(rerr) : resolve(buf.subarray(0, filled + n))))
        })
      more(0)
    })
  })
}

interface Meta {
  size: number
  /** last use (ms), for least-recently-used eviction */
  used: number
  /** the pack holding it; undefined: a file of the old layout, `<dir>/<xx>/<cid>` */
  pack: Pack | undefined
  /** offsets of its record and of its bytes in the pack */
  rec: number
  data: number
}

interface Pending {
  key: string
  cid: CID
  pieces: readonly Uint8Array[]
  size: number
  done: Promise<void>
  resolve: () => void
  reject: (err: Error) => void
}

/** A pack takes new records until it is this large; then the next one starts. */
export const PACK_BYTES = 256 << 20
/** at most this many records or bytes in one write */
const BATCH_RECORDS = 256
const BATCH_BYTES = 16 << 20

const packName = (id: number) => String(id).padStart(6, '0')

/**
 * Immutable blocks named by CID. New blocks are appended to pack files under `<dir>/packs/`
 * (pack.ts: a record says its CID and length, so the index is rebuilt from the packs at open),
 * written in batches: the blocks that arrive while a write is on the disk go out together in the
 * next one (one writev), instead of a file + rename each. A pack takes records up to PACK_BYTES.
 *
 * Crash safety, the same promise as the one-file-per-block layout before (no fsync): a block is
 * visible (has/get) only after its whole record was written; a kill -9 mid-write leaves a torn
 * last record, which open() truncates away (the last record is hashed again at open). Blocks of
 * the old layout (`<dir>/<xx>/<cid>`, one file each) are still indexed and read where they are;
 * they are not migrated, and go away when deleted or evicted.
 *
 * Deletes: the record's offset goes into the pack's dead list (`<id>.dead`) and its pages are
 * punched out of the file (punch-hole.ts), so the space comes back at once; a pack whose blocks
 * are all dead is deleted (or truncated to nothing when it is the one being written).
 *
 * Every block is hashed before it is stored and again when read, so a block damaged on disk is
 * dropped (and fetched again) instead of being served or written out.
 */
export class Blockstore {
  private readonly index = new Map<string, Meta>()
  private bytes = 0
  private readonly tmp: string
  private readonly packDir: string
  private readonly packs = new Map<number, Pack>()
  /** the pack new records go to (the highest-numbered one) */
  private active: Pack | undefined
  private nextId = 1
  /** blocks waiting for the next batch write, by CID text */
  private readonly pending = new Map<string, Pending>()
  private draining = false
  /** pack writes, truncations and deletes run one at a time, in order */
  private queue: Promise<unknown> = Promise.resolve()
  private punch: PunchHole | undefined
  private closed = false

  constructor(
    readonly dir: string,
    private readonly opts: { io?: BlockIO; onCorrupt?: (cid: string) => void; packBytes?: number } = {},
  ) {
    this.tmp = join(dir, 'tmp')
    this.packDir = join(dir, 'packs')
  }

  /** Create the directory and index what is there (packs, then files of the old layout). */
  async open(): Promise<void> {
    this.closed = false
    this.index.clear()
    this.bytes = 0
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    // tmp/: the old layout's writes in progress; a crash may have left some
    await rm(this.tmp, { recursive: true, force: true })
    await mkdir(this.tmp, { mode: 0o700 })
    await mkdir(this.packDir, { mode: 0o700 }).catch((err) => {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    })
    this.punch = await loadPunchHole()
    await this.openPacks()
    await this.indexOldFiles()
  }

  private async openPacks(): Promise<void> {
    const names = await readdir(this.packDir)
    const ids = names
      .map((n) => /^(\d{6})\.pack$/.exec(n)?.[1])
      .filter((x): x is string => x !== undefined)
      .map(Number)
      .sort((a, b) => a - b)
    for (const id of ids) {
      const path = join(this.packDir, `${packName(id)}.pack`)
      const deadPath = join(this.packDir, `${packName(id)}.dead`)
      const fd = await openFd(path, 'r+')
      const pack = new Pack(id, path, deadPath, fd)
      this.packs.set(id, pack)
      this.nextId = id + 1
      const dead = await readDeadList(deadPath)
      const st = await stat(path)
      let last: { key: string; cid: CID; meta: Meta } | undefined
      for await (const r of pack.scan(st.size)) {
        if (dead.has(r.rec)) continue
        const meta = { size: r.size, used: st.mtimeMs, pack, rec: r.rec, data: r.data }
        this.remember(r.key, meta)
        last = { key: r.key, cid: r.cid, meta }
      }
      if (id === ids[ids.length - 1]) {
        // the pack that was being written: drop a torn tail, and hash its last record again
        if (last !== undefined && !matches(last.cid, await pack.read(last.meta.data, last.meta.size))) {
          this.forget(last.key)
          pack.end = last.meta.rec
        }
        if (pack.end < st.size) await pack.truncate(pack.end)
        this.active = pack
      }
    }
    for (const pack of [...this.packs.values()]) if (pack.live === 0) await this.dropPack(pack)
  }

  private async indexOldFiles(): Promise<void> {
    for (const shard of await readdir(this.dir)) {
      if (shard.length !== 2) continue
      const names = await readdir(join(this.dir, shard)).catch(() => [] as string[])
      // stat in small batches: a large store has many files
      for (let i = 0; i < names.length; i += 64) {
        await Promise.all(
          names.slice(i, i + 64).map(async (name) => {
            try {
              const st = await stat(join(this.dir, shard, name))
              if (!this.index.has(name)) {
                this.remember(name, { size: st.size, used: st.mtimeMs, pack: undefined, rec: 0, data: 0 })
              }
            } catch {}
          }),
        )
      }
    }
  }

  /** Wait for writes in flight and close the packs. */
  async close(): Promise<void> {
    while (this.pending.size > 0 || this.draining) await this.exclusive(async () => {})
    await this.queue
    this.closed = true
    for (const p of this.packs.values()) p.release()
    this.packs.clear()
    this.active = undefined
  }

  /** Bytes held. */
  get totalBytes(): number {
    return this.bytes
  }

  get count(): number {
    return this.index.size
  }

  has(cid: CID | string): boolean {
    return this.index.has(cid.toString())
  }

  sizeOf(cid: CID | string): number | undefined {
    return this.index.get(cid.toString())?.size
  }

  /** CID text -> size and last use, for eviction and `mesh block stat`. */
  entries(): IterableIterator<[string, Readonly<Meta>]> {
    return this.index.entries()
  }

  /** Where a block of the old layout (one file per block) is. */
  path(cid: CID | string): string {
    const s = cid.toString()
    return join(this.dir, s.slice(-3, -1), s)
  }

  /** Where a block's bytes are on disk: its pack file and offset, or its own file (offset 0). */
  locate(cid: CID | string): { file: string; offset: number; size: number } | undefined {
    const m = this.index.get(cid.toString())
    if (m === undefined) return undefined
    return m.pack === undefined
      ? { file: this.path(cid), offset: 0, size: m.size }
      : { file: m.pack.path, offset: m.data, size: m.size }
  }

  /**
   * The block's bytes, or undefined when we do not hold it. A block that no longer hashes to
   * its name (damaged on disk) is deleted, reported and treated as missing.
   */
  async get(cid: CID): Promise<Uint8Array | undefined> {
    const key = cid.toString()
    const meta = this.index.get(key)
    if (meta === undefined) return undefined
    let bytes: Buffer
    try {
      bytes =
        meta.pack === undefined
          ? await readBlockFile(this.path(key), meta.size)
          : await meta.pack.read(meta.data, meta.size)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        if (this.index.get(key) === meta) this.forget(key)
        return undefined
      }
      throw err
    }
    if (!matches(cid, bytes)) {
      // deleted while we read it (its pages may be punched out already): not damage
      if (this.index.get(key) !== meta) return undefined
      this.opts.onCorrupt?.(key)
      await this.delete(cid)
      return undefined
    }
    meta.used = Date.now()
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  /**
   * Store a block under its CID after checking that it hashes to it (a BlocksError otherwise).
   * Resolves false when it was already there. A full disk is a clear BlocksError and leaves
   * nothing behind.
   */
  async put(cid: CID, bytes: BlockBytes, opts: { verified?: boolean } = {}): Promise<boolean> {
    const size = sizeOf(bytes)
    if (size > MAX_BLOCK) {
      throw new BlocksError('refused', `block ${cid} is ${size} bytes; the limit is ${MAX_BLOCK}`)
    }
    // `verified`: the exchange hashed these very bytes on arrival
    if (opts.verified !== true && !matches(cid, bytes)) {
      throw new BlocksError('refused', `the bytes given for ${cid} do not hash to it`)
    }
    return this.write(cid, piecesOf(bytes), size)
  }

  /** Store bytes, returning their CID. */
  async putBytes(bytes: Uint8Array): Promise<CID> {
    return (await this.add(bytes)).cid
  }

  /** Store bytes: their CID, and whether the block is new to this store. */
  async add(bytes: Uint8Array): Promise<{ cid: CID; added: boolean }> {
    if (bytes.byteLength > MAX_BLOCK) {
      throw new BlocksError(
        'refused',
        `a block is at most ${MAX_BLOCK} bytes (2 MiB); this is ${bytes.byteLength}`,
      )
    }
    const cid = cidOf(bytes)
    return { cid, added: await this.write(cid, [bytes], bytes.byteLength) }
  }

  private async write(cid: CID, pieces: readonly Uint8Array[], size: number): Promise<boolean> {
    if (this.closed)
      throw new BlocksError('unavailable', `the blockstore ${this.dir} is closed (the agent is stopping)`)
    const key = cid.toString()
    const existing = this.index.get(key)
    if (existing !== undefined) {
      existing.used = Date.now()
      return false
    }
    const queued = this.pending.get(key)
    if (queued !== undefined) {
      await queued.done
      return false
    }
    let resolve!: () => void
    let reject!: (err: Error) => void
    const done = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    this.pending.set(key, { key, cid, pieces, size, done, resolve, reject })
    this.drain()
    await done
    return true
  }

  /** Write what is pending in batches, one batch at a time; what arrives meanwhile joins the next. */
  private drain(): void {
    if (this.draining) return
    this.draining = true
    void this.exclusive(async () => {
      try {
        while (this.pending.size > 0) {
          const batch: Pending[] = []
          let size = 0
          for (const p of this.pending.values()) {
            if (batch.length >= BATCH_RECORDS || (batch.length > 0 && size + p.size > BATCH_BYTES)) break
            batch.push(p)
            size += p.size
          }
          try {
            await this.writeBatch(batch)
            for (const p of batch) p.resolve()
          } catch (err) {
            const e = explainFsError(
              err,
              `holding the blockstore ${this.dir} (${batch.length} block${batch.length === 1 ? '' : 's'})`,
            )
            for (const p of batch) p.reject(e)
          } finally {
            for (const p of batch) this.pending.delete(p.key)
          }
        }
      } finally {
        this.draining = false
      }
    })
  }

  private async writeBatch(batch: Pending[]): Promise<void> {
    if (this.active === undefined || this.active.end >= (this.opts.packBytes ?? PACK_BYTES))
      await this.rotate()
    const pack = this.active as Pack
    const start = pack.end
    const buffers: Uint8Array[] = []
    const metas: Meta[] = []
    let off = start
    for (const p of batch) {
      const h = recordHeader(p.cid.bytes, p.size)
      buffers.push(h, ...p.pieces)
      metas.push({ size: p.size, used: Date.now(), pack, rec: off, data: off + h.byteLength })
      off += h.byteLength + p.size
    }
    try {
      await (this.opts.io ?? defaultIO).writev(pack.fd, buffers, start)
    } catch (err) {
      // a full disk mid-write: cut the partial records off, so nothing of them stays
      await pack.truncate(start).catch(() => {})
      throw err
    }
    pack.end = off
    for (let i = 0; i < batch.length; i++) this.remember(batch[i].key, metas[i])
  }

  private async rotate(): Promise<void> {
    const id = this.nextId++
    const path = join(this.packDir, `${packName(id)}.pack`)
    const deadPath = join(this.packDir, `${packName(id)}.dead`)
    await unlink(deadPath).catch(() => {})
    const pack = new Pack(id, path, deadPath, await openFd(path, 'wx+'))
    this.packs.set(id, pack)
    const prev = this.active
    this.active = pack
    if (prev !== undefined && prev.live === 0) await this.dropPack(prev)
  }

  /** Index a block; a second copy of one already indexed (a crash between writes) counts as dead. */
  private remember(key: string, meta: Meta): void {
    const old = this.index.get(key)
    if (old !== undefined) {
      if (meta.pack === undefined) return
      this.forget(key)
    }
    this.index.set(key, meta)
    this.bytes += meta.size
    if (meta.pack !== undefined) {
      meta.pack.live++
      meta.pack.liveBytes += meta.size
    }
  }

  async delete(cid: CID | string): Promise<void> {
    const key = cid.toString()
    const meta = this.index.get(key)
    if (meta === undefined) return
    this.forget(key)
    if (meta.pack === undefined) {
      await unlink(this.path(key)).catch(() => {})
      return
    }
    const pack = meta.pack
    await this.exclusive(async () => {
      if (!this.packs.has(pack.id)) return
      if (pack.live === 0) {
        await this.dropPack(pack)
        return
      }
      // the dead list first: a hole where the scan expects a block would read as damage
      const rec = Buffer.alloc(8)
      rec.writeBigUInt64BE(BigInt(meta.rec))
      await appendFile(pack.deadPath, rec, { mode: 0o600 })
      if (this.punch !== undefined && !this.punch(pack.fd, meta.data, meta.size)) this.punch = undefined
    })
  }

  /** A pack with no live block: deleted, or emptied when it is the one being written. */
  private async dropPack(pack: Pack): Promise<void> {
    if (pack === this.active) {
      // the dead list first: its offsets would name the records written next
      await unlink(pack.deadPath).catch(() => {})
      await pack.truncate(0)
      pack.end = 0
    } else {
      this.packs.delete(pack.id)
      await unlink(pack.path).catch(() => {})
      pack.release()
      await unlink(pack.deadPath).catch(() => {})
    }
  }

  private forget(key: string): void {
    const meta = this.index.get(key)
    if (meta === undefined) return
    this.index.delete(key)
    this.bytes -= meta.size
    if (meta.pack !== undefined) {
      meta.pack.live--
      meta.pack.liveBytes -= meta.size
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  /**
   * Delete least-recently-used blocks that `keep` does not protect until at most `budget`
   * bytes of unprotected blocks remain. Returns what was removed.
   */
  async evict(budget: number, keep: (cid: string) => boolean): Promise<{ blocks: number; bytes: number }> {
    const candidates: Array<[string, Meta]> = []
    let unprotected = 0
    for (const [k, m] of this.index) {
      if (keep(k)) continue
      candidates.push([k, m])
      unprotected += m.size
    }
    if (unprotected <= budget) return { blocks: 0, bytes: 0 }
    candidates.sort((a, b) => a[1].used - b[1].used)
    let blocks = 0
    let bytes = 0
    for (const [k, m] of candidates) {
      if (unprotected <= budget) break
      await this.delete(k)
      unprotected -= m.size
      blocks++
      bytes += m.size
    }
    return { blocks, bytes }
  }
}

/** Record offsets listed dead; a torn last entry (a crash mid-append) is ignored. */
async function readDeadList(path: string): Promise<Set<number>> {
  let buf: Buffer
  try {
    buf = await readFile(path)
  } catch {
    return new Set()
  }
  const dead = new Set<number>()
  for (let i = 0; i + 8 <= buf.length; i += 8) dead.add(Number(buf.readBigUInt64BE(i)))
  return dead
}
