// Membership across network namespaces (root): five agents, each in its own namespace on one
// segment of 198.18.0.0/16, listening on their lab address. Their control sockets live in data
// dirs on the shared filesystem, so the CLI and the event streams work from the root namespace.
//
// - partition {2} | {3} with firewall rules between the groups: each side marks the other dead;
// - heal: both sides converge to one table with everyone alive;
// - a CPU hog (two busy loops for 30 s on a 2-core machine): no healthy member is marked dead.
//
// Bounds are generous (the machine is small and shared) and are in the test names; measured
// times are printed.
import { strict as assert } from 'node:assert'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ApiClient } from '../../src/api/client.js'
import type { MemberView } from '../../src/api/routes-members.js'
import type { MeshEvent } from '../../src/kernel/events.js'
import { CLI, mesh, meshJson, waitFor } from '../integration/cluster-harness.js'
import { type Host, Lab, requireSystem } from './harness.js'

/** One agent process inside a lab host's namespace. */
class NsAgent {
  child: ChildProcess | undefined
  stderr = ''
  exitCode: number | null = null
  peerId = ''

  constructor(
    readonly lab: Lab,
    readonly host: Host,
    readonly dataDir: string,
    readonly name: string,
  ) {}

  start(extra: string[] = []): this {
    this.stderr = ''
    this.exitCode = null
    const argv = [process.execPath, CLI, '--data-dir', this.dataDir, 'agent']
    argv.push('--listen', `/ip4/${this.host.ip}/tcp/4701`, '--name', this.name, ...extra)
    const child = this.lab.spawn(this.host, argv, {
      env: { ...process.env, MESH_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout?.resume()
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.stderr = (this.stderr + d).slice(-20_000)
    })
    child.on('exit', (code, signal) => {
      this.exitCode = code ?? (signal === null ? -1 : 128)
    })
    this.child = child
    return this
  }

  async ready(timeoutMs = 40_000): Promise<void> {
    const s = await waitFor(
      `agent ${this.name} in ${this.host.ns} to answer`,
      async () => {
        if (this.exitCode !== null)
          throw new Error(`agent ${this.name} exited ${this.exitCode}: ${this.stderr.slice(-2000)}`)
        return meshJson<{ peerId: string }>(this.dataDir, ['status'])
      },
      timeoutMs,
      250,
    )
    this.peerId = s.peerId
  }

  api(): ApiClient {
    return new ApiClient(join(this.dataDir, 'mesh.sock'), this.dataDir)
  }

  async members(): Promise<MemberView[]> {
    return (await this.api().call<{ members: MemberView[] }>('GET', '/v1/members', undefined, 10_000)).members
  }
}

/** cluster_change events of one agent, from construction on. */
class EventLog {
  readonly changes: Array<{
    at: number
    peerId: string
    name: string
    before: string | null
    after: string
  }> = []
  private readonly ctl = new AbortController()
  private readonly done: Promise<void>

  constructor(agent: NsAgent) {
    this.done = agent
      .api()
      .events((e) => {
        const ev = e as MeshEvent
        if (ev.type === 'cluster_change')
          this.changes.push({ at: ev.time, ...(ev.data as Omit<EventLog['changes'][number], 'at'>) })
      }, this.ctl.signal)
      .catch(() => {})
  }

