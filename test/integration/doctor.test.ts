// `mesh doctor` as an operator runs it: one line per check, ok / warn / fail with the fix, exit 1
// only on a failure. Real agents on 127.0.0.1; the tunnel ports are one the test listens on and
// one nobody does; a member killed with -9 shows up as a warning naming it.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:net'
import { Fixture, mesh, meshJson, waitFor } from './cluster-harness.js'

interface Finding {
  check: string
  level: 'ok' | 'warn' | 'fail' | 'skip'
  message: string
  fix?: string
}

function listenOn(): Promise<{ server: Server; port: number }> {
  return new Promise((res) => {
    const server = createServer((s) => s.destroy()).listen(0, '127.0.0.1', () =>
      res({ server, port: (server.address() as { port: number }).port }),
    )
  })
}

describe('mesh doctor (integration)', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  const servers: Server[] = []

  after(async () => {
    for (const s of servers) s.close()
    await fx.cleanup()
  })

  it('without an agent: fails on the agent line with how to start it, still checks the rest', async () => {
    const r = await mesh(['--data-dir', fx.tempDir(), 'doctor'])
    assert.equal(r.code, 1, r.stdout)
    const lines = r.stdout.trim().split('\n')
    assert.match(lines[0], /^fail +agent +no agent is running on data dir .*; fix: start it: mesh agent/)
    assert.ok(
      lines.some((l) => /^(ok|warn) +tunnel +/.test(l)),
      r.stdout,
    )
    assert.ok(
      lines.some((l) => /^(ok|warn|skip) +docker +/.test(l)),
      r.stdout,
    )
  })

  it('with agents: one line per check, the fixes, members by name, and exit 1 only on a failure', async () => {
    const open = await listenOn()
    servers.push(open.server)
    const closed = await listenOn()
    await new Promise((r) => closed.server.close(r))
    const env = { MESH_TUNNEL__ALLOW_PORTS: `${open.port},${closed.port}` }
    const a = fx.agent(fx.tempDir(), ['--init', 'lab', '--name', 'node-a']).start([], env)
    await a.ready()
    const b = fx.agent(fx.tempDir(), [
      '--join',
      (await meshJson(a.dataDir, ['invite'])).token,
      '--name',
      'node-b',
    ])
    await b.start().ready()
    await waitFor('node-a to see node-b alive', async () =>
      (await meshJson(a.dataDir, ['members'])).some((m: any) => m.name === 'node-b' && m.status === 'alive'),
    )

    const r = await mesh(['--data-dir', a.dataDir, 'doctor'])
    const lines = r.stdout.trim().split('\n')
    for (const l of lines)
      assert.match(l, /^(ok|warn|fail|skip) +[a-z ]+? {2,}\S/, `one line per check: ${l}`)
    assert.match(r.stdout, /^ok +agent +node-a running for \S+, version /m)
    assert.match(r.stdout, /^ok +members +1 other member alive$/m)
    assert.match(
      r.stdout,
      /^warn +listen +listening on loopback only \(\/ip4\/127\.0\.0\.1\/tcp\/\d+\).*; fix: .*--listen \/ip4\/0\.0\.0\.0\/tcp\/4701$/m,
    )
    assert.match(
      r.stdout,
      new RegExp(`^ok +tunnel +port ${open.port} listens on 127\\.0\\.0\\.1:${open.port}`, 'm'),
    )
    assert.match(
      r.stdout,
      new RegExp(
        `^warn +tunnel +nothing listens on 127\\.0\\.0\\.1:${closed.port}.*; fix: start the service`,
        'm',
      ),
    )
    // exits 1 when something fails, so read --json from mesh() rather than meshJson()
    const findings = JSON.parse(
      (await mesh(['--data-dir', a.dataDir, '--json', 'doctor'])).stdout,
    ) as Finding[]
    // docker is optional here: when an engine answers, an agent on loopback only must fail the
    // bridge check (a container could never join it); the exit code follows the failures
    if (findings.some((f) => f.check === 'docker' && f.level === 'ok'))
      assert.ok(
        findings.some(
          (f) => f.check === 'docker bridge' && f.level === 'fail' && /--listen/.test(f.fix ?? ''),
        ),
      )
    assert.equal(r.code, findings.some((f) => f.level === 'fail') ? 1 : 0)
    for (const f of findings)
      if (f.level === 'warn' || f.level === 'fail') assert.ok(f.fix, `${f.check} says what to do`)

    await b.kill('SIGKILL')
    await waitFor(
      'node-a to mark node-b dead',
      async () =>
        (await meshJson(a.dataDir, ['members'])).some((m: any) => m.name === 'node-b' && m.status === 'dead'),
      60_000,
    )
    const after = await mesh(['--data-dir', a.dataDir, 'doctor'])
    assert.match(
      after.stdout,
      /^warn +members +node-b dead; 0 alive; fix: check those machines; .*mesh revoke NAME/m,
    )
  })
})
