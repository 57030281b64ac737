import assert from 'node:assert/strict'
import {
  closest,
  KAD,
  type KadId,
  kadIdOf,
  kadStartDials,
  keyWithCpl,
  leadingZeroBytes,
  refreshCpls,
} from '../../sim/kad.js'
import { mulberry32 } from '../../sim/rng.js'

// sim/kad.ts: the members a restarting agent's kad-dht dials (routing-table refresh + self-query)
describe('sim kad-dht start-up dials', () => {
  const cplBits = (a: KadId, b: KadId) => Math.clz32((a.hi ^ b.hi) >>> 0)

  it('a refresh key shares exactly cpl bits with our kad ID', () => {
    const rng = mulberry32(1)
    for (let i = 0; i < 200; i++) {
      const self = kadIdOf(7, i)
      for (let cpl = 0; cpl <= KAD.maxCpl; cpl++) assert.equal(cplBits(self, keyWithCpl(self, cpl, rng)), cpl)
    }
    assert.throws(() => keyWithCpl(kadIdOf(7, 0), KAD.maxCpl + 1, rng))
  })

  it('prefix lengths count zero bytes, as refresh.ts _prefixLengths does', () => {
    assert.equal(leadingZeroBytes({ hi: 0x12345678, lo: 1 }, { hi: 0x92345678, lo: 1 }), 0)
    assert.equal(leadingZeroBytes({ hi: 0x12345678, lo: 1 }, { hi: 0x12ff5678, lo: 1 }), 1)
    assert.equal(leadingZeroBytes({ hi: 0x12345678, lo: 1 }, { hi: 0x12345678, lo: 0x100 }), 6)
    // no member shares our first byte: only cpl 0 is refreshed
    const self = { hi: 0, lo: 0 }
    const ids = [
      { hi: 0x80000000, lo: 0 },
      { hi: 0x01000000, lo: 0 },
    ]
    assert.equal(
      refreshCpls(self, [0, 1], (j) => ids[j]),
      1,
    )
    ids.push({ hi: 0x00000100, lo: 0 })
    assert.equal(
      refreshCpls(self, [0, 1, 2], (j) => ids[j]),
      3,
    )
  })

  it('closest is by XOR distance', () => {
    const ids = [
      { hi: 0xf0000000, lo: 0 },
      { hi: 0x10000000, lo: 0 },
      { hi: 0x10000000, lo: 5 },
      { hi: 0x7, lo: 0 },
    ]
    assert.deepEqual(
      closest({ hi: 0x10000000, lo: 4 }, [0, 1, 2, 3], (j) => ids[j], 3),
      [2, 1, 3],
    )
  })

  it('up to K + 1 members every other member is dialled; at 50 and 1,000 K to 4 K', () => {
    const cover = (n: number, seed: number) => {
      const known = [...Array(n).keys()].filter((j) => j !== 0)
      const idOf = (j: number) => kadIdOf(seed, j)
      const a = kadStartDials(idOf(0), known, idOf, mulberry32(seed))
      const b = kadStartDials(idOf(0), known, idOf, mulberry32(seed))
      assert.deepEqual(a, b, 'a pure function of its inputs')
      assert.equal(new Set(a).size, a.length, 'no member twice')
      assert.ok(a.every((j) => known.includes(j)))
      return a.length
    }
    for (let seed = 1; seed <= 10; seed++) assert.equal(cover(KAD.K + 1, seed), KAD.K)
    for (let seed = 1; seed <= 10; seed++) {
      const c50 = cover(50, seed)
      assert.ok(c50 >= KAD.K && c50 <= 49, `50: ${c50}`)
      const c1000 = cover(1000, seed)
      assert.ok(c1000 >= KAD.K && c1000 <= 4 * KAD.K, `1,000: ${c1000}`)
    }
  })
})
