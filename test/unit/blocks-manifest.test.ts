import assert from 'node:assert/strict'
import fc from 'fast-check'
import { cidOf } from '../../src/blocks/cid.js'
import { BlocksError } from '../../src/blocks/errors.js'
import {
  checkPath,
  decodeManifest,
  decodeRoot,
  type Entry,
  encodeManifest,
  encodeRoot,
  modeString,
  type Root,
  validateEntries,
} from '../../src/blocks/manifest.js'

const enc = new TextEncoder()
const cidA = cidOf(enc.encode('a')).toString()
const cidB = cidOf(enc.encode('bb')).toString()

const sample: Entry[] = [
  {
    path: 'z.txt',
    type: 'file',
    mode: 0o644,
    mtime: 1_700_000_000_123.5,
    size: 3,
    chunks: [
      [cidA, 1],
      [cidB, 2],
    ],
  },
  { path: 'empty', type: 'file', mode: 0o600, mtime: 1, size: 0, chunks: [] },
  { path: 'd', type: 'dir', mode: 0o755, mtime: 2 },
  { path: 'd/e', type: 'dir', mode: 0o700, mtime: 3 },
  { path: 'd/e/link', type: 'symlink', target: '../../z.txt', mtime: 4 },
  { path: 'd/x', type: 'file', mode: 0o755, mtime: 5, size: 1, chunks: [[cidA, 1]] },
]

function rejects(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof BlocksError && re.test(err.message))
}

describe('blocks: manifest', () => {
  it('round-trips entries, sorted by path, parents first', () => {
    const bytes = encodeManifest(sample)
    const back = decodeManifest(bytes)
    assert.deepEqual(
      back.map((e) => e.path),
      ['d', 'd/e', 'd/e/link', 'd/x', 'empty', 'z.txt'],
    )
    assert.deepEqual(
      back.sort((a, b) => a.path.localeCompare(b.path)),
      [...sample].sort((a, b) => a.path.localeCompare(b.path)),
    )
    // canonical: equal manifests are equal bytes whatever the input order
    assert.deepEqual(encodeManifest([...sample].reverse()), bytes)
  })

  it('round-trips the root; a plain block is not a dataset', () => {
    const root: Root = {
      mesh: 'dataset/1',
      name: 'data',
      type: 'dir',
      mode: 0o755,
      mtime: 9,
      files: 3,
      dirs: 2,
      symlinks: 1,
      bytes: 4,
      manifest: [[cidA, 1]],
    }
    assert.deepEqual(decodeRoot(encodeRoot(root)), root)
    rejects(() => decodeRoot(enc.encode('hello')), /plain block, not a dataset root/)
    rejects(() => decodeRoot(enc.encode('{"mesh":"dataset/1","name":"../x"}')), /invalid name/)
  })

  it('refuses paths that escape the destination or are not normalized', () => {
    for (const p of ['../x', 'a/../../x', '/etc/passwd', 'a/./b', 'a//b', '.', '..', '', 'a/', 'x\0y']) {
      assert.throws(() => checkPath(p), BlocksError, JSON.stringify(p))
    }
    for (const p of ['a', 'a/b', '.hidden', 'a..b', '...', 'ü/ß']) checkPath(p)
    const evil = enc.encode(
      `${JSON.stringify({ path: '../evil', type: 'file', mode: 420, mtime: 1, size: 0, chunks: [] })}\n`,
    )
    rejects(() => decodeManifest(evil), /escapes the destination/)
    const abs = enc.encode(`${JSON.stringify({ path: '/tmp/evil', type: 'dir', mode: 420, mtime: 1 })}\n`)
    rejects(() => decodeManifest(abs), /absolute/)
  })

  it('refuses entries under a symlink or a file, duplicates, and bad sizes', () => {
    rejects(
      () =>
        validateEntries([
          { path: 'l', type: 'symlink', target: '/etc', mtime: 1 },
          { path: 'l/passwd', type: 'dir', mode: 0o755, mtime: 1 },
        ]),
      /lies under the symlink/,
    )
    rejects(
      () =>
        validateEntries([
          { path: 'f', type: 'file', mode: 0o644, mtime: 1, size: 0, chunks: [] },
          { path: 'f/g', type: 'dir', mode: 0o755, mtime: 1 },
        ]),
      /lies under the file/,
    )
    rejects(() => validateEntries([sample[2], sample[2]]), /appears twice/)
    const wrong = { ...sample[0], size: 4 }
    rejects(() => decodeManifest(enc.encode(`${JSON.stringify(wrong)}\n`)), /add up to 3 bytes/)
    const badCid = { ...sample[0], chunks: [['Qm123', 3]] }
    rejects(() => decodeManifest(enc.encode(`${JSON.stringify(badCid)}\n`)), /invalid chunk CID/)
    rejects(() => decodeManifest(enc.encode('{"path":"x","type":"fifo","mtime":1}\n')), /unknown type/)
    rejects(() => decodeManifest(enc.encode('not json\n')), /not valid JSON/)
  })

  it('property: any manifest of valid entries round-trips', () => {
    const seg = fc.stringMatching(/^[a-z0-9._-]{1,8}$/).filter((s) => s !== '.' && s !== '..')
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.array(seg, { minLength: 1, maxLength: 3 }).map((a) => a.join('/')),
          { maxLength: 30 },
        ),
        (paths) => {
          // files at the leaves only: drop any path that is a prefix directory of another
          const leaves = paths.filter((p) => !paths.some((q) => q.startsWith(`${p}/`)))
          const entries: Entry[] = leaves.map((p, i) => ({
            path: p,
            type: 'file',
            mode: 0o644,
            mtime: i,
            size: 1,
            chunks: [[cidA, 1]],
          }))
          const back = decodeManifest(encodeManifest(entries))
          assert.equal(back.length, entries.length)
        },
      ),
      { numRuns: 100 },
    )
  })

  it('mode strings', () => {
    assert.equal(modeString('dir', 0o755), 'drwxr-xr-x')
    assert.equal(modeString('file', 0o640), '-rw-r-----')
    assert.equal(modeString('dir', 0o1777), 'drwxrwxrwt')
  })
})
