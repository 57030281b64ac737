// Elections under churn: the real election core (src/election/ElectionCore) on every simulated
// member, riding on the simulated membership as an Extension. Messages go out on the simulated
// gossip ('ext' channel); every death the member's own membership table accepts is fed to its
// core, and passed on when it moved an election, as the agent does. A restarted member gets a
// fresh core (its state is lost in a crash); a vote it signs again comes out the same (core.ts
// voteTiebreak), so a lost vote is no equivocation.
//
// Reported: decision time (request created -> first winner acts), how requests ended, and the
// safety property: never two live members acting (allocating) for one request at once.
import { type Assessment, type Effect, ElectionCore, type Message } from '../src/election/index.js'
import { nullCrypto, signClaim } from '../src/membership/record.js'
import { quantile } from './metrics.js'
import type { SimNode } from './node.js'
import { mix32, mulberry32, type Rng, randInt } from './rng.js'
import type { Extension, Sim } from './sim.js'

export interface ElectionParams {
  /** a new request every this many ms, from a random live member */
  everyMs: number
  /** no requests before this (the cluster forms first) */
  startMs: number
  /** nor after this, so the last ones can settle */
  stopMs: number
  /** the winner's allocation takes this long (uniform up to it) */
  allocateMs: number
  /** fraction of winners whose allocation fails (they report ERROR: a new round) */
  errorFrac: number
  roundTimeoutMs: number
  seed: number
}

interface Replica {
  core: ElectionCore
  epoch: number
  wakeAt: number
}

const BYTES: Record<Message['kind'], number> = { request: 260, vote: 230, report: 240, cancel: 150 }
const CLAIM_BYTES = 150

export class ElectionExt implements Extension {
  readonly name = 'election'
  private sim!: Sim
  private readonly rng: Rng
  private readonly replicas = new Map<number, Replica>()
  /** request -> the members acting for it now */
  private readonly acting = new Map<string, Set<number>>()
  private readonly created = new Map<string, number>()
  private readonly decided = new Map<string, number>()
  readonly violations: string[] = []
  private readonly counts = {
    requests: 0,
    acts: 0,
    allocated: 0,
    errors: 0,
    noCandidate: 0,
    standDowns: 0,
    lateStops: 0,
  }

  constructor(readonly p: ElectionParams) {
    this.rng = mulberry32(mix32(p.seed, 0xe1ec))
  }

  private get wall(): number {
    return this.sim.opts.wallStartMs + this.sim.now
  }

  attach(sim: Sim): void {
    this.sim = sim
    for (let t = this.p.startMs; t < this.p.stopMs; t += this.p.everyMs) sim.at(t, () => this.request())
  }

  onStart(node: SimNode): void {
    const core = new ElectionCore({
      signer: node.signer,
      verifier: nullCrypto.verifier,
      rng: mulberry32(mix32(this.p.seed, node.idx * 977 + node.epoch)),
      roundTimeoutMs: this.p.roundTimeoutMs,
    })
    this.replicas.set(node.idx, { core, epoch: node.epoch, wakeAt: Number.POSITIVE_INFINITY })
  }

  onStop(node: SimNode): void {
    this.replicas.delete(node.idx)
    for (const set of this.acting.values()) set.delete(node.idx)
  }

  onChange(node: SimNode, change: Parameters<NonNullable<Extension['onChange']>>[1]): void {
    if (change.after !== 'dead' || change.entry.claim === undefined) return
    const r = this.replicas.get(node.idx)
    if (r === undefined) return
    const c = change.entry.claim
    // as the agent does: the table's claim and our own (a death counts once a majority of the
    // other voters signed one)
    const claims =
      c.by === node.peerId || c.peerId === node.peerId
        ? [c]
        : [c, signClaim({ peerId: c.peerId, incarnation: c.incarnation, status: 'dead' }, node.signer)]
    const accepted = r.core.counters.accepted
    this.handle(node, r, r.core.ingestAll(claims, this.wall))
    // a claim that moved an election is passed on (a member whose table saw the refutation
    // first never takes it from its table)
    if (r.core.counters.accepted > accepted)
      for (const x of claims) this.sim.publishExt(node, this.name, x, CLAIM_BYTES)
  }

  onMessage(node: SimNode, _from: SimNode, body: unknown): void {
    const r = this.replicas.get(node.idx)
    if (r !== undefined && node.up) this.handle(node, r, r.core.ingest(body as Message, this.wall))
  }

