// The README's set-up, as a new user runs it: `npm link --ignore-scripts` puts `mesh` on PATH
// (here into a throw-away npm prefix), `npm start` starts cluster 'lab' and runs the agent, and
// the usage guide's first commands then work as written with the `mesh` found on PATH.
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { Fixture, waitFor } from './cluster-harness.js'

const run = promisify(execFile)
const ROOT = resolve(import.meta.dirname, '../../..')

describe('set-up: mesh on PATH, npm start and the usage guide agree (integration)', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  let prefix: string
  let env: NodeJS.ProcessEnv
  let start: ChildProcess | undefined

  before(async () => {
    prefix = fx.tempDir('mesh-prefix-')
    env = {
      ...process.env,
      NPM_CONFIG_PREFIX: prefix,
      PATH: `${join(prefix, 'bin')}:${process.env.PATH}`,
      MESH_DATA_DIR: fx.tempDir('mesh-setup-'),
      MESH_LISTEN: '/ip4/127.0.0.1/tcp/0',
      MESH_LOG_LEVEL: 'warn',
    }
  })

  after(async () => {
    // npm start runs sh -> node: end the whole process group it leads
    if (start?.pid !== undefined && start.exitCode === null) {
      try {
        process.kill(-start.pid, 'SIGKILL')
      } catch {}
    }
    await fx.cleanup()
  })

  const meshOnPath = (args: string[]) =>
    run('mesh', args, { env, cwd: prefix, timeout: 30_000 }).then(
      (r) => ({ code: 0, ...r }),
      (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }),
    )

  it('the package is mesh-agent, its command is mesh, and `npm link --ignore-scripts` puts it on PATH', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
    assert.equal(pkg.name, 'mesh-agent')
    assert.deepEqual(Object.keys(pkg.bin), ['mesh'])
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    assert.match(readme, /npm ci && npm link --ignore-scripts && npm start/)

    await run('npm', ['link', '--ignore-scripts', '--no-audit', '--no-fund', '--offline'], {
      cwd: ROOT,
      env,
      timeout: 60_000,
    })
    const v = await meshOnPath(['--version'])
    assert.equal(v.code, 0, v.stderr)
    assert.equal(v.stdout.trim(), pkg.version)
  })

  it('npm start starts cluster lab; `mesh init --cluster lab` then changes nothing; another name is refused', async () => {
    start = spawn('npm', ['start', '--silent'], { cwd: ROOT, env, detached: true, stdio: 'ignore' })
    const status = await waitFor('the agent started by npm start to answer', async () => {
      const r = await meshOnPath(['--json', 'status'])
      return r.code === 0 ? JSON.parse(r.stdout) : undefined
    })
    assert.equal(status.cluster.name, 'lab')

    const again = await meshOnPath(['init', '--cluster', 'lab'])
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /already holds cluster 'lab'.*nothing was changed/)
    assert.equal((await meshOnPath(['--json', 'status'])).code, 0, 'the agent is untouched')

    const other = await meshOnPath(['init', '--cluster', 'prod'])
    assert.equal(other.code, 1)
    assert.match(other.stderr, /already belongs to cluster 'lab'.*another --data-dir/)

    const invite = await meshOnPath(['--json', 'invite'])
    assert.equal(invite.code, 0, invite.stderr)
    assert.match(JSON.parse(invite.stdout).token, /^mesh1/)
  })
})
