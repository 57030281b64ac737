import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  type Assessment,
  type Effect,
  ElectionCore,
  type ElectionOptions,
  explainRefusals,
  type Message,
  nextHistory,
  pickWinner,
  preferVote,
  type Request,
  type Status,
  signCancel,
  signReport,
  signRequest,
  signVote,
  type Vote,
  type VoteReason,
} from '../../src/election/index.js'
import { fromWire, toWire } from '../../src/election/wire.js'
import { type Claim, nullCrypto, signClaim } from '../../src/membership/record.js'
import { mulberry32 } from '../../src/membership/swim.js'

const peer = (c: string): string => `12D3KooWPeer${c.repeat(4)}`
const [A, B, C, D] = ['A', 'B', 'C', 'D'].map(peer)
const OBSERVER = peer('Z')
const REQUESTER = peer('R')
const T0 = 1_700_000_000_000
const sig = nullCrypto.signer

const yes = (score: number): Assessment => ({ yes: true, reasons: [], score })
const no = (...reasons: VoteReason[]): Assessment => ({
  yes: false,
  reasons,
  score: 0,
  note: reasons.join('+'),
})

function deadClaim(p: string, incarnation = 0, by = OBSERVER): Claim {
  return signClaim({ peerId: p, incarnation, status: 'dead' }, sig(by))
}

function core(self: string, seed: number, opts: Partial<ElectionOptions> = {}): ElectionCore {
  return new ElectionCore({
    signer: sig(self),
    verifier: nullCrypto.verifier,
    rng: mulberry32(seed),
    roundTimeoutMs: 5_000,
    resendMs: 0,
    ...opts,
  })
}

/**
 * Members that deliver every 'send' to all others at once (a queue, so in order), answer
 * 'vote-needed' through `policy` and record every effect.
 */
class Bus {
  now = T0
  readonly cores = new Map<string, ElectionCore>()
  readonly log: Array<{ at: string; e: Effect }> = []
  readonly down = new Set<string>()
  /** messages not delivered to these members (a slow link) */
  readonly muted = new Set<string>()
  private readonly queue: Array<{ to: string; x: Message | Claim }> = []
  /** who acts now, per request; a second live one is recorded in `overlaps` */
  readonly acting = new Map<string, Set<string>>()
  readonly overlaps: string[] = []
  policy: (p: string, r: Request, round: number) => Assessment | undefined = () => yes(1)

  constructor(ids: string[], opts: Partial<ElectionOptions> = {}) {
    for (const [i, id] of ids.entries()) this.cores.set(id, core(id, 100 + i, opts))
  }

  get(p: string): ElectionCore {
    return this.cores.get(p)!
  }

  handle(p: string, effects: Effect[]): void {
    for (const e of effects) {
      this.log.push({ at: p, e })
      if (e.type === 'act') {
        const set = this.acting.get(e.requestId) ?? new Set<string>()
        this.acting.set(e.requestId, set)
        for (const q of set) if (q !== p && !this.down.has(q)) this.overlaps.push(`${p} acts while ${q} does`)
        set.add(p)
      }
      if (e.type === 'stand-down') this.acting.get(e.requestId)?.delete(p)
      if (e.type === 'send')
        for (const q of this.cores.keys()) if (q !== p) this.queue.push({ to: q, x: e.msg })
      if (e.type === 'vote-needed') {
        const a = this.policy(p, e.request, e.round)
        if (a !== undefined) this.handle(p, this.get(p).vote(e.requestId, e.round, a, this.now))
      }
    }
  }

  flush(): void {
    for (let m = this.queue.shift(); m !== undefined; m = this.queue.shift()) {
      if (this.down.has(m.to) || this.muted.has(m.to)) continue
      this.handle(m.to, this.get(m.to).ingest(m.x, this.now))
    }
  }

  /** The driver of `p` reports; a final report ends its acting. */
  report(p: string, id: string, state: 'ALLOCATED' | 'DEALLOCATED' | 'ERROR', detail = {}): Effect[] {
    const out = this.get(p).report(id, state, detail, this.now)
    if (out.length > 0 && state !== 'ALLOCATED') this.acting.get(id)?.delete(p)
    this.handle(p, out)
    this.flush()
    return out
  }

  request(by: string, voters = [...this.cores.keys()], computeType = 'docker'): Request {
    const { request, effects } = this.get(by).create(
      { computeType, voters: voters.map((peerId) => ({ peerId, incarnation: 0 })) },
      this.now,
    )
    this.handle(by, effects)
    this.flush()
    return request
  }

  /** `p` crashes; the membership tells everyone else. */
  kill(p: string): void {
    this.down.add(p)
    this.announceDeath(p)
  }

  /** Every live member but `p` signs that `p` is dead (each table sees it dead); `to` hear of it. */
  announceDeath(p: string, to = [...this.cores.keys()]): void {
    const claims = [...this.cores.keys()]
      .filter((q) => q !== p && !this.down.has(q))
      .map((q) => deadClaim(p, 0, q))
    for (const q of to) if (!this.down.has(q)) this.handle(q, this.get(q).ingestAll(claims, this.now))
    this.flush()
  }

  advance(ms: number): void {
    this.now += ms
    for (const [p, c] of this.cores) if (!this.down.has(p)) this.handle(p, c.tick(this.now))
    this.flush()
  }

  effects(type: Effect['type'], at?: string): Effect[] {
    return this.log.filter((l) => l.e.type === type && (at === undefined || l.at === at)).map((l) => l.e)
  }

  actors(): string[] {
    return this.log.filter((l) => l.e.type === 'act').map((l) => l.at)
  }

  views(
    id: string,
  ): Array<{ status: Status | undefined; round: number | undefined; winner: string | undefined }> {
    return [...this.cores.entries()]
      .filter(([p]) => !this.down.has(p))
      .map(([, c]) => {
        const v = c.view(id)
        return { status: v?.status, round: v?.round, winner: v?.winner }
      })
  }
}

const scores: Record<string, number> = {}
const byScore = (p: string): Assessment => yes(scores[p] ?? 1)

