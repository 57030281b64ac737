import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BlockBytes } from '../../src/blocks/block-bytes.js'
import { type CID, cidOf } from '../../src/blocks/cid.js'
import { DatasetWriter, WRITE_AHEAD_BYTES } from '../../src/blocks/dataset.js'
import type { FileEntry } from '../../src/blocks/manifest.js'

/** A file of `n` chunks of `size` bytes, and its manifest entry. */
async function fileOf(n: number, size: number) {
  const chunks = Array.from({ length: n }, () => randomBytes(size))
  const cids = await Promise.all(chunks.map((c) => cidOf(c)))
  const byCid = new Map(cids.map((c, i) => [c.toString(), chunks[i]]))
  const e: FileEntry = {
    path: 'f.bin',
    type: 'file',
    mode: 0o644,
    mtime: Date.now(),
    size: n * size,
    chunks: cids.map((c) => [c.toString(), size]),
  }
  return { e, whole: Buffer.concat(chunks), byCid, cids }
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

describe('mesh get writes a file as its chunks arrive, not strictly in order', () => {
  let dir = ''
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-write-ahead-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('a first chunk that comes last does not hold the others back, and the file is byte for byte right', async () => {
    const { e, whole, byCid, cids } = await fileOf(8, 64 << 10)
    const asked: string[] = []
    const written: string[] = []
    let releaseFirst: () => void = () => {}
    const firstHeld = new Promise<void>((r) => (releaseFirst = r))
    const chunk = async (cid: CID): Promise<BlockBytes> => {
      const key = cid.toString()
      asked.push(key)
      if (key === cids[0].toString()) await firstHeld
      written.push(key)
      return byCid.get(key)!
    }
    const w = new DatasetWriter(dir)
    await w.prepareBase()
    const writing = w.writeFile(e, w.abs(e.path), chunk)
    // every chunk was asked for (and the other 7 handed over) while the first is still missing
    for (let i = 0; i < 50 && written.length < 7; i++) await new Promise((r) => setTimeout(r, 10))
    assert.equal(asked.length, 8)
    assert.equal(written.length, 7)
    releaseFirst()
    await writing
    assert.equal(sha(readFileSync(join(dir, 'f.bin'))), sha(whole))
  })

  it('chunks that arrive together in any order, some as pieces, make the file byte for byte right', async () => {
    // 3,000 chunks of 1 KiB: more than one writev may join (1,024 pieces), in reverse order
    const { e, whole, byCid } = await fileOf(3000, 1024)
    const gate: Array<() => void> = []
    const chunk = async (cid: CID): Promise<BlockBytes> => {
      await new Promise<void>((r) => gate.push(r))
      const b = byCid.get(cid.toString())!
      // every third chunk comes as the pieces of its frames
      return gate.length % 3 === 0 ? [b.subarray(0, 100), b.subarray(100, 101), b.subarray(101)] : b
    }
    const w = new DatasetWriter(dir)
    await w.prepareBase()
    const writing = w.writeFile(e, w.abs(e.path), chunk)
    for (let i = 0; i < 100 && gate.length < 3000; i++) await new Promise((r) => setTimeout(r, 10))
    assert.equal(gate.length, 3000)
    for (const release of gate.reverse()) release()
    await writing
    assert.equal(sha(readFileSync(join(dir, 'f.bin'))), sha(whole))
  })

  it('asks for no more than its bound of chunks at a time', async () => {
    const size = 1 << 20
    const n = WRITE_AHEAD_BYTES / size + 8
    const { e, whole, byCid } = await fileOf(n, size)
    const asked = new Set<string>()
    let release: () => void = () => {}
    const held = new Promise<void>((r) => (release = r))
    const chunk = async (cid: CID): Promise<BlockBytes> => {
      asked.add(cid.toString())
      await held // none has come yet
      return byCid.get(cid.toString())!
    }
    const w = new DatasetWriter(dir)
    await w.prepareBase()
    const writing = w.writeFile(e, w.abs(e.path), chunk)
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(asked.size, WRITE_AHEAD_BYTES / size, 'the bound in chunks')
    release()
    await writing
    assert.equal(asked.size, n)
    assert.equal(sha(readFileSync(join(dir, 'f.bin'))), sha(whole))
  })

  it('a chunk that fails ends the file: no file, no temporary left, the error said', async () => {
    const { e, byCid, cids } = await fileOf(6, 32 << 10)
    const chunk = async (cid: CID): Promise<BlockBytes> => {
      if (cid.toString() === cids[3].toString()) throw new Error('provider gone')
      if (cid.toString() === cids[4].toString()) return new Promise<BlockBytes>(() => {}) // never comes
      return byCid.get(cid.toString())!
    }
    const w = new DatasetWriter(dir)
    await w.prepareBase()
    await assert.rejects(w.writeFile(e, w.abs(e.path), chunk), /provider gone/)
    assert.deepEqual(readdirSync(dir), [])
  })

  it('a chunk of another size than the manifest says is refused', async () => {
    const { e, byCid, cids } = await fileOf(3, 16 << 10)
    const chunk = async (cid: CID): Promise<BlockBytes> =>
      cid.toString() === cids[1].toString() ? randomBytes(100) : byCid.get(cid.toString())!
    const w = new DatasetWriter(dir)
    await w.prepareBase()
    await assert.rejects(
      w.writeFile(e, w.abs(e.path), chunk),
      /chunk 1 is 100 bytes, the manifest says 16384/,
    )
    assert.deepEqual(readdirSync(dir), [])
  })
})
