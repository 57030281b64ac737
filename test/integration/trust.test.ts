import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type AgentProcess, Fixture, mesh, meshJson, waitFor } from './cluster-harness.js'

const statusOf = async (a: AgentProcess, peerId: string) =>
  (await meshJson<any[]>(a.dataDir, ['members'])).find((m) => m.peerId === peerId)?.status

describe('trust: single-use invites, certificates, revocation, admins', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  let a: AgentProcess
  let b: AgentProcess
  let c: AgentProcess
  let bId: string
  let tokenB: string

  before(async () => {
    const dirA = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dirA, 'init', '--cluster', 'lab'])).code, 0)
    a = fx.agent(dirA, ['--name', 'alpha']).start()
    await a.ready()
    tokenB = (await meshJson(dirA, ['invite'])).token
    b = fx.agent(fx.tempDir(), ['--name', 'bravo']).start(['--join', tokenB])
    bId = (await b.ready()).peerId
    c = fx
      .agent(fx.tempDir(), ['--name', 'charlie'])
      .start(['--join', (await meshJson(dirA, ['invite'])).token])
    await c.ready()
    await waitFor('bravo alive on charlie', async () => (await statusOf(c, bId)) === 'alive')
  })
  after(() => fx.cleanup())

  it('a joiner holds a certificate signed by the founding admin', () => {
    const trust = JSON.parse(readFileSync(join(b.dataDir, 'trust.json'), 'utf8'))
    assert.ok(typeof trust.certificate === 'string' && trust.certificate.length > 0)
    const cluster = JSON.parse(readFileSync(join(b.dataDir, 'cluster.json'), 'utf8'))
    assert.equal(cluster.invite, undefined, 'the invite was redeemed and forgotten')
  })

  it('a used token is refused with a clear message, even to a new identity', async () => {
    const r = await mesh(
      ['--data-dir', fx.tempDir(), 'agent', '--listen', '/ip4/127.0.0.1/tcp/0', '--join', tokenB],
      {
        timeoutMs: 60_000,
      },
    )
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /already used .*ask for a new one with mesh invite/)
  })

  it('only admins invite; mesh admin grant makes one', async () => {
    let r = await mesh(['--data-dir', c.dataDir, 'invite'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /only an admin can invite/)
    r = await mesh(['--data-dir', a.dataDir, 'admin', 'grant', 'charlie'])
    assert.equal(r.code, 0, r.stderr)
    await waitFor(
      'charlie to learn it is an admin',
      async () => (await mesh(['--data-dir', c.dataDir, 'invite'])).code === 0,
    )
  })

  it('revoke: every member cuts the peer off within 10 s and refuses it after a restart', async () => {
    const t0 = Date.now()
    const r = await mesh(['--data-dir', a.dataDir, 'revoke', 'bravo'])
    assert.equal(r.code, 0, r.stderr)
    for (const m of [a, c]) {
      await waitFor(
        'bravo revoked and disconnected',
        async () => {
          const peers = await meshJson<any[]>(m.dataDir, ['peers'])
          return (await statusOf(m, bId)) === 'revoked' && !peers.some((p) => p.peerId === bId)
        },
        10_000,
      )
    }
    process.stdout.write(`      (revocation took effect everywhere in ${Date.now() - t0} ms)\n`)
    // the revoked member learns it (gossip, or the signed revocation a member shows when it
    // refuses it) and stops by itself with exit code 4 and the reason
    await waitFor('bravo to exit by itself', async () => b.exitCode !== null, 15_000)
    assert.equal(b.exitCode, 4, b.stderr.slice(-2000))
    assert.match(b.stderr, /this member was revoked by admin .* ask an admin for a new invite/)
    // started again: it says so at once instead of redialing the cluster
    b.start()
    await b.waitExit()
    assert.equal(b.exitCode, 4)
    assert.match(b.stderr, /this member was revoked by admin/)
  })

  it('a revoked member told to stay (exitWhenRevoked: false) dials nobody and says why in mesh status', async () => {
    b.start([], { MESH_EXIT_WHEN_REVOKED: 'false' })
    await b.ready()
    const status = await meshJson<any>(b.dataDir, ['status'])
    assert.equal(status.revoked?.by, (await a.status()).peerId)
    assert.match(status.revoked?.message ?? '', /revoked by admin/)
    const text = await mesh(['--data-dir', b.dataDir, 'status'])
    assert.match(text.stdout, /^REVOKED: +this member was revoked/m)
    const dials = async () => b.metric('mesh_node_transport_dials_total')
    const before = await dials()
    await new Promise((res) => setTimeout(res, 12_000))
    assert.equal(await dials(), before, 'a revoked agent dials nobody')
    const peers = await meshJson<any[]>(b.dataDir, ['peers'])
    assert.equal(peers.filter((p) => p.admitted).length, 0, 'no member admits the revoked peer')
    assert.equal(await statusOf(a, bId), 'revoked')
  })
})
