import assert from 'node:assert/strict'
import { type ConnectionView, settle } from '../../src/node/one-connection.js'

/** The same connection seen from the other end: the dialer flips, the id stays. */
const mirror = (c: ConnectionView): ConnectionView => ({
  ...c,
  dialer: c.dialer === 'self' ? 'remote' : 'self',
})
const ids = (cs: ConnectionView[]) => cs.map((c) => c.id).sort()

describe('one connection per pair of members (settle)', () => {
  const small = 'QmAAA'
  const large = 'QmZZZ'

  it('crossed dials: both ends drop the same connection and keep the smaller peer ID’s dial', () => {
    // as the smaller peer sees them: c1 it dialled, c2 the larger peer dialled (opened earlier)
    const mine: ConnectionView[] = [
      { id: 'c1', dialer: 'self', openedAt: 200, kind: 'direct' },
      { id: 'c2', dialer: 'remote', openedAt: 100, kind: 'direct' },
    ]
    const here = settle(small, large, mine)
    // the other end's clock and order differ: opened times mean nothing across the pair
    const there = settle(
      large,
      small,
      mine.map((c) => ({ ...mirror(c), openedAt: 1000 - c.openedAt })),
    )
    assert.deepEqual(ids(here.keep), ['c1'])
    assert.deepEqual(ids(here.drop), ['c2'])
    assert.deepEqual(ids(there.keep), ids(here.keep))
    assert.deepEqual(ids(there.drop), ids(here.drop))
  })

  it('two dials by one side: the dialer drops all but its first, the other end waits for it', () => {
    const dialer: ConnectionView[] = [
      { id: 'c1', dialer: 'self', openedAt: 300, kind: 'direct' },
      { id: 'c2', dialer: 'self', openedAt: 100, kind: 'direct' },
    ]
    const d = settle(large, small, dialer)
    assert.deepEqual(ids(d.keep), ['c2'])
    assert.deepEqual(ids(d.drop), ['c1'])
    const other = settle(small, large, dialer.map(mirror))
    assert.deepEqual(ids(other.drop), [])
  })

  it('drops relayed connections beside a direct one, on both ends, and leaves other kinds alone', () => {
    const cs: ConnectionView[] = [
      { id: 'tcp', dialer: 'remote', openedAt: 1, kind: 'direct' },
      { id: 'relay', dialer: 'self', openedAt: 2, kind: 'relayed' },
      { id: 'relay2', dialer: 'remote', openedAt: 3, kind: 'relayed' },
      { id: 'rtc', dialer: 'self', openedAt: 4, kind: 'webrtc' },
    ]
    for (const [self, remote, view] of [
      [small, large, cs],
      [large, small, cs.map(mirror)],
    ] as const) {
      const { keep, drop } = settle(self, remote, view)
      assert.deepEqual(ids(drop), ['relay', 'relay2'])
      assert.deepEqual(ids(keep), ['rtc', 'tcp'])
    }
  })

  it('keeps relayed connections where no direct one is (beside WebRTC: the NAT path)', () => {
    const cs: ConnectionView[] = [
      { id: 'relay', dialer: 'self', openedAt: 2, kind: 'relayed' },
      { id: 'relay2', dialer: 'remote', openedAt: 3, kind: 'relayed' },
      { id: 'rtc', dialer: 'self', openedAt: 4, kind: 'webrtc' },
    ]
    assert.deepEqual(settle(small, large, cs).drop, [])
    assert.deepEqual(settle(large, small, cs.map(mirror)).drop, [])
  })

  it('three connections, two from the preferred side: both ends drop the same extra ones', () => {
    const cs: ConnectionView[] = [
      { id: 'a', dialer: 'self', openedAt: 1, kind: 'direct' },
      { id: 'b', dialer: 'remote', openedAt: 2, kind: 'direct' },
      { id: 'c', dialer: 'remote', openedAt: 3, kind: 'direct' },
    ]
    const here = settle(large, small, cs) // the remote (small) is preferred: its two dials win
    assert.deepEqual(ids(here.drop), ['a'])
    const there = settle(small, large, cs.map(mirror)) // the dialer of b and c keeps its first
    assert.deepEqual(ids(there.drop), ['a', 'c'])
    assert.deepEqual(ids(there.keep), ['b'])
  })
})
