import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Blockstore, MAX_BLOCK } from '../../src/blocks/blockstore.js'
import { cidOf, parseCid } from '../../src/blocks/cid.js'
import { DatasetWriter, putPath, readManifest, scanPath } from '../../src/blocks/dataset.js'
import { BlocksError } from '../../src/blocks/errors.js'
import { defaultIO } from '../../src/blocks/pack.js'

describe('blocks: blockstore', () => {
  const dirs: string[] = []
  const temp = () => {
    const d = mkdtempSync(join(tmpdir(), 'mesh-bs-'))
    dirs.push(d)
    return d
  }
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it('stores blocks by CID, survives a reopen, and refuses bytes that do not match', async () => {
    const dir = join(temp(), 'blocks')
    const s = new Blockstore(dir)
    await s.open()
    const data = new Uint8Array(randomBytes(1000))
    const cid = await s.putBytes(data)
    assert.equal(cid.toString(), cidOf(data).toString())
    assert.match(cid.toString(), /^bafkrei/)
    assert.ok(s.has(cid))
    assert.deepEqual(await s.get(cid), data)
    assert.equal(await s.put(cid, data), false, 'already there')
    await assert.rejects(s.put(cid, new Uint8Array(randomBytes(10))), /do not hash to it/)
    const again = new Blockstore(dir)
    await again.open()
    assert.equal(again.count, 1)
    assert.equal(again.totalBytes, 1000)
    assert.deepEqual(await again.get(cid), data)
  })

  /** Overwrite bytes of a file in place. */
  const scribble = (file: string, offset: number, bytes: Uint8Array) => {
    const fd = openSync(file, 'r+')
    writeSync(fd, bytes, 0, bytes.byteLength, offset)
    closeSync(fd)
  }
  const packsOf = (dir: string) => readdirSync(join(dir, 'packs')).filter((n) => n.endsWith('.pack'))
  /** bytes the file takes on disk (holes punched out do not count) */
  const onDisk = (file: string) => statSync(file).blocks * 512

  it('a block damaged on disk is dropped and reported, not returned', async () => {
    const bad: string[] = []
    const s = new Blockstore(join(temp(), 'blocks'), { onCorrupt: (c) => bad.push(c) })
    await s.open()
    const cid = await s.putBytes(new Uint8Array(randomBytes(100)))
    const other = new Uint8Array(randomBytes(100))
    const otherCid = await s.putBytes(other)
    const at = s.locate(cid)!
    scribble(at.file, at.offset + 10, Buffer.from('garbage'))
    assert.equal(await s.get(cid), undefined)
    assert.deepEqual(bad, [cid.toString()])
    assert.equal(s.has(cid), false)
    assert.deepEqual(await s.get(otherCid), other, 'its neighbour in the pack is intact')
  })

  it('writes blocks that arrive together in one batch, into a pack, not a file each', async () => {
    const dir = join(temp(), 'blocks')
    let writes = 0
    const s = new Blockstore(dir, {
      io: {
        writev(fd, bufs, pos) {
          writes++
          return defaultIO.writev(fd, bufs, pos)
        },
      },
    })
    await s.open()
    const blocks = Array.from({ length: 100 }, () => new Uint8Array(randomBytes(4096)))
    const cids = await Promise.all(blocks.map((b) => s.putBytes(b)))
    assert.ok(writes <= 3, `${writes} writes for 100 blocks`)
    assert.equal(packsOf(dir).length, 1)
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.length === 2),
      [],
      'no per-block files',
    )
    await s.close()
    const again = new Blockstore(dir)
    await again.open()
    assert.equal(again.count, 100)
    for (let i = 0; i < 100; i++) assert.deepEqual(await again.get(cids[i]), blocks[i])
    await again.close()
  })

  it('a write torn by a crash (the pack cut mid-record) is dropped at reopen; the blocks before it stay', async () => {
    const dir = join(temp(), 'blocks')
    const s = new Blockstore(dir)
    await s.open()
    const blocks = [0, 1, 2].map(() => new Uint8Array(randomBytes(50_000)))
    const cids = []
    for (const b of blocks) cids.push(await s.putBytes(b))
    const last = s.locate(cids[2])!
    await s.close()
    // kill -9 mid-write: the last record only partly on disk
    truncateSync(last.file, last.offset + 20_000)
    const again = new Blockstore(dir)
    await again.open()
    assert.equal(again.count, 2)
    assert.equal(again.has(cids[2]), false)
    assert.deepEqual(await again.get(cids[0]), blocks[0])
    assert.deepEqual(await again.get(cids[1]), blocks[1])
    assert.ok(statSync(last.file).size < last.offset, 'the torn tail is cut off')
    // the pack goes on after it: the block written again, then read back after another reopen
    assert.equal(await again.put(cids[2], blocks[2]), true)
    await again.close()
    const third = new Blockstore(dir)
    await third.open()
    assert.equal(third.count, 3)
    assert.deepEqual(await third.get(cids[2]), blocks[2])
    await third.close()
  })

  it('a torn last record whose length still fits (its bytes wrong) is dropped at reopen too', async () => {
    const dir = join(temp(), 'blocks')
    const s = new Blockstore(dir)
    await s.open()
    const a = await s.putBytes(new Uint8Array(randomBytes(5000)))
    const b = await s.putBytes(new Uint8Array(randomBytes(5000)))
    const at = s.locate(b)!
    await s.close()
    scribble(at.file, at.offset + 4000, new Uint8Array(1000))
    const again = new Blockstore(dir)
    await again.open()
    assert.ok(again.has(a))
    assert.equal(again.has(b), false)
    await again.close()
  })

  it('reads a data dir of the old layout (one file per block) and writes new blocks to packs', async () => {
    const dir = join(temp(), 'blocks')
    const old = new Uint8Array(randomBytes(300 << 10))
    const oldCid = cidOf(old)
    const legacy = new Blockstore(dir)
    mkdirSync(dirname(legacy.path(oldCid)), { recursive: true })
    writeFileSync(legacy.path(oldCid), old)
    const grown = new Uint8Array(randomBytes(1000))
    const grownCid = cidOf(grown)
    mkdirSync(dirname(legacy.path(grownCid)), { recursive: true })
    writeFileSync(legacy.path(grownCid), Buffer.concat([grown, Buffer.from('tail')]))
    const bad: string[] = []
    const s = new Blockstore(dir, { onCorrupt: (c) => bad.push(c) })
    await s.open()
    assert.equal(s.count, 2)
    assert.deepEqual(await s.get(oldCid), old)
    // a file that grew is caught: the read of the indexed size + 1 does not cut it short
    assert.equal(await s.get(grownCid), undefined)
    assert.deepEqual(bad, [grownCid.toString()])
    assert.equal(await s.put(oldCid, old), false, 'already held, not written again')
    const fresh = await s.putBytes(new Uint8Array(randomBytes(1000)))
    assert.match(s.locate(fresh)!.file, /packs\/000001\.pack$/)
    await s.delete(oldCid)
    assert.equal(existsSync(legacy.path(oldCid)), false, 'an old block deleted is its file removed')
  })

  it('deleted blocks give their space back at once, stay deleted after a reopen, and empty packs go', async () => {
    const dir = join(temp(), 'blocks')
    const s = new Blockstore(dir, { packBytes: 1 << 20 })
    await s.open()
    const blocks = Array.from({ length: 12 }, () => new Uint8Array(randomBytes(256 << 10)))
    const cids = []
    for (const b of blocks) cids.push(await s.putBytes(b))
    assert.equal(packsOf(dir).length, 3, '4 blocks of 256 KiB a pack of 1 MiB')
    const first = s.locate(cids[0])!.file
    const before = onDisk(first)
    // half of the first pack: the holes give the space back while its other blocks stay
    await s.delete(cids[0])
    await s.delete(cids[2])
    assert.ok(onDisk(first) <= before - (500 << 10), `${before} -> ${onDisk(first)} bytes on disk`)
    assert.deepEqual(await s.get(cids[1]), blocks[1])
    // every block of the second pack: the file goes
    const second = s.locate(cids[4])!.file
    for (const c of cids.slice(4, 8)) await s.delete(c)
    assert.equal(existsSync(second), false)
    assert.equal(s.count, 6)
    assert.equal(s.totalBytes, 6 * (256 << 10))
    await s.close()
    const again = new Blockstore(dir, { packBytes: 1 << 20 })
    await again.open()
    assert.equal(again.count, 6)
    for (const i of [0, 2, 4, 5, 6, 7]) assert.equal(again.has(cids[i]), false, `block ${i} stays deleted`)
    for (const i of [1, 3, 8, 9, 10, 11]) assert.deepEqual(await again.get(cids[i]), blocks[i])
    // a block deleted and stored again is there after a reopen
    assert.equal(await again.put(cids[0], blocks[0]), true)
    await again.close()
    const third = new Blockstore(dir, { packBytes: 1 << 20 })
    await third.open()
    assert.deepEqual(await third.get(cids[0]), blocks[0])
    await third.close()
  })

  it('a full disk is a clear error and leaves no partial block', async () => {
    const dir = join(temp(), 'blocks')
    let full = true
    let written = 0
    const s = new Blockstore(dir, {
      io: {
        async writev(fd, bufs, pos) {
          if (!full) return defaultIO.writev(fd, bufs, pos)
          // half the batch reaches the disk, then the device is full
          const all = Buffer.concat(bufs)
          writeSync(fd, all, 0, all.length >> 1, pos)
          written++
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
        },
      },
    })
    await s.open()
    const kept = await (async () => {
      full = false
      const b = new Uint8Array(randomBytes(3000))
      return { b, cid: await s.putBytes(b) }
    })()
    full = true
    await assert.rejects(s.putBytes(new Uint8Array(randomBytes(5000))), (err: unknown) => {
      assert.ok(err instanceof BlocksError)
      assert.equal(err.code, 'no-space')
      assert.match(err.message, /no space left on the device holding the blockstore/)
      return true
    })
    assert.equal(written, 1)
    assert.equal(s.count, 1)
    const pack = s.locate(kept.cid)!.file
    assert.equal(statSync(pack).size, s.locate(kept.cid)!.offset + 3000, 'the partial record is cut off')
    full = false
    const next = new Uint8Array(randomBytes(2000))
    const nextCid = await s.putBytes(next)
    await s.close()
    const again = new Blockstore(dir)
    await again.open()
    assert.equal(again.count, 2)
    assert.deepEqual(await again.get(kept.cid), kept.b)
    assert.deepEqual(await again.get(nextCid), next)
    await again.close()
  })

  it('refuses blocks over 2 MiB and malformed or foreign CIDs', async () => {
    const s = new Blockstore(join(temp(), 'blocks'))
    await s.open()
    await assert.rejects(s.putBytes(new Uint8Array(MAX_BLOCK + 1)), /at most 2097152 bytes/)
    assert.throws(() => parseCid('hello'), /is not a CID/)
    // a CIDv0 (dag-pb): not a raw block
    assert.throws(() => parseCid('QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG'), /unsupported CID/)
  })

  it('evicts least recently used blocks that are not kept, down to the budget', async () => {
    const s = new Blockstore(join(temp(), 'blocks'))
    await s.open()
    const cids = []
    for (let i = 0; i < 10; i++) {
      cids.push(await s.putBytes(new Uint8Array(randomBytes(1000))))
      await new Promise((r) => setTimeout(r, 2))
    }
    await s.get(cids[0]) // recently used
    const keep = new Set([cids[1].toString()])
    const r = await s.evict(5000, (c) => keep.has(c))
    assert.equal(r.blocks, 4)
    assert.ok(s.has(cids[0]) && s.has(cids[1]))
    assert.ok(!s.has(cids[2]) && !s.has(cids[5]) && s.has(cids[6]))
  })
})

