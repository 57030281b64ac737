// Membership with real agent processes on 127.0.0.1, driven through the CLI and the control API:
// convergence, late joiners, failure detection after kill -9, restart with a higher incarnation,
// graceful leave (mesh leave, SIGTERM), cluster_change events, name clashes, filters, --rejoin;
// and bad membership messages sent on the wire by an in-process cluster member.
//
// Timing bounds are generous on purpose (the machine has 2 cores and other suites may run at
// once): they are in the test names, and the measured times are printed.
import '../../src/shim.js'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { byteStream, lpStream } from '@libp2p/utils'
import { MemberSet, type Signed, SyncDigest } from '../../protocols/membership.js'
import { ApiClient } from '../../src/api/client.js'
import type { MemberView } from '../../src/api/routes-members.js'
import type { MeshEvent } from '../../src/kernel/events.js'
import { CLAIM_DOMAIN, encodeClaim, encodeInfo, type MemberInfo } from '../../src/membership/record.js'
import { fromWireInfo } from '../../src/membership/wire.js'
import type { NodeComponent } from '../../src/node/node-component.js'
import {
  type AgentProcess,
  Fixture,
  inProcessMember,
  MetricsSnapshot,
  mesh,
  meshJson,
  waitFor,
} from './cluster-harness.js'

// ---- helpers ---------------------------------------------------------------------------------

const api = (a: AgentProcess) => new ApiClient(join(a.dataDir, 'mesh.sock'), a.dataDir)

/** The member table over the control API: cheap enough to poll (the CLI costs a process). */
async function view(a: AgentProcess): Promise<MemberView[]> {
  return (await api(a).call<{ members: MemberView[] }>('GET', '/v1/members', undefined, 10_000)).members
}

const statusIn = (rows: MemberView[], peerId: string) => rows.find((r) => r.peerId === peerId)?.status

/** What every member must agree on: peer ID, status, display name, incarnation. */
const summary = (rows: MemberView[]) =>
  rows.map((r) => `${r.peerId} ${r.status} ${r.name} ${r.incarnation}`).sort()

/** Views that should agree, one line per member's view, for a failure message. */
const disagreement = (views: string[][]) => views.map((v, i) => `  view ${i}: ${v.join(' | ')}`).join('\n')

/** What `mesh members` must show the same everywhere at any moment once converged. */
const visible = (rows: MemberView[]) => rows.map((r) => `${r.peerId} ${r.status} ${r.name}`).sort()

async function invite(a: AgentProcess): Promise<string> {
  return (await meshJson<{ token: string }>(a.dataDir, ['invite'])).token
}

/** cluster_change events from one agent's SSE stream (GET /v1/events), from construction on. */
class EventLog {
  readonly events: MeshEvent[] = []
  private readonly ctl = new AbortController()
  private readonly done: Promise<void>

  constructor(readonly agent: AgentProcess) {
    this.done = api(agent)
      .events((e) => this.events.push(e as MeshEvent), this.ctl.signal)
      .catch(() => {})
  }

  changes(
    peerId?: string,
  ): Array<{ peerId: string; before: string | null; after: string; incarnation: number }> {
    return this.events
      .filter((e) => e.type === 'cluster_change' && (peerId === undefined || e.data.peerId === peerId))
      .map((e) => e.data as never)
  }

