// Output an operator reads: members by name (peers, admin list, revoke), one row per peer,
// peer IDs with -v and --json; progress with readable sizes and rates on a terminal (a real
// pseudo-terminal from `script`), `mesh put` showing its hashing; Ctrl-C on `mesh get` stops the
// agent's fetch (its counters say so), and the same command resumes.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { stripVTControlCharacters } from 'node:util'
import { type AgentProcess, CLI, Fixture, mesh, meshJson, shQuote, waitFor } from './cluster-harness.js'

/** Run `mesh ARGS` on a pseudo-terminal; resolves with what the terminal showed. */
function onTerminal(args: string[], timeoutMs = 120_000): Promise<{ code: number | null; screen: string }> {
  const quoted = shQuote([process.execPath, CLI, ...args])
  const child = spawn('script', ['-qfec', quoted, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  return new Promise((res) =>
    child.on('close', (code) => {
      clearTimeout(timer)
      res({ code, screen: stripVTControlCharacters(out) })
    }),
  )
}

function writeRandomFile(path: string, mib: number): void {
  const fd = openSync(path, 'w')
  try {
    for (let i = 0; i < mib; i++) writeSync(fd, randomBytes(1 << 20))
  } finally {
    closeSync(fd)
  }
}

describe('names everywhere, progress, Ctrl-C on get (integration)', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  let a: AgentProcess
  let b: AgentProcess
  let bId: string

  before(async () => {
    // node-a serves at most 16 MiB/s, so a 192 MiB get lasts ~12 s and Ctrl-C lands mid-fetch
    // however fast the fetch path becomes (unlimited, it ended before the SIGINT once)
    a = fx
      .agent(fx.tempDir(), ['--init', 'lab', '--name', 'node-a'])
      .start([], { MESH_BLOCKS__SERVE_BYTES_PER_SEC: '16MiB' })
    await a.ready()
    const join1 = (await meshJson(a.dataDir, ['invite'])).token
    b = fx.agent(fx.tempDir(), ['--join', join1, '--name', 'node-b']).start()
    bId = (await b.ready()).peerId
    await waitFor('node-a and node-b to see each other alive', async () => {
      const ms = await meshJson(a.dataDir, ['members'])
      return ms.filter((m: any) => m.status === 'alive').length === 2
    })
  })

  after(() => fx.cleanup())

  it('mesh peers: one named row per peer; peer IDs with -v and --json', async () => {
    const r = await mesh(['--data-dir', a.dataDir, 'peers'])
    assert.equal(r.code, 0, r.stderr)
    const rows = r.stdout.trim().split('\n').slice(1)
    assert.equal(rows.length, 1, r.stdout)
    assert.match(rows[0], /^node-b +(direct|webrtc|webrtc-direct|relayed) /)
    assert.doesNotMatch(r.stdout, /12D3Koo/, `no peer IDs in the plain table:\n${r.stdout}`)
    const v = await mesh(['--data-dir', a.dataDir, 'peers', '-v'])
    assert.ok(v.stdout.includes(bId), v.stdout)
    const json = await meshJson(a.dataDir, ['peers'])
    assert.ok(json.length >= 1)
    for (const c of json) assert.deepEqual([c.name, c.peerId], ['node-b', bId])
  })

  it('revoke and admin list name the member; -v adds peer IDs', async () => {
    const c = fx.agent(fx.tempDir(), [
      '--join',
      (await meshJson(a.dataDir, ['invite'])).token,
      '--name',
      'node-c',
    ])
    const cId = (await c.start().ready()).peerId
    await waitFor('node-a to see node-c', async () =>
      (await meshJson(a.dataDir, ['members'])).some((m: any) => m.name === 'node-c' && m.status === 'alive'),
    )
    const r = await mesh(['--data-dir', a.dataDir, 'revoke', 'node-c'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^revoked node-c \(12D3Koo\w+…\w+\); the cluster is cutting it off\n$/)
    const list = await mesh(['--data-dir', a.dataDir, 'admin', 'list'])
    assert.equal(list.code, 0, list.stderr)
    assert.match(list.stdout, /^node-a \(this node\) +admin +-\n/m)
    assert.match(list.stdout, /^node-c +revoked +\d{4}-\d\d-\d\dT[\d:.]+Z by node-a\n/m)
    assert.doesNotMatch(list.stdout, /12D3Koo/)
    const v = await mesh(['--data-dir', a.dataDir, 'admin', 'list', '-v'])
    assert.ok(v.stdout.includes(cId) && v.stdout.includes((await a.status()).peerId), v.stdout)
    assert.equal((await meshJson(a.dataDir, ['admin', 'list'])).names[cId], 'node-c')
  })

  it('put shows its hashing and get its rate with readable sizes on a terminal', async () => {
    const file = join(fx.tempDir(), 'data.bin')
    writeRandomFile(file, 48)
    const put = await onTerminal(['--data-dir', a.dataDir, 'put', file, '--tag', 'maps:v1'])
    assert.equal(put.code, 0, put.screen)
    assert.match(put.screen, /hashing \[[= ]*\] +\d+% +[\d.]+ (B|KiB|MiB) \/ 48 MiB +\d+\/1 files/)
    const get = await onTerminal(['--data-dir', b.dataDir, 'get', 'maps:v1', join(fx.tempDir(), 'out.bin')])
    assert.equal(get.code, 0, get.screen)
    assert.match(
      get.screen,
      /get \[[= ]*\] +\d+% +[\d.]+ (B|KiB|MiB) \/ 48 MiB +[\d.]+ (B|KiB|MiB|GiB)\/s +1 provider/,
    )
    assert.doesNotMatch(get.screen, /\d\.\d{2,} ?(B|KiB|MiB|GiB)/, 'at most one decimal')
    assert.match(get.screen, /out\.bin: 1 files, 48 MiB; fetched 48 MiB in [\d.]+ s from node-a 48 MiB/)
  })

  it('Ctrl-C on mesh get stops the agent fetching; running it again resumes', async () => {
    const file = join(fx.tempDir(), 'big.bin')
    writeRandomFile(file, 192)
    const put = await mesh(['--data-dir', a.dataDir, 'put', file, '--tag', 'big:v1'], { timeoutMs: 120_000 })
    assert.equal(put.code, 0, put.stderr)
    const received = async () => b.metric('mesh_blocks_received_bytes_total')
    const failedGets = async () => b.metric('mesh_blocks_transfers_total', { kind: 'get', result: 'error' })
    const before = await received()
    const failedBefore = await failedGets()
    const dest = join(fx.tempDir(), 'big.bin')
    const child = spawn(process.execPath, [CLI, '--data-dir', b.dataDir, 'get', 'big:v1', dest], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)))
    // a few MiB of blocks in, not just the first bytes (on a loaded machine the first of them can be
    // only the dataset's root, and a run stopped there has no data block to resume from)
    await waitFor(
      'the fetch to be under way',
      async () => (await received()) > before + 4 * 2 ** 20,
      60_000,
      50,
    )
    child.kill('SIGINT')
    assert.equal(await exited, 130, stderr)
    assert.match(stderr, /cancelled: the agent stopped fetching; .*run the same command again to resume/)
    // the agent ends the fetch as failed (the client went away): it asks for no more blocks, so
    // once the requests already in flight are answered its received bytes stay put, short of the file
    await waitFor('the agent to end the fetch', async () => (await failedGets()) === failedBefore + 1, 10_000)
    let last = -1
    const settled = await waitFor(
      'no more blocks to arrive',
      async () => {
        const now = await received()
        const same = now === last
        last = now
        return same ? now : undefined
      },
      15_000,
      1_000,
    )
    assert.ok(
      settled - before < 192 * 2 ** 20 - 16 * 2 ** 20,
      `stopped well short of the file (${settled - before} bytes)`,
    )

    const again = await mesh(['--data-dir', b.dataDir, 'get', 'big:v1', dest], { timeoutMs: 120_000 })
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /already local/)
  })
})
