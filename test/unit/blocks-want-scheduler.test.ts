import assert from 'node:assert/strict'
import { cidOf } from '../../src/blocks/cid.js'
import { type Need, REDISCOVER_MS, type WantEffect, WantScheduler } from '../../src/blocks/want-scheduler.js'

/** The want scheduler alone: no sessions, no store, time is a number the test moves. */
const CFG = { windowBytes: 30_000, maxWants: 4, providerTimeoutMs: 1_000, stallTimeoutMs: 3_000 }

function needs(n: number, size = 10_000): Need[] {
  return Array.from({ length: n }, (_, i) => ({ cid: cidOf(new TextEncoder().encode(`block ${i}`)), size }))
}

const wants = (es: WantEffect[], peer?: string) =>
  es.filter((e) => e.type === 'want' && (peer === undefined || e.peer === peer)) as Array<
    Extract<WantEffect, { type: 'want' }>
  >
const types = (es: WantEffect[]) => es.map((e) => e.type)
const none = () => undefined

describe('blocks: want scheduler (sans-IO, fake clock)', () => {
  it('fills each provider up to its window, and refills it as blocks arrive', () => {
    const s = new WantScheduler(CFG)
    const ns = needs(10)
    s.load(ns, 0)
    s.connecting('a')
    s.connecting('b')
    // 30 kB window of 10 kB blocks: 3 each, even though maxWants is 4
    const a = wants(s.have('a'))
    const b = wants(s.have('b'))
    assert.deepEqual(
      a.map((w) => w.need),
      ns.slice(0, 3),
    )
    assert.deepEqual(
      b.map((w) => w.need),
      ns.slice(3, 6),
    )
    assert.equal(s.settle('a', ns[0].cid), ns[0])
    assert.equal(s.stored('a', ns[0], 10_000, 10), true)
    assert.deepEqual(
      wants(s.pump('a')).map((w) => w.need),
      [ns[6]],
    )
    assert.equal(s.remaining, 9)
  })

  it('refills a window in batches: once a quarter of it is free, not after every block', () => {
    // 8 wants of 10 kB fit (the byte window is not the bound here); a quarter is 2
    const s = new WantScheduler({ ...CFG, maxWants: 8, windowBytes: 1_000_000 })
    const ns = needs(20)
    s.load(ns, 0)
    s.connecting('a')
    assert.equal(wants(s.have('a')).length, 8)
    s.settle('a', ns[0].cid)
    s.stored('a', ns[0], 10_000, 1)
    // one free slot: the next want waits for a second one, so both go out in one message
    assert.deepEqual(wants(s.pump('a')), [])
    s.settle('a', ns[1].cid)
    s.stored('a', ns[1], 10_000, 2)
    assert.deepEqual(
      wants(s.pump('a')).map((w) => w.need),
      ns.slice(8, 10),
    )
  })

  it('a want of unknown size takes a whole window alone', () => {
    const s = new WantScheduler(CFG)
    s.load(needs(3, 0), 0)
    s.connecting('a')
    assert.equal(wants(s.have('a')).length, 1)
  })

  it('dont-have sends the block to another provider, never back to the one that lacks it', () => {
    const s = new WantScheduler(CFG)
    const ns = needs(1)
    s.load(ns, 0)
    s.connecting('a')
    s.connecting('b')
    assert.equal(wants(s.have('a')).length, 1)
    assert.equal(wants(s.have('b')).length, 0)
    s.settle('a', ns[0].cid)
    s.dontHave('a', ns[0])
    assert.deepEqual(wants(s.pump('a')), [])
    assert.deepEqual(
      wants(s.pump('b')).map((w) => w.need),
      ns,
    )
  })

  it('a provider whose oldest want is older than providerTimeoutMs is dropped; its wants go to another', () => {
    const s = new WantScheduler(CFG)
    const ns = needs(2)
    s.load(ns, 0)
    s.connecting('slow')
    s.connecting('b')
    assert.equal(wants(s.have('slow')).length, 2)
    s.have('b')
    const oldest = (p: string) => (p === 'slow' ? 0 : undefined)
    assert.deepEqual(types(s.tick(1_000, oldest)), [])
    const es = s.tick(1_001, oldest)
    assert.deepEqual(es[0], { type: 'drop', peer: 'slow', state: 'gone', why: 'no answer for 1 s' })
    assert.equal(s.stateOf('slow'), 'gone')
    assert.deepEqual(
      wants(s.pump('b')).map((w) => w.need.cid.toString()),
      ns.map((n) => n.cid.toString()),
    )
    // a late answer from the dropped provider does not count
    assert.equal(s.settle('slow', ns[0].cid), undefined)
  })

  it('a corrupt block bans the provider for the rest of the transfer', () => {
    const s = new WantScheduler(CFG)
    const ns = needs(3)
    s.load(ns, 0)
    s.connecting('bad')
    s.have('bad')
    s.settle('bad', ns[0].cid)
    const es = s.wantFailed('bad', ns[0], true, 'bad hash')
    assert.deepEqual(es, [{ type: 'drop', peer: 'bad', state: 'banned', why: 'bad hash' }])
    assert.deepEqual(s.views(), [
      { peerId: 'bad', state: 'banned', bytes: 0, blocks: 0, dontHave: 0, corrupt: 1, error: 'bad hash' },
    ])
    // its other wants failing later does not drop it twice
    assert.deepEqual(s.wantFailed('bad', ns[1], false, 'closed'), [])
    assert.equal(s.stateOf('bad'), 'banned')
  })

  it('nobody has the key block: unavailable once a discovery round has ended, not after the stall timeout', () => {
    const s = new WantScheduler(CFG)
    s.load(needs(2), 0)
    s.discoveryStarted(0)
    s.connecting('a')
    s.lacks('a')
    assert.deepEqual(types(s.tick(250, none)), [], 'still discovering')
    s.discoveryEnded()
    assert.deepEqual(types(s.tick(500, none)), ['unavailable'])
  })

  it('stuck with partial holders: forgets dont-haves and asks again every REDISCOVER_MS, gives up after stallTimeoutMs', () => {
    const s = new WantScheduler(CFG)
    const ns = needs(2)
    s.load(ns, 0)
    s.discoveryStarted(0)
    s.connecting('a')
    s.have('a')
    for (const n of ns) {
      s.settle('a', n.cid)
      s.dontHave('a', n)
    }
    s.discoveryEnded()
    assert.deepEqual(types(s.tick(REDISCOVER_MS, none)), [], 'too soon to ask again')
    // a is asked again for what it lacked: it may have fetched it meanwhile
    const es = s.tick(REDISCOVER_MS + 1, none)
    assert.deepEqual(types(es), ['rediscover', 'want', 'want'])
    s.discoveryStarted(REDISCOVER_MS + 1)
    for (const n of ns) {
      s.settle('a', n.cid)
      s.dontHave('a', n)
    }
    s.discoveryEnded()
    assert.deepEqual(types(s.tick(3_000, none)), [])
    assert.deepEqual(types(s.tick(3_001, none)), ['unavailable'])
  })

  it('a block that arrives resets the stall clock', () => {
    const s = new WantScheduler(CFG)
    const ns = needs(2)
    s.load(ns, 0)
    s.discoveryStarted(0)
    s.connecting('a')
    s.have('a')
    s.settle('a', ns[0].cid)
    s.stored('a', ns[0], 10_000, 2_900)
    s.settle('a', ns[1].cid)
    s.dontHave('a', ns[1])
    s.discoveryEnded()
    assert.deepEqual(
      types(s.tick(3_500, none)),
      ['rediscover', 'want'],
      'not unavailable: a block came at 2.9 s',
    )
    s.discoveryStarted(3_500)
    s.settle('a', ns[1].cid)
    s.dontHave('a', ns[1])
    s.discoveryEnded()
    assert.deepEqual(types(s.tick(5_400, none)), [])
    assert.deepEqual(types(s.tick(5_901, none)).at(-1), 'unavailable', 'nothing for 3 s since 2.9 s')
  })

  it('lost providers are remembered for rediscovery; those that never had the key are not', () => {
    const s = new WantScheduler(CFG)
    s.load(needs(1), 0)
    s.connecting('a')
    s.connecting('b')
    s.have('a')
    s.unreachable('b', 'refused')
    s.failed('a', 'reset')
    assert.deepEqual(s.lost(), ['a'])
    assert.equal(s.found, true)
  })
})
