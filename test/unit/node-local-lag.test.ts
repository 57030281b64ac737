import assert from 'node:assert/strict'
import { LAG_SAMPLE_MS, LocalLag, MAX_STRETCH, starvedShare, stretched } from '../../src/node/local-lag.js'

describe('local lag: handshake deadlines stretch while our own event loop runs late', () => {
  it('a healthy loop keeps the deadline; lateness stretches it, up to 8x', () => {
    assert.equal(stretched(4_000, 0), 4_000)
    assert.equal(stretched(4_000, 50), 4_000, 'a GC pause is not starvation')
    assert.equal(stretched(4_000, 250), 8_000)
    assert.equal(stretched(4_000, 1_050), 24_000)
    assert.equal(stretched(4_000, 60_000), 4_000 * MAX_STRETCH)
    assert.equal(stretched(4_000, -5), 4_000)
  })

  it('the remembered lag rises at once and falls back over seconds', () => {
    const lag = new LocalLag()
    lag.sample(1_000)
    assert.equal(lag.ms, 1_000)
    lag.sample(0)
    assert.equal(lag.ms, 800)
    for (let i = 0; i < 30; i++) lag.sample(0)
    assert.ok(lag.ms < 2, `after 30 quiet seconds: ${lag.ms} ms`)
    assert.equal(lag.stretch(5_000), 5_000)
  })

  it('a start on a starved machine counts: the share of the busy time spent waiting for a CPU', () => {
    assert.equal(starvedShare(1_155, 1_359), 0, 'healthy: CPU time (all threads) keeps up')
    assert.equal(starvedShare(6_849, 1_690).toFixed(2), '0.75')
    assert.equal(starvedShare(300, 10), 0, 'too short to say')
    assert.equal(starvedShare(10_000, 0), 1)
  })

  it('measures a real starved event loop: blocked for longer than a sample period, the deadlines stretch', async function () {
    this.timeout(20_000)
    const lag = new LocalLag()
    lag.start()
    try {
      // forget what the start itself measured (this process's history): only the block counts
      for (let i = 0; i < 40; i++) lag.sample(0)
      assert.ok(lag.ms < 1)
      // hold the event loop for 1.5 sample periods: the next sample is >= half a period late
      const until = performance.now() + LAG_SAMPLE_MS * 1.5
      while (performance.now() < until) {}
      const deadline = Date.now() + 5 * LAG_SAMPLE_MS
      while (lag.ms < LAG_SAMPLE_MS / 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      assert.ok(lag.ms >= LAG_SAMPLE_MS / 2, `lag seen: ${lag.ms} ms`)
      assert.ok(lag.stretch(4_000) >= stretched(4_000, LAG_SAMPLE_MS / 2))
    } finally {
      lag.stop()
    }
  })
})
