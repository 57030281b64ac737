// The chaos run of issue 16 (root): members each in their own network namespace, and a seeded
// sequence of faults while puts and elections go on. A step is one fault with one operation
// during it:
//
// - kill -9 of a "machine": every process in one namespace (the agent and the instances it
//   started), as a power cut would; it stays down until a later restart;
// - restart of the member that is down;
// - partition: a minority cut off from the rest by firewall rules for 8-20 s, then healed;
// - CPU starvation: the agent SIGSTOPped for 2-14 s (its instances keep running), then SIGCONT;
//
// and the operation, from a member the fault leaves alone: `put --replicas 2 --tag` of a seeded
// dataset, or `request create` of a compute type every member can run (an instance that sleeps).
//
// After every step, bounded by CONVERGE_MS from the end of the fault (or the operation's answer,
// when later): every live member sees every live one alive; every request is known to every
// live member in one state: allocated with exactly one instance of it running, on the winner
// (no request allocated twice), or ended no-candidate with none running; then every
// acknowledged dataset is fetched byte for byte from a random live member.
//
// CI runs a short version (MESH_CHAOS_AGENTS=4, MESH_CHAOS_STEPS=4: each kind of fault once).
// `npm run chaos` runs 7 agents for 10 minutes (MESH_CHAOS_MINUTES). MESH_CHAOS_SEED picks the
// sequence; the seed is printed so that a failure reproduces.
import { strict as assert } from 'node:assert'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { RequestSummary } from '../../src/election/component.js'
import { mulberry32 } from '../../src/membership/swim.js'
import { seededBytes as bytes } from '../integration/cluster-harness.js'
import { type Host, requireSystem } from './harness.js'
import { type Agent, ok, sleep, World, waitFor } from './world.js'

const N = Math.min(9, Math.max(3, Number(process.env.MESH_CHAOS_AGENTS ?? 4)))
const STEPS = Math.max(1, Number(process.env.MESH_CHAOS_STEPS ?? 4))
const MINUTES = Number(process.env.MESH_CHAOS_MINUTES ?? 0)
const SEED = Number(process.env.MESH_CHAOS_SEED ?? 16)
// the stated bound: membership, elections and instances settled this long after the end of the
// last fault (a 2-core machine shared with other suites: one step at load 30 took 134 s)
const CONVERGE_MS = 180_000
const SIZE = 256 << 10
const ENV = {
  MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn',
  MESH_WEBRTC__ENABLED: 'false',
  MESH_BLOCKS__TAG_SYNC_INTERVAL_MS: '5000',
}
const IP = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => existsSync(p)) ?? 'ip'

type Fault = 'kill' | 'restart' | 'partition' | 'stop'

interface Member {
  name: string
  host: Host
  dir: string
  agent: Agent
  up: boolean
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0
}

