import assert from 'node:assert/strict'
import { intList, parseFlags, positive } from '../../sim/bench/args.js'

describe('benchmark flags (sim/bench/args.ts)', () => {
  it('reads values and switches; a typo or a bad number stops the run with the flag named', () => {
    const o = { runs: 5, quick: false, sizes: [5] }
    parseFlags(['--runs', '3', '--quick', '--sizes', '3,99,7'], {
      '--runs': (next) => (o.runs = positive('--runs', next())),
      '--quick': () => (o.quick = true),
      '--sizes': (next) => (o.sizes = intList(next(), 3, 64)),
    })
    assert.deepEqual(o, { runs: 3, quick: true, sizes: [3, 7] })
    assert.throws(() => parseFlags(['--rnus', '3'], { '--runs': () => {} }, 'use --runs N'), {
      message: 'unknown argument --rnus: use --runs N',
    })
    assert.throws(() => parseFlags(['--runs'], { '--runs': (next) => positive('--runs', next()) }), {
      message: '--runs needs a positive number',
    })
    assert.throws(() => parseFlags(['toString'], {}), { message: 'unknown argument toString' })
  })
})
