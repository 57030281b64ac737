import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dataPaths } from '../../src/kernel/datadir.js'
import { loadCluster, newCluster, saveCluster } from '../../src/node/cluster.js'

describe('cluster.json', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-cluster-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('loads what was saved; none is undefined; keys it does not know are ignored', () => {
    assert.equal(loadCluster(dir), undefined)
    const c = {
      ...newCluster('lab'),
      seeds: ['/ip4/127.0.0.1/tcp/1'],
      admins: ['12D3KooW'],
      invite: 'ab'.repeat(16),
    }
    saveCluster(dir, c)
    assert.deepEqual(loadCluster(dir), c)
    const file = dataPaths(dir).cluster
    writeFileSync(
      file,
      JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), later: 1, invite: undefined }),
    )
    assert.deepEqual(loadCluster(dir), { ...c, invite: undefined })
  })

  it('a damaged file says which key is wrong', () => {
    saveCluster(dir, newCluster('lab'))
    const file = dataPaths(dir).cluster
    const body = JSON.parse(readFileSync(file, 'utf8'))
    const damaged = (doc: unknown, re: RegExp) => {
      writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc))
      assert.throws(
        () => loadCluster(dir),
        (e: Error) => e.name === 'DataDirError' && re.test(e.message),
      )
    }
    damaged('{"name":', /cluster\.json is damaged \(.*JSON.*\); restore it from a backup or another member$/)
    damaged([1], /is damaged \(not a JSON object\)/)
    damaged({ ...body, name: '' }, /is damaged \(key 'name': expected a non-empty string\)/)
    damaged({ ...body, id: 'xyz' }, /is damaged \(key 'id': expected 32 lowercase hex digits\)/)
    damaged({ ...body, key: undefined }, /is damaged \(key 'key': expected 64 lowercase hex digits\)/)
    damaged({ ...body, seeds: [1] }, /is damaged \(key 'seeds': expected a list of strings\)/)
    damaged({ ...body, admins: 'a' }, /is damaged \(key 'admins': expected a list of strings\)/)
    damaged({ ...body, invite: null }, /is damaged \(key 'invite': expected 32 lowercase hex digits\)/)
  })
})