describe('election: core', () => {
  beforeEach(() => {
    for (const k of Object.keys(scores)) delete scores[k]
  })

  it('decides once every voter has voted: everyone picks the same winner, which acts and reports', () => {
    const bus = new Bus([A, B, C])
    Object.assign(scores, { [A]: 3, [B]: 7, [C]: 5 })
    bus.policy = byScore
    const r = bus.request(A)
    assert.deepEqual(bus.actors(), [B])
    for (const v of bus.views(r.id)) assert.deepEqual(v, { status: 'elected', round: 0, winner: B })
    const decided = bus.effects('decided')
    assert.equal(decided.length, 3)
    for (const d of decided) assert.ok(d.type === 'decided' && d.winner === B && d.round === 0)
    // the winner signed ELECTED
    const elected = bus.log.find((l) => l.e.type === 'send' && l.e.msg.kind === 'report')
    assert.ok(
      elected?.e.type === 'send' && elected.e.msg.kind === 'report' && elected.e.msg.state === 'ELECTED',
    )
    bus.handle(B, bus.get(B).report(r.id, 'ALLOCATED', { instance: 'web-1' }, bus.now))
    bus.flush()
    for (const p of [A, B, C]) {
      const v = bus.get(p).view(r.id)!
      assert.equal(v.status, 'allocated')
      assert.equal(v.instance, 'web-1')
    }
    // allocated: no timeout any more
    bus.advance(60_000)
    assert.equal(bus.get(C).status(r.id), 'allocated')
    bus.handle(B, bus.get(B).report(r.id, 'DEALLOCATED', { instance: 'web-1' }, bus.now))
    bus.flush()
    for (const v of bus.views(r.id)) assert.equal(v.status, 'deallocated')
    assert.equal(bus.effects('stand-down').length, 0)
  })

  it('ties: the higher tiebreak wins, then the smaller peer ID', () => {
    const bus = new Bus([A, B, C])
    bus.policy = () => yes(4)
    const r = bus.request(A)
    const votes = bus.get(A).view(r.id)!.rounds[0].votes
    const best = [...votes].sort((x, y) => y.tiebreak - x.tiebreak)[0]
    assert.equal(bus.get(A).view(r.id)!.winner, best.voter)
  })

  it('a voter that lost its state votes again with the very same vote: no equivocation, one winner', () => {
    // killed before its vote was saved (or the simulator's crash): it restarts with a fresh core
    // and another rng, hears the request again and votes again in the same round
    const bus = new Bus([A, B, C])
    bus.policy = () => yes(4)
    const r = bus.request(A)
    const first = bus
      .get(B)
      .view(r.id)!
      .rounds[0].votes.find((v) => v.voter === B)!
    const winner = bus.get(A).view(r.id)!.winner
    const again = core(B, 999)
    const votes: Vote[] = []
    for (const e of again.ingest(r, bus.now))
      if (e.type === 'vote-needed')
        for (const x of again.vote(r.id, 0, yes(4), bus.now))
          if (x.type === 'send' && x.msg.kind === 'vote') votes.push(x.msg)
    assert.equal(votes.length, 1)
    assert.deepEqual(toWire(votes[0]), toWire(first))
    for (const p of [A, C]) {
      const out = bus.get(p).ingest(votes[0], bus.now)
      assert.equal(out.filter((e) => e.type === 'misbehaviour').length, 0)
      assert.equal(bus.get(p).view(r.id)!.winner, winner)
    }
    // the restarted voter, told the others' votes, names the same winner
    for (const p of [A, C]) for (const v of bus.get(p).view(r.id)!.rounds[0].votes) again.ingest(v, bus.now)
    assert.equal(again.view(r.id)!.winner, winner)
  })

  it('waits for a missing voter until it votes or is declared dead', () => {
    const bus = new Bus([A, B, C], { stallMs: 1000 })
    bus.policy = (p) => (p === C ? undefined : yes(1))
    const r = bus.request(A)
    assert.equal(bus.get(A).status(r.id), 'voting')
    assert.deepEqual(bus.get(A).view(r.id)!.waitingFor, [C])
    bus.advance(1000)
    const stalled = bus.effects('stalled', A)
    assert.ok(stalled.length === 1 && stalled[0].type === 'stalled' && stalled[0].waitingFor[0] === C)
    bus.kill(C)
    for (const v of bus.views(r.id)) assert.equal(v.status, 'elected')
    assert.equal(bus.actors().length, 1)
  })

  it('a winner that dies: a new round without it, and the next best acts', () => {
    const bus = new Bus([A, B, C, D])
    Object.assign(scores, { [A]: 1, [B]: 9, [C]: 5, [D]: 3 })
    bus.policy = byScore
    const r = bus.request(A)
    assert.deepEqual(bus.actors(), [B])
    bus.kill(B)
    for (const v of bus.views(r.id)) assert.deepEqual(v, { status: 'elected', round: 1, winner: C })
    assert.deepEqual(bus.actors(), [B, C])
    const nr = bus.effects('new-round', A)
    assert.ok(nr.length === 1 && nr[0].type === 'new-round' && nr[0].excluded === B && nr[0].why === 'dead')
    // round 1 has fresh votes, from the three that are left
    const v = bus.get(A).view(r.id)!
    assert.deepEqual(v.rounds[1].votes.map((x) => x.voter).sort(), [A, C, D])
    assert.deepEqual(v.excluded, [{ peer: B, round: 0, why: 'dead' }])
  })

  it('a revoked voter leaves every vote at once: a winner killed after a revocation does not stall the request', () => {
    // issue 16: `mesh revoke delta`, then kill -9 of the winner: the request stayed 'voting',
    // waiting for delta, until cancelled by hand
    const bus = new Bus([A, B, C, D], { stallMs: 1000 })
    Object.assign(scores, { [A]: 1, [B]: 9, [C]: 5, [D]: 3 })
    bus.policy = (p, _r, round) => (p === D && round > 0 ? undefined : byScore(p))
    const r = bus.request(A)
    assert.deepEqual(bus.actors(), [B])
    // D is revoked (cut off: it votes no more); every member holds the signed statement
    bus.down.add(D)
    for (const p of [A, B, C]) bus.handle(p, bus.get(p).revoke(D, bus.now))
    bus.kill(B)
    for (const v of bus.views(r.id)) assert.deepEqual(v, { status: 'elected', round: 1, winner: C })
    assert.deepEqual(bus.actors(), [B, C])
    assert.deepEqual(bus.get(A).view(r.id)!.waitingFor, [C], 'waiting for the winner, not for D')
    bus.advance(1000)
    assert.equal(bus.effects('stalled').length, 0, 'nothing stalls')
    // a revoked winner is replaced like a dead one
    const r2 = bus.request(A, [A, C, D])
    assert.equal(bus.get(A).status(r2.id), 'elected')
    assert.notEqual(bus.get(A).view(r2.id)!.winner, D)
  })

  it('a winner that does not report in time gives up: ERROR, stand-down, a new round without it', () => {
    const bus = new Bus([A, B, C], { roundTimeoutMs: 5000 })
    Object.assign(scores, { [A]: 1, [B]: 9, [C]: 5 })
    bus.policy = byScore
    const r = bus.request(A)
    bus.advance(4999)
    assert.equal(bus.get(A).status(r.id), 'elected')
    bus.advance(1)
    const sd = bus.effects('stand-down', B)
    assert.ok(sd.length === 1 && sd[0].type === 'stand-down' && sd[0].reason === 'timeout')
    for (const v of bus.views(r.id)) assert.deepEqual(v, { status: 'elected', round: 1, winner: C })
    assert.deepEqual(bus.actors(), [B, C])
    // too late now: nothing is reported, and what the allocation started is to be undone
    assert.deepEqual(bus.get(B).report(r.id, 'ALLOCATED', { instance: 'x' }, bus.now), [
      { type: 'stand-down', requestId: r.id, round: 1, reason: 'late' },
    ])
    // B's ERROR says why
    const err = bus
      .get(A)
      .view(r.id)!
      .rounds[0].reports.find((x) => x.member === B)
    assert.equal(err?.state, 'ERROR')
    assert.match(err?.note ?? '', /not allocated within 5000 ms/)
  })

  it('an allocation that finishes after its winner stood down is undone, not reported (chaos run: two members ran one request)', () => {
    // chaos-netns, seed 16: B won round 0 and began allocating; in the same batch of gossip
    // (after a SIGSTOP) it learnt that it had been declared dead and stood down, before the
    // allocation had started anything to stop. The instance then ran on beside round 1's
    // winner's for good, with B's report left at ELECTED.
    const bus = new Bus([A, B, C, D])
    Object.assign(scores, { [A]: 1, [B]: 9, [C]: 5, [D]: 3 })
    bus.policy = byScore
    const r = bus.request(A)
    assert.deepEqual(bus.actors(), [B])
    bus.down.add(B)
    bus.announceDeath(B, [A, C, D])
    bus.down.delete(B)
    bus.announceDeath(B, [B])
    const sd = bus.effects('stand-down', B)
    assert.ok(sd.length === 1 && sd[0].type === 'stand-down' && sd[0].reason === 'declared-dead')
    // the allocation B began as the winner ends now, too late
    const out = bus.get(B).report(r.id, 'ALLOCATED', { instance: 'sleeper-1' }, bus.now)
    assert.deepEqual(out, [{ type: 'stand-down', requestId: r.id, round: 1, reason: 'late' }])
    // and nothing about it reaches the others: round 1's winner is the only one allocated
    bus.handle(C, bus.get(C).report(r.id, 'ALLOCATED', { instance: 'sleeper-2' }, bus.now))
    bus.flush()
    // B missed round 1 while it was cut off: a sync brings it
    bus.handle(B, bus.get(B).ingestAll(bus.get(A).messages(r.id), bus.now))
    for (const p of [A, B, C, D]) {
      const v = bus.get(p).view(r.id)!
      assert.deepEqual([v.status, v.winner, v.instance], ['allocated', C, 'sleeper-2'])
      assert.equal(v.rounds[0].reports.find((x) => x.member === B)?.state, 'ELECTED')
    }
    // a failed start after the stand-down reports nothing and stops nothing more
    assert.deepEqual(bus.get(B).report(r.id, 'ERROR', { note: 'x' }, bus.now), [])
  })

  it('an ERROR from the winner starts a new round; when everyone failed, each one says why', () => {
    const bus = new Bus([A, B, C])
    bus.policy = (p) => (p === C ? no('compute-type') : yes(p === A ? 2 : 1))
    const r = bus.request(A)
    bus.handle(A, bus.get(A).report(r.id, 'ERROR', { note: 'docker run failed\nexit 125' }, bus.now))
    bus.flush()
    assert.deepEqual(bus.actors(), [A, B])
    bus.handle(B, bus.get(B).report(r.id, 'ERROR', { note: 'image not found' }, bus.now))
    bus.flush()
    for (const v of bus.views(r.id))
      assert.deepEqual(v, { status: 'no-candidate', round: 2, winner: undefined })
    const v = bus.get(C).view(r.id)!
    assert.deepEqual(v.reasons, {
      [A]: { reasons: ['failed'], note: 'won round 0, then failed: docker run failed exit 125' },
      [B]: { reasons: ['failed'], note: 'won round 1, then failed: image not found' },
      [C]: { reasons: ['compute-type'], note: 'compute-type' },
    })
  })

  it('no-candidate: every voter says no, with its reasons', () => {
    const bus = new Bus([A, B, C, D])
    const reasons: Record<string, VoteReason[]> = {
      [A]: ['compute-type'],
      [B]: ['capacity', 'maintenance'],
      [C]: ['filter'],
    }
    bus.policy = (p) => (p === D ? undefined : no(...reasons[p]))
    const r = bus.request(A)
    bus.kill(D)
    const nc = bus.effects('no-candidate', A)
    assert.equal(nc.length, 1)
    assert.ok(nc[0].type === 'no-candidate')
    assert.deepEqual(nc[0].reasons, {
      [A]: { reasons: ['compute-type'], note: 'compute-type' },
      [B]: { reasons: ['capacity', 'maintenance'], note: 'capacity+maintenance' },
      [C]: { reasons: ['filter'], note: 'filter' },
      [D]: { reasons: ['dead'], note: 'died before voting' },
    })
    assert.equal(
      explainRefusals(nc[0].reasons, (p) => p.slice(-1).toLowerCase()),
      'no member can run this: a: compute-type (compute-type); b: capacity, maintenance (capacity+maintenance); ' +
        'c: filter (filter); d: dead (died before voting)',
    )
    assert.equal(bus.actors().length, 0)
    for (const v of bus.views(r.id)) assert.equal(v.status, 'no-candidate')
  })

  it('cancel: the acting winner stands down and reports DEALLOCATED; nobody acts afterwards', () => {
    const bus = new Bus([A, B, C])
    Object.assign(scores, { [A]: 1, [B]: 9, [C]: 5 })
    bus.policy = byScore
    const r = bus.request(A)
    bus.handle(B, bus.get(B).report(r.id, 'ALLOCATED', { instance: 'i-1' }, bus.now))
    bus.flush()
    assert.deepEqual(bus.get(B).cancel(r.id, bus.now), [], 'only the requester cancels')
    bus.handle(A, bus.get(A).cancel(r.id, bus.now))
    bus.flush()
    const sd = bus.effects('stand-down', B)
    assert.ok(sd.length === 1 && sd[0].type === 'stand-down' && sd[0].reason === 'cancelled')
    for (const v of bus.views(r.id)) assert.equal(v.status, 'cancelled')
    bus.handle(B, bus.get(B).report(r.id, 'DEALLOCATED', { instance: 'i-1' }, bus.now))
    bus.flush()
    assert.equal(bus.get(C).view(r.id)!.report?.state, 'DEALLOCATED')
    bus.kill(B)
    bus.advance(10_000)
    assert.deepEqual(bus.actors(), [B])
    for (const v of bus.views(r.id)) assert.equal(v.status, 'cancelled')
  })

  it('cancel before the vote ends: nobody acts', () => {
    const bus = new Bus([A, B, C])
    bus.policy = (p) => (p === C ? undefined : yes(1))
    const r = bus.request(A)
    bus.handle(A, bus.get(A).cancel(r.id, bus.now))
    bus.flush()
    assert.deepEqual(bus.get(C).vote(r.id, 0, yes(1), bus.now), [])
    for (const v of bus.views(r.id)) assert.equal(v.status, 'cancelled')
    assert.equal(bus.actors().length, 0)
  })

  it('a member votes once per round, only in rounds it takes part in, never while dead', () => {
    const bus = new Bus([A, B, C])
    Object.assign(scores, { [A]: 1, [B]: 9, [C]: 5 })
    bus.policy = byScore
    const r = bus.request(A)
    assert.deepEqual(bus.get(A).vote(r.id, 0, yes(100), bus.now), [], 'voted already')
    assert.deepEqual(bus.get(A).vote(r.id, 1, yes(100), bus.now), [], 'not the current round')
    bus.handle(B, bus.get(B).report(r.id, 'ERROR', { note: 'boom' }, bus.now))
    bus.flush()
    // B won round 0, so it is not a voter of round 1
    assert.equal(bus.effects('vote-needed', B).length, 1)
    assert.deepEqual(bus.get(B).vote(r.id, 1, yes(100), bus.now), [])
    assert.equal(bus.effects('vote-needed', A).length, 2)
  })

  it("a partition: the minority's death claims do not count, the majority's do (a minority of one ended every open request)", () => {
    // chaos run, issue 16: D, cut off, declared A, B and C dead; once the partition healed,
    // everyone counted D's claims and the healthy request ended no-candidate
    const bus = new Bus([A, B, C, D])
    Object.assign(scores, { [A]: 1, [B]: 9, [C]: 5, [D]: 3 })
    bus.policy = byScore
    const r = bus.request(A)
    bus.handle(B, bus.get(B).report(r.id, 'ALLOCATED', { instance: 'i-1' }, bus.now))
    bus.flush()
    // D's claims about each of the majority, and the majority's about D, reach everyone
    const minority = [A, B, C].map((p) => deadClaim(p, 0, D))
    const majority = [A, B, C].map((by) => deadClaim(D, 0, by))
    for (const p of [A, B, C, D]) bus.handle(p, bus.get(p).ingestAll([...minority, ...majority], bus.now))
    bus.flush()
    for (const p of [A, B, C, D]) {
      const v = bus.get(p).view(r.id)!
      assert.deepEqual([v.status, v.winner, v.round], ['allocated', B, 0], p)
      assert.deepEqual(v.dead, [D], p)
    }
    assert.equal(bus.effects('stand-down').length, 0)
    // one claim of the majority's is not enough either (quorum: 2 of the 3 others)
    const bus2 = new Bus([A, B, C, D])
    bus2.policy = byScore
    const r2 = bus2.request(A)
    bus2.handle(A, bus2.get(A).ingest(deadClaim(B, 0, C), bus2.now))
    assert.deepEqual(bus2.get(A).view(r2.id)!.dead, [])
    bus2.handle(A, bus2.get(A).ingest(deadClaim(B, 0, D), bus2.now))
    assert.deepEqual(bus2.get(A).view(r2.id)!.dead, [B])
  })

  it('a winner falsely declared dead stands down when it hears of it', () => {
    const bus = new Bus([A, B, C])
    Object.assign(scores, { [A]: 1, [B]: 9, [C]: 5 })
    bus.policy = byScore
    const r = bus.request(A)
    bus.muted.add(B)
    bus.announceDeath(B, [A, C])
    assert.deepEqual(bus.actors(), [B, C], 'the known caveat: B does not know yet')
    bus.muted.delete(B)
    bus.announceDeath(B, [B])
    // anti-entropy brings B what it missed
    bus.handle(B, bus.get(B).ingestAll(bus.get(A).messages(r.id), bus.now))
    const sd = bus.effects('stand-down', B)
    assert.ok(sd.length === 1 && sd[0].type === 'stand-down' && sd[0].reason === 'declared-dead')
    assert.equal(bus.get(B).view(r.id)!.acting, false)
    assert.equal(bus.get(B).view(r.id)!.winner, C)
  })

  it('a late vote from a dead voter that would have won: the acting member stands down before voting again', () => {
    // A, B, C vote; C's yes vote (the best) reaches only A before C dies
    const bus = new Bus([A, B, C])
    Object.assign(scores, { [A]: 1, [B]: 5, [C]: 9 })
    bus.policy = (p) => (p === C ? undefined : byScore(p))
    const r = bus.request(A)
    const cv = bus.get(C).vote(r.id, 0, yes(9), bus.now)
    const cVote = (cv.find((e) => e.type === 'send') as { msg: Message }).msg
    bus.down.add(C)
    bus.handle(A, bus.get(A).ingest(cVote, bus.now))
    bus.announceDeath(C, [B])
    // B: C dead and no vote from it, so B won round 0
    assert.deepEqual(bus.actors(), [B])
    bus.announceDeath(C, [A])
    bus.flush()
    // A (has C's vote) thinks C, dead, won round 0: round 1 needs B's vote, which B gives only
    // once it holds C's vote too
    assert.equal(bus.get(A).view(r.id)!.round, 1)
    assert.equal(bus.get(A).status(r.id), 'voting')
    bus.handle(B, bus.get(B).ingest(cVote, bus.now))
    bus.flush()
    const i = bus.log.findIndex((l) => l.at === B && l.e.type === 'stand-down')
    const j = bus.log.findIndex(
      (l) => l.at === B && l.e.type === 'send' && l.e.msg.kind === 'vote' && l.e.msg.round === 1,
    )
    assert.ok(i >= 0 && j > i, 'stand-down before the round 1 vote')
    for (const v of bus.views(r.id)) assert.deepEqual(v, { status: 'elected', round: 1, winner: B })
    assert.deepEqual(bus.actors(), [B, B])
  })

  it('a vote counts only in the round and history it was cast in: members that briefly disagree never both act', () => {
    // U votes best and dies; its vote reaches only W. V, W, X then hold different round 0
    // winners: U (dead) for W, V for V and X. V fails, and each side goes on to its own round 1
    const [U, V, W, X] = ['U', 'V', 'W', 'X'].map(peer)
    const bus = new Bus([U, V, W, X])
    Object.assign(scores, { [U]: 9, [V]: 5, [X]: 3, [W]: 1 })
    bus.policy = (p) => (p === U ? undefined : byScore(p))
    const r = bus.request(V)
    const sent = bus.get(U).vote(r.id, 0, yes(9), bus.now)
    const uVote = (sent.find((e) => e.type === 'send') as { msg: Message }).msg
    bus.handle(W, bus.get(W).ingest(uVote, bus.now))
    bus.kill(U)
    assert.deepEqual(bus.actors(), [V])
    assert.equal(bus.get(W).view(r.id)!.round, 1, 'W: U won round 0 and died')
    bus.report(V, r.id, 'ERROR', { note: 'no image' })
    // X: round 1 after V; W: round 1 after U. W's round 1 vote does not count for X, nor X's for W
    assert.equal(bus.get(X).view(r.id)!.status, 'voting')
    assert.deepEqual(bus.get(X).view(r.id)!.waitingFor, [W])
    assert.deepEqual(bus.get(W).view(r.id)!.waitingFor.sort(), [V, X].sort())
    // V hears of U's vote: it is in W's round 1 now, and votes there; still nobody acts
    bus.handle(V, bus.get(V).ingest(uVote, bus.now))
    bus.flush()
    assert.deepEqual(bus.actors(), [V])
    // and X too: W's round 1 is complete, V (5) wins it
    bus.handle(X, bus.get(X).ingest(uVote, bus.now))
    bus.flush()
    for (const v of bus.views(r.id)) assert.deepEqual(v, { status: 'elected', round: 1, winner: V })
    assert.deepEqual(bus.actors(), [V, V])
    assert.deepEqual(bus.overlaps, [])
  })

  it('drops and counts bad input', () => {
    const c = core(A, 1)
    const r = signRequest(
      {
        computeType: 'docker',
        voters: [A, B, C].map((peerId) => ({ peerId, incarnation: 0 })),
        created: T0,
        nonce: 1,
      },
      sig(REQUESTER),
    )
    const v = (by: string, over: Partial<Omit<Vote, 'kind' | 'sig' | 'voter'>> = {}) =>
      signVote(
        {
          request: r.id,
          round: 0,
          history: '',
          yes: true,
          reasons: [],
          score: 1,
          tiebreak: 1,
          note: '',
          ...over,
        },
        sig(by),
      )
    const out = (x: unknown) => c.receive(x as Message, T0).outcome
    // votes for a request we do not know yet are held, then applied or dropped
    assert.equal(out(v(B)), 'held')
    assert.equal(out(v(B)), 'duplicate')
    assert.equal(out({ ...v(B, { score: 2 }), sig: v(B).sig }), 'bad-signature')
    const other = v(C, { request: 'f'.repeat(32) })
    assert.equal(out(other), 'held')
    assert.equal(out(r), 'accepted')
    assert.equal(c.counters.accepted, 2, 'the held vote was applied')
    assert.equal(out(r), 'duplicate')
    assert.equal(out({ ...r, nonce: 2 }), 'invalid', 'id is not the hash')
    assert.equal(out(v(D)), 'not-voter')
    assert.equal(out({ ...v(C), sig: new Uint8Array(0) }), 'invalid', 'unsigned')
    assert.equal(out({ ...v(C), sig: v(B).sig }), 'bad-signature')
    assert.equal(out({ ...v(C), score: -1 }), 'invalid')
    assert.equal(out({ ...v(C), note: 'x'.repeat(1000) }), 'invalid', 'malformed size')
    const afterB = nextHistory('', B)
    assert.equal(out(v(C, { round: 3, history: afterB })), 'future-round', 'round past the number of voters')
    assert.equal(out(v(C, { round: 1, history: afterB })), 'accepted', 'next round: kept')
    // a voter speaking under ever more histories for one round (an honest one: after late votes)
    for (const x of ['1', '2', '3'])
      assert.equal(out(v(C, { round: 1, history: nextHistory('', x) })), 'accepted')
    assert.equal(out(v(C, { round: 1, history: nextHistory('', '4') })), 'too-many')
    assert.equal(out(signCancel(r.id, sig(B))), 'not-requester')
    // a report from a member that voted no is dropped; from a yes voter that is not the winner, it changes nothing
    assert.equal(out(v(C, { yes: false, reasons: ['capacity'], score: 0 })), 'accepted')
    const rep = (by: string, state: 'ALLOCATED' | 'ERROR') =>
      signReport(
        { request: r.id, round: 0, history: '', state, instance: state === 'ALLOCATED' ? 'x' : '', note: '' },
        sig(by),
      )
    assert.equal(out(rep(C, 'ALLOCATED')), 'not-winner')
    assert.equal(out(rep(B, 'ALLOCATED')), 'accepted')
    assert.equal(c.status(r.id), 'voting', "A has not voted: B's report changes nothing")
    c.vote(r.id, 0, yes(0), T0)
    // A scored 0 and B 1: B won; its ALLOCATED now counts
    assert.equal(c.status(r.id), 'allocated')
    // a copy of an old round's vote, once the round is over
    assert.equal(out(rep(B, 'ERROR')), 'accepted')
    assert.equal(c.view(r.id)!.round, 1)
    assert.equal(out(v(B)), 'replayed')
    assert.equal(out(rep(B, 'ALLOCATED')), 'stale', 'older than the ERROR held')
    // claims: suspicion is not death; a death below the listed incarnation was refuted
    assert.equal(out(signClaim({ peerId: C, incarnation: 0, status: 'suspect' }, sig(A))), 'ignored')
    assert.equal(out({ ...deadClaim(C), sig: new Uint8Array(3) }), 'bad-signature')
    assert.equal(out(deadClaim(D)), 'ignored')
    // held messages for a request that never comes are dropped after pendingMs
    c.tick(T0 + 10_000)
    assert.equal(c.counters['unknown-request'], 1)
    assert.ok(c.counters.invalid >= 4)
  })

  it('a death claim from before the request (the member refuted it since) does not count', () => {
    const c = core(A, 1)
    const r = signRequest(
      {
        computeType: 'docker',
        voters: [
          { peerId: A, incarnation: 0 },
          { peerId: B, incarnation: 3 },
        ],
        created: T0,
        nonce: 1,
      },
      sig(REQUESTER),
    )
    c.ingest(deadClaim(B, 2, A), T0)
    c.ingest(r, T0)
    assert.deepEqual(c.view(r.id)!.dead, [])
    assert.equal(c.receive(deadClaim(B, 2, A), T0).outcome, 'stale')
    assert.equal(c.receive(deadClaim(B, 3, A), T0).outcome, 'accepted')
    assert.deepEqual(c.view(r.id)!.dead, [B])
    // and one that came before the request, at a current incarnation, is applied on arrival
    const c2 = core(A, 1)
    c2.ingest(deadClaim(B, 3, A), T0)
    c2.ingest(r, T0)
    assert.deepEqual(c2.view(r.id)!.dead, [B])
  })

  it('equivocation: every member keeps the same vote, counts it and reports the voter', () => {
    const r = signRequest(
      {
        computeType: 'docker',
        voters: [B, C].map((peerId) => ({ peerId, incarnation: 0 })),
        created: T0,
        nonce: 1,
      },
      sig(REQUESTER),
    )
    const mk = (by: string, score: number) =>
      signVote(
        { request: r.id, round: 0, history: '', yes: true, reasons: [], score, tiebreak: 1, note: '' },
        sig(by),
      )
    const [b1, b2, c1] = [mk(B, 1), mk(B, 9), mk(C, 5)]
    const x = core(OBSERVER, 1)
    const y = core(OBSERVER, 2)
    for (const m of [r, b1, c1, b2]) x.ingest(m, T0)
    const fx = y.ingest(r, T0).concat(y.ingest(b2, T0), y.ingest(b1, T0), y.ingest(c1, T0))
    assert.equal(x.view(r.id)!.winner, y.view(r.id)!.winner)
    const kept = preferVote(b1, b2)
    assert.equal(x.view(r.id)!.winner, kept.score > 5 ? B : C)
    assert.equal(x.counters.equivocation, 1)
    assert.ok(fx.some((e) => e.type === 'misbehaviour' && e.peer === B))
  })

  it('refuses requests too old or from the future, and forgets finished ones for good', () => {
    const c = core(A, 1, { keepMs: 1000, maxAgeMs: 60_000, maxSkewMs: 5000 })
    const mk = (created: number) =>
      signRequest(
        { computeType: 'docker', voters: [{ peerId: A, incarnation: 0 }], created, nonce: 1 },
        sig(A),
      )
    assert.equal(c.receive(mk(T0 - 60_001), T0).outcome, 'expired')
    assert.equal(c.receive(mk(T0 + 5001), T0).outcome, 'expired')
    const r = mk(T0)
    assert.equal(c.receive(r, T0).outcome, 'accepted')
    c.vote(r.id, 0, no('maintenance'), T0)
    assert.equal(c.status(r.id), 'no-candidate')
    assert.equal(c.nextWakeup(), T0 + 1000)
    c.tick(T0 + 1000)
    assert.equal(c.has(r.id), false)
    assert.equal(c.receive(r, T0 + 2000).outcome, 'finished')
    assert.equal(c.receive(r, T0 + 120_000).outcome, 'expired')
  })

  it('a restart: persisted messages fed back resume the winner without a second ELECTED or a second vote', () => {
    const bus = new Bus([A, B])
    Object.assign(scores, { [A]: 1, [B]: 9 })
    bus.policy = byScore
    const r = bus.request(A)
    bus.handle(B, bus.get(B).report(r.id, 'ALLOCATED', { instance: 'i-9' }, bus.now))
    bus.flush()
    const saved = bus.get(B).messages(r.id)
    const fresh = core(B, 77)
    const effects = fresh.ingestAll(saved, bus.now)
    const act = effects.filter((e) => e.type === 'act')
    assert.equal(act.length, 1)
    assert.ok(act[0].type === 'act' && act[0].resumed)
    assert.equal(effects.filter((e) => e.type === 'send' || e.type === 'vote-needed').length, 0)
    assert.equal(fresh.view(r.id)!.status, 'allocated')
    // it can still finish the run
    assert.equal(fresh.report(r.id, 'DEALLOCATED', { instance: 'i-9' }, bus.now).length > 0, true)
  })

  it('a restart that finds itself declared dead (in the same batch as its saved messages) stands down: its instance does not run on', () => {
    const bus = new Bus([A, B])
    Object.assign(scores, { [A]: 1, [B]: 9 })
    bus.policy = (p) => (p === A ? no('compute-type') : byScore(p))
    const r = bus.request(A)
    bus.handle(B, bus.get(B).report(r.id, 'ALLOCATED', { instance: 'i-9' }, bus.now))
    bus.flush()
    const saved = bus.get(B).messages(r.id)
    const fresh = core(B, 77)
    const effects = fresh.ingestAll([...saved, deadClaim(B, 0, A)], bus.now)
    // round 1 without B (A still to vote there)
    assert.equal(fresh.view(r.id)!.round, 1)
    assert.deepEqual(
      effects
        .filter((e) => e.type === 'act' || e.type === 'stand-down')
        .map((e) => e.type === 'stand-down' && e.reason),
      ['declared-dead'],
    )
    // once only
    assert.equal(
      fresh.ingest(deadClaim(B, 0, OBSERVER), bus.now).filter((e) => e.type === 'stand-down').length,
      0,
    )
  })

  it('a restart that was cancelled meanwhile stands down and reports DEALLOCATED', () => {
    const bus = new Bus([A, B])
    Object.assign(scores, { [A]: 1, [B]: 9 })
    bus.policy = byScore
    const r = bus.request(A)
    bus.handle(B, bus.get(B).report(r.id, 'ALLOCATED', { instance: 'i-9' }, bus.now))
    bus.flush()
    const saved = bus.get(B).messages(r.id)
    const fresh = core(B, 77)
    const effects = fresh.ingestAll([...saved, signCancel(r.id, sig(A))], bus.now)
    const down = effects.filter((e) => e.type === 'stand-down')
    assert.equal(down.length, 1)
    assert.ok(down[0].type === 'stand-down' && down[0].reason === 'cancelled')
    const sent = fresh.report(r.id, 'DEALLOCATED', {}, bus.now).filter((e) => e.type === 'send')
    assert.equal(sent.length, 1)
  })

  it('sends its own messages again, less and less often', () => {
    const c = core(A, 1, { resendMs: 100, maxResendMs: 800 })
    const { request } = c.create(
      { computeType: 'docker', voters: [A, B].map((peerId) => ({ peerId, incarnation: 0 })) },
      T0,
    )
    c.vote(request.id, 0, yes(1), T0)
    const times: number[] = []
    for (let t = T0; t < T0 + 5000; t += 50) {
      const sent = c.tick(t).filter((e) => e.type === 'send')
      if (sent.length > 0) {
        times.push(t - T0)
        assert.deepEqual(sent.map((e) => e.type === 'send' && e.msg.kind).sort(), ['request', 'vote'])
      }
    }
    assert.deepEqual(times, [100, 300, 700, 1500])
  })

  it('the same decision for any order of delivery and any duplication (property)', () => {
    fc.assert(
      fc.property(
        scenarioArb.chain((s) => {
          const built = build(s)
          const order = fc
            .subarray(built.msgs)
            .chain((extra) =>
              fc.shuffledSubarray([...built.msgs, ...extra], { minLength: built.msgs.length + extra.length }),
            )
          return fc.tuple(fc.constant(built), order, order, order)
        }),
        ([built, ...orders]) => {
          // two observers and, when they vote, two voters, each in its own order
          const replicas = [OBSERVER, peer('Y'), PEERS[0], PEERS[1]].map((p, i) => ({
            c: core(p, i),
            order: orders[i % 3],
          }))
          for (const { c, order } of replicas) {
            for (const m of order) c.ingest(m, T0 + 1000)
            const v = c.view(built.request.id)
            assert.ok(v !== undefined)
            assert.equal(v.status, built.expect.status)
            assert.equal(v.round, built.expect.round)
            assert.equal(v.winner, built.expect.winner)
            assert.deepEqual(
              v.excluded.map((x) => x.peer),
              built.expect.excluded,
            )
            assert.equal(c.counters.invalid, 0)
          }
        },
      ),
      { numRuns: 1000 },
    )
  })
})

