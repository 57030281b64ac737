import assert from 'node:assert/strict'
import {
  BroadcastQueue,
  fanoutWidth,
  PIGGYBACK,
  RETRANSMIT_MIN,
  retransmitLimit,
} from '../../src/membership/broadcasts.js'
import { mulberry32 } from '../../src/membership/swim.js'

describe('membership broadcast queue', () => {
  it('sends each item a bounded number of times that grows with log N, then forgets it', () => {
    assert.equal(retransmitLimit(4, 9), 8)
    assert.equal(retransmitLimit(4, 1000), 16)
    assert.equal(retransmitLimit(4, 10_000), 20)
    const q = new BroadcastQueue<string>({ retransmitMult: 3 })
    q.enqueue('a', 'a1', 10)
    // 3 * ceil(log10(1001)) = 12 sends at 1,000 members
    const sent: string[][] = []
    for (let i = 0; i < 14; i++) sent.push(q.take(100, 1000))
    assert.deepEqual(sent, [...Array(12).fill(['a1']), [], []])
    assert.equal(q.size, 0)
  })

  it('a small cluster still sends each item RETRANSMIT_MIN times (the default lambda gives 4 at 50)', () => {
    assert.equal(RETRANSMIT_MIN, 8)
    assert.equal(retransmitLimit(2, 50), 8)
    assert.equal(retransmitLimit(2, 10_000), 10)
    const q = new BroadcastQueue<string>()
    q.enqueue('dead/x', 'x-dead', 10)
    let sends = 0
    for (let i = 0; i < 20; i++) sends += q.take(100, 50, `m${i}`).length
    assert.equal(sends, 8)
  })

  it('says whether an item is due to a member: not to whoever has it, nor twice (a pair has nothing due)', () => {
    const q = new BroadcastQueue<string>()
    // b's record, heard from b: in a pair it is due to nobody (the fan-out rests)
    q.enqueue('record/b', 'b1', 10, ['b'])
    assert.equal(q.size, 1)
    assert.equal(q.hasFor('b'), false)
    assert.equal(q.hasFor('c'), true)
    assert.deepEqual(q.take(100, 3, 'c'), ['b1'])
    assert.equal(q.hasFor('c'), false)
    // in a cluster of 3 both others have it now: it left the queue, short of its send limit
    assert.equal(q.size, 0)
  })

  it("forgets an item every other member has: a pair does not hold the other's news forever", () => {
    const q = new BroadcastQueue<string>()
    q.enqueue('record/b', 'b1', 10, ['b', 'b'])
    assert.deepEqual(q.take(100, 2, 'b'), [], 'not sent back to b')
    assert.equal(q.size, 0, 'and gone: nobody else to tell')
    q.enqueue('record/b', 'b2', 10, ['b'])
    assert.deepEqual(q.take(100, 5, 'b'), [])
    assert.equal(q.size, 1, 'in a cluster of 5 others still need it')
  })

  it('a newer item about the same key replaces the queued one', () => {
    const q = new BroadcastQueue<string>()
    q.enqueue('claim/p', 'suspect', 10)
    q.take(100, 10)
    q.enqueue('claim/p', 'dead', 10)
    assert.equal(q.size, 1)
    assert.deepEqual(q.take(100, 10), ['dead'])
  })

  it('fills a message up to its byte budget, least-sent and newest first', () => {
    const q = new BroadcastQueue<string>()
    q.enqueue('x', 'old', 40)
    q.take(100, 10)
    q.enqueue('y', 'new1', 40)
    q.enqueue('z', 'new2', 40)
    // fresh items before the one already sent once; the third does not fit in 100 bytes
    assert.deepEqual(q.take(100, 10), ['new2', 'new1'])
    assert.deepEqual(q.take(100, 10), ['new2', 'new1'])
    // now 'old' has been sent fewer times than the others
    assert.deepEqual(q.take(100, 10), ['old', 'new2'])
  })

  it('drops the items of a group that news outdated, and only those', () => {
    const q = new BroadcastQueue<{ id: string; inc: number }>()
    for (let i = 0; i < 200; i++) q.enqueue(`s/x/${i}`, { id: `x${i}`, inc: i < 150 ? 1 : 2 }, 10, [], 'x')
    q.enqueue('s/y/0', { id: 'y0', inc: 1 }, 10, [], 'y')
    q.enqueue('c/x', { id: 'x-dead', inc: 1 }, 10)
    assert.equal(
      q.dropGroup('x', (v) => v.inc < 2),
      150,
    )
    assert.equal(
      q.dropGroup('x', (v) => v.inc < 2),
      0,
      'gone already',
    )
    assert.equal(
      q.dropGroup('z', () => true),
      0,
      'an empty group',
    )
    assert.equal(q.size, 52)
    const taken = q.take(10_000, 1000).map((v) => v.id)
    assert.equal(taken.length, 52)
    assert.ok(taken.includes('y0') && taken.includes('x-dead') && taken.includes('x150'))
    assert.ok(!taken.some((id) => /^x\d+$/.test(id) && Number(id.slice(1)) < 150), 'no dropped item is sent')
    // a replaced item leaves its group: dropping the group does not take its replacement
    q.enqueue('s/y/0', { id: 'y0b', inc: 1 }, 10)
    assert.equal(
      q.dropGroup('y', () => true),
      0,
    )
    assert.deepEqual(
      q
        .take(10_000, 1000)
        .map((v) => v.id)
        .filter((id) => id.startsWith('y')),
      ['y0b'],
    )
  })

  it('counts the bytes still queued; the fan-out widens with them, from 3 to 12 members a round', () => {
    const q = new BroadcastQueue<string>({ maxItems: 3 })
    q.enqueue('a', 'a1', 100)
    q.enqueue('b', 'b1', 200, [], 'g')
    assert.equal(q.bytes, 300)
    q.enqueue('a', 'a2', 50)
    assert.equal(q.bytes, 250, 'a replaced item no longer counts')
    q.dropGroup('g', () => true)
    assert.equal(q.bytes, 50)
    q.enqueue('c', 'c1', 10)
    q.enqueue('d', 'd1', 10)
    q.enqueue('e', 'e1', 10)
    assert.equal(q.size, 3)
    assert.equal(q.bytes, 30, 'the dropped item left with its bytes')
    for (let i = 0; i < 20; i++) q.take(1000, 10)
    assert.equal(q.bytes, 0)
    assert.equal(fanoutWidth(0), PIGGYBACK.fanout)
    assert.equal(fanoutWidth(3 * PIGGYBACK.budget), 3)
    assert.equal(fanoutWidth(3 * PIGGYBACK.budget + 1), 4)
    assert.equal(fanoutWidth(1_000_000), PIGGYBACK.fanoutMax)
  })

  it('holds at most maxItems, dropping the most-sent first', () => {
    const q = new BroadcastQueue<string>({ maxItems: 2 })
    q.enqueue('a', 'a', 1)
    q.take(1, 10)
    q.enqueue('b', 'b', 1)
    q.enqueue('c', 'c', 1)
    assert.equal(q.size, 2)
    assert.deepEqual(q.take(10, 10).sort(), ['b', 'c'])
  })
  it('with a member index, takes exactly what it takes by peer ID (unknown members kept apart)', () => {
    // m0..m11 have numbers; x0..x3 are members the index does not know (-1)
    const peers = [...Array.from({ length: 12 }, (_, i) => `m${i}`), 'x0', 'x1', 'x2', 'x3']
    const index = (p: string) => (p.startsWith('m') ? Number(p.slice(1)) : -1)
    const byId = new BroadcastQueue<string>()
    const byIndex = new BroadcastQueue<string>({ index })
    const rng = mulberry32(11)
    const pick = () => peers[Math.floor(rng() * peers.length)]
    const out: Array<[string[], string[], boolean, boolean]> = []
    for (let step = 0; step < 2_000; step++) {
      if (rng() < 0.3) {
        const key = `k${Math.floor(rng() * 40)}`
        const skip = [pick(), pick()]
        const bytes = 5 + Math.floor(rng() * 20)
        byId.enqueue(key, `${key}@${step}`, bytes, skip)
        byIndex.enqueue(key, `${key}@${step}`, bytes, skip)
      } else {
        const to = pick()
        out.push([byId.take(60, 16, to), byIndex.take(60, 16, to), byId.hasFor(to), byIndex.hasFor(to)])
      }
    }
    for (const [a, b, ha, hb] of out) {
      assert.deepEqual(b, a)
      assert.equal(hb, ha)
    }
    assert.ok(
      out.some(([a]) => a.length > 1),
      'it took news',
    )
    assert.ok(
      out.some(([a], i) => a.length === 0 && i > 100),
      'and sometimes had none due',
    )
  })
})
