// What stands between a user and `mesh spawn --compute-type docker`, met before any container
// starts: an agent on loopback only is refused at once with the address to listen on; a missing
// engine or image is named with the exact command; and `mesh plugins` (and the member record)
// follow availability when it changes, shown here with a git plugin whose check is a file.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { CLI, Fixture, mesh, meshJson } from './cluster-harness.js'

const DOCKER_SH = resolve(CLI, '../../../../plugins/docker/docker.sh')

function git(dir: string, ...args: string[]): void {
  execFileSync(
    'git',
    ['-c', 'user.name=t', '-c', 'user.email=t@t', '-c', 'init.defaultBranch=main', ...args],
    {
      cwd: dir,
      stdio: 'ignore',
    },
  )
}

/** A git repo holding a plugin with one compute type (defaults that do nothing) and install it. */
async function installPlugin(
  dataDir: string,
  dir: string,
  name: string,
  def: Record<string, string>,
): Promise<void> {
  mkdirSync(dir, { recursive: true })
  const base = {
    available: 'true',
    start_instance: 'true',
    get_hostname: 'echo 127.0.0.1',
    get_port: 'echo 22',
    detect_stale_instance: 'true',
    clean_up_instance: 'true',
  }
  writeFileSync(
    join(dir, 'mesh.json'),
    JSON.stringify({ mesh_plugin_api: 1, compute_types: { [name]: { ...base, ...def } } }),
  )
  git(dir, 'init', '-q')
  git(dir, 'add', '-A')
  git(dir, 'commit', '-qm', 'plugin')
  const r = await mesh(['--data-dir', dataDir, 'install', dir, '--name', name])
  assert.equal(r.code, 0, r.stderr)
}

describe('docker readiness and availability re-checks (integration)', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  let a: string

  before(async () => {
    a = fx.tempDir()
    await fx.agent(a, ['--init', 'lab', '--name', 'node-a']).start().ready()
  })
  after(() => fx.cleanup())

  it('spawn --compute-type docker from an agent on loopback only: refused at once, saying where to listen', async () => {
    const t0 = Date.now()
    const r = await mesh(['--data-dir', a, 'spawn', '--compute-type', 'docker'])
    assert.equal(r.code, 2, r.stderr)
    assert.match(
      r.stderr,
      /a container cannot reach this agent: it listens on loopback only \(\/ip4\/127\.0\.0\.1\/tcp\/\d+/,
    )
    assert.match(r.stderr, /--listen \/ip4\/0\.0\.0\.0\/tcp\/4701/)
    assert.ok(Date.now() - t0 < 20_000, 'not after a join timeout')
    assert.deepEqual(await meshJson(a, ['instances']), [], 'nothing was started')
  })

  it("docker's availability check says what is missing and the exact fix", () => {
    const engine = spawnSync('docker', ['info'], { stdio: 'ignore', timeout: 15_000 }).status === 0
    const r = spawnSync('sh', [DOCKER_SH, 'available'], {
      encoding: 'utf8',
      env: { ...process.env, MESH_DOCKER_IMAGE: 'mesh-test-missing:none' },
      timeout: 30_000,
    })
    assert.equal(r.status, 1)
    if (engine)
      assert.match(
        r.stderr,
        /the image mesh-test-missing:none is missing; build it in a mesh checkout: npm run build && docker build -f docker\/Dockerfile -t mesh-test-missing:none \./,
      )
    else assert.match(r.stderr, /no docker engine answers \(.+\): start dockerd/)
  })

  it('mesh plugins re-checks availability, and the member record follows', async () => {
    const flag = join(fx.tempDir(), 'ready')
    await installPlugin(a, fx.tempDir(), 'flagged', { available: `test -e ${flag}` })
    const available = async () =>
      (await meshJson(a, ['plugins'])).plugins
        .find((p: any) => p.name === 'flagged')
        .computeTypes.find((t: any) => t.name === 'flagged').available
    const inRecord = async () =>
      (await meshJson(a, ['members'])).find((m: any) => m.self).computeTypes.includes('flagged')
    assert.equal(await available(), false)
    assert.equal(await inRecord(), false)
    writeFileSync(flag, '')
    assert.equal(await available(), true, 'seen by the next mesh plugins, no restart')
    assert.equal(await inRecord(), true)
    rmSync(flag)
    assert.equal(await available(), false)
    assert.equal(await inRecord(), false)
  })

  it("an instance that never joins: the error carries its last log lines (the plugin's instance_logs)", async () => {
    const log = join(fx.tempDir(), 'instance.log')
    await installPlugin(a, fx.tempDir(), 'mute', {
      start_instance: `printf 'starting %s\\ncannot reach the cluster: no route\\n' "$MESH_INSTANCE_ID" > ${log}`,
      instance_logs: `cat ${log}`,
    })
    const r = await mesh(['--data-dir', a, 'spawn', '--compute-type', 'mute', '--timeout', '2'], {
      timeoutMs: 60_000,
    })
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /the instance 'mute-[0-9a-f]{6}' did not redeem its join token within 2 s/)
    assert.match(
      r.stderr,
      /its last log lines:\n {4}starting mute-[0-9a-f]{6}\n {4}cannot reach the cluster: no route\n/,
    )
  })
})

describe('a spawned instance is bound to the peer that redeemed its invite (integration)', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  let a: string
  let instance: string | undefined

  before(async () => {
    a = fx.tempDir()
    await fx.agent(a, ['--init', 'lab', '--name', 'node-a']).start().ready()
  })
  after(async () => {
    if (instance !== undefined) await mesh(['--data-dir', a, 'destroy', instance], { timeoutMs: 60_000 })
    await fx.cleanup()
  })

  it('a member that claims the instance name first is not taken for the instance', async () => {
    // the process compute type, started 8 s late: time for another member to take its name
    const proc = resolve(CLI, '../../../../plugins/process')
    await installPlugin(a, fx.tempDir(), 'late', {
      start_instance: `sleep 8 && sh ${proc}/start.sh`,
      detect_stale_instance: `sh ${proc}/stale.sh`,
      clean_up_instance: `sh ${proc}/clean.sh`,
    })
    const spawned = mesh(['--data-dir', a, 'spawn', '--compute-type', 'late'], { timeoutMs: 120_000 })
    let name: string | undefined
    for (let i = 0; i < 100 && name === undefined; i++) {
      const rows = await meshJson<Array<{ name: string }>>(a, ['instances'])
      name = rows[0]?.name
      if (name === undefined) await new Promise((r) => setTimeout(r, 100))
    }
    assert.ok(name, 'the instance is listed while it starts')
    instance = name
    // an ordinary member (with its own invite) calls itself by the instance's name
    const token = (await meshJson<{ token: string }>(a, ['invite'])).token
    const rogue = fx.agent(fx.tempDir(), ['--name', name]).start(['--join', token])
    const rogueId = (await rogue.ready(60_000)).peerId
    const r = await spawned
    assert.equal(r.code, 0, r.stderr)
    const rec = (await meshJson<Array<{ name: string; peerId?: string }>>(a, ['instances'])).find(
      (x) => x.name === name,
    )
    assert.ok(rec?.peerId, 'the instance has a peer ID')
    assert.notEqual(rec.peerId, rogueId, 'bound to the member that merely took its name')
    const members = await meshJson<Array<{ peerId: string; status: string }>>(a, ['members'])
    assert.equal(members.find((m) => m.peerId === rec.peerId)?.status, 'alive')
  })
})