// ---- the scenario generator for the property test ------------------------------------------

const PEERS = ['0', '1', '2', '3', '4', '5'].map(peer)

interface Slot {
  kind: 'yes' | 'no' | 'dead' | 'dead-voted' | 'missing'
  score: number
  tiebreak: number
  reason: VoteReason
  equivocate: boolean
}

interface RoundSpec {
  slots: Slot[]
  fate: 'allocated' | 'error' | 'dead' | 'deallocated' | 'elected'
  noise: boolean
}

const slotArb: fc.Arbitrary<Slot> = fc.record({
  kind: fc.constantFrom<Slot['kind']>(
    ...([
      'yes',
      'yes',
      'yes',
      'yes',
      'yes',
      'yes',
      'no',
      'no',
      'no',
      'dead',
      'dead-voted',
      'missing',
    ] as const),
  ),
  score: fc.nat(2),
  tiebreak: fc.nat(3),
  reason: fc.constantFrom<VoteReason>('compute-type', 'capacity', 'maintenance', 'filter'),
  equivocate: fc.nat(9).map((x) => x === 0),
})

const scenarioArb = fc.record({
  n: fc.integer({ min: 1, max: 6 }),
  rounds: fc.array(
    fc.record({
      slots: fc.array(slotArb, { minLength: 6, maxLength: 6 }),
      fate: fc.constantFrom<RoundSpec['fate']>(
        'allocated',
        'error',
        'error',
        'dead',
        'dead',
        'deallocated',
        'elected',
      ),
      noise: fc.boolean(),
    }),
    { minLength: 1, maxLength: 5 },
  ),
  cancel: fc.nat(4).map((x) => x === 0),
})

