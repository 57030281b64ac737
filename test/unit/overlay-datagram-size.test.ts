import assert from 'node:assert/strict'
import { DatagramSizer, fragmentsOf, LOSS_TARGET, RAISE_AFTER_MS } from '../../src/overlay/datagram-size.js'

// The sender's side of the loss reports: it sends `perReport` datagrams of its current size, the
// member reports its totals when each fragment is lost with probability `q` (expected values, no
// randomness: the arithmetic is what is under test).
const totals = new WeakMap<DatagramSizer, { expected: number; received: number }>()
function report(s: DatagramSizer, expected: number, received: number, now: number): void {
  const t = totals.get(s) ?? { expected: 0, received: 0 }
  t.expected += expected
  t.received += received
  totals.set(s, t)
  s.report(t.expected % 2 ** 32, t.received % 2 ** 32, now)
}
function run(s: DatagramSizer, q: number, reports: number, t0 = 0, perReport = 2000): number {
  let now = t0
  for (let i = 0; i < reports; i++) {
    const k = fragmentsOf(s.size, s.ip)
    for (let j = 0; j < perReport; j++) s.sent(s.size)
    report(s, perReport, Math.round(perReport * (1 - q) ** k), now)
    now += 1000
  }
  return now
}

describe('overlay: the UDP packet size follows the loss the member reports', () => {
  const limits = { min: 1280, max: 8000 }

  it('counts IPv4 fragments on a 1500-byte path as a sealed UDP datagram needs them', () => {
    assert.equal(fragmentsOf(1280), 1)
    assert.equal(fragmentsOf(1444), 1)
    assert.equal(fragmentsOf(1445), 2)
    assert.equal(fragmentsOf(4000), 3)
    assert.equal(fragmentsOf(8000), 6)
  })

  it('counts IPv6 fragments with its 40-byte header and the Fragment header of the fragments', () => {
    // unfragmented: 1500 - 40 (IPv6) - 8 (UDP) - 28 (sealing) = 1424
    assert.equal(fragmentsOf(1280, 6), 1)
    assert.equal(fragmentsOf(1424, 6), 1)
    assert.equal(fragmentsOf(1425, 6), 2)
    // fragmented: 1448 bytes of the UDP datagram each (1500 - 40 - 8, a multiple of 8)
    assert.equal(fragmentsOf(2 * 1448 - 36, 6), 2)
    assert.equal(fragmentsOf(2 * 1448 - 35, 6), 3)
    assert.equal(fragmentsOf(8000, 6), 6)
    assert.equal(fragmentsOf(8640, 6), 6)
    assert.equal(fragmentsOf(8640, 4), 6)
    assert.equal(fragmentsOf(8700, 6), 7)
  })

  it('on an IPv6 underlay, picks sizes that fit its fragments', () => {
    const v6 = new DatagramSizer({ ...limits, ip: 6 })
    const v4 = new DatagramSizer(limits)
    // 0.4% loss per fragment: 2 fragments keep the packet loss under 1%
    for (const s of [v4, v6]) run(s, 0.004, 10)
    assert.equal(v4.size, 2 * 1480 - 36)
    assert.equal(v6.size, 2 * 1448 - 36)
    assert.equal(fragmentsOf(v6.size, 6), 2)
  })

  it('starts at the largest size and keeps it on a clean path', () => {
    const s = new DatagramSizer(limits)
    assert.equal(s.size, 8000)
    run(s, 0, 10)
    assert.equal(s.size, 8000)
    assert.equal(s.fragmentLoss, 0)
  })

  it('goes to the floor at 1% loss per fragment, where large packets stall TCP', () => {
    const s = new DatagramSizer(limits)
    run(s, 0.01, 1)
    assert.equal(s.size, 1280)
    run(s, 0.01, 100)
    assert.equal(s.size, 1280, 'and stays there while the loss lasts')
  })

  it('at 0.25% per fragment, sends the largest packets whose loss stays under the target', () => {
    const s = new DatagramSizer(limits)
    run(s, 0.0025, 5)
    assert.ok(s.size > 1280 && s.size < 8000, `size ${s.size}`)
    const k = fragmentsOf(s.size)
    assert.ok(k * 0.0025 <= LOSS_TARGET + 1e-9, `${k} fragments lose ${k * 0.0025}`)
    assert.ok((k + 1) * 0.0025 > LOSS_TARGET, 'one more fragment would be over the target')
  })

  it('acts on no estimate made of too few datagrams', () => {
    const s = new DatagramSizer(limits)
    s.sent(8000)
    s.sent(8000)
    report(s, 2, 1, 0) // half lost, but of 12 fragments
    assert.equal(s.size, 8000)
  })

  it('takes totals: datagrams that came after their report are found in the next, not lost for good', () => {
    const s = new DatagramSizer(limits)
    // the first report misses 10 datagrams that were only late; the next counts them with its own
    for (let i = 0; i < 20; i++) {
      for (let j = 0; j < 1000; j++) s.sent(8000)
      report(s, 1000, i === 0 ? 990 : i === 1 ? 1010 : 1000, i * 1000)
    }
    assert.equal(s.size, 8000)
    assert.ok(s.fragmentLoss < 0.0005, `fragment loss ${s.fragmentLoss}`)
  })

  it('ignores a report older than the last one (reordered on the path)', () => {
    const s = new DatagramSizer(limits)
    run(s, 0, 3)
    const size = s.size
    s.report(1000, 0, 5000) // totals far below the last report's: not 1000 lost datagrams
    assert.equal(s.size, size)
  })

  it('leaves the zone where TCP collapses on one report, whatever the clean history says', () => {
    const s = new DatagramSizer(limits)
    let now = run(s, 0, 30)
    assert.equal(s.size, 8000)
    now = run(s, 0.01, 1, now) // 6% of 8000-byte datagrams lost in one second
    assert.ok(s.size < 8000, 'down at once')
    assert.ok(fragmentsOf(s.size) * 0.01 <= 1.5 * LOSS_TARGET, `${s.size}: out of the zone`)
    run(s, 0.01, 5, now) // the loss lasts: the estimate catches up
    assert.equal(s.size, 1280)
  })

  it('goes back up only after RAISE_AFTER_MS of a path that stopped losing', () => {
    const s = new DatagramSizer(limits)
    let now = run(s, 0.01, 3)
    assert.equal(s.size, 1280)
    now = run(s, 0, 20, now) // 20 s clean: the old loss has decayed, but it is too soon
    assert.equal(s.size, 1280)
    run(s, 0, Math.ceil(RAISE_AFTER_MS / 1000), now)
    assert.equal(s.size, 8000)
  })

  it('goes back up as well when the traffic after the loss is too little to estimate from', () => {
    const s = new DatagramSizer(limits)
    let now = run(s, 0.01, 3)
    assert.equal(s.size, 1280)
    // 500 one-fragment datagrams a second: the decayed history never counts MIN_FRAGMENTS
    now = run(s, 0, 20, now, 500)
    assert.equal(s.size, 1280, 'not before RAISE_AFTER_MS')
    now = run(s, 0, Math.ceil(RAISE_AFTER_MS / 1000), now, 500)
    assert.equal(s.size, 8000)
    run(s, 0.01, 1, now, 500) // still losing at that rate: down again on the next report
    assert.ok(s.size < 8000, `size ${s.size}`)
  })

  it('stays down while a little traffic still loses datagrams', () => {
    const s = new DatagramSizer(limits)
    let now = run(s, 0.01, 3)
    for (let i = 0; i < 2 * Math.ceil(RAISE_AFTER_MS / 1000); i++) {
      for (let j = 0; j < 100; j++) s.sent(s.size)
      report(s, 100, i % 4 === 0 ? 99 : 100, now) // one lost every 4 s: too few to estimate from
      now += 1000
    }
    assert.equal(s.size, 1280)
  })
})
