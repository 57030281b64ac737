/**
 * Datasets on disk: `put` walks a path, chunks its files into the blockstore and writes the
 * manifest and root blocks; `write` lays a dataset out under a destination from blocks in the
 * store, never outside it. The network side (fetching missing blocks) is transfer.ts.
 */
import { randomBytes } from 'node:crypto'
import {
  chmod,
  type FileHandle,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  readlink,
  rename,
  stat,
  symlink,
  unlink,
  utimes,
} from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { type BlockBytes, sizeOf } from './block-bytes.js'
import type { Blockstore } from './blockstore.js'
import { Chunker } from './chunker.js'
import { type CID, parseCid } from './cid.js'
import { BlocksError, explainFsError } from './errors.js'
import {
  type ChunkRef,
  comparePaths,
  decodeManifest,
  decodeRoot,
  type Entry,
  encodeManifest,
  encodeRoot,
  type FileEntry,
  MODE_MASK,
  type Root,
} from './manifest.js'

export interface PutProgress {
  files: number
  bytes: number
  totalFiles: number
  totalBytes: number
}

export interface PutResult {
  root: CID
  info: Root
  /** blocks written (new to this store) and bytes in them */
  newBlocks: number
  newBytes: number
  blocks: number
}

interface Scanned {
  entries: Entry[]
  files: Array<{ abs: string; entry: FileEntry }>
  type: 'dir' | 'file'
  name: string
  mode: number
  mtime: number
}

function kindOf(st: {
  isFIFO(): boolean
  isSocket(): boolean
  isBlockDevice(): boolean
  isCharacterDevice(): boolean
}): string {
  if (st.isFIFO()) return 'a FIFO (named pipe)'
  if (st.isSocket()) return 'a socket'
  if (st.isBlockDevice()) return 'a block device'
  if (st.isCharacterDevice()) return 'a character device'
  return 'a special file'
}

/**
 * Walk `path` (a file or a directory; a symlink given on the command line is followed, those
 * inside are stored as symlinks). Special files are refused, all of them named in one error.
 */
export async function scanPath(path: string, maxEntries = 10_000_000): Promise<Scanned> {
  const abs = resolve(path)
  let top: Awaited<ReturnType<typeof stat>>
  try {
    top = await stat(abs)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new BlocksError(
      e.code === 'ENOENT' ? 'not-found' : 'bad-request',
      `cannot read ${abs}: ${e.message}`,
    )
  }
  const name = basename(abs) || 'root'
  if (top.isFile()) {
    const entry: FileEntry = {
      path: name,
      type: 'file',
      mode: top.mode & 0o7777,
      mtime: top.mtimeMs,
      size: top.size,
      chunks: [],
    }
    return {
      entries: [entry],
      files: [{ abs, entry }],
      type: 'file',
      name,
      mode: entry.mode,
      mtime: top.mtimeMs,
    }
  }
  if (!top.isDirectory()) {
    throw new BlocksError(
      'refused',
      `cannot put ${abs}: it is ${kindOf(top)}; mesh stores regular files, directories and symlinks`,
    )
  }
  const entries: Entry[] = []
  const files: Scanned['files'] = []
  const special: string[] = []
  const stack: string[] = ['']
  while (stack.length > 0) {
    const rel = stack.pop()!
    const dir = rel === '' ? abs : join(abs, rel)
    let names: string[]
    try {
      names = await readdir(dir)
    } catch (err) {
      throw new BlocksError('refused', `cannot read directory ${dir}: ${(err as Error).message}`)
    }
    names.sort(comparePaths)
    for (const n of names) {
      const childRel = rel === '' ? n : `${rel}/${n}`
      const childAbs = join(abs, childRel)
      const st = await lstat(childAbs)
      if (entries.length >= maxEntries)
        throw new BlocksError('refused', `${abs} holds more than ${maxEntries} entries`)
      if (st.isFile()) {
        const entry: FileEntry = {
          path: childRel,
          type: 'file',
          mode: st.mode & 0o7777,
          mtime: st.mtimeMs,
          size: st.size,
          chunks: [],
        }
        entries.push(entry)
        files.push({ abs: childAbs, entry })
      } else if (st.isDirectory()) {
        entries.push({ path: childRel, type: 'dir', mode: st.mode & 0o7777, mtime: st.mtimeMs })
        stack.push(childRel)
      } else if (st.isSymbolicLink()) {
        entries.push({ path: childRel, type: 'symlink', target: await readlink(childAbs), mtime: st.mtimeMs })
      } else {
        special.push(`${childAbs} (${kindOf(st)})`)
      }
    }
  }
  if (special.length > 0) {
    const shown = special.slice(0, 5).join(', ')
    throw new BlocksError(
      'refused',
      `cannot put ${abs}: it holds ${special.length} special file${special.length > 1 ? 's' : ''} that mesh does not store: ` +
        `${shown}${special.length > 5 ? ', …' : ''}. Remove them or put a directory without them`,
    )
  }
  files.sort((a, b) => comparePaths(a.entry.path, b.entry.path))
  return { entries, files, type: 'dir', name, mode: top.mode & 0o7777, mtime: top.mtimeMs }
}