  async close(): Promise<void> {
    this.ctl.abort()
    await Promise.race([this.done, new Promise((r) => setTimeout(r, 2000).unref())])
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Fail with the crash output when an agent that should run has exited. */
function assertRunning(...agents: AgentProcess[]): void {
  for (const x of agents) {
    if (x.exitCode === null) continue
    // the log is JSON lines; a crash prints a plain stack trace
    const crash = x.stderr
      .split('\n')
      .filter((l) => !l.startsWith('{"level"'))
      .join('\n')
      .trim()
    assert.fail(
      `the agent in ${x.dataDir} exited with ${x.exitCode}:\n${crash.slice(-3000) || x.stderr.slice(-2000)}`,
    )
  }
}

// ---- five agents -------------------------------------------------------------------------------

// Five agents shared by every test of this describe, which only read them. A test that changes
// the cluster (a late joiner, kill -9, leave, SIGTERM) joins agents of its own and asserts only
// about what it owns and what the five see of it, so each test runs alone (`-g`) or in any order.
describe('membership: five agents on 127.0.0.1', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  const logs = new Map<AgentProcess, EventLog>()
  // alpha (role=web from MESH_TAGS__ROLE), bravo (role=web, dc=x from config.yaml), charlie,
  // and two members that both ask for the name 'twin' (the second has role=db)
  let a: AgentProcess
  let b: AgentProcess
  let c: AgentProcess
  let d: AgentProcess
  let e: AgentProcess
  const ids: Record<string, string> = {}
  const core = () => [a, b, c, d, e]
  const corePeers = () => [ids.a, ids.b, ids.c, ids.d, ids.e]
  /** The five's rows of a table (other tests' agents may be in it too). */
  const coreRows = (rows: MemberView[]) => rows.filter((r) => corePeers().includes(r.peerId))

  const subscribe = (x: AgentProcess) => {
    void logs.get(x)?.close()
    logs.set(x, new EventLog(x))
  }

  before(async () => {
    const dirA = fx.tempDir()
    const init = await mesh(['--data-dir', dirA, 'init', '--cluster', 'lab'])
    assert.equal(init.code, 0, init.stderr)
    a = fx.agent(dirA, ['--name', 'alpha']).start([], { MESH_TAGS__ROLE: 'web' })
    ids.a = (await a.ready()).peerId
    subscribe(a)

    const dirB = fx.tempDir()
    writeFileSync(join(dirB, 'config.yaml'), 'tags:\n  role: web\n  dc: x\n')
    b = fx.agent(dirB, ['--name', 'bravo'])
    c = fx.agent(fx.tempDir(), ['--name', 'charlie'])
    d = fx.agent(fx.tempDir(), ['--name', 'twin'])
    e = fx.agent(fx.tempDir(), ['--name', 'twin'])
    // one after the other, as machines usually join (four agents starting at once on two
    // cores can take longer than a join is allowed to)
    for (const [k, x, env] of [
      ['b', b, {}],
      ['c', c, {}],
      ['d', d, {}],
      ['e', e, { MESH_TAGS__ROLE: 'db' }],
    ] as const) {
      x.start(['--join', await invite(a)], env)
      ids[k] = (await x.ready(40_000)).peerId
      subscribe(x)
    }
  })

  after(async () => {
    await Promise.all([...logs.values()].map((l) => l.close()))
    await fx.cleanup()
  })

  /**
   * Until the five list each other alive, each with the same view of the five. The bound is
   * generous where this is a test's starting point: a member wrongly suspected on a busy
   * machine (while another test's agent joined) refutes it in seconds, not at once.
   */
  async function converged(boundMs = 60_000): Promise<void> {
    let last: string[][] = []
    await waitFor(
      'all five members to list the same five alive members',
      async () => {
        last = (await Promise.all(core().map(view))).map((v) => summary(coreRows(v)))
        const first = JSON.stringify(last[0])
        return last.every(
          (v) => v.length === 5 && v.every((r) => r.includes(' alive ')) && JSON.stringify(v) === first,
        )
      },
      boundMs,
      250,
    ).catch((err) => {
      throw new Error(
        `${(err as Error).message}; last views (peer status name incarnation):\n${disagreement(last)}`,
      )
    })
  }

  /**
   * A member of this test's own: joins with alpha's invite and is alive in the five's tables
   * before the test goes on. It keeps no event stream of its own open (one would keep it from
   * stopping: see the event stream test below).
   */
  async function joinOwn(
    name: string,
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ x: AgentProcess; id: string }> {
    const x = fx.agent(fx.tempDir(), ['--name', name]).start(['--join', await invite(a)], env)
    const id = (await x.ready(40_000)).peerId as string
    await waitFor(
      `the five to list ${name} alive`,
      async () => (await Promise.all(core().map(view))).every((v) => statusIn(v, id) === 'alive'),
      30_000,
      250,
    )
    return { x, id }
  }

  it('every `mesh members --json` agrees on the same five peer IDs, all alive, within 30 s', async () => {
    const t0 = Date.now()
    await converged(30_000)
    console.log(`      converged in ${Date.now() - t0} ms after the last agent answered`)
    // the same through the CLI, as a user sees it (peer IDs, statuses and names: an incarnation
    // can move in between, when a member re-signs its record with new relay addresses)
    const all = core()
    const cli = await Promise.all(all.map((x) => meshJson<MemberView[]>(x.dataDir, ['members'])))
    for (const v of cli) assert.deepEqual(visible(coreRows(v)), visible(coreRows(cli[0])))
    for (const [i, v] of cli.entries()) {
      assert.equal(v.filter((r) => r.self).length, 1)
      assert.equal(v.find((r) => r.self)?.peerId, corePeers()[i])
      assert.ok(
        v.every((r) => /^fd[0-9a-f]{2}:/.test(r.overlay)),
        'overlay addresses are ULAs',
      )
    }
    // alpha watched the other four join on its event stream
    for (const k of ['b', 'c', 'd', 'e']) {
      assert.ok(
        logs
          .get(a)!
          .changes(ids[k])
          .some((ch) => ch.after === 'alive'),
        `alpha raised cluster_change for ${k} joining`,
      )
    }
  })

  it('two members asking for the same name get the same deterministic, visible resolution everywhere', async () => {
    await converged()
    const [lo, hi] = [ids.d, ids.e].sort()
    const suffixed = `twin-${hi.slice(-6).toLowerCase()}`
    const views = await Promise.all(core().map((x) => meshJson<MemberView[]>(x.dataDir, ['members'])))
    for (const v of views) {
      const names = Object.fromEntries(v.map((r) => [r.peerId, r.name]))
      assert.equal(names[lo], 'twin', 'the smaller peer ID keeps the name')
      assert.equal(names[hi], suffixed, 'the other is shown with a peer ID suffix')
      assert.deepEqual([names[ids.a], names[ids.b], names[ids.c]], ['alpha', 'bravo', 'charlie'])
    }
    // the human table shows both, and the suffix
    const human = await mesh(['--data-dir', b.dataDir, 'members'])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /^twin\s/m)
    assert.match(human.stdout, new RegExp(`^${suffixed}\\s`, 'm'))
    // and every spelling resolves to the same member on every node
    const hiOverlay = views[0].find((r) => r.peerId === hi)!.overlay
    for (const x of [a, c, e]) {
      const resolve = async (q: string) =>
        (await api(x).call<MemberView>('GET', `/v1/members/resolve?q=${encodeURIComponent(q)}`)).peerId
      assert.equal(await resolve('twin'), lo)
      assert.equal(await resolve('twin.mesh'), lo)
      assert.equal(await resolve(suffixed), hi)
      assert.equal(await resolve(`${suffixed}.mesh`), hi)
      assert.equal(await resolve(hiOverlay), hi)
      assert.equal(await resolve(hi), hi)
    }
  })

  it('`--status` and `--tag` filter the table (tags from MESH_TAGS__ROLE and from config.yaml)', async () => {
    await converged()
    // the five's part of the answer: other tests' members (no tags) may be alive, dead or left
    const peers = async (args: string[]) =>
      coreRows(await meshJson<MemberView[]>(a.dataDir, ['members', ...args]))
        .map((r) => r.peerId)
        .sort()
    assert.deepEqual(await peers(['--status', 'alive']), corePeers().sort())
    assert.deepEqual(await peers(['--status', 'dead']), [])
    assert.deepEqual(await peers(['--tag', 'role=web']), [ids.a, ids.b].sort())
    assert.deepEqual(await peers(['--tag', 'role=web', '--tag', 'dc=x']), [ids.b])
    assert.deepEqual(await peers(['--tag', 'role=db']), [ids.e])
    assert.deepEqual(await peers(['--tag', 'role=web', '--status', 'left']), [])
    // every member sees bravo's tags from its config file (and only bravo has dc=x)
    for (const x of [c, d]) {
      const v = await meshJson<MemberView[]>(x.dataDir, ['members', '--tag', 'dc=x'])
      assert.deepEqual(
        v.map((r) => [r.peerId, r.tags]),
        [[ids.b, { role: 'web', dc: 'x' }]],
      )
    }
    const human = await mesh(['--data-dir', a.dataDir, 'members', '--tag', 'role=web'])
    assert.equal(human.code, 0, human.stderr)
    const lines = human.stdout.trim().split('\n')
    assert.match(lines[0], /^NAME\s+OVERLAY\s+STATUS\s+PATH\s+RTT\s+VERSION\s+TAGS$/)
    assert.deepEqual(
      lines
        .slice(1)
        .map((l) => l.split(/\s+/)[0])
        .sort(),
      ['alpha*', 'bravo'],
    )
    assert.ok(lines.slice(1).every((l) => l.includes('role=web')))
    // mistakes are usage errors that say what to do
    let r = await mesh(['--data-dir', a.dataDir, 'members', '--status', 'gone'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /unknown status 'gone': use one of alive, suspect, dead, left/)
    r = await mesh(['--data-dir', a.dataDir, 'members', '--tag', 'role'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /invalid tag filter 'role': use key=value/)
  })

  it('a late joiner has the full table from its first sync (well before the 30 s periodic sync)', async () => {
    await converged()
    const spawned = Date.now()
    const f = fx.agent(fx.tempDir(), ['--name', 'foxtrot']).start(['--join', await invite(a)])
    // the first time the late joiner lists anyone but itself, it lists everyone alpha knows
    const first = await waitFor(
      'the late joiner to list another member',
      async () => {
        if (f.exitCode !== null) throw new Error(`agent exited: ${f.stderr.slice(-1000)}`)
        const v = await view(f).catch(() => [])
        return v.length > 1 ? v : undefined
      },
      25_000,
      100,
    )
    const ms = Date.now() - spawned
    console.log(`      late joiner: full table ${ms} ms after spawn`)
    const fid = first.find((r) => r.self)!.peerId
    assert.deepEqual(
      coreRows(first)
        .map((r) => `${r.peerId} ${r.status}`)
        .sort(),
      corePeers()
        .map((p) => `${p} alive`)
        .sort(),
      'the first view already holds every member',
    )
    const known = (await view(a)).map((r) => r.peerId).filter((p) => p !== fid)
    assert.deepEqual(
      first
        .filter((r) => !r.self)
        .map((r) => r.peerId)
        .sort(),
      known.sort(),
      "and every other member alpha knows (other tests' ones too)",
    )
    assert.ok((await f.metric('mesh_membership_syncs_total', { result: 'ok' })) >= 1, 'it synced')
    let last: MemberView[][] = []
    await waitFor(
      'all six members to agree',
      async () => {
        last = await Promise.all([...core(), f].map(view))
        return last.every(
          (v) =>
            statusIn(v, fid) === 'alive' && JSON.stringify(summary(v)) === JSON.stringify(summary(last[0])),
        )
      },
      30_000,
      250,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}; last views:\n${disagreement(last.map(summary))}`)
    })
    // it leaves again: one agent more than the five for each test at most (two cores)
    await f.kill('SIGTERM')
  })

  describe('kill -9, --rejoin and restart of a member of their own (golf)', () => {
    let g: AgentProcess
    let gid: string
    let incarnationBefore = 0
    let killing: Promise<Map<AgentProcess, number>> | undefined
    /** how many changes each of the five had seen when golf was killed */
    let eventsAtKill = new Map<AgentProcess, number>()

    before(async () => {
      await converged()
      ;({ x: g, id: gid } = await joinOwn('golf'))
    })

    /**
     * golf killed with SIGKILL and dead in each of the five's tables: ms from the kill per
     * member. The first test that needs it kills golf; the others wait for the same kill.
     */
    function killed(): Promise<Map<AgentProcess, number>> {
      killing ??= (async () => {
        assertRunning(...core(), g)
        incarnationBefore = (await view(a)).find((r) => r.peerId === gid)!.incarnation
        eventsAtKill = new Map(core().map((o) => [o, logs.get(o)!.changes().length]))
        const killedAt = Date.now()
        await g.kill('SIGKILL')
        const took = new Map<AgentProcess, number>()
        await waitFor(
          'every other member to mark the killed one dead',
          async () => {
            await Promise.all(
              core()
                .filter((o) => !took.has(o))
                .map(async (o) => {
                  if (statusIn(await view(o), gid) === 'dead') took.set(o, Date.now() - killedAt)
                }),
            )
            return took.size === 5
          },
          60_000,
          250,
        )
        return took
      })()
      return killing
    }

    it('kill -9: every other member marks it dead (bound 60 s: probe round + 3 s suspicion, up to 4x unconfirmed)', async () => {
      const took = await killed()
      const times = core().map((o) => took.get(o)!)
      console.log(
        `      kill -9 detection: ${times.map((t) => `${(t / 1000).toFixed(1)} s`).join(', ')} (max ${(Math.max(...times) / 1000).toFixed(1)} s)`,
      )
      for (const o of core()) {
        const dead = await meshJson<MemberView[]>(o.dataDir, ['members', '--status', 'dead'])
        assert.deepEqual(
          dead.map((r) => r.peerId),
          [gid],
        )
        const flagged = coreRows(await view(o)).filter((r) => r.status === 'dead' || r.status === 'left')
        assert.deepEqual(flagged, [], 'none of the five is dead or gone')
        const ev = logs.get(o)!.changes(gid)
        assert.ok(
          ev.some((ch) => ch.after === 'dead'),
          'a cluster_change event said so',
        )
      }
      // no healthy member was reported dead while golf was being detected
      for (const o of core()) {
        const wrong = logs
          .get(o)!
          .changes()
          .slice(eventsAtKill.get(o))
          .filter((ch) => ch.after === 'dead' && ch.peerId !== gid)
        assert.deepEqual(wrong, [])
      }
    })

    it('`mesh members --rejoin` re-dials every known member that has not left, the dead one included', async () => {
      await killed()
      // whoever else is in the table (other tests' members) counts too: dialled = not left,
      // connected = not dead
      const rows = (await view(a)).filter((r) => !r.self && r.status !== 'left')
      const dialled = rows.length
      const connected = rows.filter((r) => r.status !== 'dead').length
      assert.ok(
        dialled >= 5 && connected === dialled - 1,
        JSON.stringify(rows.map((r) => [r.name, r.status])),
      )
      const r = await mesh(['--data-dir', a.dataDir, 'members', '--rejoin'])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stderr, new RegExp(`rejoin: dialled ${dialled} members, ${connected} connected`))
      assert.match(r.stdout, /^alpha\*/m)
      const v = await meshJson<MemberView[]>(a.dataDir, ['members', '--rejoin'])
      assert.equal(statusIn(v, gid), 'dead')
      assert.deepEqual(
        coreRows(v).map((x) => x.status),
        ['alive', 'alive', 'alive', 'alive', 'alive'],
      )
    })

    it('restart after kill -9 (same data dir, no token): alive again everywhere with a higher incarnation (bound 30 s)', async () => {
      await killed()
      assertRunning(...core())
      const t0 = Date.now()
      g.start([])
      assert.equal((await g.ready(30_000)).peerId, gid)
      const all = [...core(), g]
      await waitFor(
        'every member to list the restarted one alive with a higher incarnation',
        async () => {
          const views = await Promise.all(all.map(view))
          return views.every((v) => {
            const row = v.find((r) => r.peerId === gid)
            return row !== undefined && row.status === 'alive' && row.incarnation > incarnationBefore
          })
        },
        30_000,
        250,
      )
      console.log(`      restart: alive everywhere ${Date.now() - t0} ms after spawn`)
      for (const o of core()) {
        const ev = logs.get(o)!.changes(gid)
        const back = ev.findLast((ch) => ch.after === 'alive')
        assert.ok(back !== undefined && back.incarnation > incarnationBefore, 'cluster_change: alive again')
      }
      await waitFor(
        'all six to agree again',
        async () => {
          const views = await Promise.all(all.map(view))
          return views.every((v) => JSON.stringify(summary(v)) === JSON.stringify(summary(views[0])))
        },
        30_000,
        250,
      )
    })
  })

  // a bound for the wait only (assertLeftDirectly is what tells a leave from a detection): long
  // enough for a starved machine
  const LEFT_WITHIN_MS = 20_000

  /** Poll the five until each lists `peerId` as left; returns ms per member since `t0`. */
  async function waitLeft(peerId: string, t0: number, boundMs: number): Promise<number[]> {
    const took = new Map<AgentProcess, number>()
    await waitFor(
      `every other member to list ${peerId} as left within ${boundMs} ms`,
      async () => {
        await Promise.all(
          core()
            .filter((o) => !took.has(o))
            .map(async (o) => {
              if (statusIn(await view(o), peerId) === 'left') took.set(o, Date.now() - t0)
            }),
        )
        return took.size === 5
      },
      boundMs,
      50,
    )
    return core().map((o) => took.get(o)!)
  }

  /** How many status changes of `peerId` each of the five has seen so far. */
  const seen = (peerId: string) => new Map(core().map((o) => [o, logs.get(o)!.changes(peerId).length]))

  /**
   * Left, not detected: every member says `left` (never `dead`) and no change since `since`
   * declared it dead. A suspicion may have been raised while it joined (a newly joined member on
   * a busy machine can answer a probe late, and `since` is read before the leave is asked for,
   * not at it); what rules failure detection out is that no member ever said `dead` (suspect ->
   * dead takes 5 s or more, a leave that never came would end there), and the status that ends
   * it is `left`. The time it took is printed, not bounded: a machine at load 30 stretched it
   * past 3 s in one CI run.
   */
  function assertLeftDirectly(peerId: string, since: Map<AgentProcess, number>): void {
    for (const o of core()) {
      const ev = logs
        .get(o)!
        .changes(peerId)
        .slice(since.get(o) ?? 0)
      assert.ok(
        ev.some((ch) => ch.after === 'left'),
        'a cluster_change event said it left',
      )
      assert.deepEqual(
        ev.filter((ch) => ch.after === 'dead' || ch.before === 'dead'),
        [],
        'it was never declared dead',
      )
      const suspected = ev.filter((ch) => ch.after === 'suspect').length
      if (suspected > 0)
        console.log(`      (a watcher suspected it ${suspected}x before the leave reached it)`)
    }
  }

  it('`mesh leave`: the member is `left` everywhere at once (never dead: not found by failure detection) and its agent stops', async () => {
    await converged()
    const { x: h, id: hid } = await joinOwn('hotel')
    const before = seen(hid)
    const r = await mesh(['--data-dir', h.dataDir, 'leave'])
    const t0 = Date.now()
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /left the cluster/)
    assertRunning(...core())
    const times = await waitLeft(hid, t0, LEFT_WITHIN_MS)
    console.log(`      mesh leave: left everywhere after ${Math.max(...times)} ms`)
    assertLeftDirectly(hid, before)
    await waitFor('the agent that left to exit', async () => h.exitCode !== null, 15_000)
    assert.equal(h.exitCode, 0, h.stderr.slice(-2000))
  })

  it('SIGTERM: the member is `left` everywhere at once (never dead) and exits 0', async () => {
    await converged()
    const { x: i, id: iid } = await joinOwn('india')
    const before = seen(iid)
    const t0 = Date.now()
    const exited = i.kill('SIGTERM')
    assertRunning(...core())
    const times = await waitLeft(iid, t0, LEFT_WITHIN_MS)
    console.log(`      SIGTERM: left everywhere after ${Math.max(...times)} ms`)
    await Promise.race([exited, sleep(15_000)])
    assert.equal(i.exitCode, 0, i.stderr.slice(-2000))
    assertLeftDirectly(iid, before)
    assertRunning(...core())
    for (const o of core()) {
      const left = await meshJson<MemberView[]>(o.dataDir, ['members', '--status', 'left'])
      assert.ok(
        left.some((r) => r.peerId === iid),
        'mesh members --status left lists it',
      )
      assert.deepEqual(coreRows(left), [], 'and none of the five')
    }
  })

  it("every change raised a cluster_change event: each member's last event per peer matches its table", async () => {
    await converged()
    assertRunning(...core())
    // the tables are settled; an event may still be on its way, so wait (bounded) for them to match
    let mismatch = ''
    await waitFor(
      'the last event per peer to match the table on each of the five',
      async () => {
        mismatch = ''
        for (const x of core()) {
          const rows = await view(x)
          const last = new Map<string, string>()
          for (const ch of logs.get(x)!.changes()) last.set(ch.peerId, ch.after)
          for (const [peer, after] of last)
            if (statusIn(rows, peer) !== after)
              mismatch += `${x.dataDir}: event ${after} vs table ${statusIn(rows, peer)} for ${peer}\n`
        }
        return mismatch === ''
      },
      15_000,
      250,
    ).catch(() => {})
    assert.equal(mismatch, '', 'event vs table')
    assert.ok(logs.get(a)!.changes().length >= 4, 'alpha saw the other four join')
    // and the events carry what a hook needs
    for (const x of core()) {
      for (const ch of logs.get(x)!.changes()) {
        assert.equal(typeof ch.peerId, 'string')
        assert.ok(['alive', 'suspect', 'dead', 'left'].includes(ch.after))
        assert.ok(Number.isSafeInteger(ch.incarnation))
      }
    }
  })
})

describe('membership: an agent with an open event stream', function () {
  this.timeout(60_000)
  const fx = new Fixture()
  after(() => fx.cleanup())

  // an SSE client on GET /v1/events never closes by itself: stop() must end it, not wait for it
  it('still stops on SIGTERM, and tells the cluster it left (bound 10 s)', async () => {
    const dir = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dir, 'init', '--cluster', 'lab'])).code, 0)
    const x = fx.agent(dir, ['--name', 'solo']).start()
    await x.ready()
    const log = new EventLog(x)
    await sleep(500)
    const exited = x.kill('SIGTERM')
    await Promise.race([exited, sleep(10_000)])
    await log.close()
    assert.equal(x.exitCode, 0, 'the agent exited 0 within 10 s although an event stream was open')
  })
})

// ---- bad messages from a member ---------------------------------------------------------------

// WebRTC off here: restarting one of two members crashed the restarted agent in libp2p's relay
// listener (a relay advertising a bare '/webrtc/p2p/<relay>' address; reported), which has
// nothing to do with what this suite checks.
const NO_WEBRTC = { MESH_WEBRTC__ENABLED: 'false' }

describe('membership: bad messages on the wire from a cluster member are dropped and counted', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  let a: AgentProcess
  let b: AgentProcess
  const ids: Record<string, string> = {}
  let member: NodeComponent | undefined
  let topic: string
  let syncProto: string
  /** bravo's record as alpha served it before bravo restarted: a genuine, outdated record */
  let oldB: Signed
  let curB: Signed

  const node = () => member!.node
  const sign = (bytes: Uint8Array) => member!.privateKey.sign(bytes) as Uint8Array<ArrayBuffer>
  const signed = (body: Uint8Array, sig: Uint8Array): Signed => ({ body: body as never, sig: sig as never })

  /** Ask alpha for its table over the sync protocol (we send an empty set). */
  async function pull(): Promise<MemberSet> {
    const signal = AbortSignal.timeout(10_000)
    const stream = await node().dialProtocol(peerIdFromString(ids.a), syncProto, { signal })
    const lp = lpStream(stream, { maxDataLength: 16 << 20 })
    await lp.write(MemberSet.encode({ records: [], claims: [], statements: [] }), { signal })
    const reply = MemberSet.decode(await lp.read({ signal }))
    await stream.close({ signal }).catch(() => {})
    return reply
  }

  const recordOf = (set: MemberSet, peerId: string) =>
    set.records.find((r) => fromWireInfo(r).info.peerId === peerId)

  /**
   * What the hostile input tries to change: statuses, names, tags. (Incarnations are left out: a
   * member may legitimately re-sign its record, with new addresses, at any moment.)
   */
  async function tables(): Promise<string[][]> {
    return Promise.all(
      [a, b].map(async (x) =>
        (await view(x)).map((r) => `${r.peerId} ${r.status} ${r.name} ${JSON.stringify(r.tags)}`).sort(),
      ),
    )
  }

  /**
   * Both tables once neither holds a member suspect: a busy machine may make one suspect the
   * other for a moment, and a snapshot taken then is no picture to come back to.
   */
  async function settledTables(): Promise<string[][]> {
    let now: string[][] = []
    await waitFor(
      'no member suspected in either table',
      async () => {
        now = await tables()
        return now.every((t) => t.every((row) => !row.includes(' suspect ')))
      },
      15_000,
      250,
    )
    return now
  }

  /**
   * Both tables equal `before`. A busy machine may make one member suspect the other for a
   * moment (refuted within seconds); what the bad input forged would not go away, so wait for
   * the tables to settle back rather than compare one instant.
   */
  async function tablesReturnTo(before: string[][]): Promise<void> {
    let now: string[][] = []
    await waitFor(
      'tables back to what they were',
      async () => {
        now = await tables()
        return JSON.stringify(now) === JSON.stringify(before)
      },
      15_000,
      250,
    ).catch(() => {})
    assert.deepEqual(now, before, "alpha's and bravo's tables are unchanged")
  }

  /**
   * Neither agent holds the forged record of bravo (it carried the tag role=evil) or its death.
   * The tags must never show the forgery; the status may be `suspect` for a moment on a busy
   * machine (a late ack, refuted within seconds), while a forged death would never go away.
   */
  async function noForgery(): Promise<void> {
    let rows: { status: string; tags: Record<string, string> }[] = []
    await waitFor(
      'bravo alive in both tables',
      async () => {
        rows = await Promise.all([a, b].map(async (x) => (await view(x)).find((r) => r.peerId === ids.b)!))
        for (const row of rows) assert.deepEqual(row.tags, {}, 'the forged record did not enter')
        return rows.every((r) => r.status === 'alive')
      },
      15_000,
      250,
    ).catch(() => {})
    for (const row of rows) {
      assert.equal(row.status, 'alive')
      assert.deepEqual(row.tags, {}, 'the forged record did not enter')
    }
  }

  before(async () => {
    const dirA = fx.tempDir()
    assert.equal((await mesh(['--data-dir', dirA, 'init', '--cluster', 'lab'])).code, 0)
    const clusterId = JSON.parse(readFileSync(join(dirA, 'cluster.json'), 'utf8')).id as string
    topic = `/mesh/${clusterId.slice(0, 16)}/members/1`
    syncProto = `/mesh/${clusterId.slice(0, 16)}/members/sync/1.0.0`
    a = fx.agent(dirA, ['--name', 'alpha']).start([], NO_WEBRTC)
    ids.a = (await a.ready()).peerId
    b = fx.agent(fx.tempDir(), ['--name', 'bravo']).start(['--join', await invite(a)], NO_WEBRTC)
    ids.b = (await b.ready(30_000)).peerId
    await waitFor(
      'alpha and bravo to list each other alive',
      async () => {
        const [va, vb] = await Promise.all([view(a), view(b)])
        return va.length === 2 && vb.length === 2 && [...va, ...vb].every((r) => r.status === 'alive')
      },
      30_000,
      250,
    )

    // an in-process member: it joins with an invite like any machine, but runs no membership
    // service, so it can put anything on the wire
    member = await inProcessMember(fx.tempDir(), a.dataDir, 'mallory')
    await member.start()
    await waitFor(
      'the in-process member to be admitted by alpha',
      async () => {
        await member!.reconnect()
        return node().services.admission.isAdmitted(peerIdFromString(ids.a))
      },
      30_000,
      500,
    )
    node().services.pubsub.subscribe(topic)
    await waitFor(
      'alpha to be a gossip peer on the members topic',
      async () =>
        node()
          .services.pubsub.getSubscribers(topic)
          .some((p) => p.toString() === ids.a),
      20_000,
    )

    // a genuine record of bravo, then bravo restarts (kill -9) and outranks it
    oldB = recordOf(await pull(), ids.b)!
    assert.ok(oldB !== undefined, "alpha served bravo's record")
    const oldInc = fromWireInfo(oldB).info.incarnation
    await b.kill('SIGKILL')
    b.start([], NO_WEBRTC)
    await b.ready(30_000)
    await waitFor(
      'alpha and bravo to list each other alive, bravo at a higher incarnation',
      async () => {
        const [va, vb] = await Promise.all([view(a), view(b)])
        const rb = va.find((r) => r.peerId === ids.b)
        return (
          rb !== undefined &&
          rb.incarnation > oldInc &&
          va.length === 2 &&
          vb.length === 2 &&
          [...va, ...vb].every((r) => r.status === 'alive')
        )
      },
      40_000,
      250,
    )
    curB = recordOf(await pull(), ids.b)!
    assert.ok(fromWireInfo(curB).info.incarnation > oldInc)
  })

  after(async () => {
    await member?.stop().catch(() => {})
    await fx.cleanup()
  })

  /** The hostile records and claims, all about bravo (a member alpha holds). */
  function hostile() {
    const cur = fromWireInfo(curB).info
    // bravo's record with new tags and a higher incarnation, signed with our key
    const forgedInfo: MemberInfo = { ...cur, incarnation: cur.incarnation + 1, tags: { role: 'evil' } }
    const forgedBody = encodeInfo(forgedInfo)
    const deadBody = (by: string) =>
      encodeClaim({ peerId: ids.b, incarnation: cur.incarnation, status: 'dead', by })
    return {
      oversized: new Uint8Array(300 << 10).fill(7),
      truncatedSet: MemberSet.encode({ records: [curB], claims: [], statements: [] }).subarray(0, 60),
      truncatedBody: signed(curB.body.subarray(0, curB.body.length - 10), curB.sig),
      unsigned: signed(forgedBody, new Uint8Array(0)),
      wronglySigned: signed(forgedBody, sign(forgedBody)),
      // a death claim attributed to alpha (a member), signed by us
      forgedClaim: signed(deadBody(ids.a), sign(deadBody(ids.a))),
      // a real signature, but we are no member of the table: claims need a known claimant
      strangerClaim: signed(deadBody(node().peerId.toString()), sign(deadBody(node().peerId.toString()))),
      wrongDomain: signed(new TextEncoder().encode(`${CLAIM_DOMAIN}\n{}`), sign(new Uint8Array(1))),
      replayed: oldB,
    }
  }

  it('gossip: oversized, truncated, unsigned, wrongly signed and replayed messages change nothing and are counted', async () => {
    const before = await settledTables()
    const m0 = await a.metrics()
    const h = hostile()
    const pub = (bytes: Uint8Array) => node().services.pubsub.publish(topic, bytes)
    await pub(h.oversized)
    await pub(h.truncatedSet)
    await pub(MemberSet.encode({ records: [h.truncatedBody, h.unsigned], claims: [], statements: [] }))
    await pub(MemberSet.encode({ records: [h.wronglySigned], claims: [h.forgedClaim], statements: [] }))
    await pub(MemberSet.encode({ records: [], claims: [h.strangerClaim, h.wrongDomain], statements: [] }))
    await pub(MemberSet.encode({ records: [h.replayed], claims: [], statements: [] }))

    // 5. digest sync (sync/2.0.0): a digest that is not a whole number of fingerprints
    {
      const signal = AbortSignal.timeout(10_000)
      const s2 = await node().dialProtocol(peerIdFromString(ids.a), syncProto.replace('/1.0.0', '/2.0.0'), {
        signal,
      })
      const lp2 = lpStream(s2, { maxDataLength: 16 << 20 })
      await lp2.write(SyncDigest.encode({ fingerprints: new Uint8Array(13) }), { signal })
      await lp2.read({ signal }).then(
        () => assert.fail('alpha answered a malformed digest'),
        () => {}, // refused: the stream is reset
      )
    }

    const rise = (m: MetricsSnapshot, name: string, labels: Record<string, string>) =>
      m.get(name, labels) - m0.get(name, labels)
    const expected: Array<[string, Record<string, string>, number]> = [
      ['mesh_membership_dropped_total', { reason: 'oversized' }, 1],
      ['mesh_membership_dropped_total', { reason: 'undecodable' }, 1],
      ['mesh_membership_dropped_total', { reason: 'malformed_record' }, 2],
      ['mesh_membership_dropped_total', { reason: 'unknown_claimant' }, 1],
      ['mesh_membership_dropped_total', { reason: 'malformed_claim' }, 1],
      ['mesh_membership_inputs', { outcome: 'bad-signature' }, 2],
      ['mesh_membership_inputs', { outcome: 'stale' }, 1],
    ]
    let m = new MetricsSnapshot([])
    await waitFor(
      'alpha to count every bad gossip message',
      async () => {
        m = await a.metrics()
        return expected.every(([name, labels, n]) => rise(m, name, labels) >= n)
      },
      20_000,
      250,
    ).catch((err) => {
      const got = expected.map(
        ([name, labels, n]) => `${name}${JSON.stringify(labels)} +${rise(m, name, labels)} (want ${n})`,
      )
      throw new Error(`${(err as Error).message}\n${got.join('\n')}`)
    })
    await tablesReturnTo(before)
    await noForgery()
    assert.equal(a.exitCode, null)
    assert.equal(b.exitCode, null)
    assert.equal((await a.status()).peerId, ids.a, 'alpha still answers')
  })

  it('sync streams: an over-limit frame, a cut-short frame, undecodable bytes, a malformed digest and bad records change nothing and are counted', async () => {
    const before = await settledTables()
    const m0 = await a.metrics()
    const h = hostile()

    /** Open a sync stream to alpha, write raw bytes, close our side; whatever alpha does is fine. */
    const raw = async (bytes: Uint8Array) => {
      const signal = AbortSignal.timeout(10_000)
      const stream = await node().dialProtocol(peerIdFromString(ids.a), syncProto, { signal })
      const bs = byteStream(stream)
      await bs.write(bytes, { signal }).catch(() => {})
      await stream.close({ signal }).catch(() => {})
      await bs.read({ signal }).catch(() => null)
      stream.abort(new Error('done'))
    }
    const varint = (n: number) => {
      const out: number[] = []
      while (n >= 0x80) {
        out.push((n & 0x7f) | 0x80)
        n = Math.floor(n / 128)
      }
      out.push(n)
      return new Uint8Array(out)
    }
    const frame = (len: number, body: Uint8Array) => new Uint8Array([...varint(len), ...body])

    // 1. a frame longer than the 8 MiB sync limit
    await raw(frame((8 << 20) + 1, new Uint8Array(64 << 10)))
    // 2. a frame that promises 1000 bytes and ends after 500
    await raw(frame(1000, new Uint8Array(500).fill(1)))
    // 3. a whole frame that is not a MemberSet (a cut protobuf)
    await raw(frame(h.truncatedSet.length, h.truncatedSet))
    // 4. a well-formed sync carrying bad records and claims: alpha still answers with its table
    const signal = AbortSignal.timeout(10_000)
    const stream = await node().dialProtocol(peerIdFromString(ids.a), syncProto, { signal })
    const lp = lpStream(stream, { maxDataLength: 16 << 20 })
    await lp.write(
      MemberSet.encode({
        records: [h.truncatedBody, h.unsigned, h.wronglySigned, h.replayed],
        claims: [h.forgedClaim, h.strangerClaim],
        statements: [],
      }),
      { signal },
    )
    const reply = MemberSet.decode(await lp.read({ signal }))
    await stream.close({ signal }).catch(() => {})
    assert.deepEqual(reply.records.map((r) => fromWireInfo(r).info.peerId).sort(), [ids.a, ids.b].sort())
    // the replayed old record did not win (bravo itself may have re-signed a newer one since)
    assert.ok(fromWireInfo(recordOf(reply, ids.b)!).info.incarnation >= fromWireInfo(curB).info.incarnation)

    const rise = (m: MetricsSnapshot, name: string, labels: Record<string, string>) =>
      m.get(name, labels) - m0.get(name, labels)
    const expected: Array<[string, Record<string, string>, number]> = [
      ['mesh_membership_dropped_total', { reason: 'bad_sync' }, 3],
      ['mesh_membership_dropped_total', { reason: 'malformed_record' }, 2],
      ['mesh_membership_dropped_total', { reason: 'unknown_claimant' }, 1],
      ['mesh_membership_inputs', { outcome: 'bad-signature' }, 2],
      ['mesh_membership_inputs', { outcome: 'stale' }, 1],
    ]
    let m = new MetricsSnapshot([])
    await waitFor(
      'alpha to count every bad sync',
      async () => {
        m = await a.metrics()
        return expected.every(([name, labels, n]) => rise(m, name, labels) >= n)
      },
      20_000,
      250,
    ).catch((err) => {
      const got = expected.map(
        ([name, labels, n]) => `${name}${JSON.stringify(labels)} +${rise(m, name, labels)} (want ${n})`,
      )
      throw new Error(`${(err as Error).message}\n${got.join('\n')}`)
    })
    await tablesReturnTo(before)
    await noForgery()
    assert.equal(a.exitCode, null)
    assert.equal((await a.status()).peerId, ids.a, 'alpha still answers')
    // and a normal sync still works afterwards
    assert.ok(recordOf(await pull(), ids.b) !== undefined)
  })
})