describe(`system: chaos, ${N} agents in netns, ${MINUTES > 0 ? `${MINUTES} min` : `${STEPS} steps`} (seed ${SEED}) of kill -9, restart, partition and SIGSTOP while puts and elections go on`, function () {
  this.timeout(600_000 + STEPS * 300_000 + MINUTES * 120_000)
  let w: World | undefined
  const members: Member[] = []
  const acked: Array<{ tag: string; seed: number }> = []
  const requests: string[] = []
  /** requests that ended no-candidate and were placed again (followed by requestsSettled) */
  const placedAgain = new Set<string>()

  const extra = (h: Host) => ['--announce', `/ip4/${h.ip}/tcp/4701`]

  before(async function () {
    requireSystem.call(this, ['root', 'netns', 'iptables'])
    w = new World()
    const seg = w.lab.segment('pub')
    for (let i = 1; i <= N; i++) {
      const name = `x${i}`
      const dir = join(w.tmp, `agent-${name}`)
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      // every member can run `sleeper`: an instance that records its process group and sleeps
      const cmd = `echo $$ $MESH_INSTANCE >> ${join(dir, 'instances.pids')}; exec sleep 100000`
      writeFileSync(
        join(dir, 'config.yaml'),
        `elections:\n  roundTimeoutMs: 60000\n  commands:\n    sleeper: ${JSON.stringify(cmd)}\n`,
      )
      members.push({ name, host: w.lab.host(name, seg), dir, agent: undefined as never, up: true })
    }
    const [first, ...rest] = members
    ok(await w.mesh({ dir: first.dir } as Agent, ['init', '--cluster', 'chaos']), 'mesh init')
    first.agent = w.agent(first.name, first.host, extra(first.host), ENV)
    await ready(first)
    // one join at a time: concurrent joins to one inviter fail on a loaded machine
    for (const m of rest) {
      m.agent = w.agent(m.name, m.host, ['--join', await w.invite(first.agent), ...extra(m.host)], ENV)
      await ready(m)
    }
    await membersConverged()
  })

  after(async () => {
    // instances are detached process groups: stop every one this run started
    for (const m of members) for (const { pgid } of instances(m)) killGroup(pgid)
    await w?.cleanup()
  })

  const live = () => members.filter((m) => m.up)

  /** The agent answers; start-up is CPU-bound, and at load 100 on 2 cores a restart took over 60 s. */
  const ready = (m: Member) =>
    waitFor(
      `agent ${m.name} to answer`,
      async () => {
        if (m.agent.child.exitCode !== null)
          throw new Error(`agent ${m.name} exited ${m.agent.child.exitCode}: ${w!.tail(m.agent)}`)
        return w!.json(m.agent, ['status'])
      },
      CONVERGE_MS,
      500,
    )

  function killGroup(pgid: number): void {
    try {
      process.kill(-pgid, 'SIGKILL')
    } catch {}
  }

  function groupAlive(pgid: number): boolean {
    try {
      process.kill(-pgid, 0)
      return true
    } catch {
      return false
    }
  }

  /** Instances a member's sleeper ever started: process group and instance name. */
  function instances(m: Member): Array<{ pgid: number; instance: string }> {
    const f = join(m.dir, 'instances.pids')
    if (!existsSync(f)) return []
    return readFileSync(f, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        const [pid, instance] = l.split(' ')
        return { pgid: Number(pid), instance }
      })
  }

  /** A power cut: every process in the member's namespace, the agent and its instances. */
  async function crash(m: Member): Promise<void> {
    const out = execFileSync(IP, ['netns', 'pids', m.host.ns], { encoding: 'utf8', timeout: 15_000 })
    for (const pid of out.split(/\s+/).filter((s) => /^\d+$/.test(s))) {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {}
    }
    for (const { pgid } of instances(m)) killGroup(pgid)
    m.up = false
    await waitFor(
      `${m.name} gone`,
      async () => m.agent.child.exitCode !== null || m.agent.child.signalCode !== null,
      15_000,
      100,
    )
  }

  async function restart(m: Member): Promise<void> {
    m.agent = w!.agent(m.name, m.host, extra(m.host), ENV)
    await ready(m)
    m.up = true
  }

  function assertRunning(): void {
    for (const m of live())
      if (m.agent.child.exitCode !== null)
        assert.fail(`agent ${m.name} exited ${m.agent.child.exitCode}: ${w!.tail(m.agent)}`)
  }

  async function membersConverged(timeoutMs = CONVERGE_MS): Promise<void> {
    const want = live().length
    await waitFor(
      `the ${want} live members to see each other alive`,
      async () => {
        assertRunning()
        for (const m of live()) {
          const rows = await w!.json<any[]>(m.agent, ['members'])
          if (rows.filter((r) => r.status === 'alive').length !== want) return false
        }
        return true
      },
      timeoutMs,
      500,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}; who sees whom:\n${await views()}`)
    })
  }

  /**
   * Each live member's view, for a convergence failure: every other member's status and
   * incarnation as it holds them, and whom it holds an admitted connection to.
   */
  async function views(): Promise<string> {
    const lines: string[] = []
    for (const m of live()) {
      try {
        const rows = await w!.json<any[]>(m.agent, ['members'])
        const status = await w!.json<{ connections: Array<{ peerId: string; admitted: boolean }> }>(m.agent, [
          'status',
        ])
        const nameOf = new Map(rows.map((r) => [r.peerId as string, r.name as string]))
        const held = rows
          .filter((r) => !r.self)
          .map((r) => `${r.name} ${r.status} #${r.incarnation}`)
          .join(', ')
        const conns = [
          ...new Set(
            status.connections.filter((c) => c.admitted).map((c) => nameOf.get(c.peerId) ?? c.peerId),
          ),
        ].sort()
        const self = rows.find((r) => r.self)
        lines.push(
          `  ${m.name} (#${self?.incarnation}) holds: ${held}; connected to: ${conns.join(', ') || 'none'}`,
        )
      } catch (e) {
        lines.push(`  ${m.name}: no answer (${(e as Error).message.split('\n')[0]})`)
      }
    }
    return lines.join('\n')
  }

  /**
   * Every request known to every live member with one winner, allocated, and exactly one of its
   * instances running, on that winner. Returns a description of what is not yet so.
   */
  async function requestsSettled(): Promise<string | undefined> {
    const peerOf = new Map<string, Member>()
    const views = new Map<Member, RequestSummary[]>()
    for (const m of live()) {
      const s = await w!.json<{ peerId: string }>(m.agent, ['status'])
      peerOf.set(s.peerId, m)
      views.set(m, await w!.json<RequestSummary[]>(m.agent, ['requests']))
    }
    const running = (instance: string | undefined) =>
      members.flatMap((m) =>
        instances(m)
          .filter((x) => x.instance === instance && groupAlive(x.pgid))
          .map(() => m.name),
      )
    for (const first of requests) {
      // a request that ended no-candidate may have been placed again (and that one again): the
      // last of the chain is the one that must be allocated; nothing may run for the others
      let id = first
      let r: RequestSummary | undefined
      for (;;) {
        const seen = [...views.entries()].map(([m, v]) => [m, v.find((x) => x.id === id)] as const)
        const missing = seen.filter(([, x]) => x === undefined).map(([m]) => m.name)
        if (missing.length > 0) return `${id.slice(0, 8)} unknown to ${missing.join(', ')}`
        const states = new Set(
          seen.map(([, x]) => `${x!.status} ${x!.winner ?? '-'} ${x!.round} ${x!.placedAgainAs ?? '-'}`),
        )
        if (states.size !== 1) return `${id.slice(0, 8)}: members disagree: ${[...states].join(' | ')}`
        r = seen[0][1]!
        if (r.status !== 'no-candidate' && r.placedAgainAs === undefined) break
        const left = running(`sleeper-${id.slice(0, 8)}`)
        if (left.length > 0) return `${id.slice(0, 8)} ended ${r.status}, yet runs on [${left.join(', ')}]`
        if (r.placedAgainAs === undefined) break
        placedAgain.add(first)
        id = r.placedAgainAs
      }
      // every voter declared dead, none back since at a new incarnation (or the requester is
      // down): an end, as long as nothing runs for it (README, issue 16)
      if (r.status === 'no-candidate') continue
      if (r.status !== 'allocated') return `${id.slice(0, 8)} is ${r.status} (round ${r.round})`
      const winner = peerOf.get(r.winner ?? '')
      if (winner === undefined) return `${id.slice(0, 8)}: winner ${r.winner} is not a live member`
      const on = running(r.instance)
      if (on.length !== 1 || on[0] !== winner.name)
        return `${id.slice(0, 8)} allocated on ${winner.name}, instance ${r.instance} running on [${on.join(', ')}]`
    }
    return undefined
  }

  /** Both of the above, within CONVERGE_MS of `since` (the end of the fault). */
  async function settled(since: number): Promise<void> {
    const left = () => Math.max(1_000, since + CONVERGE_MS - Date.now())
    await membersConverged(left())
    let why: string | undefined
    await waitFor(
      'every request allocated once, the same everywhere',
      async () => {
        assertRunning()
        why = await requestsSettled()
        return why === undefined
      },
      left(),
      1000,
    ).catch(async (err: Error) => {
      // what every live member holds of the requests, for the report
      const held: string[] = []
      for (const m of live())
        for (const id of requests) {
          const r = await w!.mesh(m.agent, ['request', 'show', id], 20_000)
          held.push(`--- ${m.name}: ${r.stdout}${r.stderr}`)
        }
      throw new Error(`${err.message}: ${why}\n${held.join('\n')}`)
    })
  }

  it('no acknowledged dataset lost, no request allocated twice, every member converged after every step', async () => {
    const rng = mulberry32(SEED)
    const pick = <T>(xs: T[]): T => xs[Math.floor(rng() * xs.length)]
    const between = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1))
    const started = Date.now()
    const converge: number[] = []
    const faults: Record<Fault, number> = { kill: 0, restart: 0, partition: 0, stop: 0 }
    let puts = 0
    let order: Fault[] = []
    let checks = 0

    /** The operation of a step, run by a member the fault leaves alone. */
    async function operate(step: number, by: Member): Promise<string> {
      if (rng() < 0.5) {
        const src = join(w!.tmp, `src-${step}`)
        mkdirSync(src)
        const seed = SEED * 1000 + step
        writeFileSync(join(src, 'data.bin'), bytes(SIZE, seed))
        const tag = `chaos:s${step}`
        puts++
        const p = await w!.mesh(by.agent, ['put', src, '--replicas', '2', '--tag', tag], 180_000)
        // not acknowledged is allowed (a holder was cut off); acknowledged must never be lost
        if (p.code === 0) acked.push({ tag, seed })
        return `put ${tag} on ${by.name}: ${p.code === 0 ? 'acknowledged' : `refused (${p.stderr.trim().split('\n').at(-1)})`}`
      }
      const r = await w!.mesh(by.agent, ['--json', 'request', 'create', '--compute-type', 'sleeper'], 60_000)
      if (r.code !== 0) return `request on ${by.name}: refused (${r.stderr.trim().split('\n').at(-1)})`
      const { id } = JSON.parse(r.stdout) as { id: string }
      requests.push(id)
      return `request ${id.slice(0, 8)} on ${by.name}`
    }

    for (let step = 0; step < STEPS || Date.now() - started < MINUTES * 60_000; step++) {
      // every four steps, each kind of fault once in a seeded order (a kill when one is down
      // becomes the restart, and the other way round)
      if (order.length === 0) {
        order = ['kill', 'restart', 'partition', 'stop']
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(rng() * (i + 1))
          ;[order[i], order[j]] = [order[j], order[i]]
        }
      }
      let fault = order.shift() as Fault
      const down = members.find((m) => !m.up)
      if (fault === 'kill' && down !== undefined) fault = 'restart'
      else if (fault === 'restart' && down === undefined) fault = 'kill'
      faults[fault]++
      let what: string
      if (fault === 'kill') {
        const victim = pick(live())
        await crash(victim)
        what = `kill -9 ${victim.name}; ${await operate(step, pick(live()))}`
      } else if (fault === 'restart') {
        const back = down as Member
        const op = operate(step, pick(live()))
        await restart(back)
        what = `restart ${back.name}; ${await op}`
      } else if (fault === 'partition') {
        const ups = [...live()]
        const cut: Member[] = []
        for (let k = between(1, Math.floor((ups.length - 1) / 2)); k > 0; k--)
          cut.push(ups.splice(Math.floor(rng() * ups.length), 1)[0])
        const ms = between(8_000, 20_000)
        for (const a of cut) for (const b of members) if (!cut.includes(b)) w!.lab.block(a.host, b.host)
        const op = operate(step, pick(ups))
        await sleep(ms)
        for (const a of cut) for (const b of members) if (!cut.includes(b)) w!.lab.unblock(a.host, b.host)
        what = `partition {${cut.map((m) => m.name).join(',')}} for ${ms} ms; ${await op}`
      } else {
        const victim = pick(live())
        const ms = between(2_000, 14_000)
        victim.agent.child.kill('SIGSTOP')
        const op = operate(step, pick(live().filter((m) => m !== victim)))
        await sleep(ms)
        victim.agent.child.kill('SIGCONT')
        what = `SIGSTOP ${victim.name} for ${ms} ms; ${await op}`
      }
      console.log(`      ${step}: ${what}`)
      // measured from the end of the fault, or from the operation's answer when that came later
      const from = Date.now()
      await settled(from)
      const took = Date.now() - from
      converge.push(took)
      // every acknowledged dataset, byte for byte, from a random live member
      for (const one of acked) {
        const by = pick(live())
        const dest = join(w!.tmp, `out-${step}-${one.tag.replace(':', '-')}`)
        const g = await w!.mesh(by.agent, ['get', one.tag, dest], 180_000)
        assert.equal(g.code, 0, `after step ${step} (${what}): ${one.tag} lost? ${g.stderr}`)
        assert.ok(readFileSync(join(dest, 'data.bin')).equals(bytes(SIZE, one.seed)), `${one.tag} bytes`)
        checks++
      }
      console.log(
        `      ${step}: settled ${took} ms after the fault; ${acked.length} datasets and ${requests.length} requests intact`,
      )
    }
    const noCandidate: string[] = []
    const held = await w!.json<RequestSummary[]>(live()[0].agent, ['requests'])
    for (const first of requests) {
      let r = held.find((x) => x.id === first)
      while (r?.placedAgainAs !== undefined) r = held.find((x) => x.id === r!.placedAgainAs)
      if (r?.status === 'no-candidate') noCandidate.push(first.slice(0, 8))
    }
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
    console.log(
      `      chaos: ${N} agents, ${converge.length} steps in ${((Date.now() - started) / 60_000).toFixed(1)} min (seed ${SEED}); ` +
        `faults: ${faults.kill} kill -9, ${faults.restart} restart, ${faults.partition} partition, ${faults.stop} SIGSTOP; ` +
        `${acked.length}/${puts} puts acknowledged, ${checks} dataset checks, ${requests.length} requests never allocated twice (${placedAgain.size} placed again; ${noCandidate.length} ended no-candidate: ${noCandidate.join(' ')}); ` +
        `settled after the fault p50 ${pct(converge, 50)} ms, max ${Math.max(...converge)} ms (bound ${CONVERGE_MS} ms); load ${load}`,
    )
  })
})