/** Store every chunk of one file; the file must not change while it is read. */
async function putFile(
  store: Blockstore,
  abs: string,
  entry: FileEntry,
  counters: { newBlocks: number; newBytes: number; blocks: number },
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  let fh: FileHandle
  try {
    fh = await open(abs, 'r')
  } catch (err) {
    throw new BlocksError('refused', `cannot read ${abs}: ${(err as Error).message}`)
  }
  try {
    const before = await fh.stat()
    const chunker = new Chunker()
    const chunks: ChunkRef[] = []
    let read = 0
    const store1 = async (c: Uint8Array) => {
      const { cid, added } = await store.add(c)
      counters.blocks++
      if (added) {
        counters.newBlocks++
        counters.newBytes += c.byteLength
      }
      chunks.push([cid.toString(), c.byteLength])
      onBytes(c.byteLength)
    }
    for (;;) {
      signal?.throwIfAborted()
      const space = chunker.space()
      const { bytesRead } = await fh.read(space, 0, space.length, read)
      if (bytesRead === 0) break
      read += bytesRead
      for (const c of chunker.commit(bytesRead)) await store1(c)
    }
    for (const c of chunker.end()) await store1(c)
    const after = await fh.stat()
    if (read !== before.size || after.size !== before.size || after.mtimeMs !== before.mtimeMs) {
      throw new BlocksError(
        'refused',
        `${abs} changed while it was being read; put it again once it is stable`,
      )
    }
    entry.size = read
    entry.mtime = before.mtimeMs
    entry.mode = before.mode & 0o7777
    entry.chunks = chunks
  } finally {
    await fh.close()
  }
}

/** Chunk a byte string into the store (manifests). */
async function putBytesChunked(store: Blockstore, bytes: Uint8Array): Promise<ChunkRef[]> {
  const chunker = new Chunker()
  const refs: ChunkRef[] = []
  for (const c of [...chunker.push(bytes), ...chunker.end()]) {
    const cid = await store.putBytes(c)
    refs.push([cid.toString(), c.byteLength])
  }
  return refs
}

