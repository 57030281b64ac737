import assert from 'node:assert/strict'
import { ToldPathMtus } from '../../src/overlay/path-mtu.js'

describe('overlay: the path MTUs told to the kernel are undone when the carrier takes more', () => {
  it('asks once to forget, when the size goes above the lowest MTU told for that member', () => {
    const t = new ToldPathMtus()
    assert.equal(t.raised('b', 16000), false, 'nothing told: nothing to forget')
    t.lowered('b', 2924)
    t.lowered('b', 1280)
    t.lowered('b', 2924) // a later, larger one does not raise the kernel's either
    assert.equal(t.raised('b', 1280), false)
    assert.equal(t.raised('b', 2924), true, 'above the 1280 the kernel holds')
    assert.equal(t.raised('b', 16000), false, 'once')
  })

  it('keeps members apart', () => {
    const t = new ToldPathMtus()
    t.lowered('b', 1280)
    t.lowered('c', 1280)
    assert.equal(t.raised('b', 16000), true)
    assert.equal(t.raised('c', 1280), false)
    assert.equal(t.raised('c', 65000), true)
  })
})
