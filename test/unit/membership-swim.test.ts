import assert from 'node:assert/strict'
import {
  type Action,
  CLOSE_BURST,
  CLOSE_BURST_MS,
  CLOSE_PROBERS,
  mulberry32,
  SKIP_REFRESH_ROUNDS,
  Swim,
  type SwimOptions,
  suspicionTimeoutMs,
} from '../../src/membership/index.js'

/**
 * A tiny network in virtual time: every node runs a Swim, messages take 2-7 ms, suspect / dead /
 * alive travel as gossip to every running node. Probe traffic (ping, ack, probe-req, nack) can
 * be blocked per direction; crashed nodes neither send nor receive.
 */
class Net {
  now = 0
  readonly nodes = new Map<string, Swim>()
  readonly crashed = new Set<string>()
  readonly blocked = new Set<string>()
  readonly log: string[] = []
  /** probes sent, direct or relayed */
  probes = 0
  /** whether a probe's target counts it as evidence (Swim.heard), as the adapters do */
  hear = true
  private readonly q: Array<{ at: number; n: number; fn: () => void }> = []
  private n = 0
  private readonly rng: () => number

  constructor(
    readonly ids: string[],
    seed: number,
    opts: Partial<SwimOptions> = {},
  ) {
    this.rng = mulberry32(seed)
    ids.forEach((id, i) => {
      const s = new Swim({ self: id, rng: mulberry32(seed * 1000 + i), ...opts })
      s.setMembers(ids.filter((p) => p !== id).map((peerId) => ({ peerId, incarnation: 0 })))
      this.nodes.set(id, s)
    })
  }

  block(a: string, b: string): void {
    this.blocked.add(`${a}>${b}`)
  }

  unblock(a: string, b: string): void {
    this.blocked.delete(`${a}>${b}`)
  }

  run(until: number): void {
    for (;;) {
      let t = Number.POSITIVE_INFINITY
      for (const m of this.q) if (m.at < t) t = m.at
      let wake = Number.POSITIVE_INFINITY
      for (const [id, s] of this.nodes)
        if (!this.crashed.has(id)) wake = Math.min(wake, Math.max(this.now, s.nextWakeup()))
      if (Math.min(t, wake) > until) break
      if (t <= wake) {
        // earliest message, first sent first
        let best = 0
        for (let i = 1; i < this.q.length; i++) {
          const a = this.q[i]
          const b = this.q[best]
          if (a.at < b.at || (a.at === b.at && a.n < b.n)) best = i
        }
        const [m] = this.q.splice(best, 1)
        this.now = Math.max(this.now, m.at)
        m.fn()
      } else {
        this.now = wake
        for (const [id, s] of this.nodes) {
          if (!this.crashed.has(id) && s.nextWakeup() <= this.now) this.handle(id, s.tick(this.now))
        }
      }
    }
    this.now = until
  }

  private send(from: string, to: string, probeTraffic: boolean, fn: (s: Swim) => void): void {
    if (this.crashed.has(from)) return
    const at = this.now + 2 + Math.floor(this.rng() * 6)
    this.q.push({
      at,
      n: this.n++,
      fn: () => {
        if (this.crashed.has(to) || (probeTraffic && this.blocked.has(`${from}>${to}`))) return
        fn(this.nodes.get(to)!)
      },
    })
  }

  private gossip(from: string, fn: (id: string, s: Swim) => void): void {
    for (const id of this.ids) if (id !== from) this.send(from, id, false, (s) => fn(id, s))
  }

