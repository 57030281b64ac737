import assert from 'node:assert/strict'
import { Backoff, BackoffMap } from '../../src/node/backoff.js'

describe('redial back-off', () => {
  const mid = () => 0.5 // no jitter: the pause is exactly min * 2^(n-1), capped

  it('doubles from the minimum to the cap, and jitter stays within +-20%', () => {
    const b = new Backoff({ minMs: 10_000, maxMs: 300_000, random: mid })
    assert.equal(b.due(), 0)
    const waits: number[] = []
    for (let i = 0; i < 7; i++) {
      b.failed()
      waits.push(b.due())
    }
    assert.deepEqual(waits, [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000])
    const low = new Backoff({ minMs: 10_000, maxMs: 300_000, random: () => 0 })
    const high = new Backoff({ minMs: 10_000, maxMs: 300_000, random: () => 1 })
    low.failed()
    high.failed()
    assert.deepEqual([low.due(), high.due()], [8_000, 12_000])
  })

  it('a key waits out its back-off; a success forgets it', () => {
    const m = new BackoffMap({ minMs: 10_000, maxMs: 300_000, random: mid })
    assert.equal(m.ready('seed', 0), true)
    assert.equal(m.failed('seed', 0), 10_000)
    assert.equal(m.ready('seed', 9_999), false)
    assert.equal(m.ready('seed', 10_000), true)
    m.succeeded('seed')
    assert.equal(m.failed('seed', 20_000), 10_000)
  })

  it('with a cap on the wait (an isolated member), a key is ready again that long after its last failure', () => {
    const m = new BackoffMap({ minMs: 10_000, maxMs: 300_000, random: mid })
    let now = 0
    // five failures in a row: the back-off has grown to 160 s
    for (let i = 0; i < 5; i++) now += m.failed('seed', now)
    const last = now - 160_000
    assert.equal(m.ready('seed', last + 60_000), false, 'without a cap it waits the full 160 s')
    assert.equal(m.ready('seed', last + 59_999, 60_000), false)
    assert.equal(m.ready('seed', last + 60_000, 60_000), true, 'capped at 60 s after the last failure')
    // a failure at the capped try starts the next minute from there
    m.failed('seed', last + 60_000)
    assert.equal(m.ready('seed', last + 119_999, 60_000), false)
    assert.equal(m.ready('seed', last + 120_000, 60_000), true)
  })
})
