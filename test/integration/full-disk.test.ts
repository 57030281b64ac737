// A full disk under the agent's own data dir: its blocks dir is a small tmpfs (8 MiB). A put and
// a get that do not fit fail with a clear error that says what to do; nothing partial is kept
// (a small put right after fits); the agent keeps serving: mesh members, a get of what it holds,
// and another member fetching from it. Needs root for the mount (skipped otherwise).
import '../../src/shim.js'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  type AgentProcess,
  seededBytes as bytes,
  Fixture,
  mesh,
  meshJson,
  type RunResult,
  startCluster,
  waitFor,
} from './cluster-harness.js'

const ENV = { MESH_WEBRTC__ENABLED: 'false', MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn' }
const NO_SPACE = /no space left on the device .*Free some space/s

const run = (a: AgentProcess, args: string[]): Promise<RunResult> =>
  mesh(['--data-dir', a.dataDir, ...args], { timeoutMs: 180_000 })

describe('a full disk under the agent’s data dir', function () {
  this.timeout(300_000)
  const fx = new Fixture()
  let mounted: string | undefined
  let A: AgentProcess
  let B: AgentProcess
  const src = (name: string, size: number, seed: number): string => {
    const d = join(fx.tempDir('mesh-src-'), name)
    mkdirSync(d)
    writeFileSync(join(d, 'data.bin'), bytes(size, seed))
    return d
  }

  before(async function () {
    const dirA = fx.tempDir('mesh-fd-')
    const dirB = fx.tempDir('mesh-fd-')
    const blocksB = join(dirB, 'blocks')
    mkdirSync(blocksB)
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', blocksB], { stdio: 'pipe' })
      mounted = blocksB
    } catch (err) {
      console.log(
        `      skipped: cannot mount a small tmpfs (${(err as Error).message.split('\n')[0]}); needs root`,
      )
      this.skip()
    }
    ;[A, B] = await startCluster(fx, ['roomy', 'cramped'], { env: ENV, dirs: [dirA, dirB], aliveMs: 60_000 })
  })

  after(async () => {
    // agents first (they hold files there), then the mount, then the temp dirs
    await Promise.all(fx.agents.map((a) => a.kill('SIGKILL')))
    if (mounted !== undefined) execFileSync('umount', ['-l', mounted], { stdio: 'ignore' })
    await fx.cleanup()
  })

  it('put and get that do not fit: a clear error; nothing partial kept; the agent keeps serving', async () => {
    const small = src('small', 256 << 10, 1)
    const own = await run(B, ['put', small, '--tag', 'small:v1'])
    assert.equal(own.code, 0, own.stderr)
    const big = src('big', 12 << 20, 2)
    const onA = await run(A, ['put', big, '--tag', 'big:v1'])
    assert.equal(onA.code, 0, onA.stderr)

    const put = await run(B, ['put', big])
    console.log(`      put: exit ${put.code}: ${put.stderr.trim()}`)
    assert.notEqual(put.code, 0)
    assert.match(put.stderr, NO_SPACE)
    await waitFor(
      'big:v1 to reach the cramped member',
      async () => (await meshJson<any[]>(B.dataDir, ['datasets'])).some((d) => d.dataset === 'big'),
      60_000,
      500,
    )
    const get = await run(B, ['get', 'big:v1', join(fx.tempDir('mesh-out-'), 'big')])
    console.log(`      get: exit ${get.code}: ${get.stderr.trim()}`)
    assert.notEqual(get.code, 0)
    assert.match(get.stderr, NO_SPACE)

    // still serving: the control API, its own dataset, and other members fetching from it
    assert.equal(B.exitCode, null, 'the agent is still running')
    const rows = await meshJson<any[]>(B.dataDir, ['members'])
    assert.equal(rows.filter((r) => r.status === 'alive').length, 2)
    const mine = join(fx.tempDir('mesh-out-'), 'small')
    assert.equal((await run(B, ['get', 'small:v1', mine])).code, 0)
    assert.ok(readFileSync(join(mine, 'data.bin')).equals(bytes(256 << 10, 1)))
    const theirs = join(fx.tempDir('mesh-out-'), 'small')
    const fromB = await run(A, ['get', 'small:v1', theirs])
    assert.equal(fromB.code, 0, fromB.stderr)
    assert.ok(readFileSync(join(theirs, 'data.bin')).equals(bytes(256 << 10, 1)))
    // nothing partial kept: the space is back for a put that fits
    const tmp = readdirSync(join(mounted as string, 'tmp')).length
    assert.equal(tmp, 0, 'no temporary block files left')
    const next = await run(B, ['put', src('next', 1 << 20, 3)])
    assert.equal(next.code, 0, next.stderr)
  })
})