/** `mesh put`: the dataset's root CID once every block is in the store. */
export async function putPath(
  store: Blockstore,
  path: string,
  opts: { onProgress?: (p: PutProgress) => void; signal?: AbortSignal } = {},
): Promise<PutResult> {
  const scanned = await scanPath(path)
  const totalBytes = scanned.files.reduce((s, f) => s + f.entry.size, 0)
  const progress: PutProgress = { files: 0, bytes: 0, totalFiles: scanned.files.length, totalBytes }
  const counters = { newBlocks: 0, newBytes: 0, blocks: 0 }
  for (const f of scanned.files) {
    await putFile(
      store,
      f.abs,
      f.entry,
      counters,
      (n) => {
        progress.bytes += n
        opts.onProgress?.(progress)
      },
      opts.signal,
    )
    progress.files++
    opts.onProgress?.(progress)
  }
  const manifest = await putBytesChunked(store, encodeManifest(scanned.entries))
  const info: Root = {
    mesh: 'dataset/1',
    name: scanned.name,
    type: scanned.type,
    mode: scanned.mode,
    mtime: scanned.mtime,
    files: scanned.files.length,
    dirs: scanned.entries.filter((e) => e.type === 'dir').length,
    symlinks: scanned.entries.filter((e) => e.type === 'symlink').length,
    bytes: scanned.files.reduce((s, f) => s + f.entry.size, 0),
    manifest,
  }
  const root = await store.putBytes(encodeRoot(info))
  return { root, info, ...counters }
}

/** Read and check a dataset's manifest from blocks that are in the store. */
export async function readManifest(store: Blockstore, root: CID): Promise<{ info: Root; entries: Entry[] }> {
  const rootBytes = await store.get(root)
  if (rootBytes === undefined) throw new BlocksError('not-found', `block ${root} is not in the local store`)
  const info = decodeRoot(rootBytes, root)
  const parts: Uint8Array[] = []
  for (const [c] of info.manifest) {
    const b = await store.get(parseCid(c))
    if (b === undefined) throw new BlocksError('not-found', `manifest block ${c} is not in the local store`)
    parts.push(b)
  }
  return { info, entries: decodeManifest(Buffer.concat(parts), info) }
}

// ---- writing a dataset out ----------------------------------------------------------------

/** Where a dataset goes: a dir dataset fills DEST; a file dataset is DEST (or DEST/name if DEST is a dir). */
export async function destinationOf(info: Root, dest: string): Promise<{ base: string; file?: string }> {
  const abs = resolve(dest)
  if (info.type === 'dir') return { base: abs }
  const st = await stat(abs).catch(() => undefined)
  if (st?.isDirectory()) return { base: abs, file: join(abs, info.name) }
  return { base: dirname(abs), file: abs }
}

const modeOf = (m: number) => m & MODE_MASK

/** True when DEST already holds this file as the manifest says (size, mtime to the ms, mode): resume skips it. */
export async function upToDate(abs: string, e: FileEntry): Promise<boolean> {
  const st = await lstat(abs).catch(() => undefined)
  return (
    st?.isFile() === true &&
    st.size === e.size &&
    Math.abs(st.mtimeMs - e.mtime) < 1 &&
    (st.mode & 0o7777) === modeOf(e.mode)
  )
}

/**
 * Writes a dataset under `base`. Every directory on the way is checked with lstat: a symlink
 * or a file where the manifest needs a directory is refused, so nothing is written through a
 * link to outside `base`. Files are written to a temporary name and renamed into place.
 */
export class DatasetWriter {
  private readonly dirsOk = new Set<string>()
  /** directories this writer made (rel paths, '' for the base): only these take a manifest's mode */
  private readonly made = new Set<string>()
  /** modes of existing directories ensureDir made writable, to restore (never widen) at the end */
  private readonly opened = new Map<string, number>()

  constructor(readonly base: string) {}

  /** Absolute path for a manifest path (already checked by decodeManifest). */
  abs(rel: string): string {
    return join(this.base, ...rel.split('/'))
  }

