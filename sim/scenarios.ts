// Scenarios: what happens to the cluster during a run. A scenario says how many members are
// formed at t = 0, how many the run may hold, and schedules its disruptions on the simulator
// (crashes, joins, leaves, restarts, partitions, slow nodes). Anything else that rides on the
// membership core, such as the election core, plugs in as an Extension (sim.ts): a scenario
// lists the extensions it needs and their report() lands in the summary.
import { ElectionExt } from './election.js'
import { mix32, mulberry32, type Rng, randInt, shuffle } from './rng.js'
import type { Extension, Sim } from './sim.js'

export interface ScenarioParams {
  nodes: number
  durationMs: number
  seed: number
  /** when the first disruption happens: the cluster runs steady until then */
  startMs: number
  /** crash: this fraction of the members, at once */
  crashFraction: number
  /** partition: how long the cut lasts */
  partitionMs: number
  /** churn: membership events per minute, as a fraction of N */
  churnPerMin: number
  /** join storm: the joiners arrive over this long */
  stormMs: number
}

export const PARAM_DEFAULTS: Omit<ScenarioParams, 'nodes' | 'durationMs' | 'seed'> = {
  startMs: 30_000,
  crashFraction: 0.1,
  partitionMs: 60_000,
  churnPerMin: 0.02,
  stormMs: 30_000,
}

export interface Scenario {
  readonly name: string
  readonly summary: string
  /** false when it needs a core that does not exist yet; `why` says which */
  readonly available: boolean
  readonly why?: string
  /** members formed and connected at t = 0 */
  initial(p: ScenarioParams): number
  /** the most members the run may hold (for sizing) */
  expected(p: ScenarioParams): number
  /** schedule the disruptions; returns the time of the last one (ms), or undefined for none */
  plan(sim: Sim, p: ScenarioParams, rng: Rng): number | undefined
  /** extensions the scenario needs, attached before the cluster forms */
  extensions?(p: ScenarioParams): Extension[]
}

const liveExcept = (sim: Sim, rng: Rng, count: number): number[] =>
  shuffle(sim.liveNodes(), rng).slice(0, count)

export const steady: Scenario = {
  name: 'steady',
  summary: 'a formed cluster, nothing happens: the cost of standing still, and false positives',
  available: true,
  initial: (p) => p.nodes,
  expected: (p) => p.nodes,
  plan: () => undefined,
}

/**
 * Whom a joiner may redeem its invite at: where the model has light members, the full ones. A
 * real inviter holds every member; a light one outside the joiner's sample handed it no row and
 * kept none of it, and the joiner then never probed or synced with anyone (257 of 9,000 in the
 * 10,000 join storm, 2026-12-07; MODEL.md, Large clusters).
 */
function inviters(sim: Sim, live: number[]): number[] {
  const full = live.filter((i) => sim.isFull(i))
  return full.length > 0 ? full : live
}

export const joinStorm: Scenario = {
  name: 'join-storm',
  summary:
    '10% of the members are formed; the other 90% join within stormMs, each through a random formed member',
  available: true,
  initial: (p) => Math.max(2, Math.ceil(p.nodes / 10)),
  expected: (p) => p.nodes,
  plan(sim, p, rng) {
    const initial = this.initial(p)
    // a joiner redeems an invite from a member that issued it (an admin), so from a member that
    // was there before the storm, never from another joiner of the same storm
    const formed = inviters(sim, sim.liveNodes())
    let last = p.startMs
    for (let k = initial; k < p.nodes; k++) {
      const t = p.startMs + rng() * p.stormMs
      last = Math.max(last, t)
      sim.at(t, () => {
        const live = formed.filter((i) => sim.isUp(i))
        sim.join(live[randInt(rng, live.length)])
      })
    }
    return last
  },
}

export const crash: Scenario = {
  name: 'crash',
  summary: 'crashFraction (10%) of the members are killed (kill -9) within one second',
  available: true,
  initial: (p) => p.nodes,
  expected: (p) => p.nodes,
  plan(sim, p, rng) {
    let last = p.startMs
    sim.at(p.startMs, () => {
      const victims = liveExcept(sim, rng, Math.max(1, Math.round(p.nodes * p.crashFraction)))
      for (const v of victims) {
        const t = p.startMs + rng() * 1000
        last = Math.max(last, t)
        sim.at(t, () => sim.crash(v))
      }
    })
    return p.startMs + 1000
  },
}

export const partition: Scenario = {
  name: 'partition',
  summary: 'the members split in two random halves for partitionMs, then the cut heals',
  available: true,
  initial: (p) => p.nodes,
  expected: (p) => p.nodes,
  plan(sim, p, rng) {
    sim.at(p.startMs, () => {
      const half = new Set(shuffle(sim.liveNodes(), rng).slice(0, Math.floor(sim.live / 2)))
      sim.partition((i) => (half.has(i) ? 1 : 2))
    })
    sim.at(p.startMs + p.partitionMs, () => sim.heal())
    return p.startMs + p.partitionMs
  },
}

export const churn: Scenario = {
  name: 'churn',
  summary:
    'continuous joins, graceful leaves, crashes and restarts (churnPerMin of N per minute), then a quiet tail',
  available: true,
  initial: (p) => p.nodes,
  expected: (p) => p.nodes + Math.ceil(((p.nodes * p.churnPerMin * p.durationMs) / 60_000) * 0.4) + 8,
  plan(sim, p, rng) {
    const ratePerMs = (p.nodes * p.churnPerMin) / 60_000
    const tail = Math.min(120_000, p.durationMs / 4)
    const end = p.durationMs - tail
    const crashed: number[] = []
    let t = p.startMs
    let last: number | undefined
    for (;;) {
      t += -Math.log(1 - rng()) / ratePerMs
      if (t >= end) break
      last = t
      const r = rng()
      sim.at(t, () => {
        const live = sim.liveNodes()
        if (live.length < 3) return
        if (r < 0.3) {
          const via = inviters(sim, live)
          sim.join(via[randInt(rng, via.length)])
        } else if (r < 0.6) sim.leave(live[randInt(rng, live.length)])
        else if (r < 0.8 || crashed.length === 0) {
          const v = live[randInt(rng, live.length)]
          sim.crash(v)
          crashed.push(v)
        } else sim.restart(crashed.splice(randInt(rng, crashed.length), 1)[0])
      })
    }
    return last
  },
}

/**
 * Elections under churn: the churn above plus work requests (one every 2 s from a random live
 * member, to every member it holds alive), each voted on and decided by the real election core
 * on every member (sim/election.ts). Reports decision times and safety (two members acting for
 * one request at once).
 */
export const electionsChurn: Scenario = {
  name: 'elections-churn',
  summary: 'churn plus elections for work placement (the real election core on every member)',
  available: true,
  initial: churn.initial,
  expected: churn.expected,
  plan(sim, p, rng) {
    return churn.plan.call(this, sim, p, rng)
  },
  extensions: (p) => [
    new ElectionExt({
      everyMs: 2000,
      startMs: Math.min(p.startMs, p.durationMs / 4),
      stopMs: Math.max(p.durationMs - 60_000, p.durationMs / 2),
      allocateMs: 3000,
      errorFrac: 0.1,
      roundTimeoutMs: 30_000,
      seed: p.seed,
    }),
  ],
}

export const SCENARIOS: Record<string, Scenario> = {
  steady,
  'join-storm': joinStorm,
  crash,
  partition,
  churn,
  'elections-churn': electionsChurn,
}

export const scenarioRng = (seed: number): Rng => mulberry32(mix32(seed, 0x5ce))
