/**
 * Dataset manifests (protocols/blocks.md, "Datasets"). Pure: encoding, decoding and the checks
 * that keep a manifest from writing anywhere but under its destination.
 *
 * A dataset is a root block (JSON) that names the manifest's chunks; the manifest is NDJSON,
 * one entry per line, sorted by path (bytewise), so parents come before their children. Large
 * manifests are chunked like files, so version 2 of a dataset shares most manifest blocks too.
 */
import { MAX_BLOCK } from './blockstore.js'
import { type CID, parseCid } from './cid.js'
import { BlocksError } from './errors.js'

export const DATASET_MAGIC = 'dataset/1'
/** Modes kept: permission bits and sticky; setuid/setgid from the network are not applied. */
export const MODE_MASK = 0o1777
const MAX_PATH = 4096
const MAX_ENTRIES = 10_000_000

/** [CID text, size in bytes] */
export type ChunkRef = [string, number]

export interface FileEntry {
  path: string
  type: 'file'
  mode: number
  /** ms since the epoch, as fs.Stats.mtimeMs */
  mtime: number
  size: number
  chunks: ChunkRef[]
}

export interface DirEntry {
  path: string
  type: 'dir'
  mode: number
  mtime: number
}

export interface SymlinkEntry {
  path: string
  type: 'symlink'
  target: string
  mtime: number
}

export type Entry = FileEntry | DirEntry | SymlinkEntry

export interface Root {
  mesh: typeof DATASET_MAGIC
  /** the base name of what was put */
  name: string
  /** 'dir': the entries are the directory's contents; 'file': one file entry named `name` */
  type: 'dir' | 'file'
  mode: number
  mtime: number
  files: number
  dirs: number
  symlinks: number
  /** sum of file sizes */
  bytes: number
  /** the manifest's chunks, in order */
  manifest: ChunkRef[]
}

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

const bad = (msg: string) => new BlocksError('bad-manifest', msg)

/** Bytewise order on UTF-8 paths, so every implementation sorts alike. */
export function comparePaths(a: string, b: string): number {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return Buffer.compare(x, y)
}

export function encodeManifest(entries: readonly Entry[]): Uint8Array {
  const sorted = [...entries].sort((a, b) => comparePaths(a.path, b.path))
  return enc.encode(sorted.map((e) => `${JSON.stringify(canonical(e))}\n`).join(''))
}

/** Fixed key order, so equal manifests are equal bytes (and the same CIDs). */
function canonical(e: Entry): Entry {
  switch (e.type) {
    case 'file':
      return { path: e.path, type: 'file', mode: e.mode, mtime: e.mtime, size: e.size, chunks: e.chunks }
    case 'dir':
      return { path: e.path, type: 'dir', mode: e.mode, mtime: e.mtime }
    case 'symlink':
      return { path: e.path, type: 'symlink', target: e.target, mtime: e.mtime }
  }
}

export function encodeRoot(r: Root): Uint8Array {
  const body: Root = {
    mesh: DATASET_MAGIC,
    name: r.name,
    type: r.type,
    mode: r.mode,
    mtime: r.mtime,
    files: r.files,
    dirs: r.dirs,
    symlinks: r.symlinks,
    bytes: r.bytes,
    manifest: r.manifest,
  }
  return enc.encode(JSON.stringify(body))
}

/** True when the bytes look like a dataset root (so `mesh get` of a plain block says so). */
export function isRoot(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 32)).toString('latin1')
  return head.startsWith(`{"mesh":"${DATASET_MAGIC}"`)
}

/** Decode and check a root block; a plain block is a 'not-a-dataset' error. */
export function decodeRoot(bytes: Uint8Array, cid?: CID | string): Root {
  if (!isRoot(bytes)) {
    throw new BlocksError(
      'not-a-dataset',
      `${cid ?? 'this block'} is a plain block, not a dataset root (use 'mesh block get' for blocks)`,
    )
  }
  let r: any
  try {
    r = JSON.parse(dec.decode(bytes))
  } catch (err) {
    throw bad(`dataset root ${cid ?? ''} is not valid JSON: ${(err as Error).message}`)
  }
  if (
    typeof r.name !== 'string' ||
    r.name.length === 0 ||
    r.name.includes('/') ||
    r.name === '.' ||
    r.name === '..'
  ) {
    throw bad(`dataset root ${cid ?? ''} has an invalid name ${JSON.stringify(r.name)}`)
  }
  if (r.type !== 'dir' && r.type !== 'file') throw bad(`dataset root ${cid ?? ''} has an invalid type`)
  for (const k of ['files', 'dirs', 'symlinks', 'bytes']) {
    if (!Number.isSafeInteger(r[k]) || r[k] < 0) throw bad(`dataset root ${cid ?? ''} has an invalid ${k}`)
  }
  checkMode(r.mode, 'the dataset root')
  checkMtime(r.mtime, 'the dataset root')
  if (!Array.isArray(r.manifest)) throw bad(`dataset root ${cid ?? ''} has no manifest list`)
  for (const c of r.manifest) checkChunk(c, 'the manifest')
  return r as Root
}

/** Decode and validate the manifest (all its chunks, concatenated). */
export function decodeManifest(bytes: Uint8Array, root?: Root): Entry[] {
  let text: string
  try {
    text = dec.decode(bytes)
  } catch {
    throw bad('the manifest is not valid UTF-8')
  }
  const entries: Entry[] = []
  let line = 0
  for (const raw of text.split('\n')) {
    line++
    if (raw === '') continue
    if (entries.length >= MAX_ENTRIES) throw bad(`the manifest has more than ${MAX_ENTRIES} entries`)
    let e: any
    try {
      e = JSON.parse(raw)
    } catch (err) {
      throw bad(`manifest line ${line} is not valid JSON: ${(err as Error).message}`)
    }
    entries.push(checkEntry(e, line))
  }
  validateEntries(entries, root)
  return entries
}