  handle(from: string, actions: readonly Action[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'probe':
          this.probes++
          // the target's adapter answers a ping with an ack and tells its Swim it heard the prober
          this.send(from, a.to, true, (t) => {
            if (this.hear) t.heard(from, this.now)
            this.send(a.to, from, true, (s) => this.handle(from, s.onAck(a.to, a.seq, this.now)))
          })
          break
        case 'probe-req':
          this.send(from, a.via, true, (s) =>
            this.handle(a.via, s.onProbeReq(from, a.target, a.seq, this.now)),
          )
          break
        case 'ack':
          this.send(from, a.to, true, (s) => this.handle(a.to, s.onAck(from, a.seq, this.now)))
          break
        case 'nack':
          this.send(from, a.to, true, (s) => s.onNack(from, a.seq))
          break
        case 'suspect':
        case 'dead':
          this.log.push(`${this.now} ${from} ${a.type} ${a.peer}@${a.incarnation}`)
          if (a.type === 'dead') this.onDead(from, a.peer, a.incarnation)
          this.gossip(from, (id, s) => {
            if (id === a.peer) this.refute(id, s.selfSuspected(a.incarnation))
            else if (a.type === 'suspect') s.onSuspect(a.peer, a.incarnation, from, this.now)
            else if (s.removeMember(a.peer)) this.onDead(id, a.peer, a.incarnation)
          })
          break
      }
    }
  }

  /** first time each node learned that a peer is dead */
  readonly deadAt = new Map<string, number>()
  private onDead(at: string, peer: string, _inc: number): void {
    const k = `${at}:${peer}`
    if (!this.deadAt.has(k)) this.deadAt.set(k, this.now)
  }

  private refute(id: string, inc: number): void {
    this.log.push(`${this.now} ${id} alive ${id}@${inc}`)
    this.gossip(id, (_, s) => s.addMember(id, inc))
  }
}

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `node${String.fromCharCode(65 + i)}`)

/** The next tick's probe, answered 3 ms later; returns whom it probed. */
function probeAnswered(s: Swim): string {
  const now = s.nextWakeup()
  const [a] = s.tick(now)
  assert.equal(a?.type, 'probe')
  if (a?.type !== 'probe') return ''
  s.onAck(a.to, a.seq, now + 3)
  return a.to
}

