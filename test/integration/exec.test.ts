// `mesh exec` as a fleet operator uses it: a real sshd on 127.0.0.1 (its own host key, the test's
// key authorized), three members that tunnel to it (node-c refuses that port), a selection by tag
// and by name, output prefixed by member name, an exit code per member, host keys pinned on first
// contact and a changed key refused, and a dead member reported as not run.
import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { requireSystem, sshdSetup } from '../system/harness.js'
import { type AgentProcess, Fixture, freePort, mesh, meshJson, waitFor } from './cluster-harness.js'

describe('mesh exec over ssh through the overlay (integration)', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  let sshd: ChildProcess | undefined
  let port: number
  let key: string
  let knownHosts: string
  let a: AgentProcess
  const nodes: Record<string, AgentProcess> = {}
  const exec = (args: string[]) =>
    mesh(
      [
        '--data-dir',
        a.dataDir,
        'exec',
        '-l',
        'root',
        '-p',
        String(port),
        '-i',
        key,
        '-o',
        `UserKnownHostsFile=${knownHosts}`,
        ...args,
      ],
      { timeoutMs: 120_000 },
    )

  before(async function () {
    requireSystem.call(this, ['root', 'sshd'])
    const work = fx.tempDir('mesh-exec-')
    mkdirSync(join(work, 'ssh'), { mode: 0o700 })
    key = join(work, 'ssh', 'id_ed25519')
    knownHosts = join(work, 'ssh', 'known_hosts')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
    port = await freePort()
    const argv = sshdSetup(join(work, 'sshd'), port, readFileSync(`${key}.pub`))
    sshd = spawn(argv[0], argv.slice(1), { stdio: 'ignore' })
    a = fx.agent(fx.tempDir(), ['--init', 'lab', '--name', 'node-a'])
    await a.start([], { MESH_TUNNEL__ALLOW_PORTS: String(port), MESH_TAGS__ROLE: 'web' }).ready()
    nodes['node-a'] = a
    for (const [name, role, allow] of [
      ['node-b', 'web', String(port)],
      ['node-c', 'db', '22'],
    ]) {
      const token = (await meshJson(a.dataDir, ['invite'])).token
      const n = fx.agent(fx.tempDir(), ['--join', token, '--name', name])
      await n.start([], { MESH_TUNNEL__ALLOW_PORTS: allow, MESH_TAGS__ROLE: role }).ready()
      nodes[name] = n
    }
    await waitFor('node-a to see three alive members', async () => {
      const ms = await meshJson(a.dataDir, ['members'])
      return ms.filter((m: any) => m.status === 'alive').length === 3
    })
  })

  after(async () => {
    sshd?.kill('SIGKILL')
    await fx.cleanup()
  })

  it('runs on the members a tag selects, prefixed by name; first contact pins their host keys', async () => {
    const r = await exec(['--tag', 'role=web', '--', 'echo', 'hello'])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n').sort(), ['node-a | hello', 'node-b | hello'])
    assert.match(r.stderr, /2 members: 2 ok, 0 failed/)
    const members = await meshJson(a.dataDir, ['members'])
    for (const name of ['node-a', 'node-b']) {
      const overlay = members.find((m: any) => m.name === name).overlay
      execFileSync('ssh-keygen', ['-F', overlay, '-f', knownHosts], { stdio: 'ignore' }) // throws if absent
    }
  })

  it('an exit code per member: the command fails on two, node-c refuses the port; --json says which', async () => {
    const r = await exec(['--json', '--name', 'node-*', '--parallel', '2', '--', 'exit', '3'])
    assert.equal(r.code, 1)
    const results = JSON.parse(r.stdout) as Array<{ name: string; exitCode: number | null; stderr: string }>
    const byName = Object.fromEntries(results.map((x) => [x.name, x]))
    assert.deepEqual(Object.keys(byName).sort(), ['node-a', 'node-b', 'node-c'])
    assert.equal(byName['node-a'].exitCode, 3)
    assert.equal(byName['node-b'].exitCode, 3)
    assert.equal(byName['node-c'].exitCode, 255, 'ssh could not get through')
    assert.match(byName['node-c'].stderr, new RegExp(`${port}`), byName['node-c'].stderr)
  })

  it('a changed host key is refused', async () => {
    const overlay = (await meshJson(a.dataDir, ['members'])).find((m: any) => m.name === 'node-b').overlay
    execFileSync('ssh-keygen', ['-R', overlay, '-f', knownHosts], { stdio: 'ignore' })
    const other = join(fx.tempDir(), 'other')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])
    writeFileSync(
      knownHosts,
      `${readFileSync(knownHosts, 'utf8')}${overlay} ${readFileSync(`${other}.pub`, 'utf8')}`,
    )
    const r = await exec(['--name', 'node-b', '--', 'echo', 'should not run'])
    assert.equal(r.code, 1)
    assert.doesNotMatch(r.stdout, /should not run/)
    assert.match(
      r.stderr,
      /node-b \| .*(REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed)/,
    )
    assert.match(r.stderr, /node-b +! ssh failed \(exit 255\)/)
  })

  it('a dead member is reported as not run, and nothing selected is a clear error', async () => {
    await nodes['node-c'].kill('SIGKILL')
    await waitFor(
      'node-a to mark node-c dead',
      async () =>
        (await meshJson(a.dataDir, ['members'])).some((m: any) => m.name === 'node-c' && m.status === 'dead'),
      60_000,
    )
    const r = await exec(['--tag', 'role=db', '--', 'true'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /node-c ! not run: the member is dead/)
    const none = await exec(['--name', 'web-*', '--', 'true'])
    assert.equal(none.code, 2)
    assert.match(none.stderr, /no member matches that selection/)
    const unsaid = await mesh(['--data-dir', a.dataDir, 'exec', '--', 'true'])
    assert.equal(unsaid.code, 2)
    assert.match(unsaid.stderr, /say which members: --tag k=v, --name GLOB or --all/)
  })
})
