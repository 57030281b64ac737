// `mesh service install|remove` as an admin runs it: the unit is written for this data dir,
// systemd's own checker accepts it, and its ExecStart really runs an agent that stops cleanly on
// SIGTERM (what systemd sends). systemd does not run here, so nothing is enabled or started:
// the test passes --no-start and reads what the command says instead.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Fixture, mesh, meshJson, waitFor } from './cluster-harness.js'

/** ExecStart's words, undoing systemd's quoting ("..." with \\ escapes, %% for %). */
function execStartWords(unit: string): string[] {
  const line = unit.split('\n').find((l) => l.startsWith('ExecStart='))
  assert.ok(line !== undefined, unit)
  const words: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g
  for (const m of line.slice('ExecStart='.length).matchAll(re)) {
    words.push((m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]).replace(/%%/g, '%'))
  }
  return words
}

describe('mesh service install / remove (integration)', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  let dataDir: string
  let unitDir: string

  before(async () => {
    // a space and a % in the path: the unit's quoting must survive both
    dataDir = join(fx.tempDir(), 'data dir 100%')
    mkdirSync(dataDir)
    unitDir = fx.tempDir('mesh-units-')
    const init = await mesh(['--data-dir', dataDir, 'init', '--cluster', 'lab'])
    assert.equal(init.code, 0, init.stderr)
  })

  after(() => fx.cleanup())

  it('refuses a data dir with no cluster, and a join token on the unit line, saying what to do', async () => {
    const empty = await mesh([
      '--data-dir',
      fx.tempDir(),
      'service',
      'install',
      '--unit-dir',
      unitDir,
      '--no-start',
    ])
    assert.equal(empty.code, 2)
    assert.match(empty.stderr, /holds no cluster yet.*mesh init --cluster NAME.*mesh agent --join TOKEN/)
    const token = await mesh([
      '--data-dir',
      dataDir,
      'service',
      'install',
      '--unit-dir',
      unitDir,
      '--',
      '--join',
      'x',
    ])
    assert.equal(token.code, 2)
    assert.match(token.stderr, /join token does not belong in a unit file/)
    assert.equal(existsSync(join(unitDir, 'mesh.service')), false, 'nothing written')
  })

  it('writes a unit systemd-analyze accepts, with restart policy and hardening', async function () {
    const r = await mesh(['--data-dir', dataDir, 'service', 'install', '--unit-dir', unitDir, '--no-start'])
    assert.equal(r.code, 0, r.stderr)
    const path = join(unitDir, 'mesh.service')
    assert.match(r.stdout, new RegExp(`^wrote ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(agent on `))
    assert.match(r.stdout, /systemctl daemon-reload && systemctl enable --now mesh\.service/)
    const unit = readFileSync(path, 'utf8')
    for (const line of [
      'Restart=on-failure',
      'RestartPreventExitStatus=2 4',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'WantedBy=multi-user.target',
    ])
      assert.ok(unit.split('\n').includes(line), `${line} in\n${unit}`)
    assert.deepEqual(execStartWords(unit).slice(2, 5), ['--data-dir', dataDir, 'agent'])
    if (spawnSync('sh', ['-c', 'command -v systemd-analyze'], { stdio: 'ignore' }).status !== 0) {
      // the command said so too; here the check cannot run
      assert.match(r.stdout, /not checked \(systemd-analyze is not installed\)/)
      const why = 'systemd-analyze is missing (apt-get install systemd)'
      if (process.env.MESH_REQUIRE_SYSTEM === '1') throw new Error(`MESH_REQUIRE_SYSTEM=1: ${why}`)
      console.log(`      skipped the systemd-analyze check: ${why}`)
      this.skip()
    }
    assert.match(r.stdout, /systemd-analyze verify: ok/)
    const v = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' })
    assert.equal(v.status, 0, v.stderr)
  })

  it("the unit's ExecStart runs the agent on that data dir, and SIGTERM stops it cleanly", async () => {
    const words = execStartWords(readFileSync(join(unitDir, 'mesh.service'), 'utf8'))
    const child = spawn(words[0], [...words.slice(1), '--listen', '/ip4/127.0.0.1/tcp/0'], {
      env: { ...process.env, MESH_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    const exited = new Promise<number | null>((r) => child.on('close', (c) => r(c)))
    try {
      const s = await waitFor(`the agent to answer (${stderr.slice(-300)})`, () =>
        meshJson(dataDir, ['status']).catch(() => undefined),
      )
      assert.equal(s.cluster.name, 'lab')
    } finally {
      child.kill('SIGTERM')
    }
    assert.equal(await exited, 0, stderr)
    assert.match(stderr, /"msg":"stopping: SIGTERM received"/)
  })

  it('remove deletes the unit and keeps the data dir; removing again is not an error', async () => {
    const r = await mesh(['--data-dir', dataDir, 'service', 'remove', '--unit-dir', unitDir])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^removed .*mesh\.service; the data dir is kept/)
    assert.equal(existsSync(join(unitDir, 'mesh.service')), false)
    assert.ok(existsSync(join(dataDir, 'cluster.json')))
    const again = await mesh(['--data-dir', dataDir, 'service', 'remove', '--unit-dir', unitDir])
    assert.equal(again.code, 0)
    assert.match(again.stdout, /nothing to remove/)
  })
})
