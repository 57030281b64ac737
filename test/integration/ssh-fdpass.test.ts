// ssh through the overlay with `mesh proxy --fdpass` (ssh's ProxyUseFdpass): the proxy opens the
// tunnel, hands ssh the connected socket to the agent and exits, so no process copies the bytes
// between ssh and the agent. Real sshd on 127.0.0.1, real ssh, two real agents.
import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { requireSystem, sshdSetup } from '../system/harness.js'
import {
  type AgentProcess,
  CLI,
  Fixture,
  freePort,
  mesh,
  meshJson,
  runIO as run,
  waitFor,
} from './cluster-harness.js'

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

/** `mesh proxy` processes alive right now, with their arguments. */
function proxies(): string[] {
  const out: string[] = []
  let pids = ''
  try {
    pids = execFileSync('pgrep', ['-f', `${CLI}.* proxy`], { encoding: 'utf8' })
  } catch {
    return out // pgrep exits 1 when nothing matches
  }
  for (const pid of pids.split('\n')) {
    if (pid.trim() === '') continue
    try {
      const argv = readFileSync(`/proc/${pid.trim()}/cmdline`, 'utf8').split('\0')
      // node running the CLI's proxy (ssh's own command line names the proxy too)
      if (argv[0] === process.execPath && argv.includes('proxy')) out.push(argv.join(' '))
    } catch {}
  }
  return out
}

describe('ssh through mesh proxy --fdpass (integration)', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  let sshd: ChildProcess | undefined
  let port: number
  let key: string
  let a: AgentProcess
  let b: AgentProcess

  /** ssh from node-b to node-a through the overlay: `mesh ssh` (fdpass) or a plain ProxyCommand. */
  const sshArgv = async (how: 'mesh ssh' | 'plain proxy', command: string[]): Promise<string[]> => {
    const opts = [
      '-i',
      key,
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
    ]
    if (how === 'mesh ssh') {
      const info = await meshJson<{ argv: string[] }>(b.dataDir, [
        'ssh',
        '--info-only',
        '-p',
        String(port),
        'root@node-a',
      ])
      return [...info.argv, ...opts, ...command]
    }
    const proxy = `${process.execPath} ${CLI} --data-dir ${b.dataDir} proxy %h %p`
    return ['ssh', '-o', `ProxyCommand=${proxy}`, '-p', String(port), ...opts, 'root@node-a.mesh', ...command]
  }

  before(async function () {
    requireSystem.call(this, ['root', 'sshd'])
    const work = fx.tempDir('mesh-fdpass-')
    mkdirSync(join(work, 'client'), { mode: 0o700 })
    key = join(work, 'client', 'id_ed25519')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
    port = await freePort()
    const argv = sshdSetup(join(work, 'sshd'), port, readFileSync(`${key}.pub`))
    sshd = spawn(argv[0], argv.slice(1), { stdio: 'ignore' })
    a = fx.agent(fx.tempDir(), ['--init', 'lab', '--name', 'node-a'])
    await a.start([], { MESH_TUNNEL__ALLOW_PORTS: String(port) }).ready()
    b = fx.agent(fx.tempDir(), ['--join', (await meshJson(a.dataDir, ['invite'])).token, '--name', 'node-b'])
    await b.start().ready()
  })

  after(async () => {
    sshd?.kill('SIGKILL')
    await fx.cleanup()
  })

  it('mesh ssh hands the socket to ssh: 8 MiB byte for byte, and no mesh proxy process during the session', async () => {
    const argv = await sshArgv('mesh ssh', ['sha256sum'])
    assert.ok(argv.includes('ProxyUseFdpass=yes'), argv.join(' '))
    assert.ok(
      argv.some((x) => / proxy --fdpass %h %p$/.test(x)),
      argv.join(' '),
    )
    const data = randomBytes(8 << 20)
    const r = await run(argv, data)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().split(' ')[0], sha256(data))

    // a session that stays open: the tunnel is listed by the agent, and no proxy runs beside ssh
    let session: ChildProcess | undefined
    const sleeper = run(await sshArgv('mesh ssh', ['sleep', '20']), new Uint8Array(0), 60_000, (c) => {
      session = c
    })
    try {
      const listed = await waitFor('node-b to list the tunnel to node-a', async () => {
        const t = await meshJson<Array<{ name: string; port: number }>>(b.dataDir, ['tunnels'])
        return t.find((x) => x.name === 'node-a' && x.port === port)
      })
      assert.ok(listed)
      assert.deepEqual(proxies(), [], 'no mesh proxy process while the session runs')
    } finally {
      session?.kill('SIGTERM')
      await sleeper
    }
  })

  it('a plain ProxyCommand (no fdpass) carries the same bytes', async () => {
    const data = randomBytes(2 << 20)
    const r = await run(await sshArgv('plain proxy', ['sha256sum']), data)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().split(' ')[0], sha256(data))
  })

  it("a refused tunnel shows the agent's reason in ssh's output", async () => {
    const closed = await freePort()
    const info = await meshJson<{ argv: string[] }>(b.dataDir, [
      'ssh',
      '--info-only',
      '-p',
      String(closed),
      'root@node-a',
    ])
    const r = await run([...info.argv, '-o', 'BatchMode=yes', 'true'], new Uint8Array(0))
    assert.equal(r.code, 255)
    assert.match(r.stderr, new RegExp(`member node-a does not allow tunnels to port ${closed}`))
  })

  it('--fdpass outside ssh says how to use it and leaves no tunnel open', async () => {
    // stdout a file, not ssh's socket (a pipe from node:child_process would be a socketpair)
    const cmd = `'${process.execPath}' '${CLI}' --data-dir '${b.dataDir}' proxy --fdpass node-a ${port} > /dev/null`
    const r = await run(['sh', '-c', cmd], new Uint8Array(0))
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /ProxyUseFdpass=yes/)
    await waitFor('the tunnel to be gone', async () => {
      const t = await meshJson<unknown[]>(b.dataDir, ['tunnels'])
      return t.length === 0
    })
    // and a mistyped member is the same clear error as without --fdpass
    const bad = await mesh(['--data-dir', b.dataDir, 'proxy', '--fdpass', 'nobody', '22'])
    assert.equal(bad.code, 2, bad.stderr)
    assert.match(bad.stderr, /no member 'nobody'/)
  })
})
