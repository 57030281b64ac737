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

/** How often the agent hands the free pages of its malloc arenas back to the system. */
export const TRIM_EVERY_MS = 60_000

type MallocTrim = { async(pad: number, done: (err: unknown, released: number) => void): void }
let mallocTrim: MallocTrim | null | undefined

/**
 * Give the free pages of every malloc arena back to the system (glibc's malloc_trim, which since
 * 2.8 also releases free pages in the middle of an arena, not only at its top).
 *
 * glibc keeps what a thread frees in that thread's arena for reuse; start-up (module loading,
 * V8's compiler and GC threads, libuv's file system threads) leaves most of it free but
 * resident, and so do Buffers freed after a transfer. An idle agent held about 10 MiB that way:
 * 115 -> 101.5 MiB RSS after one call, and it stayed there (2026-12-05). The call runs on a
 * koffi worker thread, not the event loop: releasing 190 MiB of scattered free pages took 200 ms
 * (a loaded machine), which would stall probes. Resolves false where the C library has no
 * malloc_trim (musl, macOS): nothing to do there.
 */
export async function trimNativeMemory(): Promise<boolean> {
  if (mallocTrim === undefined) {
    try {
      if (process.platform !== 'linux') throw new Error('not linux')
      const koffi = (await import('koffi')).default
      mallocTrim = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as unknown as MallocTrim
    } catch {
      mallocTrim = null
    }
  }
  const trim = mallocTrim
  if (trim === null) return false
  return new Promise((resolve) => trim.async(0, (err) => resolve(err === null || err === undefined)))
}

/** trimNativeMemory() every `ms`; the timer does not keep the process alive. Returns its stop. */
export function trimNativeMemoryEvery(ms = TRIM_EVERY_MS): () => void {
  const timer = setInterval(() => void trimNativeMemory(), ms)
  timer.unref()
  return () => clearInterval(timer)
}
