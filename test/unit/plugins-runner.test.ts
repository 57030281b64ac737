import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describeResult, runCommand } from '../../src/plugins/runner.js'

/** Running and not a zombie waiting for its reaper. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    return !/\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

describe('plugins: command runner', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-runner-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('runs in the given directory with the given environment, capturing output', async () => {
    const r = await runCommand('pwd; echo "$MESH_INSTANCE_ID"; echo oops >&2; exit 3', {
      cwd: dir,
      env: { MESH_INSTANCE_ID: 'vm-1' },
      timeoutMs: 10_000,
    })
    assert.equal(r.code, 3)
    assert.equal(r.timedOut, false)
    assert.deepEqual(r.stdout.trim().split('\n'), [dir, 'vm-1'])
    assert.equal(r.stderr.trim(), 'oops')
    assert.equal(describeResult(r, 10_000), 'exited with 3')
  })

  it('feeds stdin', async () => {
    const r = await runCommand('cat', { cwd: dir, env: {}, timeoutMs: 10_000, stdin: 'hello' })
    assert.equal(r.stdout, 'hello')
  })

  it('kills a hung command and everything it started, and says so', async () => {
    const pidFile = join(dir, 'child.pid')
    const r = await runCommand(`sleep 300 & echo $! > ${pidFile}; sleep 300`, {
      cwd: dir,
      env: {},
      timeoutMs: 500,
    })
    assert.equal(r.timedOut, true)
    assert.match(describeResult(r, 500), /timed out after \d+ s and was killed/)
    assert.ok(existsSync(pidFile))
    const child = Number(readFileSync(pidFile, 'utf8').trim())
    // the background sleep was in the same process group: gone too (bounded wait for the reaper)
    for (let i = 0; i < 50 && alive(child); i++) await new Promise((res) => setTimeout(res, 100))
    assert.equal(alive(child), false, 'the hung command left a child behind')
  })

  it('bounds the output it keeps', async () => {
    const r = await runCommand('head -c 200000 /dev/zero | tr "\\0" x', {
      cwd: dir,
      env: {},
      timeoutMs: 10_000,
      maxOutput: 1000,
    })
    assert.equal(r.stdout.length, 1000)
    assert.match(r.stderr, /199000 bytes of output dropped/)
  })

  it('an abort signal stops the command', async () => {
    const ac = new AbortController()
    setTimeout(() => ac.abort(), 200)
    const r = await runCommand('sleep 300', { cwd: dir, env: {}, timeoutMs: 60_000, signal: ac.signal })
    assert.equal(r.timedOut, true)
    assert.ok(r.ms < 30_000)
  })
})
