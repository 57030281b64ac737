import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Blockstore, MAX_BLOCK } from '../../src/blocks/blockstore.js'
import { cidOf, parseCid } from '../../src/blocks/cid.js'
import { DatasetWriter, putPath, readManifest, scanPath } from '../../src/blocks/dataset.js'
import { BlocksError } from '../../src/blocks/errors.js'

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

  it('a block damaged on disk is dropped and reported, not returned', async () => {
    const bad: string[] = []
    const s = new Blockstore(join(temp(), 'blocks'), { onCorrupt: (c) => bad.push(c) })
    await s.open()
    const cid = await s.putBytes(new Uint8Array(randomBytes(100)))
    writeFileSync(s.path(cid), 'garbage')
    assert.equal(await s.get(cid), undefined)
    assert.deepEqual(bad, [cid.toString()])
    assert.equal(s.has(cid), false)
    assert.equal(existsSync(s.path(cid)), false)
  })

  it('a block file that grew on disk is dropped too (the read of the indexed size does not cut it short)', async () => {
    const bad: string[] = []
    const s = new Blockstore(join(temp(), 'blocks'), { onCorrupt: (c) => bad.push(c) })
    await s.open()
    const data = new Uint8Array(randomBytes(300 << 10))
    const cid = await s.putBytes(data)
    writeFileSync(s.path(cid), Buffer.concat([data, Buffer.from('tail')]))
    assert.equal(await s.get(cid), undefined)
    assert.deepEqual(bad, [cid.toString()])
  })

  it('a full disk is a clear error and leaves no partial block', async () => {
    const dir = join(temp(), 'blocks')
    let written = 0
    const s = new Blockstore(dir, {
      io: {
        async writeFile(p, d) {
          // half the block reaches the disk, then the device is full
          writeFileSync(p, d.subarray(0, d.length >> 1))
          written++
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
        },
      },
    })
    await s.open()
    await assert.rejects(s.putBytes(new Uint8Array(randomBytes(5000))), (err: unknown) => {
      assert.ok(err instanceof BlocksError)
      assert.equal(err.code, 'no-space')
      assert.match(err.message, /no space left on the device holding the blockstore/)
      return true
    })
    assert.equal(written, 1)
    assert.equal(s.count, 0)
    assert.deepEqual(readdirSync(join(dir, 'tmp')), [], 'no temporary file left')
    const shards = readdirSync(dir).filter((d) => d !== 'tmp')
    for (const sh of shards) assert.deepEqual(readdirSync(join(dir, sh)), [])
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
