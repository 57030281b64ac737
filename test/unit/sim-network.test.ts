import assert from 'node:assert/strict'
import { BULK_BYTES, DROPPED, HELD, LATENCY, Network } from '../../sim/network.js'
import { mulberry32 } from '../../sim/rng.js'

/** A network of n nodes, all up unless `down` says otherwise. */
function net(
  n: number,
  opts: ConstructorParameters<typeof Network>[0] = {},
  nat: (i: number) => boolean = () => false,
) {
  const down = new Set<number>()
  const w = new Network(opts, mulberry32(7))
  for (let i = 0; i < n; i++) w.addNode(i, nat(i))
  w.up = (i) => !down.has(i)
  return { w, down }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

describe('sim network model', () => {
  it('latency: base by region pair plus jitter, never below the base', () => {
    const { w } = net(40, { latency: 'wan' })
    for (let a = 0; a < 40; a++) {
      for (let b = 0; b < 40; b++) {
        assert.equal(w.baseMs(a, b), w.baseMs(b, a), 'the base is symmetric')
        const t = w.oneWay(a, b)
        assert.ok(t >= w.baseMs(a, b), 'jitter only adds')
        assert.ok(t < w.baseMs(a, b) + 200, 'jitter stays small')
      }
    }
    const lan = net(2, { latency: 'lan' }).w
    const xs = Array.from({ length: 2000 }, () => lan.oneWay(0, 1))
    const m = median(xs)
    const model = LATENCY.lan
    assert.ok(Math.abs(m - (model.baseMs[0][0] + model.jitterMedianMs)) < 0.05, `median ${m}`)
  })

  it('a small message arrives one latency after it is sent', () => {
    const { w } = net(2, { latency: 'lan', bandwidthMbps: 1000 })
    const t = w.send(0, 1, 100, 1000)
    assert.ok(t > 1000 + 0.25 && t < 1000 + 50, `arrived at ${t}`)
  })

  it('loss under TCP delays (by a retransmission timeout) and never drops', () => {
    const { w } = net(2, { latency: 'lan', loss: 0.3, lossMode: 'tcp' })
    const lat = Array.from({ length: 4000 }, () => w.send(0, 1, 200, 0))
    assert.ok(
      lat.every((t) => t >= 0),
      'nothing dropped',
    )
    const late = lat.filter((t) => t >= 200).length / lat.length
    assert.ok(late > 0.2 && late < 0.4, `share delayed by an RTO: ${late}`)
  })

  it('loss in datagram mode drops about that share', () => {
    const { w } = net(2, { latency: 'lan', loss: 0.1, lossMode: 'datagram' })
    const lat = Array.from({ length: 10_000 }, () => w.send(0, 1, 200, 0))
    const dropped = lat.filter((t) => t === DROPPED).length / lat.length
    assert.ok(dropped > 0.08 && dropped < 0.12, `dropped ${dropped}`)
    assert.ok(
      lat.filter((t) => t >= 0).every((t) => t < 100),
      'the rest is not delayed',
    )
  })

  it('no loss: every message arrives', () => {
    const { w } = net(3, { latency: 'wan' })
    for (let i = 0; i < 1000; i++) assert.ok(w.send(i % 3, (i + 1) % 3, 500, i) >= i)
  })

  it('partitions: nothing crosses the cut until it heals; each side still talks', () => {
    const { w } = net(6, { latency: 'lan' })
    w.setPartition((i) => (i < 3 ? 1 : 2))
    assert.equal(w.send(0, 4, 100, 0), HELD)
    assert.equal(w.send(5, 1, 100, 0), HELD)
    assert.ok(w.send(0, 2, 100, 0) > 0)
    assert.ok(w.send(3, 5, 100, 0) > 0)
    assert.equal(w.reachable(0, 4), false)
    assert.equal(w.reachable(0, 1), true)
    w.heal()
    assert.ok(w.send(0, 4, 100, 0) > 0)
    assert.equal(w.reachable(0, 4), true)
  })

  it('down nodes are unreachable', () => {
    const { w, down } = net(3, { latency: 'lan' })
    down.add(2)
    assert.equal(w.reachable(0, 2), false)
    assert.equal(w.reachable(0, 1), true)
  })

  it('NAT-only to NAT-only goes through a relay (two hops); public peers reach them directly', () => {
    // 0, 1 NAT-only; 2, 3 public
    const { w, down } = net(4, { latency: 'wan', relaysPerNat: 1 }, (i) => i < 2)
    const r = w.relayFor(1, 0)
    assert.ok(r === 2 || r === 3, 'the relay is a public member')
    const hops = Array.from({ length: 200 }, () => w.send(0, 1, 100, 0))
    const direct = Array.from({ length: 200 }, () => w.send(2, 1, 100, 0))
    assert.ok(
      hops.every((t) => t >= w.baseMs(0, r) + w.baseMs(r, 1)),
      'at least both hops',
    )
    assert.ok(direct.every((t) => t >= 0))
    // the relay goes away: the reservation moves to the other public member
    down.add(r)
    const r2 = w.relayFor(1, 0)
    assert.equal(r2, r === 2 ? 3 : 2)
    assert.ok(w.relayMoves >= 1)
    // no public member left: unreachable
    down.add(r2)
    assert.equal(w.relayFor(1, 0), -1)
    assert.equal(w.send(0, 1, 100, 0), DROPPED)
    assert.equal(w.reachable(0, 1), false)
  })

  it('bandwidth: bulk transfers queue on the uplink, small messages pass them', () => {
    const { w } = net(3, { latency: 'lan', bandwidthMbps: 80 }) // 10 bytes per microsecond: 10 kB/ms
    const big = 1_000_000
    const t1 = w.send(0, 1, big, 0)
    const t2 = w.send(0, 2, big, 0)
    assert.ok(t1 >= 100 && t1 < 110, `first megabyte after ~100 ms: ${t1}`)
    assert.ok(t2 >= 200 && t2 < 210, `second one waits for the first: ${t2}`)
    const small = w.send(0, 2, 200, 0)
    assert.ok(small < 10, `a probe is not stuck behind them: ${small}`)
    assert.ok(BULK_BYTES > 1000)
    // what was queued and not sent when the sender dies
    const left = w.flush(0, 150)
    assert.ok(Math.abs(left - 500_000) < 1000, `unsent ${left}`)
  })

  it('is deterministic for a seed', () => {
    const a = net(10, { latency: 'wan', loss: 0.05 }).w
    const b = net(10, { latency: 'wan', loss: 0.05 }).w
    for (let i = 0; i < 500; i++)
      assert.equal(a.send(i % 10, (i * 7) % 10, 300, i), b.send(i % 10, (i * 7) % 10, 300, i))
  })
})