  async close(): Promise<void> {
    this.ctl.abort()
    await Promise.race([this.done, new Promise((r) => setTimeout(r, 2000).unref())])
  }
}

const summary = (rows: MemberView[]) => rows.map((r) => `${r.peerId} ${r.status} ${r.incarnation}`).sort()

describe('system: membership across network namespaces (5 agents)', function () {
  this.timeout(300_000)
  let lab: Lab | undefined
  const dirs: string[] = []
  const agents: NsAgent[] = []
  const logs: EventLog[] = []
  const hogs: ChildProcess[] = []

  const assertRunning = () => {
    for (const x of agents) {
      if (x.exitCode !== null) {
        const crash = x.stderr
          .split('\n')
          .filter((l) => !l.startsWith('{"level"'))
          .join('\n')
          .trim()
        assert.fail(`agent ${x.name} exited ${x.exitCode}:\n${(crash || x.stderr).slice(-3000)}`)
      }
    }
  }

  before(async function () {
    requireSystem.call(this, ['root', 'netns', 'iptables'])
    lab = new Lab()
    const seg = lab.segment('pub')
    for (let i = 1; i <= 5; i++) {
      const dir = mkdtempSync(join(tmpdir(), 'mesh-sys-'))
      dirs.push(dir)
      agents.push(new NsAgent(lab, lab.host(`m${i}`, seg), dir, `m${i}`))
    }
    const [first, ...rest] = agents
    const init = await mesh(['--data-dir', first.dataDir, 'init', '--cluster', 'netlab'])
    assert.equal(init.code, 0, init.stderr)
    first.start()
    await first.ready()
    // one after the other (four agents starting at once on two cores can outlast a join)
    for (const x of rest) {
      const { token } = await meshJson<{ token: string }>(first.dataDir, ['invite'])
      x.start(['--join', token])
      await x.ready()
    }
    for (const x of agents) logs.push(new EventLog(x))
    await waitFor(
      'all five to list five alive members',
      async () => {
        const views = await Promise.all(agents.map((x) => x.members()))
        return views.every((v) => v.length === 5 && v.every((r) => r.status === 'alive'))
      },
      60_000,
      500,
    )
  })

  after(async () => {
    for (const h of hogs) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL')
    await Promise.all(logs.map((l) => l.close()))
    // SIGTERM, then SIGKILL after the grace time; then every namespace goes
    await lab?.cleanup(3_000)
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it('every agent listens on its own lab address and reaches the others directly', async () => {
    for (const x of agents) {
      const v = await x.members()
      const self = v.find((r) => r.self)!
      assert.ok(
        self.addrs.some((a) => a.startsWith(`/ip4/${x.host.ip}/tcp/4701`)),
        self.addrs.join(' '),
      )
      assert.ok(
        self.addrs.every((a) => !a.startsWith('/ip4/127.')),
        'no loopback address is advertised',
      )
    }
  })

  it('partition {2} | {3}: each side marks the other dead, its own side stays alive (bound 60 s)', async () => {
    const left = agents.slice(0, 2)
    const right = agents.slice(2)
    const t0 = Date.now()
    for (const x of left) for (const y of right) lab!.block(x.host, y.host)
    // the firewall really cuts the groups apart, and only them
    assert.equal(await lab!.ping(left[0].host, right[0].host, 1), false, 'm1 -> m3 blocked')
    assert.ok(await lab!.ping(left[0].host, left[1].host, 1), 'm1 -> m2 open')
    const seen = new Map<NsAgent, number>()
    await waitFor(
      'each side to list the other side dead and its own side alive',
      async () => {
        assertRunning()
        await Promise.all(
          agents.map(async (x) => {
            if (seen.has(x)) return
            const v = await x.members()
            const [mine, theirs] = left.includes(x) ? [left, right] : [right, left]
            const st = (y: NsAgent) => v.find((r) => r.peerId === y.peerId)?.status
            if (mine.every((y) => st(y) === 'alive') && theirs.every((y) => st(y) === 'dead'))
              seen.set(x, Date.now() - t0)
          }),
        )
        return seen.size === agents.length
      },
      60_000,
      500,
    )
    console.log(
      `      partition: other side dead after ${agents.map((x) => `${x.name} ${(seen.get(x)! / 1000).toFixed(1)} s`).join(', ')}`,
    )
    // nobody declared a member of its own side dead
    for (const [i, l] of logs.entries()) {
      const mine = (i < 2 ? left : right).map((y) => y.peerId)
      const wrong = l.changes.filter((c) => c.at >= t0 && c.after === 'dead' && mine.includes(c.peerId))
      assert.deepEqual(wrong, [], `${agents[i].name} declared a reachable member dead`)
    }
  })

  it('heal: both sides converge to the same table with all five alive (bound 60 s)', async () => {
    const left = agents.slice(0, 2)
    const right = agents.slice(2)
    const t0 = Date.now()
    for (const x of left) for (const y of right) lab!.unblock(x.host, y.host)
    assert.ok(await lab!.ping(left[0].host, right[0].host, 2), 'm1 -> m3 open again')
    await waitFor(
      'all five to agree on five alive members',
      async () => {
        assertRunning()
        const views = await Promise.all(agents.map((x) => x.members()))
        const first = JSON.stringify(summary(views[0]))
        return views.every(
          (v) =>
            v.length === 5 && v.every((r) => r.status === 'alive') && JSON.stringify(summary(v)) === first,
        )
      },
      60_000,
      500,
    )
    console.log(`      heal: one table, all alive, after ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    // and the same through the CLI (peer IDs and statuses: a record may still be re-signed with
    // new relay addresses right after a heal, which moves its incarnation but not its status)
    const cli = await Promise.all(agents.map((x) => meshJson<MemberView[]>(x.dataDir, ['members'])))
    const ps = (v: MemberView[]) => v.map((r) => `${r.peerId} ${r.status}`).sort()
    for (const v of cli) assert.deepEqual(ps(v), ps(cli[0]))
    assert.ok(cli[0].every((r) => r.status === 'alive'))
  })

  it('no false positive under a CPU hog (two busy loops for 30 s): no healthy member is marked dead', async () => {
    assertRunning()
    const t0 = Date.now()
    for (let i = 0; i < 2; i++) {
      // bounded by itself (30 s) and killed in `after` if it outlives the test
      const h = spawn(
        process.execPath,
        ['-e', 'const end = Date.now() + 30000; while (Date.now() < end) {}'],
        {
          stdio: 'ignore',
        },
      )
      hogs.push(h)
    }
    await Promise.all(
      hogs.map(
        (h) =>
          new Promise<void>((resolve) => {
            if (h.exitCode !== null || h.signalCode !== null) return resolve()
            const t = setTimeout(() => {
              h.kill('SIGKILL')
              resolve()
            }, 40_000)
            h.once('exit', () => {
              clearTimeout(t)
              resolve()
            })
          }),
      ),
    )
    // every member alive everywhere means no suspicion is outstanding either; then look back
    await waitFor(
      'all five alive on every member after the hog',
      async () => {
        assertRunning()
        const views = await Promise.all(agents.map((x) => x.members()))
        return views.every((v) => v.length === 5 && v.every((r) => r.status === 'alive'))
      },
      40_000,
      500,
    )
    const during = logs.map((l) => l.changes.filter((c) => c.at >= t0))
    const all = during.flat()
    console.log(
      `      CPU hog: ${all.filter((c) => c.after === 'suspect').length} suspicion(s) raised and refuted, ` +
        `${all.filter((c) => c.after === 'dead').length} death(s)`,
    )
    for (const [i, ch] of during.entries()) {
      assert.deepEqual(
        ch.filter((c) => c.after === 'dead' || c.after === 'left'),
        [],
        `${agents[i].name} marked a healthy member dead`,
      )
    }
  })
})
