import { setFlagsFromString } from 'node:v8'

/** The old generation may grow to twice what the last full GC left alive. */
export const HEAP_GROWING_PERCENT = 100

/**
 * Give the agent's JavaScript heap a fixed growing factor instead of V8's adaptive one.
 *
 * V8 sets the next full-GC limit from how fast JavaScript allocates on the heap (fast: up to 4x
 * the live heap; slow: about 1.1-1.6x), and counts the Buffer (external) memory allocated since
 * the last full GC against that limit. Moving bytes is the opposite case: little allocated on the
 * heap, hundreds of MB/s in Buffers (socket reads, Noise plaintext, blocks). The limit ended 25-35
 * MB above a 36 MB live heap, Buffer churn used that up within ~100 ms, and full GCs ran back to back
 * while a `mesh get` was open (8 a second), their marking on V8's helper threads, which a JS CPU
 * profile does not show: about half the fetcher's CPU (sim/PROFILE.md, 2026-12-05).
 *
 * Only for the agent process; a `--heap-growing-percent` given by the user (node options) wins.
 */
export function fixHeapGrowth(): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ')
  if (given.includes('heap-growing-percent') || given.includes('heap_growing_percent')) return
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}