  async prepareBase(): Promise<void> {
    const before = await lstat(this.base).catch(() => undefined)
    if (
      before !== undefined &&
      !before.isDirectory() &&
      !(before.isSymbolicLink() && (await stat(this.base).catch(() => undefined))?.isDirectory())
    ) {
      throw new BlocksError(
        'refused',
        `${this.base} exists and is not a directory; choose another destination`,
      )
    }
    if (before === undefined) this.made.add('')
    try {
      await mkdir(this.base, { recursive: true, mode: 0o755 })
    } catch (err) {
      throw explainFsError(err, `creating ${this.base}`)
    }
    const st = await stat(this.base)
    if (!st.isDirectory()) throw new BlocksError('refused', `${this.base} exists and is not a directory`)
    this.dirsOk.add('')
  }

  /** Make sure every directory of `rel` exists under base, without following symlinks. */
  async ensureDir(rel: string): Promise<void> {
    if (this.dirsOk.has(rel)) return
    const parts = rel.split('/')
    let cur = ''
    for (const p of parts) {
      cur = cur === '' ? p : `${cur}/${p}`
      if (this.dirsOk.has(cur)) continue
      const abs = this.abs(cur)
      const st = await lstat(abs).catch(() => undefined)
      if (st === undefined) {
        try {
          await mkdir(abs, { mode: 0o700 })
          this.made.add(cur)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw explainFsError(err, `creating ${abs}`)
          const again = await lstat(abs)
          if (!again.isDirectory()) throw this.notDir(abs, again)
        }
      } else if (!st.isDirectory()) {
        throw this.notDir(abs, st)
      } else if ((st.mode & 0o700) !== 0o700) {
        // a read-only directory from an earlier run: writable until its final mode is set again
        this.opened.set(cur, st.mode & 0o7777)
        await chmod(abs, (st.mode & 0o7777) | 0o700)
      }
      this.dirsOk.add(cur)
    }
  }

  private notDir(abs: string, st: { isSymbolicLink(): boolean }): BlocksError {
    return new BlocksError(
      'refused',
      `${abs} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'} but the dataset needs a directory there; ` +
        'refusing to write through it (move it away or choose another destination)',
    )
  }

  /**
   * Remove temporary files an interrupted get left next to the files it was writing
   * (`.NAME.mesh-XXXXXXXX`, only for NAMEs this dataset writes in that directory).
   */
  async removeStale(dir: string, names: ReadonlySet<string>): Promise<number> {
    let list: string[]
    try {
      list = await readdir(dir)
    } catch {
      return 0
    }
    let n = 0
    for (const f of list) {
      const m = /^\.(.+)\.mesh-[0-9a-f]{8}$/.exec(f)
      if (m === null || !names.has(m[1])) continue
      const st = await lstat(join(dir, f)).catch(() => undefined)
      if (st?.isFile() !== true) continue
      await unlink(join(dir, f)).catch(() => {})
      n++
    }
    return n
  }

  /** Write one file from its chunks (each must be in the store, or `chunk` must supply it). */
  async writeFile(e: FileEntry, target: string, chunk: (cid: CID) => Promise<BlockBytes>): Promise<void> {
    const dir = dirname(target)
    const tmp = join(dir, `.${basename(target).slice(0, 100)}.mesh-${randomBytes(4).toString('hex')}`)
    let fh: FileHandle | undefined
    try {
      fh = await open(tmp, 'wx', 0o600)
      await writeChunks(fh, e, chunk)
      await fh.chmod(modeOf(e.mode))
      await fh.utimes(e.mtime / 1000, e.mtime / 1000)
      await fh.close()
      fh = undefined
      const st = await lstat(target).catch(() => undefined)
      if (st?.isDirectory()) {
        throw new BlocksError(
          'refused',
          `${target} is a directory but the dataset has a file there; move it away first`,
        )
      }
      await rename(tmp, target)
    } catch (err) {
      await fh?.close().catch(() => {})
      await unlink(tmp).catch(() => {})
      throw explainFsError(err, `holding ${this.base} (writing ${target})`)
    }
  }

