import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatasetWriter } from '../../src/blocks/dataset.js'
import type { Entry } from '../../src/blocks/manifest.js'

// A dataset's manifest carries modes chosen by whoever published it. `mesh get REF DEST` must
// not let a publisher loosen the fetcher's own directories (issue 16: a root with mode 07777
// turned a 0700 DEST into 1777, also through a symlinked DEST).

const mode = (p: string) => statSync(p).mode & 0o7777
const HOSTILE = { mode: 0o7777, mtime: 1_000 }

async function write(base: string, entries: Entry[]): Promise<void> {
  const w = new DatasetWriter(base)
  await w.prepareBase()
  await w.finish(entries, HOSTILE)
}

describe('blocks: dataset modes never loosen what the fetcher had', () => {
  let tmp: string
  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), 'mesh-modes-'))
  })
  afterEach(() => rmSync(tmp, { recursive: true, force: true }))

  it('an existing DEST keeps its 0700 and its mtime under a root with mode 07777', async () => {
    const dest = join(tmp, 'dest')
    mkdirSync(dest, { mode: 0o700 })
    chmodSync(dest, 0o700)
    const mtime = statSync(dest).mtimeMs
    await write(dest, [])
    assert.equal(mode(dest).toString(8), '700')
    assert.equal(statSync(dest).mtimeMs, mtime)
  })

  it('the same through a symlink to the DEST', async () => {
    const real = join(tmp, 'real')
    mkdirSync(real, { mode: 0o700 })
    chmodSync(real, 0o700)
    const link = join(tmp, 'link')
    symlinkSync(real, link)
    await write(link, [])
    assert.equal(mode(real).toString(8), '700')
  })

  it('an existing folder inside DEST is only ever tightened; folders the get made take the manifest mode', async () => {
    const dest = join(tmp, 'dest')
    mkdirSync(join(dest, 'mine'), { recursive: true })
    chmodSync(join(dest, 'mine'), 0o755)
    await write(dest, [
      { type: 'dir', path: 'mine', mode: 0o777, mtime: 1_000 },
      { type: 'dir', path: 'tight', mode: 0o750, mtime: 2_000 },
      { type: 'dir', path: 'mine/closed', mode: 0o700, mtime: 3_000 },
    ] as Entry[])
    assert.equal(mode(join(dest, 'mine')).toString(8), '755', 'not widened to 777')
    assert.equal(mode(join(dest, 'tight')).toString(8), '750')
    assert.equal(statSync(join(dest, 'tight')).mtimeMs, 2_000)
    assert.equal(mode(join(dest, 'mine/closed')).toString(8), '700')
  })

  it('a DEST the get creates takes the root mode, without setuid or setgid bits', async () => {
    const dest = join(tmp, 'new')
    await write(dest, [])
    assert.equal(mode(dest).toString(8), '1777')
    assert.equal(statSync(dest).mtimeMs, 1_000)
  })
})