describe('blocks: datasets on disk', () => {
  const dirs: string[] = []
  const temp = () => {
    const d = mkdtempSync(join(tmpdir(), 'mesh-ds-'))
    dirs.push(d)
    return d
  }
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  function tree(): string {
    const src = join(temp(), 'src')
    mkdirSync(join(src, 'a/b/c'), { recursive: true })
    mkdirSync(join(src, 'emptydir'))
    writeFileSync(join(src, 'empty'), '')
    writeFileSync(join(src, 'big.bin'), randomBytes(3 << 20))
    for (let i = 0; i < 50; i++) writeFileSync(join(src, 'a/b', `f${i}.txt`), `file ${i}\n`)
    writeFileSync(join(src, 'a/b/c/script.sh'), '#!/bin/sh\necho hi\n')
    chmodSync(join(src, 'a/b/c/script.sh'), 0o755)
    chmodSync(join(src, 'a/b/f1.txt'), 0o600)
    chmodSync(join(src, 'emptydir'), 0o700)
    symlinkSync('b/f2.txt', join(src, 'a/link'))
    return src
  }

  it('put then write reproduces every byte, mode, mtime and symlink', async () => {
    const src = tree()
    const s = new Blockstore(join(temp(), 'blocks'))
    await s.open()
    const r = await putPath(s, src)
    assert.equal(r.info.files, 53)
    assert.equal(r.info.symlinks, 1)
    const again = await putPath(s, src)
    assert.equal(again.root.toString(), r.root.toString(), 'the same tree gives the same root')
    assert.equal(again.newBlocks, 0)
    const { info, entries } = await readManifest(s, r.root)
    const dest = join(temp(), 'out')
    const w = new DatasetWriter(dest)
    await w.prepareBase()
    for (const e of entries) {
      if (e.type === 'dir') await w.ensureDir(e.path)
      if (e.type !== 'file') continue
      const slash = e.path.lastIndexOf('/')
      if (slash > 0) await w.ensureDir(e.path.slice(0, slash))
      await w.writeFile(e, w.abs(e.path), async (c) => (await s.get(c))!)
    }
    await w.finish(entries, info)
    // diff -r compares bytes and the tree; modes and mtimes are checked by hand
    execFileSync('diff', ['-r', '--no-dereference', src, dest])
    for (const rel of ['empty', 'big.bin', 'a/b/f1.txt', 'a/b/c/script.sh', 'emptydir', 'a', 'a/b']) {
      const a = lstatSync(join(src, rel))
      const b = lstatSync(join(dest, rel))
      assert.equal(b.mode, a.mode, `mode of ${rel}`)
      assert.ok(Math.abs(b.mtimeMs - a.mtimeMs) < 1, `mtime of ${rel}`)
    }
    assert.equal(readlinkSync(join(dest, 'a/link')), 'b/f2.txt')
    assert.equal(statSync(dest).mode & 0o777, statSync(src).mode & 0o777)
  })

  it('refuses special files by name, never dropping them silently', async () => {
    const src = join(temp(), 'src')
    mkdirSync(src)
    writeFileSync(join(src, 'ok'), 'x')
    execFileSync('mkfifo', [join(src, 'pipe')])
    await assert.rejects(scanPath(src), /holds 1 special file .*pipe \(a FIFO \(named pipe\)\)/)
  })

  it('never writes through a symlink in the destination', async () => {
    const outside = temp()
    const dest = join(temp(), 'out')
    mkdirSync(dest)
    symlinkSync(outside, join(dest, 'a'))
    const s = new Blockstore(join(temp(), 'blocks'))
    await s.open()
    const w = new DatasetWriter(dest)
    await w.prepareBase()
    await assert.rejects(w.ensureDir('a/b'), /is a symlink .* refusing to write through it/)
    assert.deepEqual(readdirSync(outside), [])
  })
})
