import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { type AgentProcess, Fixture, mesh, meshJson, waitFor } from './cluster-harness.js'

// An agent with nothing to do stays idle (issue 20): relay discovery used to run a DHT random
// walk without end whenever fewer members could hold a reservation than relay.reservations
// (two members: 45 searches per 5 s, 80% of a core each), and an agent whose peers were gone
// kept dialling them. These tests count the node's own DHT lookups, relay searches and dials
// over a 20 s window of an idle cluster; the bounds are what back-off allows, not timings.

const WINDOW_MS = 20_000

interface Counts {
  lookups: number
  searches: number
  dials: number
  reservations: number
  /** probes not sent: the target had just probed us or synced (Swim.heard) */
  skipped: number
}

async function counts(a: AgentProcess): Promise<Counts> {
  const m = await a.metrics()
  // the counters must exist: a renamed metric would make every bound below pass by itself
  for (const name of [
    'mesh_node_dht_closest_peer_lookups_total',
    'mesh_node_relay_reservations',
    'mesh_membership_probes_skipped',
  ])
    assert.ok(
      m.samples.some((s) => s.name === name),
      `${name} missing from /metrics`,
    )
  return {
    lookups: m.get('mesh_node_dht_closest_peer_lookups_total'),
    searches: m.get('mesh_node_relay_searches_total'),
    dials: m.get('mesh_node_transport_dials_total'),
    reservations: m.get('mesh_node_relay_reservations'),
    skipped: m.get('mesh_membership_probes_skipped'),
  }
}

/** What the agent did over the window. */
async function overWindow(a: AgentProcess): Promise<Counts> {
  const before = await counts(a)
  await new Promise((r) => setTimeout(r, WINDOW_MS))
  const after = await counts(a)
  return {
    lookups: after.lookups - before.lookups,
    searches: after.searches - before.searches,
    dials: after.dials - before.dials,
    reservations: after.reservations,
    skipped: after.skipped - before.skipped,
  }
}

async function founder(fx: Fixture): Promise<AgentProcess> {
  const dir = fx.tempDir()
  const init = await mesh(['--data-dir', dir, 'init', '--cluster', 'idle'])
  assert.equal(init.code, 0, init.stderr)
  const a = fx.agent(dir).start()
  await a.ready()
  return a
}

async function pair(fx: Fixture): Promise<[AgentProcess, AgentProcess]> {
  const a = await founder(fx)
  const { token } = await meshJson<{ token: string }>(a.dataDir, ['invite'])
  const b = fx.agent(fx.tempDir()).start(['--join', token])
  await b.ready(60_000)
  await waitFor(
    'both members alive in both tables',
    async () => {
      for (const x of [a, b]) {
        const ms = await meshJson<Array<{ status: string }>>(x.dataDir, ['members'])
        if (ms.length !== 2 || !ms.every((m) => m.status === 'alive')) return false
      }
      return true
    },
    60_000,
  )
  return [a, b]
}

describe('idle agents stay idle (relay discovery and redials back off)', function () {
  this.timeout(150_000)
  let fx: Fixture
  beforeEach(() => {
    fx = new Fixture()
  })
  afterEach(() => fx.cleanup())

  it('an agent alone makes no DHT lookups and no dials, and searches for relays only with back-off', async () => {
    const a = await founder(fx)
    const w = await overWindow(a)
    assert.equal(w.lookups, 0, `DHT lookups in ${WINDOW_MS} ms`)
    assert.equal(w.dials, 0, `dials in ${WINDOW_MS} ms`)
    // 5 s, 10 s, 20 s ... between searches: at most 3 fit in 20 s
    assert.ok(w.searches <= 3, `${w.searches} relay searches in ${WINDOW_MS} ms`)
  })

  it('two members hold one reservation each on the other and then stop searching the network', async () => {
    const [a, b] = await pair(fx)
    // each member is the other's only relay: one reservation each, though two are wanted
    await waitFor('a reservation on each side', async () => {
      const [ca, cb] = await Promise.all([counts(a), counts(b)])
      return ca.reservations === 1 && cb.reservations === 1
    })
    const [wa, wb] = await Promise.all([overWindow(a), overWindow(b)])
    for (const [name, w] of [
      ['alpha', wa],
      ['bravo', wb],
    ] as const) {
      assert.equal(w.lookups, 0, `${name}: DHT lookups in ${WINDOW_MS} ms`)
      assert.equal(w.dials, 0, `${name}: dials in ${WINDOW_MS} ms (already connected)`)
      assert.ok(w.searches <= 3, `${name}: ${w.searches} relay searches in ${WINDOW_MS} ms`)
      assert.equal(w.reservations, 1, `${name}: the reservation is kept`)
    }
    // a member just probed by the other counts that as its round's ack and sends no probe of
    // its own: in a pair mostly only one side probes (protocols/membership.md)
    assert.ok(wa.skipped + wb.skipped > 0, `probes skipped in ${WINDOW_MS} ms: ${wa.skipped} + ${wb.skipped}`)
  })

  it('a member whose only peer is gone for good redials it with back-off, not in a loop', async () => {
    const [a, b] = await pair(fx)
    await b.kill('SIGKILL')
    const killedAt = Date.now()
    rmSync(b.dataDir, { recursive: true, force: true })
    // the first seconds after a loss are busy by design (libp2p's few redials of a lost relay,
    // the detector's probes); what must not happen is a loop once the member is known dead
    await waitFor(
      "bravo dead in alpha's table",
      async () => {
        const ms = await meshJson<Array<{ status: string; self?: boolean }>>(a.dataDir, ['members'])
        return ms.some((m) => m.status === 'dead')
      },
      60_000,
    )
    // libp2p's own reconnect queue redials a lost relay 3 times (2 s, 6 s, 18 s: src/node/libp2p.ts)
    // and then gives up; measure after that, so the window shows only the agent's own back-off
    await new Promise((r) => setTimeout(r, Math.max(0, killedAt + 30_000 - Date.now())))
    const w = await overWindow(a)
    assert.equal(w.lookups, 0, `DHT lookups in ${WINDOW_MS} ms`)
    // the member's addresses are tried after 10 s, 20 s, 40 s ...: a handful of dials, where a
    // redial loop makes dozens a second
    assert.ok(w.dials <= 8, `${w.dials} dials in ${WINDOW_MS} ms`)
    assert.ok(w.searches <= 3, `${w.searches} relay searches in ${WINDOW_MS} ms`)
  })
})
