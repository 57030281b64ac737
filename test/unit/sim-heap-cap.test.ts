import assert from 'node:assert/strict'
import { formedRows, OLD_SPACE_CAP_MB, oldSpaceCapMb } from '../../sim/heap-cap.js'
import { SIM_DEFAULTS } from '../../sim/sim.js'

describe('sim old-generation cap by run size', () => {
  it('caps the 10,000-member run (light members, 7.9 M rows) and its sweep', () => {
    assert.equal(formedRows(10_000, SIM_DEFAULTS), 500 * 10_000 + 9_500 * 301)
    assert.equal(oldSpaceCapMb([10_000], SIM_DEFAULTS), OLD_SPACE_CAP_MB)
    assert.equal(oldSpaceCapMb([100, 1_000, 10_000], SIM_DEFAULTS), OLD_SPACE_CAP_MB)
  })

  it('leaves node its own limit for the 100,000-member light run and for all-full runs', () => {
    const light100k = { ...SIM_DEFAULTS, observers: 20, sample: 100 }
    assert.ok(formedRows(100_000, light100k) > 12_000_000)
    assert.equal(oldSpaceCapMb([100_000], light100k), undefined)
    assert.equal(oldSpaceCapMb([1_000], SIM_DEFAULTS), undefined)
    assert.equal(oldSpaceCapMb([20_000], SIM_DEFAULTS), undefined)
  })
})
