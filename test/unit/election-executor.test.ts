import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CommandExecutor } from '../../src/election/executor.js'
import type { Request } from '../../src/election/messages.js'
import { pidAlive, processAlive, processStart } from '../../src/kernel/pid.js'

const request = (id: string) => ({ id, computeType: 'sleeper' }) as Request
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// A restarted agent adopts the instances its state files name, and deallocate signals their
// whole process group: a file naming a pid that now belongs to another process must do neither.
describe('CommandExecutor: instances are processes, not pids', () => {
  let dir: string
  let marker: string
  let exec: CommandExecutor
  const bystanders: Array<ReturnType<typeof spawn>> = []
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-exec-'))
    marker = join(dir, 'started')
    // each start appends a line: how many instances the executor started
    exec = new CommandExecutor({ sleeper: `echo x >> ${marker}; exec sleep 30` }, join(dir, 'instances'))
  })
  afterEach(async () => {
    for (const id of ['a'.repeat(32), 'b'.repeat(32)]) await exec.deallocate(id)
    for (const b of bystanders.splice(0)) b.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  const starts = () => (existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').length - 1 : 0)
  const waitStarts = async (n: number) => {
    for (let i = 0; i < 200 && starts() < n; i++) await sleep(25)
    return starts()
  }

  it('records the start time and adopts its own running instance after a restart', async () => {
    const id = 'a'.repeat(32)
    await exec.allocate(request(id))
    assert.equal(await waitStarts(1), 1)
    const saved = JSON.parse(readFileSync(join(dir, 'instances', `${id}.json`), 'utf8'))
    assert.equal(saved.start, processStart(saved.pid), 'the file holds the leader start time')
    const restarted = new CommandExecutor(
      { sleeper: `echo x >> ${marker}; exec sleep 30` },
      join(dir, 'instances'),
    )
    await restarted.allocate(request(id))
    await sleep(200)
    assert.equal(starts(), 1, 'adopted, not started again')
    await restarted.deallocate(id)
    for (let i = 0; i < 100 && pidAlive(saved.pid); i++) await sleep(50)
    assert.equal(pidAlive(saved.pid), false, 'deallocate stopped it')
  })

  it('a state file whose pid is now another process: not adopted, and deallocate leaves that process alone', async () => {
    // a live process in its own group, standing in for whoever got the dead instance's pid
    const other = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' })
    bystanders.push(other)
    await new Promise((r) => other.once('spawn', r))
    const pid = other.pid as number
    assert.notEqual(processStart(pid), undefined)
    const id = 'b'.repeat(32)
    mkdirSync(join(dir, 'instances'), { recursive: true })
    writeFileSync(
      join(dir, 'instances', `${id}.json`),
      JSON.stringify({ instance: 'sleeper-old', pid, start: '1' }),
    )
    assert.equal(processAlive(pid, '1'), false)
    const got = await exec.allocate(request(id))
    assert.equal(got.instance, `sleeper-${id.slice(0, 8)}`)
    assert.equal(await waitStarts(1), 1, 'started anew')
    // the file now names the new instance; rewrite it to the bystander and deallocate
    writeFileSync(
      join(dir, 'instances', `${id}.json`),
      JSON.stringify({ instance: 'sleeper-old', pid, start: '1' }),
    )
    const fresh = new CommandExecutor({ sleeper: 'true' }, join(dir, 'instances'))
    await fresh.deallocate(id)
    await sleep(300)
    assert.equal(other.exitCode, null, 'the bystander was not signalled')
    assert.equal(other.signalCode, null)
  })
})
