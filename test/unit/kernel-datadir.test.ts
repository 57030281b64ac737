import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dataPaths, lockDataDir } from '../../src/kernel/datadir.js'
import { agentAlive, processStart } from '../../src/kernel/pid.js'

// The data dir lock names its agent by pid and start time: after kill -9 on a busy machine, the
// dead agent's pid can belong to another mesh agent within seconds, and a restart must not be
// refused because of that.
describe('lockDataDir: one agent per data dir, and a dead one never blocks a restart', () => {
  let dir: string
  let other: ReturnType<typeof spawn>
  before(async () => {
    // a process that looks like a mesh agent to agentAlive (`... agent ...` in its cmdline)
    other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', '--', 'agent'], {
      stdio: 'ignore',
    })
    for (let i = 0; i < 400 && !agentAlive(other.pid as number); i++)
      await new Promise((r) => setTimeout(r, 50))
    assert.equal(agentAlive(other.pid as number), true, 'the agent-like process runs')
  })
  after(() => other.kill('SIGKILL'))
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-lock-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('records pid and start time, refuses a second lock while held, and frees it on unlock', () => {
    const unlock = lockDataDir(dir)
    assert.equal(readFileSync(dataPaths(dir).lock, 'utf8'), `${process.pid} ${processStart(process.pid)}\n`)
    // the same process locking again takes over its own lock (pid === ours); a copy of the lock
    // naming a live agent is what a second agent meets:
    writeFileSync(dataPaths(dir).lock, `${other.pid} ${processStart(other.pid as number)}\n`)
    assert.throws(() => lockDataDir(dir), /in use by another mesh agent \(pid \d+\)/)
    unlock() // not ours any more: left alone
    assert.match(readFileSync(dataPaths(dir).lock, 'utf8'), new RegExp(`^${other.pid} `))
  })

  it('takes over a lock whose pid now runs another agent started later', () => {
    const pid = other.pid as number
    const start = Number(processStart(pid))
    writeFileSync(dataPaths(dir).lock, `${pid} ${start - 1000}\n`) // the dead agent's start
    const unlock = lockDataDir(dir)
    assert.equal(readFileSync(dataPaths(dir).lock, 'utf8').split(' ')[0], String(process.pid))
    unlock()
    assert.throws(() => readFileSync(dataPaths(dir).lock), /ENOENT/)
  })

  it("keeps refusing an older version's pid-only lock of a live agent", () => {
    writeFileSync(dataPaths(dir).lock, `${other.pid}\n`)
    assert.throws(() => lockDataDir(dir), /in use by another mesh agent/)
  })
})
