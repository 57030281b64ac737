import assert from 'node:assert/strict'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type AgentProcess, Fixture, mesh, meshJson, waitFor } from './cluster-harness.js'

/** Peer IDs this agent holds an admitted connection to. */
async function admittedPeers(a: AgentProcess): Promise<Set<string>> {
  const conns = await meshJson<Array<{ peerId: string; admitted: boolean }>>(a.dataDir, ['peers'])
  return new Set(conns.filter((c) => c.admitted).map((c) => c.peerId))
}

async function invite(a: AgentProcess): Promise<string> {
  const r = await meshJson<{ token: string }>(a.dataDir, ['invite'])
  return r.token
}

describe('foundation: init, invite, join, restart (3 agents on 127.0.0.1)', function () {
  this.timeout(120_000)
  const fx = new Fixture()
  let a: AgentProcess
  let b: AgentProcess
  let c: AgentProcess
  const ids: Record<string, string> = {}

  before(async () => {
    const dirA = fx.tempDir()
    const init = await mesh(['--data-dir', dirA, 'init', '--cluster', 'lab'])
    assert.equal(init.code, 0, init.stderr)
    a = fx.agent(dirA).start()
    ids.a = (await a.ready()).peerId
    b = fx.agent(fx.tempDir()).start(['--join', await invite(a)])
    c = fx.agent(fx.tempDir()).start(['--join', await invite(a)])
    ids.b = (await b.ready()).peerId
    ids.c = (await c.ready()).peerId
  })
  after(() => fx.cleanup())

  it('forms a cluster in which each agent sees the other two', async () => {
    for (const [self, agent] of [
      ['a', a],
      ['b', b],
      ['c', c],
    ] as const) {
      const others = Object.entries(ids)
        .filter(([k]) => k !== self)
        .map(([, v]) => v)
      await waitFor(`${self} to be connected to the other two`, async () => {
        const peers = await admittedPeers(agent)
        return others.every((o) => peers.has(o))
      })
    }
  })

  it('status shows the peer ID, a ULA overlay address, the cluster, addresses and connections', async () => {
    const s = await a.status()
    assert.equal(s.peerId, ids.a)
    assert.match(s.overlay, /^fd[0-9a-f]{2}:/)
    assert.equal(s.cluster.name, 'lab')
    assert.ok(s.listen.some((l: string) => l.startsWith('/ip4/127.0.0.1/tcp/')))
    assert.ok(s.connections.length >= 2)
    assert.ok(
      s.connections.every((c: any) => ['direct', 'relayed', 'webrtc', 'webrtc-direct'].includes(c.path)),
    )
    assert.ok(s.uptimeMs > 0)
    const human = await mesh(['--data-dir', a.dataDir, 'status'])
    assert.equal(human.code, 0)
    assert.match(human.stdout, /peer id:\s+12D3Koo/)
  })

  it('keeps private files 0600 and the control socket 0600', () => {
    for (const f of ['identity.key', 'cluster.json', 'mesh.sock']) {
      assert.equal(statSync(join(a.dataDir, f)).mode & 0o777, 0o600, f)
    }
  })

  it('a second agent on a data dir in use refuses to start and changes nothing', async () => {
    const before = readFileSync(join(a.dataDir, 'identity.key'))
    const r = await mesh(['--data-dir', a.dataDir, 'agent', '--listen', '/ip4/127.0.0.1/tcp/0'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /in use by another mesh agent \(pid \d+\)/)
    assert.deepEqual(readFileSync(join(a.dataDir, 'identity.key')), before)
    assert.equal((await a.status()).peerId, ids.a, 'the running agent is unaffected')
  })

  it('kill -9 and restart without a token: same peer ID, back in the cluster', async () => {
    await b.kill('SIGKILL')
    await waitFor('a to notice b is gone', async () => !(await admittedPeers(a)).has(ids.b))
    b.start()
    const s = await b.ready()
    assert.equal(s.peerId, ids.b)
    // liveness, not speed: generous, because CI runs this on two busy cores
    await waitFor(
      'b to be back with a and c',
      async () => {
        const peers = await admittedPeers(b)
        return peers.has(ids.a) && peers.has(ids.c)
      },
      45_000,
    )
    await waitFor('a to see b again', async () => (await admittedPeers(a)).has(ids.b), 45_000)
  })

  it('SIGTERM stops the agent cleanly: exit 0, socket and lock removed', async () => {
    await c.kill('SIGTERM')
    assert.equal(c.exitCode, 0, c.stderr.slice(-2000))
    const r = await mesh(['--data-dir', c.dataDir, 'status'])
    assert.equal(r.code, 3)
    assert.match(r.stderr, /no mesh agent is running on data dir .*mesh agent/)
  })
})

describe('foundation: bad input gets a clear error and loses nothing', function () {
  // each test runs several `mesh` processes (15 s for the token test on a quiet machine); at load
  // average 40 four of them passed 60 s
  this.timeout(180_000)
  const fx = new Fixture()
  after(() => fx.cleanup())

  it('an invalid config value fails at start with the file, the key and what is allowed', async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init'])).code, 0)
    writeFileSync(join(dir, 'config.yaml'), 'listen: [not-a-multiaddr]\nrelay:\n  server: maybe\n')
    const r = await mesh(['--data-dir', dir, 'agent'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /config\.yaml: key 'listen\.0': expected a multiaddr/)
    assert.match(r.stderr, /key 'relay\.server'/)
  })

  it('an unknown config key is named with the allowed keys', async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init'])).code, 0)
    writeFileSync(join(dir, 'config.yaml'), 'listn: []\n')
    const r = await mesh(['--data-dir', dir, 'agent'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /unknown key 'listn' \(did you mean 'listen'\?\); allowed keys: name, listen/)
  })

  it('flags beat MESH_* environment variables, which beat the file', async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init'])).code, 0)
    writeFileSync(join(dir, 'config.yaml'), 'name: from-file\n')
    const a = fx.agent(dir).start(['--name', 'from-flag'], { MESH_NAME: 'from-env' })
    assert.equal((await a.ready()).name, 'from-flag')
    await a.kill('SIGTERM')
    const b = fx.agent(dir).start([], { MESH_NAME: 'from-env' })
    assert.equal((await b.ready()).name, 'from-env')
    await b.kill('SIGTERM')
    const c = fx.agent(dir).start()
    assert.equal((await c.ready()).name, 'from-file')
    await c.kill('SIGTERM')
  })

  it('a malformed, damaged, foreign or expired token is refused and the data dir is untouched', async () => {
    const dir = fx.tempDir()
    let r = await mesh(['--data-dir', dir, 'agent', '--join', 'hello'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /not a mesh join token/)
    r = await mesh(['--data-dir', dir, 'agent', '--join', 'mesh1AAAA!!'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /do not belong in it/)
    r = await mesh(['--data-dir', dir, 'agent', '--join', 'mesh1AAAAAAAA'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /damaged/)

    // a real token from another cluster, offered to a data dir of this one
    const other = fx.tempDir()
    assert.equal((await mesh(['--data-dir', other, 'init', '--cluster', 'other'])).code, 0)
    const oa = fx.agent(other).start()
    await oa.ready()
    const foreign = (await meshJson(other, ['invite'])).token
    const expired = (await meshJson(other, ['invite', '--ttl', '1s'])).token
    await oa.kill('SIGTERM')
    const mine = fx.tempDir()
    assert.equal((await mesh(['--data-dir', mine, 'init', '--cluster', 'mine'])).code, 0)
    const clusterBefore = readFileSync(join(mine, 'cluster.json'), 'utf8')
    r = await mesh(['--data-dir', mine, 'agent', '--join', foreign])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /this join token is for cluster 'other'.*belongs to cluster 'mine'/)
    assert.equal(readFileSync(join(mine, 'cluster.json'), 'utf8'), clusterBefore)

    await new Promise((res) => setTimeout(res, 1100))
    r = await mesh(['--data-dir', fx.tempDir(), 'agent', '--join', expired])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /expired at .*mesh invite/)
  })

  it('a port in use is a clear error', async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init'])).code, 0)
    const a = fx.agent(dir).start()
    const s = await a.ready()
    const port = s.listen.find((l: string) => l.startsWith('/ip4/127.0.0.1/tcp/')).split('/')[4]
    const dir2 = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir2, 'init'])).code, 0)
    const r = await mesh(['--data-dir', dir2, 'agent', '--listen', `/ip4/127.0.0.1/tcp/${port}`])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /already in use.*--listen/)
    await a.kill('SIGTERM')
  })

  it('a damaged or unreadable identity key is a clear error and is not overwritten', async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init'])).code, 0)
    writeFileSync(join(dir, 'identity.key'), 'garbage')
    let r = await mesh(['--data-dir', dir, 'agent'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /identity .* is damaged/)
    assert.equal(readFileSync(join(dir, 'identity.key'), 'utf8'), 'garbage')

    const dir2 = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir2, 'init'])).code, 0)
    const key = join(dir2, 'identity.key')
    const { rmSync, mkdirSync } = await import('node:fs')
    rmSync(key)
    mkdirSync(key) // unreadable as a file, even for root
    r = await mesh(['--data-dir', dir2, 'agent'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /cannot read the node identity/)
    assert.ok(statSync(key).isDirectory(), 'left as it was')
  })

  it('init refuses to overwrite an existing cluster', async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init'])).code, 0)
    const before = readFileSync(join(dir, 'cluster.json'), 'utf8')
    const r = await mesh(['--data-dir', dir, 'init', '--cluster', 'again'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /already belongs to cluster 'mesh'.*nothing was changed/)
    assert.equal(readFileSync(join(dir, 'cluster.json'), 'utf8'), before)
  })

  it('metrics.listen serves /metrics and /health on loopback TCP; a non-loopback address is refused', async () => {
    const { createServer } = await import('node:net')
    const port = await new Promise<number>((res) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port
        srv.close(() => res(p))
      })
    })
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init'])).code, 0)
    const a = fx.agent(dir).start([], { MESH_METRICS__LISTEN: `127.0.0.1:${port}` })
    await a.ready()
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    assert.match(metrics, /mesh_node_connections/)
    assert.match(metrics, /mesh_membership_members\{status="alive"\} 1/)
    const health = await fetch(`http://127.0.0.1:${port}/health`)
    const body = (await health.json()) as { ok: boolean }
    assert.equal(health.status, 200, JSON.stringify(body))
    assert.equal(body.ok, true)
    await a.kill('SIGTERM')
    const r = await mesh(['--data-dir', dir, 'agent'], { env: { MESH_METRICS__LISTEN: '0.0.0.0:9464' } })
    assert.equal(r.code, 2)
    assert.match(r.stderr, /MESH_METRICS__LISTEN: key 'metrics.listen': expected a loopback HOST:PORT/)
  })

  it('an agent on an empty data dir says how to start or join', async () => {
    const r = await mesh(['--data-dir', fx.tempDir(), 'agent'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /holds no cluster yet.*mesh init.*--join/)
  })
})