interface Built {
  request: Request
  msgs: Array<Message | Claim>
  expect: { status: Status; round: number; winner: string | undefined; excluded: string[] }
}

/** A consistent history of a whole election, and the outcome the rules give for it. */
function build(s: { n: number; rounds: RoundSpec[]; cancel: boolean }): Built {
  const voters = PEERS.slice(0, s.n)
  const request = signRequest(
    {
      computeType: 'docker',
      voters: voters.map((peerId) => ({ peerId, incarnation: 1 })),
      created: T0,
      nonce: s.n,
    },
    sig(REQUESTER),
  )
  const msgs: Array<Message | Claim> = [request]
  const dead = new Set<string>()
  const excluded: string[] = []
  let participants = voters
  // the history of the round being built
  let history = ''
  const vote = (
    p: string,
    round: number,
    yesNo: boolean,
    score: number,
    tiebreak: number,
    reason: VoteReason,
  ) =>
    signVote(
      {
        request: request.id,
        round,
        history,
        yes: yesNo,
        reasons: yesNo ? [] : [reason],
        score: yesNo ? score : 0,
        tiebreak,
        note: '',
      },
      sig(p),
    )
  const report = (p: string, round: number, state: 'ELECTED' | 'ALLOCATED' | 'DEALLOCATED' | 'ERROR') =>
    signReport(
      {
        request: request.id,
        round,
        history,
        state,
        instance: state === 'ALLOCATED' || state === 'DEALLOCATED' ? 'i' : '',
        note: '',
      },
      sig(p),
    )
  // every other voter signs (a death counts once a majority of the others did)
  const die = (p: string) => {
    dead.add(p)
    const others = voters.filter((by) => by !== p)
    for (const by of others.length > 0 ? others : [OBSERVER])
      msgs.push(signClaim({ peerId: p, incarnation: 1 + (p.charCodeAt(12) % 2), status: 'dead' }, sig(by)))
  }
  // noise that must change nothing: a non-voter's vote, a forged one, a stale death claim
  msgs.push(vote(peer('Q'), 0, true, 9, 9, 'other'))
  msgs.push({ ...vote(voters[0], 0, true, 9, 9, 'other'), sig: new Uint8Array([1, 2, 3]) })
  msgs.push(signClaim({ peerId: voters[0], incarnation: 0, status: 'dead' }, sig(OBSERVER)))

  let expect: Built['expect'] | undefined
  for (let r = 0; expect === undefined; r++) {
    const spec = s.rounds[r]
    const alive = participants.filter((p) => !dead.has(p))
    if (spec === undefined) {
      expect = {
        status: alive.length === 0 ? 'no-candidate' : 'voting',
        round: r,
        winner: undefined,
        excluded,
      }
      break
    }
    const votes: Vote[] = []
    let missing = false
    participants.forEach((p, i) => {
      if (dead.has(p)) return
      const slot = spec.slots[i]
      if (slot.kind === 'missing') {
        missing = true
        return
      }
      if (slot.kind === 'dead' || slot.kind === 'dead-voted') die(p)
      if (slot.kind === 'dead') return
      let v = vote(p, r, slot.kind !== 'no', slot.score, slot.tiebreak, slot.reason)
      msgs.push(v)
      if (slot.equivocate) {
        const v2 = vote(p, r, slot.kind === 'no', (slot.score + 1) % 3, slot.tiebreak, slot.reason)
        msgs.push(v2)
        v = preferVote(v, v2)
      }
      votes.push(v)
    })
    if (missing) {
      expect = { status: 'voting', round: r, winner: undefined, excluded }
      break
    }
    const w = pickWinner(votes)
    if (w === undefined) {
      expect = { status: 'no-candidate', round: r, winner: undefined, excluded }
      break
    }
    if (spec.noise) {
      // a yes voter that did not win claims the round: ignored
      const other = votes.find((v) => v.yes && v.voter !== w.voter)
      if (other !== undefined) msgs.push(report(other.voter, r, 'ALLOCATED'))
    }
    const next = () => {
      excluded.push(w.voter)
      participants = participants.filter((p) => p !== w.voter)
      history = nextHistory(history, w.voter)
    }
    if (dead.has(w.voter)) {
      next()
      continue
    }
    switch (spec.fate) {
      case 'dead':
        die(w.voter)
        next()
        continue
      case 'error':
        msgs.push(report(w.voter, r, 'ELECTED'), report(w.voter, r, 'ERROR'))
        next()
        continue
      case 'elected':
        msgs.push(report(w.voter, r, 'ELECTED'))
        expect = { status: 'elected', round: r, winner: w.voter, excluded }
        break
      case 'allocated':
        msgs.push(report(w.voter, r, 'ELECTED'), report(w.voter, r, 'ALLOCATED'))
        expect = { status: 'allocated', round: r, winner: w.voter, excluded }
        break
      case 'deallocated':
        msgs.push(report(w.voter, r, 'ALLOCATED'), report(w.voter, r, 'DEALLOCATED'))
        expect = { status: 'deallocated', round: r, winner: w.voter, excluded }
        break
    }
  }
  if (s.cancel) {
    msgs.push(signCancel(request.id, sig(REQUESTER)))
    expect.status = 'cancelled'
  }
  return { request, msgs, expect }
}