  /** Symlinks after files (nothing is ever written through one), then directory modes and mtimes, deepest first. */
  async finish(entries: readonly Entry[], root?: { mode: number; mtime: number }): Promise<void> {
    for (const e of entries) {
      if (e.type !== 'symlink') continue
      const abs = this.abs(e.path)
      const slash = e.path.lastIndexOf('/')
      if (slash > 0) await this.ensureDir(e.path.slice(0, slash))
      const st = await lstat(abs).catch(() => undefined)
      if (st?.isSymbolicLink() && (await readlink(abs)) === e.target) {
        // already there (resume)
      } else {
        if (st?.isDirectory())
          throw new BlocksError('refused', `${abs} is a directory but the dataset has a symlink there`)
        if (st !== undefined) await unlink(abs)
        await symlink(e.target, abs)
      }
      await lutimes(abs, e.mtime / 1000, e.mtime / 1000).catch(() => {})
    }
    const dirs = entries.filter((e) => e.type === 'dir').sort((a, b) => depth(b.path) - depth(a.path))
    for (const d of dirs) {
      if (d.type !== 'dir') continue
      await this.ensureDir(d.path)
      await this.settle(d.path, d.mode, d.mtime)
    }
    if (root !== undefined) await this.settle('', root.mode, root.mtime)
  }

  /**
   * A directory's final mode and mtime. A directory this get made takes the manifest's; one
   * that was there before (DEST itself, or a folder the user had) is never loosened: it keeps
   * its own mode, tightened where the manifest is stricter, and its own mtime. A publisher must
   * not be able to turn a fetcher's 0700 directory into 1777.
   */
  private async settle(rel: string, mode: number, mtime: number): Promise<void> {
    const abs = rel === '' ? this.base : this.abs(rel)
    if (this.made.has(rel)) {
      await chmod(abs, modeOf(mode))
      await utimes(abs, mtime / 1000, mtime / 1000)
      return
    }
    const st = await stat(abs)
    const had = st.mode & 0o7777
    // ensureDir may have added u+rwx to write into it: the mode it had is what it keeps
    const own = this.opened.get(rel) ?? had
    await chmod(abs, own & (modeOf(mode) | 0o700))
  }
}

const depth = (p: string) => p.split('/').length

/** All of `bytes` at `pos` (a block that came in pieces: one writev), however many calls it takes. */
/** at most this many bytes of a file's chunks are asked for and not yet written, at a time */
export const WRITE_AHEAD_BYTES = 32 << 20

/**
 * Write a file's chunks at their offsets as they arrive, WRITE_AHEAD_BYTES of them asked for at a
 * time (a chunk still missing holds no memory, so one late chunk holds back nothing after it).
 * A parallel transfer delivers chunks out of order; written strictly in
 * order, every chunk that came before its turn was parked in memory until the one before it
 * arrived (tens of MB), long enough to survive into V8's old generation: most of a fetcher's
 * full GCs (sim/PROFILE.md). At its offset, a chunk is held only while its write runs.
 */
async function writeChunks(
  fh: FileHandle,
  e: FileEntry,
  chunk: (cid: CID) => Promise<BlockBytes>,
): Promise<void> {
  const offsets: number[] = []
  let total = 0
  for (const [, size] of e.chunks) {
    offsets.push(total)
    total += size
  }
  if (total !== e.size)
    throw new BlocksError(
      'bad-manifest',
      `${e.path}: its chunks add up to ${total} bytes, the manifest says ${e.size}`,
    )
  const inFlight = new Set<Promise<void>>()
  const writes = new FileWrites(fh)
  let failure: unknown
  let next = 0
  let ahead = 0 // bytes of the chunks started and not yet written
  const start = (i: number) => {
    const [c, size] = e.chunks[i]
    ahead += size
    const p: Promise<void> = chunk(parseCid(c))
      .then(async (bytes) => {
        if (sizeOf(bytes) !== size)
          throw new BlocksError(
            'bad-manifest',
            `${e.path}: chunk ${i} is ${sizeOf(bytes)} bytes, the manifest says ${size}`,
          )
        if (failure === undefined) await writes.add(offsets[i], bytes)
      })
      .catch((err: unknown) => {
        failure ??= err
      })
      .finally(() => {
        ahead -= size
        inFlight.delete(p)
      })
    inFlight.add(p)
  }
  while (failure === undefined && (next < e.chunks.length || inFlight.size > 0)) {
    while (next < e.chunks.length && (inFlight.size === 0 || ahead + e.chunks[next][1] <= WRITE_AHEAD_BYTES))
      start(next++)
    await Promise.race(inFlight)
  }
  // the first failure ends the file (the caller removes it); chunks still awaited are let go:
  // their writes, if any come, are refused by the closed handle and their errors dropped
  if (failure !== undefined) throw failure
}

