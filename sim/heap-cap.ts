// The old-generation cap `npm run sim` runs with, chosen by the run's size. A 10,000-member crash
// run peaks at 3.1 GB of RSS under node's default heap limit (4.3 GB here) with ~1.2 GB live: V8
// lets the old generation grow far past the live set before a full collection. A cap of 1,600 MB
// held the same run at 2.14 GB with the same results (MODEL.md, "The old generation capped").
// Runs larger than that (the 100,000-member light run: ~12 M rows, 4.4 GB peak) keep node's limit.

import type { SimOptions } from './sim.js'

/** MB of old generation for runs up to CAP_MAX_ROWS table rows (10,000 members hold 7.9 M). */
export const OLD_SPACE_CAP_MB = 1600
export const CAP_MAX_ROWS = 8_500_000

/** Table rows a run of `n` members holds when formed: full members hold all, light ones a sample. */
export function formedRows(n: number, o: Pick<SimOptions, 'fullMax' | 'observers' | 'sample'>): number {
  if (n <= o.fullMax && o.observers === undefined) return n * n
  const full = Math.min(n, o.observers ?? 500)
  return full * n + (n - full) * (Math.min(n, o.sample) + 1)
}

/**
 * The cap for runs of these sizes, or undefined for node's default: only runs that use light
 * members (where the figure was measured) and hold at most CAP_MAX_ROWS rows. An all-full run
 * (up to fullMax) keeps the default: its queues after a crash were not measured against a cap.
 */
export function oldSpaceCapMb(
  sizes: readonly number[],
  o: Pick<SimOptions, 'fullMax' | 'observers' | 'sample'>,
): number | undefined {
  const n = Math.max(...sizes)
  if (n <= o.fullMax && o.observers === undefined) return undefined
  return formedRows(n, o) <= CAP_MAX_ROWS ? OLD_SPACE_CAP_MB : undefined
}