describe('election: placed again (a no-candidate request among the members alive now)', () => {
  /** Every member acting for any request of `ids` now (the live ones); at most one may. */
  function actors(bus: Bus, ids: string[]): string[] {
    return ids.flatMap((id) =>
      [...(bus.acting.get(id) ?? [])].filter((p) => !bus.down.has(p)).map((p) => `${p}@${id.slice(0, 6)}`),
    )
  }

  /** B alone can run it; B dies, so the request ends no-candidate at every live member. */
  function lostB(): { bus: Bus; r: Request } {
    const bus = new Bus([A, B, C])
    bus.policy = (p) => (p === B ? yes(1) : no('capacity'))
    const r = bus.request(A)
    assert.deepEqual(bus.actors(), [B])
    bus.kill(B)
    for (const p of [A, C]) assert.equal(bus.get(p).status(r.id), 'no-candidate')
    return { bus, r }
  }

  /** B comes back as a new process: its saved messages and the claims about it are fed back. */
  function restartB(bus: Bus, r: Request): void {
    const saved = bus.get(B).messages(r.id)
    const fresh = core(B, 77)
    bus.cores.set(B, fresh)
    bus.down.delete(B)
    // its saved messages, then a sync with A (which holds the claims about it)
    bus.handle(B, fresh.ingestAll([...saved, ...bus.get(A).messages(r.id)], bus.now))
    bus.flush()
  }

  it('once the member that could run it is back at a new incarnation, the requester places it again and only the new placement acts', () => {
    const { bus, r } = lostB()
    const living = [
      { peerId: A, incarnation: 0 },
      { peerId: C, incarnation: 0 },
    ]
    // nobody it could not ask before: it would end the same way
    assert.deepEqual(bus.get(A).supersede(r.id, living, bus.now), {
      why: 'nobody it could not ask before is alive',
    })
    // only the requester places it again
    assert.ok('why' in bus.get(C).supersede(r.id, [...living, { peerId: B, incarnation: 1 }], bus.now))
    restartB(bus, r)
    // the restarted B does not run the old one on: its death counted there
    assert.equal(bus.get(B).view(r.id)!.acting, false)
    assert.deepEqual(actors(bus, [r.id]), [])
    const made = bus.get(A).supersede(r.id, [...living, { peerId: B, incarnation: 1 }], bus.now)
    assert.ok('request' in made)
    const s = made.request
    assert.equal(s.supersedes, r.id)
    bus.handle(A, made.effects)
    bus.flush()
    for (const p of [A, B, C]) {
      assert.equal(bus.get(p).status(s.id), 'elected')
      assert.equal(bus.get(p).view(s.id)!.winner, B)
      // the old one stays what it was, and says where it went
      assert.equal(bus.get(p).status(r.id), 'no-candidate')
      assert.equal(bus.get(p).view(r.id)!.placedAgainAs, s.id)
      assert.equal(bus.get(p).view(s.id)!.supersedes, r.id)
    }
    assert.deepEqual(actors(bus, [r.id, s.id]), [`${B}@${s.id.slice(0, 6)}`])
    // once only
    assert.deepEqual(bus.get(A).supersede(r.id, [...living, { peerId: B, incarnation: 2 }], bus.now), {
      why: `placed again already as ${s.id}`,
    })
  })

  it('a member falsely declared dead is not trusted with it again at its old incarnation', () => {
    const { bus, r } = lostB()
    // B never stopped (a partition): it still runs at incarnation 0 until it hears of the claims
    bus.down.delete(B)
    const at0 = [A, B, C].map((peerId) => ({ peerId, incarnation: 0 }))
    assert.deepEqual(bus.get(A).supersede(r.id, at0, bus.now), {
      why: 'nobody it could not ask before is alive',
    })
    // a new member alone makes a placement, but without B at incarnation 0
    const made = bus.get(A).supersede(r.id, [...at0, { peerId: D, incarnation: 0 }], bus.now)
    assert.ok('request' in made)
    assert.deepEqual(
      made.request.voters.map((v) => v.peerId),
      [A, C, D].sort(),
    )
  })

  it('two placements of one request (the requester crashed before saving the first): the lower id counts everywhere, the other is void', () => {
    const { bus, r } = lostB()
    restartB(bus, r)
    const voters = [
      { peerId: A, incarnation: 0 },
      { peerId: B, incarnation: 1 },
      { peerId: C, incarnation: 0 },
    ]
    const two = [1, 2]
      .map((nonce) =>
        signRequest({ computeType: 'docker', voters, created: bus.now, nonce, supersedes: r.id }, sig(A)),
      )
      .sort((x, y) => (x.id < y.id ? -1 : 1))
    const [lo, hi] = two
    // the higher one first: elected, B acts for it
    bus.handle(A, [{ type: 'send', msg: hi }, ...bus.get(A).ingest(hi, bus.now)])
    bus.flush()
    assert.deepEqual(actors(bus, [r.id, lo.id, hi.id]), [`${B}@${hi.id.slice(0, 6)}`])
    // then the lower one: the higher is void everywhere, B stands down from it and acts for the lower
    bus.handle(A, [{ type: 'send', msg: lo }, ...bus.get(A).ingest(lo, bus.now)])
    bus.flush()
    for (const p of [A, B, C]) {
      assert.equal(bus.get(p).status(hi.id), 'cancelled')
      assert.equal(bus.get(p).view(hi.id)!.outranked, lo.id)
      assert.equal(bus.get(p).status(lo.id), 'elected')
      assert.equal(bus.get(p).view(r.id)!.placedAgainAs, lo.id)
    }
    assert.deepEqual(actors(bus, [r.id, lo.id, hi.id]), [`${B}@${lo.id.slice(0, 6)}`])
    assert.ok(
      bus.log.some(
        (l) =>
          l.at === B && l.e.type === 'stand-down' && l.e.requestId === hi.id && l.e.reason === 'superseded',
      ),
    )
  })

  it('a placement again calls the old request off wherever that one is still running (a late vote moved it on)', () => {
    const bus = new Bus([A, B, C])
    bus.policy = (p) => (p === B ? yes(1) : no('capacity'))
    const r = bus.request(A)
    assert.deepEqual(bus.actors(), [B])
    const voters = [A, B, C].map((peerId) => ({ peerId, incarnation: 1 }))
    const s = signRequest(
      { computeType: 'docker', voters, created: bus.now, nonce: 9, supersedes: r.id },
      sig(A),
    )
    bus.handle(A, [{ type: 'send', msg: s }, ...bus.get(A).ingest(s, bus.now)])
    bus.flush()
    assert.ok(
      bus.log.some(
        (l) =>
          l.at === B && l.e.type === 'stand-down' && l.e.requestId === r.id && l.e.reason === 'superseded',
      ),
    )
    for (const p of [A, B, C]) assert.equal(bus.get(p).status(r.id), 'cancelled')
    assert.deepEqual(actors(bus, [r.id, s.id]), [`${B}@${s.id.slice(0, 6)}`])
  })

  it('a placement travels as a request with a supersedes field; a first request has none, encoded as before', () => {
    const voters = [{ peerId: A, incarnation: 0 }]
    const first = signRequest({ computeType: 'docker', voters, created: T0, nonce: 1 }, sig(A))
    assert.equal(first.supersedes, undefined)
    assert.ok(!new TextDecoder().decode(toWire(first).body).includes('supersedes'))
    const again = signRequest(
      { computeType: 'docker', voters, created: T0, nonce: 1, supersedes: first.id },
      sig(A),
    )
    const back = fromWire(toWire(again)) as Message
    assert.ok(back.kind === 'request' && back.supersedes === first.id && back.id === again.id)
    assert.throws(
      () => signRequest({ computeType: 'docker', voters, created: T0, nonce: 1, supersedes: 'x' }, sig(A)),
      /bad supersedes/,
    )
  })
})