describe('membership: SWIM failure detector', () => {
  it('suspicion timeout grows with log N (memberlist LAN: 4 s up to 10 members)', () => {
    assert.equal(suspicionTimeoutMs(4, 1, 1000), 4000)
    assert.equal(suspicionTimeoutMs(4, 5, 1000), 4000)
    assert.equal(suspicionTimeoutMs(4, 10, 1000), 4000)
    assert.equal(suspicionTimeoutMs(4, 100, 1000), 8000)
    assert.equal(suspicionTimeoutMs(4, 1000, 1000), 12000)
    assert.equal(suspicionTimeoutMs(4, 10000, 1000), 16000)
    // a floor of three probe intervals, however small the multiplier or the cluster
    assert.equal(suspicionTimeoutMs(1, 10, 1000), 3000)
    assert.equal(suspicionTimeoutMs(1, 100, 1000), 3000)
    assert.equal(suspicionTimeoutMs(1, 1000, 1000), 3000)
    assert.equal(suspicionTimeoutMs(1.5, 10000, 1000), 6000)
    const old = new Swim({ self: 'me', rng: mulberry32(1), suspicionMult: 4, suspicionMaxMult: 6 })
    for (let i = 0; i < 999; i++) old.addMember(`p${i}`, 0)
    assert.deepEqual(old.suspicionBounds(), { minMs: 12000, maxMs: 72000, k: 2 })
    assert.deepEqual(old.suspicionBounds(3), { minMs: 4000, maxMs: 24000, k: 0 })
    const plain = new Swim({ self: 'me', rng: mulberry32(1), lifeguard: false, suspicionMult: 4 })
    assert.deepEqual(plain.suspicionBounds(1000), { minMs: 12000, maxMs: 12000, k: 0 })
  })

  it('defaults: 3 s minimum at 1,000 members, 4 s at 10,000, 4x that until 2 members confirm', () => {
    const s = new Swim({ self: 'me', rng: mulberry32(1) })
    assert.deepEqual(s.suspicionBounds(1000), { minMs: 3000, maxMs: 12000, k: 2 })
    assert.deepEqual(s.suspicionBounds(10000), { minMs: 4000, maxMs: 16000, k: 2 })
    assert.deepEqual(s.suspicionBounds(5), { minMs: 3000, maxMs: 12000, k: 2 })
    assert.deepEqual(s.suspicionBounds(3), { minMs: 3000, maxMs: 12000, k: 0 })
  })

  it('probes every member once per round, in a shuffled order', () => {
    const s = new Swim({ self: 'me', rng: mulberry32(7) })
    const peers = ids(10)
    s.setMembers(peers.map((peerId) => ({ peerId, incarnation: 0 })))
    let now = 0
    const rounds: string[][] = [[], []]
    for (let i = 0; i < 20; ) {
      now = Math.max(now, s.nextWakeup())
      const [a] = s.tick(now)
      // the first tick only picks a random start within the interval
      if (a === undefined) continue
      assert.equal(a.type, 'probe')
      if (a.type !== 'probe') return
      rounds[Math.floor(i++ / 10)].push(a.to)
      assert.deepEqual(s.onAck(a.to, a.seq, now + 3), [])
      now += 3
    }
    for (const r of rounds) assert.deepEqual([...r].sort(), peers)
    assert.notDeepEqual(rounds[0], peers)
    assert.notDeepEqual(rounds[0], rounds[1])
    assert.equal(s.rttOf(rounds[1][9]), 3)
  })

  it('a probe received from the due target counts as its ack: in a pair only one side probes', () => {
    const count = (hear: boolean): number => {
      const net = new Net(ids(2), 9)
      net.hear = hear
      net.run(2000)
      const before = net.probes
      net.run(62000)
      assert.deepEqual(net.log, [])
      return net.probes - before
    }
    // 60 s at one probe per second each: 120 probes without the evidence, about 60 with it
    assert.ok(count(false) >= 110, `${count(false)} probes without`)
    const withHeard = count(true)
    assert.ok(withHeard <= 70, `${withHeard} probes with evidence`)
  })

  it('fresh evidence skips a probe; stale evidence, a suspect target, or an ack to our own probe do not', () => {
    const s = new Swim({ self: 'me', rng: mulberry32(4), lifeguard: false })
    s.setMembers([{ peerId: 'p', incarnation: 0 }])
    s.tick(0)
    /** the next due round: what it sent (acked 5 ms later) */
    const round = (evidenceAge?: number): string => {
      const now = s.nextWakeup()
      if (evidenceAge !== undefined) s.heard('p', now - evidenceAge)
      const [a] = s.tick(now)
      if (a?.type === 'probe') s.onAck('p', a.seq, now + 5)
      return a?.type ?? 'none'
    }
    assert.equal(round(), 'probe')
    // the ack to our own probe answers that round and does not stand in for the next one
    assert.equal(round(), 'probe')
    // they probed us within the interval: nothing sent, no suspicion
    assert.equal(round(999), 'none')
    assert.equal(s.skippedProbes, 1)
    // evidence one full interval old is stale
    assert.equal(round(1000), 'probe')
    // a suspect target is probed whatever we heard: only a refutation clears the suspicion
    s.onSuspect('p', 0, 'q', s.nextWakeup())
    assert.equal(round(10), 'probe')
    assert.equal(s.skippedProbes, 1)
  })

  it('the side of a pair that skips still probes every SKIP_REFRESH_ROUNDS, so both measure the other', () => {
    const net = new Net(ids(2), 9, { lifeguard: false })
    const [a, b] = net.ids
    net.run(2000)
    const skipsBefore = [a, b].map((id) => net.nodes.get(id)!.skippedProbes)
    net.run(62000)
    const skipped = [a, b].map((id, i) => net.nodes.get(id)!.skippedProbes - skipsBefore[i])
    // 60 rounds each: one probe in a round still stands in for the other side's (about 60 skips
    // in all), and neither side goes more than SKIP_REFRESH_ROUNDS rounds without its own probe
    const rounds = 60
    assert.ok(skipped[0] + skipped[1] >= rounds * 0.8, `skipped ${skipped}`)
    for (const n of skipped) assert.ok(rounds - n >= rounds / SKIP_REFRESH_ROUNDS - 1, `skipped ${skipped}`)
    for (const [x, y] of [
      [a, b],
      [b, a],
    ])
      assert.ok(net.nodes.get(x)!.rttOf(y) !== undefined, `${x} measured ${y}`)
  })

  it('a pair where only one side probes still detects the silent side, one interval later at most', () => {
    const net = new Net(ids(2), 9, { lifeguard: false })
    const [a, b] = net.ids
    net.run(10000)
    const skipper = net.nodes.get(a)!.skippedProbes > net.nodes.get(b)!.skippedProbes ? a : b
    const prober = skipper === a ? b : a
    // the prober crashes: the one that relied on its probes notices within 2 intervals + 3 s
    net.crashed.add(prober)
    net.run(30000)
    const t = net.deadAt.get(`${skipper}:${prober}`)
    assert.ok(t !== undefined, net.log.join('\n'))
    assert.ok(t - 10000 <= 2 * 1000 + 3000 + 1000, `declared after ${t - 10000} ms`)
  })

  it('declares a crashed member dead after probe interval + suspicion timeout (Lifeguard off)', () => {
    const net = new Net(ids(3), 11, { lifeguard: false })
    const [, , c] = net.ids
    net.run(5000)
    net.crashed.add(c)
    net.run(30000)
    const suspects = net.log.filter((l) => l.includes(`suspect ${c}`))
    const deads = net.log.filter((l) => l.includes(`dead ${c}`))
    assert.ok(suspects.length >= 1)
    // others may time out their own copy of the suspicion before the first verdict reaches them
    assert.ok(deads.length >= 1, net.log.join('\n'))
    const tSuspect = Number(suspects[0].split(' ')[0])
    const tDead = Number(deads[0].split(' ')[0])
    // suspected at the end of a failed probe round: within 2 rounds of probes plus one interval
    assert.ok(tSuspect >= 5000 + 1000 && tSuspect <= 5000 + 3 * 1000, `suspected at ${tSuspect}`)
    assert.equal(tDead - tSuspect, 3000)
    for (const id of net.ids.slice(0, 2)) assert.ok(net.deadAt.has(`${id}:${c}`))
    assert.ok(!net.log.some((l) => !l.includes(c)), 'only the crashed member is ever suspected')
  })

  it('with Lifeguard, a crashed member of 5 is dead everywhere within 1 round + 12 s, never a healthy one', () => {
    const net = new Net(ids(5), 5)
    const victim = net.ids[4]
    net.run(10000)
    net.crashed.add(victim)
    net.run(60000)
    for (const id of net.ids.slice(0, 4)) {
      const t = net.deadAt.get(`${id}:${victim}`)
      assert.ok(t !== undefined, `${id} never learned`)
      assert.ok(t - 10000 <= 5000 + 12000, `${id} learned after ${t - 10000} ms`)
      assert.ok(t - 10000 >= 1000 + 3000)
    }
    assert.ok(!net.log.some((l) => l.includes('suspect') && !l.includes(victim)), net.log.join('\n'))
  })

  it('a member whose connection closed is probed next, whatever was heard on that connection', () => {
    // 4 members: every one of us that loses the connection probes early (CLOSE_PROBERS / 4)
    assert.ok(CLOSE_PROBERS >= 4)
    const s = new Swim({ self: 'me', rng: mulberry32(11), lifeguard: false })
    s.setMembers(ids(4).map((peerId) => ({ peerId, incarnation: 0 })))
    s.tick(0)
    const probe = (): string => probeAnswered(s)
    const first = probe()
    // without the close, the rest of the round would be the three others
    s.heard(first, s.nextWakeup() - 1)
    s.closed(first, s.nextWakeup() - 1)
    assert.equal(probe(), first)
    s.closed('not-a-member', s.nextWakeup() - 1)
    const rest = [probe(), probe(), probe()]
    assert.deepEqual(
      [...rest].sort(),
      ids(4).filter((p) => p !== first),
    )
  })

  it('many members refused at once are probed in turn: only the first CLOSE_BURST go early', () => {
    // 8 members, so CLOSE_PROBERS / 8 = 1/2: a fixed rng of 0 makes every close a candidate
    const s = new Swim({ self: 'me', rng: () => 0, lifeguard: false })
    s.setMembers(ids(8).map((peerId) => ({ peerId, incarnation: 0 })))
    const probe = (): string => probeAnswered(s)
    probe()
    const t = s.nextWakeup() - 1
    // a burst of refusals: the last member of each probe order is the latest one to come
    const closedNow = ids(8).slice(0, CLOSE_BURST + 2)
    for (const p of closedNow) s.closed(p, t)
    const next = Array.from({ length: CLOSE_BURST }, () => probe())
    assert.deepEqual(next, closedNow.slice(0, CLOSE_BURST).reverse())
    // after CLOSE_BURST_MS of quiet a refusal goes early again
    for (let i = 0; i < 100 && s.nextWakeup() <= t + CLOSE_BURST_MS; i++) probe()
    const late = ids(8)[7]
    s.closed(late, s.nextWakeup() - 1)
    assert.equal(probe(), late)
  })

  it('of 50 members, a crashed one whose connections reset is suspected within 2 probe intervals', () => {
    /** ms from the crash to the first suspicion of the victim, with or without the resets */
    const firstSuspicion = (seed: number, resets: boolean): number => {
      const net = new Net(ids(50), seed)
      const victim = net.ids[49]
      net.run(5000)
      net.crashed.add(victim)
      if (resets) for (const id of net.ids.slice(0, 49)) net.nodes.get(id)!.closed(victim, 5000)
      net.run(20000)
      const line = net.log.find((l) => l.endsWith(`suspect ${victim}@0`))
      assert.ok(line !== undefined, `seed ${seed}: never suspected`)
      assert.ok(!net.log.some((l) => l.includes('suspect') && !l.includes(victim)), net.log.join('\n'))
      return Number(line.split(' ')[0]) - 5000
    }
    const seeds = [1, 2, 3, 4, 5, 6, 7, 8]
    const withResets = seeds.map((seed) => firstSuspicion(seed, true))
    for (const t of withResets) assert.ok(t <= 2000 + 100, `suspected after ${withResets} ms`)
    // waiting for its turn in 49 members' rounds takes longer in some runs
    const without = seeds.map((seed) => firstSuspicion(seed, false))
    assert.ok(Math.max(...without) > 2100, `without the resets: ${without} ms`)
  })

  it('never suspects a member that answers only through indirect probes', () => {
    const net = new Net(ids(5), 3)
    const [a, b] = net.ids
    net.block(a, b)
    net.block(b, a)
    net.run(300000)
    assert.deepEqual(net.log, [])
    assert.ok(net.nodes.get(a)!.has(b) && net.nodes.get(b)!.has(a))
  })

  it('a refutation (higher incarnation) cancels the suspicion', () => {
    // unit level: one prober, one silent member
    const s = new Swim({ self: 'me', rng: mulberry32(2), lifeguard: false })
    s.addMember('x', 0)
    let now = 0
    const seen: Action[] = []
    while (!s.isSuspect('x')) {
      now = Math.max(now, s.nextWakeup())
      seen.push(...s.tick(now))
    }
    assert.deepEqual(
      seen.filter((a) => a.type !== 'probe'),
      [{ type: 'suspect', peer: 'x', incarnation: 0 }],
    )
    assert.equal(s.suspicionDeadline('x'), now + 3000)
    assert.equal(s.onRefute('x', 0), false, 'the same incarnation is no refutation')
    assert.equal(s.onRefute('x', 1), true)
    assert.equal(s.isSuspect('x'), false)
    // the old deadline passes quietly; x is suspected afresh only at its new incarnation
    const later: Action[] = []
    while (now < 4500 + seen.length) {
      now = Math.max(now + 1, s.nextWakeup())
      later.push(...s.tick(now))
    }
    assert.ok(!later.some((a) => a.type === 'dead'))
    assert.ok(later.every((a) => a.type !== 'suspect' || a.incarnation === 1))

    // the suspect's side
    const x = new Swim({ self: 'x', rng: mulberry32(3), incarnation: 4 })
    assert.equal(x.selfSuspected(2), 4, 'a stale claim needs no refutation')
    assert.equal(x.selfSuspected(4), 5)
    assert.equal(x.incarnation, 5)
  })

  it('a member that is briefly unreachable refutes and is never declared dead', () => {
    const net = new Net(ids(5), 9)
    const x = net.ids[2]
    net.run(5000)
    for (const id of net.ids) if (id !== x) net.block(id, x)
    net.run(15000)
    for (const id of net.ids) if (id !== x) net.unblock(id, x)
    net.run(120000)
    assert.ok(
      net.log.some((l) => l.includes(`suspect ${x}`)),
      'x was suspected',
    )
    assert.ok(
      net.log.some((l) => l.includes(`alive ${x}`)),
      'x refuted',
    )
    assert.ok(!net.log.some((l) => l.includes('dead')), net.log.join('\n'))
    for (const [id, s] of net.nodes) if (id !== x) assert.ok(s.has(x) && !s.isSuspect(x))
    assert.ok(net.nodes.get(x)!.incarnation >= 1)
  })

  it('is deterministic for a seeded rng', () => {
    const trace = (seed: number): string => {
      const net = new Net(ids(6), seed)
      net.run(3000)
      net.crashed.add(net.ids[1])
      net.block(net.ids[2], net.ids[3])
      net.run(40000)
      return net.log.join('\n') + [...net.deadAt].join()
    }
    assert.equal(trace(42), trace(42))
    assert.notEqual(trace(42), trace(43))
  })

  it('relays probe requests: forwards the ack, or nacks in time', () => {
    const r = new Swim({ self: 'relay', rng: mulberry32(4) })
    const [probe] = r.onProbeReq('origin', 'target', 77, 1000)
    assert.equal(probe.type, 'probe')
    if (probe.type !== 'probe') return
    assert.equal(probe.to, 'target')
    assert.deepEqual(r.onAck('someone-else', probe.seq, 1010), [])
    assert.deepEqual(r.onAck('target', probe.seq, 1010), [{ type: 'ack', to: 'origin', seq: 77 }])

    const [p2] = r.onProbeReq('origin', 'target', 78, 2000)
    if (p2.type !== 'probe') return
    r.tick(2000)
    assert.deepEqual(
      r.tick(2400).filter((a) => a.type === 'nack'),
      [{ type: 'nack', to: 'origin', seq: 78 }],
    )
    // a late ack is still passed on until the origin gives up
    assert.deepEqual(r.onAck('target', p2.seq, 2450), [{ type: 'ack', to: 'origin', seq: 78 }])
    assert.deepEqual(r.onProbeReq('origin', 'relay', 79, 3000), [{ type: 'ack', to: 'origin', seq: 79 }])
  })

  it('Lifeguard: failed probes without nacks stretch our own probe timing', () => {
    const s = new Swim({ self: 'me', rng: mulberry32(5), indirectK: 0 })
    for (const p of ids(20)) s.addMember(p, 0)
    let now = 0
    for (let i = 0; i < 5; i++) {
      now = Math.max(now, s.nextWakeup())
      s.tick(now)
    }
    assert.ok(s.health > 0)
    // a probe now waits (health + 1) times longer for its ack
    for (let i = 0; i < 100; i++) {
      now = Math.max(now, s.nextWakeup())
      const a = s.tick(now).find((x) => x.type === 'probe')
      if (a?.type === 'probe') {
        const h = s.health
        assert.equal(s.nextWakeup() - now, 500 * (h + 1))
        s.onAck(a.to, a.seq, now + 1)
        assert.equal(s.health, h - 1)
        return
      }
    }
    assert.fail('no probe')
  })

  it('Lifeguard: a member whose own loop was starved blames itself, not the member it probes', () => {
    const s = new Swim({ self: 'me', rng: mulberry32(9) })
    s.addMember('a', 0)
    s.tick(0)
    let probe: Action | undefined
    let now = 0
    while (probe === undefined) {
      now = s.nextWakeup()
      probe = s.tick(now).find((x) => x.type === 'probe')
    }
    assert.equal(s.health, 0)
    // our event loop stalls for 3 s: the tick comes long after the probe's deadline, and the
    // ack may be waiting unread behind it
    const late = now + 3_000
    const acts = s.tick(late)
    assert.ok(s.health > 0, 'the stall raises our own awareness')
    assert.deepEqual(
      acts.filter((x) => x.type !== 'probe'),
      [],
      'no indirect probe or suspicion on a verdict taken while starved',
    )
    // the next ticks on time: still waiting for the direct ack, for a stretched probe timeout
    assert.equal(s.nextWakeup(), late + 500 * (s.health + 1))
    assert.ok(s.onAck('a', (probe as { seq: number }).seq, late + 1).length === 0)
    assert.equal(s.isSuspect('a'), false)
  })

  it('Lifeguard: a member alone heals once its loop is on time again (nobody to be slow for)', () => {
    // an agent started on a busy machine has a late first tick; alone it never gets an ack to
    // heal by, so without this it stayed 'unhealthy' for good
    const s = new Swim({ self: 'me', rng: mulberry32(11) })
    s.tick(0)
    s.tick(s.nextWakeup() + 5_000)
    for (let i = 0; i < 3; i++) s.tick(s.nextWakeup())
    assert.equal(s.health, 0)
  })

  it('Lifeguard: a suspicion expiring while we were starved waits for a refutation we may not have read', () => {
    const s = new Swim({ self: 'me', rng: mulberry32(9), suspicionMinMs: 4_000, suspicionMaxMs: 4_000 })
    s.addMember('a', 0)
    s.tick(0)
    s.onSuspect('a', 0, 'b', 10)
    const deadline = s.suspicionDeadline('a')!
    let now = 10
    // keep probing on time (acked), up to the deadline
    while (s.nextWakeup() < deadline - 600) {
      now = s.nextWakeup()
      for (const a of s.tick(now)) if (a.type === 'probe') s.onAck(a.to, a.seq, now + 1)
    }
    // then our loop stalls past the deadline
    const acts = s.tick(deadline + 2_000)
    assert.deepEqual(
      acts.filter((x) => x.type === 'dead'),
      [],
    )
    // the refutation we had not read yet arrives: no death
    assert.equal(s.onRefute('a', 1), true)
    assert.equal(s.isSuspect('a'), false)
  })

  it('finds members by an index the driver gives exactly as by peer ID (as the simulator does)', () => {
    const ids = Array.from({ length: 12 }, (_, i) => `p${i}`)
    const run = (opts: Partial<SwimOptions>, compact = false) => {
      const net = new Net(ids, 5, opts)
      net.run(20_000)
      // giving back the columns' spare room (the simulator does once formed) changes nothing
      if (compact) for (const s of net.nodes.values()) s.compact()
      net.crashed.add('p3')
      net.block('p1', 'p7')
      net.run(60_000)
      const s = net.nodes.get('p0')!
      return { log: net.log, probes: net.probes, rtt: ids.map((x) => s.rttOf(x)), n: s.memberCount }
    }
    const byId = run({})
    assert.ok(byId.log.some((l) => l.includes('dead p3')))
    assert.deepStrictEqual(run({ index: (p) => ids.indexOf(p) }), byId)
    assert.deepStrictEqual(run({ index: (p) => ids.indexOf(p) }, true), byId)
  })
})