/** chunks joined into one writev at most: Linux's IOV_MAX, and a bound on the bytes */
const MAX_WRITE_PIECES = 1024
const MAX_WRITE_BYTES = 8 << 20

/**
 * One file's chunk writes, one writev at a time, chunks that queued up meanwhile at adjacent
 * offsets joined into one. Chunks written concurrently to one file each took the inode's lock
 * in the kernel, and libuv's threads spun on it (4% of a fetcher's CPU in a 1 GiB get,
 * sim/PROFILE.md). A chunk's promise settles when its bytes are written (or the write failed).
 */
class FileWrites {
  private queue: Array<{
    pos: number
    pieces: Uint8Array[]
    size: number
    done: () => void
    fail: (e: unknown) => void
  }> = []
  private running = false

  constructor(private readonly fh: FileHandle) {}

  add(pos: number, bytes: BlockBytes): Promise<void> {
    const pieces = bytes instanceof Uint8Array ? [bytes] : [...bytes]
    return new Promise<void>((done, fail) => {
      this.queue.push({ pos, pieces, size: sizeOf(pieces), done, fail })
      if (!this.running) void this.run()
    })
  }

  private async run(): Promise<void> {
    this.running = true
    try {
      // ends: every pass takes at least one queued chunk off
      while (this.queue.length > 0) {
        const q = this.queue.sort((a, b) => a.pos - b.pos)
        // the first run of adjacent chunks, within the bounds
        let n = 1
        let pieces = q[0].pieces.length
        let bytes = q[0].size
        while (
          n < q.length &&
          q[n].pos === q[n - 1].pos + q[n - 1].size &&
          pieces + q[n].pieces.length <= MAX_WRITE_PIECES &&
          bytes + q[n].size <= MAX_WRITE_BYTES
        ) {
          pieces += q[n].pieces.length
          bytes += q[n].size
          n++
        }
        const run = q.splice(0, n)
        try {
          await writeAt(this.fh, run.length === 1 ? run[0].pieces : run.flatMap((r) => r.pieces), run[0].pos)
          for (const r of run) r.done()
        } catch (err) {
          for (const r of run) r.fail(err)
        }
      }
    } finally {
      this.running = false
    }
  }
}

async function writeAt(fh: FileHandle, bytes: BlockBytes, pos: number): Promise<void> {
  let rest = bytes instanceof Uint8Array ? [bytes] : bytes
  // each call writes something or throws (ENOSPC): at most one call per byte
  while (sizeOf(rest) > 0) {
    const n =
      rest.length === 1
        ? (await fh.write(rest[0], 0, rest[0].byteLength, pos)).bytesWritten
        : (await fh.writev(rest as Uint8Array[], pos)).bytesWritten
    if (n <= 0) throw new Error(`writing at ${pos}: nothing was written`)
    pos += n
    let skip = n
    let k = 0
    while (k < rest.length && skip >= rest[k].byteLength) skip -= rest[k++].byteLength
    rest = k < rest.length ? [rest[k].subarray(skip), ...rest.slice(k + 1)] : []
  }
}
