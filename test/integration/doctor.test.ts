// `mesh doctor` as an operator runs it: one line per check, ok / warn / fail with the fix, exit 1
// only on a failure. Real agents on 127.0.0.1; the tunnel ports are one the test listens on and
// one nobody does; a member killed with -9 shows up as a warning naming it.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { Fixture, mesh, meshJson, waitFor } from './cluster-harness.js'

interface Finding {
  check: string
  level: 'ok' | 'warn' | 'fail' | 'skip'
  message: string
  fix?: string
}

// libfaketime (apt-get install faketime) shifts one agent's wall clock, not its timers
const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'

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

  it('a member whose clock runs 5 s ahead: doctor names it and says to run NTP, members -v shows the offset', async function () {
    if (!existsSync(FAKETIME)) {
      const why = `libfaketime is missing (${FAKETIME}; apt-get install faketime)`
      if (process.env.MESH_REQUIRE_SYSTEM === '1') throw new Error(`MESH_REQUIRE_SYSTEM=1: ${why}`)
      console.log(`      skipped: ${why}`)
      this.skip()
    }
    const a = fx.agent(fx.tempDir(), ['--init', 'lab', '--name', 'steady']).start()
    await a.ready()
    const token = (await meshJson(a.dataDir, ['invite'])).token
    const b = fx
      .agent(fx.tempDir(), ['--join', token, '--name', 'hasty'])
      .start([], { LD_PRELOAD: FAKETIME, FAKETIME: '+5s', DONT_FAKE_MONOTONIC: '1' })
    await b.ready()
    // measured from probe replies: a few seconds of probes after the join
    const offset = await waitFor(
      "steady to have measured hasty's clock",
      async () =>
        (await meshJson<any[]>(a.dataDir, ['members'])).find(
          (m) => m.name === 'hasty' && m.status === 'alive',
        )?.clockOffsetMs as number | undefined,
      60_000,
    )
    // 5 s ahead, to within the probes' round trips on a busy machine
    assert.ok(offset > 4_000 && offset < 6_000, `hasty measured ${offset} ms ahead`)
    const r = await mesh(['--data-dir', a.dataDir, 'doctor'])
    assert.match(
      r.stdout,
      /^warn +clock skew +hasty is \d\.\d s ahead of this machine: .*; fix: run NTP on both machines/m,
    )
    const v = await mesh(['--data-dir', a.dataDir, 'members', '-v'])
    assert.match(v.stdout, /^hasty .* \+\d{4}ms /m)
    // and the other way round: from hasty, steady is behind
    const back = await mesh(['--data-dir', b.dataDir, 'doctor'])
    assert.match(back.stdout, /^warn +clock skew +steady is \d\.\d s behind this machine/m)
  })
})
