// sshd host keys vouched for by the cluster: node-a publishes its sshd's host key in its signed
// member record; node-b's agent writes it to its ssh_known_hosts, so `mesh ssh` to node-a works
// on first contact with StrictHostKeyChecking=yes and an empty user known_hosts (no prompt, as in
// a script). A different key at node-a's sshd is refused; node-a restarted with the new key
// publishes it and node-b follows. Real sshd on 127.0.0.1, real agents.
import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { requireSystem, sshdSetup } from '../system/harness.js'
import { type AgentProcess, Fixture, freePort, mesh, meshJson, waitFor } from './cluster-harness.js'

describe('ssh host keys from the signed member records (integration)', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  let sshd: ChildProcess | undefined
  let work: string
  let port: number
  let key: string
  let a: AgentProcess
  let b: AgentProcess
  let aOverlay: string

  const startSshd = (dir: string) => {
    const argv = sshdSetup(join(work, dir), port, readFileSync(`${key}.pub`))
    sshd = spawn(argv[0], argv.slice(1), { stdio: 'ignore' })
    return join(work, dir, 'host_key.pub')
  }
  const stopSshd = async () => {
    if (sshd === undefined || sshd.exitCode !== null) return
    const gone = new Promise((r) => sshd?.once('exit', r))
    sshd.kill('SIGKILL')
    await gone
  }
  // as a script would: no prompt possible, nothing known but what the cluster vouches for
  const sshFromB = () =>
    mesh(
      [
        '--data-dir',
        b.dataDir,
        'ssh',
        '-p',
        String(port),
        'root@node-a',
        '--',
        '-i',
        key,
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        'UserKnownHostsFile=/dev/null',
        'echo',
        'pinned',
      ],
      { timeoutMs: 60_000 },
    )
  const bKnows = (pub: string) =>
    waitFor(`node-b's ssh_known_hosts to hold node-a's key ${pub.slice(0, 40)}`, async () =>
      readFileSync(join(b.dataDir, 'ssh_known_hosts'), 'utf8')
        .split('\n')
        .includes(`${aOverlay} ${pub.split(' ').slice(0, 2).join(' ')}`),
    )

  before(async function () {
    requireSystem.call(this, ['root', 'sshd'])
    work = fx.tempDir('mesh-hostkeys-')
    mkdirSync(join(work, 'client'), { mode: 0o700 })
    key = join(work, 'client', 'id_ed25519')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
    port = await freePort()
    const hostPub = startSshd('sshd1')
    a = fx.agent(fx.tempDir(), ['--init', 'lab', '--name', 'node-a'])
    aOverlay = (
      await a
        .start([], { MESH_TUNNEL__ALLOW_PORTS: String(port), MESH_TUNNEL__SSH_HOST_KEYS: hostPub })
        .ready()
    ).overlay
    b = fx.agent(fx.tempDir(), ['--join', (await meshJson(a.dataDir, ['invite'])).token, '--name', 'node-b'])
    await b.start([], { MESH_TUNNEL__SSH_HOST_KEYS: join(work, 'none.pub') }).ready()
  })

  after(async () => {
    await stopSshd()
    await fx.cleanup()
  })

  it('first contact needs no prompt: the key node-a signed is already known to node-b', async () => {
    await bKnows(readFileSync(join(work, 'sshd1', 'host_key.pub'), 'utf8'))
    const r = await sshFromB()
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'pinned')
    // the key is in the record (--json), not in the table a person reads
    const members = await meshJson(b.dataDir, ['members'])
    assert.match(members.find((m: any) => m.name === 'node-a').tags['mesh.ssh.ssh-ed25519'], /^AAAA/)
    assert.doesNotMatch((await mesh(['--data-dir', b.dataDir, 'members'])).stdout, /mesh\.ssh\./)
    // plain ssh through `mesh ssh-config` reads the same file
    const cfg = await mesh(['--data-dir', b.dataDir, 'ssh-config'])
    assert.match(cfg.stdout, /^ {4}GlobalKnownHostsFile .*ssh_known_hosts'?$/m)
  })

  it('a different key at node-a is refused; node-a restarted with it publishes it and node-b follows', async () => {
    await stopSshd()
    const newPub = startSshd('sshd2')
    const r = await sshFromB()
    assert.equal(r.code, 255, r.stdout)
    assert.doesNotMatch(r.stdout, /pinned/)
    assert.match(r.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/)

    await a.kill('SIGTERM')
    await a.start([], { MESH_TUNNEL__ALLOW_PORTS: String(port), MESH_TUNNEL__SSH_HOST_KEYS: newPub }).ready()
    await bKnows(readFileSync(newPub, 'utf8'))
    const again = await sshFromB()
    assert.equal(again.code, 0, again.stderr)
    assert.equal(again.stdout.trim(), 'pinned')
  })
})