function checkMode(m: unknown, what: string): void {
  if (!Number.isInteger(m) || (m as number) < 0 || (m as number) > 0o7777)
    throw bad(`${what} has an invalid mode`)
}

function checkMtime(m: unknown, what: string): void {
  if (typeof m !== 'number' || !Number.isFinite(m) || m < 0) throw bad(`${what} has an invalid mtime`)
}

function checkChunk(c: unknown, what: string): void {
  if (!Array.isArray(c) || c.length !== 2 || typeof c[0] !== 'string' || !Number.isInteger(c[1])) {
    throw bad(`${what} has a malformed chunk reference ${JSON.stringify(c)}`)
  }
  if (c[1] < 0 || c[1] > MAX_BLOCK)
    throw bad(`${what} names a chunk of ${c[1]} bytes (the limit is ${MAX_BLOCK})`)
  try {
    parseCid(c[0])
  } catch (err) {
    throw bad(`${what} names an invalid chunk CID: ${(err as Error).message}`)
  }
}

function checkEntry(e: any, line: number): Entry {
  if (typeof e !== 'object' || e === null) throw bad(`manifest line ${line} is not an object`)
  const where = `manifest entry ${JSON.stringify(e.path)} (line ${line})`
  checkPath(e.path, line)
  checkMtime(e.mtime, where)
  switch (e.type) {
    case 'file': {
      checkMode(e.mode, where)
      if (!Number.isSafeInteger(e.size) || e.size < 0) throw bad(`${where} has an invalid size`)
      if (!Array.isArray(e.chunks)) throw bad(`${where} has no chunk list`)
      let sum = 0
      for (const c of e.chunks) {
        checkChunk(c, where)
        sum += c[1]
      }
      if (sum !== e.size) throw bad(`${where}: its chunks add up to ${sum} bytes, not its size ${e.size}`)
      return { path: e.path, type: 'file', mode: e.mode, mtime: e.mtime, size: e.size, chunks: e.chunks }
    }
    case 'dir':
      checkMode(e.mode, where)
      return { path: e.path, type: 'dir', mode: e.mode, mtime: e.mtime }
    case 'symlink':
      if (
        typeof e.target !== 'string' ||
        e.target.length === 0 ||
        e.target.length > MAX_PATH ||
        e.target.includes('\0')
      ) {
        throw bad(`${where} has an invalid symlink target`)
      }
      return { path: e.path, type: 'symlink', target: e.target, mtime: e.mtime }
    default:
      throw bad(`${where} has an unknown type ${JSON.stringify(e.type)}`)
  }
}

/**
 * A manifest path must stay under the destination: relative, no '.' or '..' components, no
 * empty components, no NUL. Refused, not rewritten: a manifest that tries is hostile or broken.
 */
export function checkPath(p: unknown, line?: number): asserts p is string {
  const at = line === undefined ? '' : ` (manifest line ${line})`
  if (typeof p !== 'string' || p.length === 0) throw bad(`a manifest entry has no path${at}`)
  if (Buffer.byteLength(p) > MAX_PATH) throw bad(`manifest path is longer than ${MAX_PATH} bytes${at}`)
  if (p.startsWith('/')) throw bad(`manifest path ${JSON.stringify(p)} is absolute: refused${at}`)
  if (p.includes('\0')) throw bad(`manifest path ${JSON.stringify(p)} contains NUL: refused${at}`)
  for (const c of p.split('/')) {
    if (c === '..')
      throw bad(`manifest path ${JSON.stringify(p)} escapes the destination ('..'): refused${at}`)
    if (c === '' || c === '.') throw bad(`manifest path ${JSON.stringify(p)} is not normalized: refused${at}`)
  }
}

/**
 * Whole-manifest checks: no duplicate paths, and nothing below a file or a symlink (writing
 * under a symlink would follow it out of the destination). For a 'file' root: one file entry.
 */
export function validateEntries(entries: readonly Entry[], root?: Root): void {
  const types = new Map<string, Entry['type']>()
  for (const e of entries) {
    if (types.has(e.path)) throw bad(`manifest path ${JSON.stringify(e.path)} appears twice`)
    types.set(e.path, e.type)
  }
  for (const e of entries) {
    let i = e.path.indexOf('/')
    while (i >= 0) {
      const parent = e.path.slice(0, i)
      const t = types.get(parent)
      if (t !== undefined && t !== 'dir') {
        throw bad(
          `manifest path ${JSON.stringify(e.path)} lies under the ${t} ${JSON.stringify(parent)}: refused`,
        )
      }
      i = e.path.indexOf('/', i + 1)
    }
  }
  if (root?.type === 'file') {
    if (entries.length !== 1 || entries[0].type !== 'file' || entries[0].path !== root.name) {
      throw bad('a file dataset must hold exactly one file entry named like the dataset')
    }
  }
}

/** Human mode string, as ls -l: drwxr-xr-x. */
export function modeString(type: Entry['type'], mode: number): string {
  const t = type === 'dir' ? 'd' : type === 'symlink' ? 'l' : '-'
  if (type === 'symlink') return 'lrwxrwxrwx'
  let s = t
  for (let i = 2; i >= 0; i--) {
    const b = (mode >> (i * 3)) & 7
    s += `${b & 4 ? 'r' : '-'}${b & 2 ? 'w' : '-'}${b & 1 ? 'x' : '-'}`
  }
  if (mode & 0o1000) s = `${s.slice(0, 9)}${s[9] === 'x' ? 't' : 'T'}`
  return s
}
