// `mesh slave`: bootstrap an existing machine over SSH. The "machine" is a real sshd on
// 127.0.0.1 started by the test (with its own host key and authorized key); mesh on it is
// this build. Then destroy (the slave's agent stops and leaves) and prune.
import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { requireSystem, sshdSetup } from '../system/harness.js'
import { CLI, Fixture, freePort, mesh, meshJson, waitFor } from './cluster-harness.js'

describe('plugins: mesh slave over SSH (integration)', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  let sshd: ChildProcess | undefined
  let a: string
  let work: string
  let port: number
  let env: NodeJS.ProcessEnv

  before(async function () {
    requireSystem.call(this, ['root', 'sshd'])
    work = fx.tempDir('mesh-slave-')
    const home = join(work, 'home')
    mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 })
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(home, '.ssh', 'id_ed25519')])
    port = await freePort()
    const argv = sshdSetup(join(work, 'sshd'), port, readFileSync(join(home, '.ssh', 'id_ed25519.pub')))
    sshd = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    env = {
      HOME: home,
      SSH_AUTH_SOCK: '',
      MESH_LOG_LEVEL: 'warn',
      // the "remote" runs this build, keeps its data in the test dir and listens on loopback
      MESH_SLAVE_MESH: `${process.execPath} ${CLI}`,
      MESH_SLAVE_DATA_DIR: join(work, 'slave'),
      MESH_SLAVE_LISTEN: '/ip4/127.0.0.1/tcp/0',
    }
    a = fx.tempDir('mesh-slave-a-')
    await fx.agent(a, ['--init', 'sl', '--name', 'node-a']).start([], env).ready()
  })

  after(async () => {
    try {
      process.kill(Number(readFileSync(join(work, 'slave', 'pid'), 'utf8')), 'SIGKILL')
    } catch {}
    sshd?.kill('SIGKILL')
    await fx.cleanup()
  })

  it('bootstraps the host into the cluster, then destroys it', async () => {
    const r = await mesh(['--data-dir', a, '--json', 'slave', `root@127.0.0.1`, '--port', String(port)], {
      env,
      timeoutMs: 120_000,
    })
    assert.equal(r.code, 0, r.stderr)
    const [inst] = JSON.parse(r.stdout)
    assert.match(inst.name, /^ssh-[0-9a-f]{6}$/)
    const members = await meshJson(a, ['members'])
    assert.equal(members.find((x: any) => x.name === inst.name)?.status, 'alive')
    // the host key was pinned in the agent's data dir on first use
    assert.ok(existsSync(join(a, 'known_hosts')))
    const insts = await meshJson(a, ['instances'])
    assert.deepEqual(
      insts.map((i: any) => [i.name, i.computeType, i.host, i.port, i.member]),
      [[inst.name, 'ssh', '127.0.0.1', port, 'alive']],
    )
    assert.equal((await meshJson(a, ['prune'])).pruned.length, 0, 'a running slave is not stale')
    const d = await mesh(['--data-dir', a, 'destroy', inst.name], { env, timeoutMs: 60_000 })
    assert.equal(d.code, 0, d.stderr)
    await waitFor('the slave to have left', async () => {
      const row = (await meshJson(a, ['members'])).find((x: any) => x.name === inst.name)
      return row?.status === 'left'
    })
  })

  it('an unreachable host fails with what ssh said; destroy --force forgets the attempt', async () => {
    const closed = await freePort()
    const r = await mesh(['--data-dir', a, 'slave', '127.0.0.1', '--port', String(closed)], {
      env,
      timeoutMs: 120_000,
    })
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /start_instance of plugin 'ssh' exited with 255/)
    assert.match(r.stderr, /Connection refused/)
    // nothing can say whether the host runs an agent now: the attempt is kept as failed
    assert.match(r.stderr, /cleaning up failed too/)
    const [failed] = await meshJson(a, ['instances'])
    assert.equal(failed.status, 'failed')
    const d = await mesh(['--data-dir', a, 'destroy', failed.name], { env, timeoutMs: 60_000 })
    assert.equal(d.code, 2)
    assert.match(d.stderr, /mesh destroy --force/)
    const f = await mesh(['--data-dir', a, 'destroy', '--force', failed.name], { env, timeoutMs: 60_000 })
    assert.equal(f.code, 0, f.stderr)
    assert.match(f.stderr, /clean-up failed, forgotten anyway/)
    assert.deepEqual(await meshJson(a, ['instances']), [])
  })

  it('a host without mesh on its PATH: says how to install it there, or which variable to set', async () => {
    const script = join(import.meta.dirname, '../../../plugins/ssh/remote.sh')
    const r = await new Promise<{ code: number | null; stderr: string }>((res) => {
      const child = spawn('sh', [script, 'start'], {
        env: {
          ...process.env,
          ...env,
          MESH_SLAVE_MESH: 'mesh-not-installed-here',
          MESH_DATA_DIR: a,
          MESH_SLAVE_HOST: '127.0.0.1',
          MESH_SLAVE_PORT: String(port),
          MESH_SLAVE_USER: 'root',
          MESH_JOIN_TOKEN: 'unused',
          MESH_INSTANCE_ID: 'ssh-none',
          MESH_SSH_IDENTITY: join(work, 'home', '.ssh', 'id_ed25519'),
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      let stderr = ''
      child.stderr.on('data', (d) => (stderr += d))
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
      child.on('close', (code) => {
        clearTimeout(timer)
        res({ code, stderr })
      })
    })
    assert.equal(r.code, 3, r.stderr)
    assert.match(r.stderr, /mesh-not-installed-here is not on the PATH of 127\.0\.0\.1/)
    assert.match(r.stderr, /npm install -g \.\/mesh-agent-\*\.tgz/)
    assert.match(r.stderr, /MESH_SLAVE_MESH/)
    assert.doesNotMatch(r.stderr, /npm install -g mesh\b/)
  })
})
