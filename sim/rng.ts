// Seeded randomness for the simulator: one mulberry32 stream per purpose, so a run is a pure
// function of its seed and options.
import { mulberry32 } from '../src/membership/swim.js'

export { mulberry32 }
export type Rng = () => number

/** Mixes a few integers into a 32-bit seed (murmur3 steps): independent streams per node and epoch. */
export function mix32(...xs: number[]): number {
  let h = MIX_SEED
  for (const x of xs) h = mixStep(h, x)
  return mixFinal(h)
}

/** mix32(a, b, c) without the rest array: the simulator calls it N^2 times at start. */
export const mix3 = (a: number, b: number, c: number): number =>
  mixFinal(mixStep(mixStep(mixStep(MIX_SEED, a), b), c))

/** mix32(a, b, c, d) without the rest array. */
export const mix4 = (a: number, b: number, c: number, d: number): number =>
  mixFinal(mixStep(mixStep(mixStep(mixStep(MIX_SEED, a), b), c), d))

const MIX_SEED = 0x9e3779b9

function mixStep(h: number, x: number): number {
  let k = Math.imul(x | 0, 0xcc9e2d51)
  k = (k << 15) | (k >>> 17)
  k = Math.imul(k, 0x1b873593)
  h ^= k
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

function mixFinal(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A standard normal deviate (Box-Muller, one of the pair). */
export function normal(rng: Rng): number {
  const u = Math.max(rng(), 1e-12)
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng())
}

export const lognormal = (rng: Rng, median: number, sigma: number): number =>
  median * Math.exp(sigma * normal(rng))

export const exponential = (rng: Rng, mean: number): number => -mean * Math.log(1 - rng())

export const randInt = (rng: Rng, n: number): number => Math.floor(rng() * n)

/** Fisher-Yates in place. */
export function shuffle<T>(a: T[], rng: Rng): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    const t = a[i]
    a[i] = a[j]
    a[j] = t
  }
  return a
}
