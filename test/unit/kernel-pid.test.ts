import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { agentAlive, pidAlive } from '../../src/kernel/pid.js'

// A stale hosts block or data dir lock names the pid of an agent that died; on a busy machine
// that pid soon belongs to another process or thread, which must not keep the stale entry.
describe('agentAlive: a pid that is a running mesh agent, not any process', () => {
  const started: Array<ReturnType<typeof spawn>> = []
  after(() => {
    for (const c of started) c.kill('SIGKILL')
  })
  const run = (args: string[]) => {
    // `--`: the words after it are the script's arguments (node refuses --data-dir as its own option)
    const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)', '--', ...args], {
      stdio: 'ignore',
    })
    started.push(c)
    return c.pid as number
  }

  it('a process run as `... agent ...` is one; the same without the word is not; a dead pid is not', async () => {
    const agent = run(['--data-dir', '/nonexistent', 'agent'])
    const other = run(['--data-dir', '/nonexistent', 'status'])
    // /proc/PID/cmdline is the new program's only once exec has run
    for (let i = 0; i < 400 && !agentAlive(agent) && started[0].exitCode === null; i++)
      await new Promise((r) => setTimeout(r, 50))
    assert.equal(started[0].exitCode, null, 'the agent-like process runs')
    assert.equal(agentAlive(agent), true)
    assert.equal(started[1].exitCode, null, 'the other process runs')
    assert.equal(pidAlive(other), true)
    assert.equal(agentAlive(other), false)
    started[0].kill('SIGKILL')
    await new Promise((r) => started[0].once('exit', r))
    assert.equal(agentAlive(agent), false)
  })

  it('a thread id of a live process is not (thread ids share the pid space)', function () {
    const threads = readdirSync('/proc/self/task')
      .map(Number)
      .filter((t) => t !== process.pid)
    if (threads.length === 0) this.skip()
    assert.equal(pidAlive(threads[0]), true, 'kill(tid, 0) succeeds: the reason for the check')
    assert.equal(agentAlive(threads[0]), false)
  })
})