  private request(): void {
    const live = this.sim.liveNodes().filter((i) => this.replicas.has(i) && !this.sim.nodes[i].left)
    if (live.length === 0) return
    const node = this.sim.nodes[live[randInt(this.rng, live.length)]]
    const r = this.replicas.get(node.idx)!
    const voters = [{ peerId: node.peerId, incarnation: node.self.incarnation }]
    for (const row of node.table.rows())
      if (row.status === 'alive' && row.peerId !== node.peerId)
        voters.push({ peerId: row.peerId, incarnation: row.entry.signed.info.incarnation })
    const { request, effects } = r.core.create({ computeType: 'sim', voters }, this.wall)
    this.counts.requests++
    this.created.set(request.id, this.sim.now)
    this.handle(node, r, effects)
  }

  private live(node: SimNode, r: Replica): boolean {
    return node.up && node.epoch === r.epoch && this.replicas.get(node.idx) === r
  }

  private handle(node: SimNode, r: Replica, effects: Effect[]): void {
    for (const e of effects) {
      switch (e.type) {
        case 'send':
          this.sim.publishExt(
            node,
            this.name,
            e.msg,
            BYTES[e.msg.kind] + (e.msg.kind === 'request' ? 45 * e.msg.voters.length : 0),
          )
          // gossip does not loop back to the sender
          break
        case 'vote-needed': {
          const a = this.assess(node, e.requestId)
          this.sim.at(this.sim.now + 1 + randInt(this.rng, 40), () => {
            if (this.live(node, r)) this.handle(node, r, r.core.vote(e.requestId, e.round, a, this.wall))
          })
          break
        }
        case 'act':
          this.act(node, r, e.requestId, e.round)
          break
        case 'stand-down':
          this.counts.standDowns++
          this.acting.get(e.requestId)?.delete(node.idx)
          break
        case 'no-candidate':
          if (node.peerId === r.core.view(e.requestId)?.request.requester) this.counts.noCandidate++
          break
        default:
          break
      }
    }
    this.wake(node, r)
  }

  /** Whether a member can take a request is fixed per member and request; scores vary. */
  private assess(node: SimNode, requestId: string): Assessment {
    const h = mulberry32(mix32(node.idx, Number.parseInt(requestId.slice(0, 8), 16)))
    if (h() < 0.7) return { yes: true, reasons: [], score: Math.floor(h() * 4) }
    return { yes: false, reasons: ['capacity'], score: 0 }
  }

  private act(node: SimNode, r: Replica, id: string, round: number): void {
    this.counts.acts++
    if (!this.decided.has(id)) this.decided.set(id, this.sim.now - (this.created.get(id) ?? this.sim.now))
    let set = this.acting.get(id)
    if (set === undefined) {
      set = new Set()
      this.acting.set(id, set)
    }
    for (const other of set)
      if (other !== node.idx && this.sim.nodes[other].up)
        this.violations.push(
          `${id}: ${this.sim.nodes[other].peerId} and ${node.peerId} act at once (round ${round})`,
        )
    set.add(node.idx)
    const fail = this.rng() < this.p.errorFrac
    this.sim.at(this.sim.now + 1 + randInt(this.rng, this.p.allocateMs), () => {
      if (!this.live(node, r)) return
      const out = r.core.report(
        id,
        fail ? 'ERROR' : 'ALLOCATED',
        { instance: `${id.slice(0, 6)}-${round}` },
        this.wall,
      )
      if (out.length === 0) return
      // stood down while it started: the core says undo it (the agent deallocates)
      if (out.every((x) => x.type === 'stand-down')) {
        this.counts.lateStops++
        this.handle(node, r, out)
        return
      }
      if (fail) {
        this.counts.errors++
        set.delete(node.idx)
      } else this.counts.allocated++
      this.handle(node, r, out)
    })
  }

  private wake(node: SimNode, r: Replica): void {
    const t = Math.max(this.wall, r.core.nextWakeup())
    if (!Number.isFinite(t) || t >= r.wakeAt) return
    r.wakeAt = t
    this.sim.at(t - this.sim.opts.wallStartMs, () => {
      if (r.wakeAt !== t) return
      r.wakeAt = Number.POSITIVE_INFINITY
      if (this.live(node, r)) this.handle(node, r, r.core.tick(this.wall))
    })
  }

  /** Requests whose creator is still up and that never reached a winner or an end. */
  private undecided(): number {
    let n = 0
    for (const [i, r] of this.replicas) {
      if (!this.sim.nodes[i].up) continue
      for (const id of r.core.ids()) {
        const v = r.core.view(id)
        if (v?.request.requester === this.sim.nodes[i].peerId && r.core.status(id) === 'voting') n++
      }
    }
    return n
  }

  report(): Record<string, unknown> {
    const d = [...this.decided.values()].sort((a, b) => a - b)
    return {
      ...this.counts,
      decided: d.length,
      decisionP50Ms: d.length > 0 ? quantile(d, 0.5) : null,
      decisionP99Ms: d.length > 0 ? quantile(d, 0.99) : null,
      stillVoting: this.undecided(),
      safetyViolations: this.violations.length,
      violations: this.violations.slice(0, 10),
    }
  }
}
