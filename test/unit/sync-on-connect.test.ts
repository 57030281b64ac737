import assert from 'node:assert/strict'
import { syncOnConnect } from '../../src/membership/sync-on-connect.js'

const base = { outbound: true, peerStatus: 'alive' as const, lastSyncOkAt: 10_000, now: 12_000, gapMs: 5_000 }

describe('sync on a new connection (sync-on-connect.ts)', () => {
  it('a member whose table is current does not sync with each member it connects to', () => {
    assert.equal(syncOnConnect(base), false, 'the dialer synced 2 s ago')
    assert.equal(syncOnConnect({ ...base, peerStatus: 'suspect' }), false)
    assert.equal(syncOnConnect({ ...base, outbound: false }), false, 'nor the end that was dialled')
  })

  it('the dialer syncs once its last sync is a gap old, or when it never synced', () => {
    assert.equal(syncOnConnect({ ...base, now: 15_000 }), true)
    assert.equal(syncOnConnect({ ...base, lastSyncOkAt: Number.NEGATIVE_INFINITY, now: 0 }), true)
    assert.equal(
      syncOnConnect({ ...base, outbound: false, now: 15_000 }),
      false,
      'not the end that was dialled',
    )
  })

  it('either end syncs with a member it does not hold alive, whatever the gap: a joiner, or one back', () => {
    for (const peerStatus of [undefined, 'dead', 'left'] as const)
      for (const outbound of [true, false])
        assert.equal(syncOnConnect({ ...base, outbound, peerStatus }), true)
  })
})
