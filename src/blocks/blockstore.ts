import { randomBytes } from 'node:crypto'
import { close, open, read, writeFile } from 'node:fs'
import { mkdir, readdir, rename, rm, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { type CID, cidOf, matches } from './cid.js'
import { BlocksError, explainFsError } from './errors.js'

/** The largest block the store (and the exchange) accepts: the chunker's maximum is 1 MiB. */
export const MAX_BLOCK = 2 << 20

/** File writes go through this, so tests can make the disk fill up. */
export interface BlockIO {
  writeFile(path: string, data: Uint8Array): Promise<void>
}

// fs's callback API, not fs/promises: no FileHandle (an object with a finalizer) per block
const defaultIO: BlockIO = {
  writeFile: (p, d) =>
    new Promise((resolve, reject) =>
      writeFile(p, d, { mode: 0o600 }, (err) => (err ? reject(err) : resolve())),
    ),
}

/**
 * A block file's bytes when the index knows its size: open, one positional read, close (no
 * fstat, no FileHandle, as readFile needs). A file of another size reads short or long, and
 * the hash check after it catches that.
 */
function readBlock(path: string, size: number): Promise<Buffer> {
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
}

/**
 * Immutable blocks named by CID, one file each under `<dir>/<xx>/<cid>` (xx: two characters of
 * the digest, so no directory grows past a few thousand entries). A block is written to
 * `<dir>/tmp/` and renamed into place, so a crash or a full disk never leaves a partial block
 * under its name. Every block is hashed before it is stored and again when read, so a block
 * damaged on disk is dropped (and fetched again) instead of being served or written out.
 */
export class Blockstore {
  private readonly index = new Map<string, Meta>()
  private bytes = 0
  private readonly tmp: string

  constructor(
    readonly dir: string,
    private readonly opts: { io?: BlockIO; onCorrupt?: (cid: string) => void } = {},
  ) {
    this.tmp = join(dir, 'tmp')
  }

  /** Create the directory and index what is there; stale temporary files are removed. */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    await rm(this.tmp, { recursive: true, force: true })
    await mkdir(this.tmp, { mode: 0o700 })
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
                this.index.set(name, { size: st.size, used: st.mtimeMs })
                this.bytes += st.size
              }
            } catch {}
          }),
        )
      }
    }
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

  path(cid: CID | string): string {
    const s = cid.toString()
    return join(this.dir, s.slice(-3, -1), s)
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
      bytes = await readBlock(this.path(key), meta.size)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.forget(key)
        return undefined
      }
      throw err
    }
    if (!matches(cid, bytes)) {
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
  async put(cid: CID, bytes: Uint8Array, opts: { verified?: boolean } = {}): Promise<boolean> {
    if (bytes.byteLength > MAX_BLOCK) {
      throw new BlocksError('refused', `block ${cid} is ${bytes.byteLength} bytes; the limit is ${MAX_BLOCK}`)
    }
    // `verified`: the exchange hashed these very bytes on arrival
    if (opts.verified !== true && !matches(cid, bytes)) {
      throw new BlocksError('refused', `the bytes given for ${cid} do not hash to it`)
    }
    return this.write(cid.toString(), bytes)
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
    return { cid, added: await this.write(cid.toString(), bytes) }
  }

  private async write(key: string, bytes: Uint8Array): Promise<boolean> {
    const existing = this.index.get(key)
    if (existing !== undefined) {
      existing.used = Date.now()
      return false
    }
    const final = this.path(key)
    const tmp = join(this.tmp, `${key}.${randomBytes(6).toString('hex')}`)
    try {
      await (this.opts.io ?? defaultIO).writeFile(tmp, bytes)
      try {
        await rename(tmp, final)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        await mkdir(join(this.dir, key.slice(-3, -1)), { recursive: true, mode: 0o700 })
        await rename(tmp, final)
      }
    } catch (err) {
      await unlink(tmp).catch(() => {})
      throw explainFsError(err, `holding the blockstore ${this.dir} (block ${key})`)
    }
    // a concurrent write of the same block may have indexed it already
    if (!this.index.has(key)) {
      this.index.set(key, { size: bytes.byteLength, used: Date.now() })
      this.bytes += bytes.byteLength
    }
    return true
  }

  async delete(cid: CID | string): Promise<void> {
    const key = cid.toString()
    this.forget(key)
    await unlink(this.path(key)).catch(() => {})
  }

  private forget(key: string): void {
    const meta = this.index.get(key)
    if (meta === undefined) return
    this.index.delete(key)
    this.bytes -= meta.size
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
