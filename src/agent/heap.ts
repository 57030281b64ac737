import { constants, type PerformanceEntry, PerformanceObserver, performance } from 'node:perf_hooks'
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** While bytes move, the old generation may grow to twice what the last full GC left alive. */
export const HEAP_GROWING_PERCENT = 100
/** While the agent idles, by a fifth (V8 adds at least 8 MB and the young generation's size). */
export const IDLE_HEAP_GROWING_PERCENT = 20
// two full GCs closer together than this: bytes are moving (idle agents run one every few minutes)
const BULK_GC_GAP_MS = 2_000
/** Back to the idle growth after this long without two close full GCs, plus up to as much again. */
export const BULK_CALM_MS = 60_000

let userGrowth: boolean | undefined
let growth: 'start' | 'idle' | 'bulk' | undefined

/**
 * Give the agent's JavaScript heap a fixed growing factor instead of V8's adaptive one: a large
 * one while bytes move, a small one while it idles.
 *
 * V8 sets the next full-GC limit from how fast JavaScript allocates on the heap (fast: up to 4x
 * the live heap; slow: about 1.1-1.6x), and counts the Buffer (external) memory allocated since
 * the last full GC against that limit. Moving bytes is the opposite case: little allocated on the
 * heap, hundreds of MB/s in Buffers (socket reads, Noise plaintext, blocks). The limit ended 25-35
 * MB above a 36 MB live heap, Buffer churn used that up within ~100 ms, and full GCs ran back to back
 * while a `mesh get` was open (8 a second), their marking on V8's helper threads, which a JS CPU
 * profile does not show: about half the fetcher's CPU (sim/PROFILE.md, 2026-12-05). Twice the live
 * heap ended that. An idle agent, though, fills whatever limit it has with garbage before its next
 * full GC, minutes later: with 49 peers its live heap is ~45 MB, and twice that is resident most
 * of the time. So the agent idles at IDLE_HEAP_GROWING_PERCENT and switches to
 * HEAP_GROWING_PERCENT as soon as two full GCs come close together (adaptHeapGrowth). It starts
 * on V8's own adaptive factor ('start') and goes idle once calm: start-up and a join storm
 * allocate JavaScript objects (modules, handshakes, records), the case V8's heuristic is made
 * for, and it grows the limit up to 4x where the fixed 2x ran more full GCs (a 20-agent join
 * storm, 2026-12-07: 9.6 CPU-s per agent starting at 2x, 8.4 on V8's own, mean of 6 and 3 runs).
 *
 * Only for the agent process; a `--heap-growing-percent` given by the user (node options) wins
 * and is never changed.
 */
export function fixHeapGrowth(): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ')
  userGrowth = given.includes('heap-growing-percent') || given.includes('heap_growing_percent')
  // start-up (modules, the first syncs, a join storm) on V8's own factor, no flag set yet
  if (!userGrowth) growth = 'start'
}

function setGrowth(mode: 'idle' | 'bulk'): void {
  if (userGrowth !== false || growth === mode) return
  growth = mode
  setFlagsFromString(
    `--heap-growing-percent=${mode === 'bulk' ? HEAP_GROWING_PERCENT : IDLE_HEAP_GROWING_PERCENT}`,
  )
}

/**
 * The growing factor in use: 'start' (V8's own, until the first calm), 'idle', 'bulk', or 'user'
 * (the user's own flag, or fixHeapGrowth not called).
 */
export function heapGrowth(): 'start' | 'idle' | 'bulk' | 'user' {
  return userGrowth === false && growth !== undefined ? growth : 'user'
}

/**
 * Switch the heap's growing factor with what the agent does (fixHeapGrowth first): to bulk at the
 * second of two full GCs less than BULK_GC_GAP_MS apart, back to idle after `calmMs` (plus a random
 * share of it, so agents that moved bytes together do not collect together) without such a pair.
 * A factor applies from the next full GC, so going back to idle runs one: the limit the bulk factor
 * set would otherwise stay, full of garbage, until V8 reaches it. Returns its stop.
 */
export function adaptHeapGrowth(calmMs = BULK_CALM_MS, checkMs = SHRINK_CHECK_MS): () => void {
  let lastMajor = Number.NEGATIVE_INFINITY
  // start-up counts as bytes moving: the first switch to idle comes once it is calm
  let lastPair = performance.now()
  const calmFor = calmMs * (1 + Math.random())
  const stopWatching = watchGcs((e) => {
    if (e.startTime - lastMajor < BULK_GC_GAP_MS) {
      lastPair = e.startTime
      setGrowth('bulk')
    }
    lastMajor = e.startTime + e.duration
  })
  const check = setInterval(() => {
    if (growth === 'idle' || growth === undefined || performance.now() - lastPair < calmFor) return
    setGrowth('idle')
    // the start or bulk limit holds until the next full GC: run it now (compacting if that gives back pages)
    if (!compactHeap()) runOwnFullGc()
  }, checkMs)
  check.unref()
  return () => {
    clearInterval(check)
    stopWatching()
  }
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

// the event loop busy less than this share of an interval: the agent is idle
const IDLE_UTILIZATION = 0.02
// a young generation larger than this is worth shrinking (V8 starts it at 1 MiB per semi-space)
const NEW_SPACE_SHRINK_BYTES = 4 << 20

let fullGc: (() => void) | null | undefined

/** V8's young generation now (both semi-spaces), bytes. */
export function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0
}

/**
 * Shrink V8's young generation back to its start size with one full collection, which V8 does
 * when it sees the allocation rate is low. V8 grows the young generation (up to 16 MiB per
 * semi-space) while the agent moves bytes, which keeps scavenges rare, but it shrinks it only in
 * a full collection, and an idle agent runs almost none: 32 MiB stayed committed, and whether its
 * pages were resident decided whether an idle agent's RSS read 102 or 132 MB (2026-12-05).
 * Capping the young generation instead (--semi-space-growth-factor=1) cost 30% more CPU per GB
 * through mesh0. Returns whether it ran.
 */
export function shrinkYoungGeneration(): boolean {
  if (newSpaceBytes() <= NEW_SPACE_SHRINK_BYTES) return false
  return runOwnFullGc()
}

/** One full collection the agent runs itself (not counted as a sign of bytes moving). */
function runOwnFullGc(): boolean {
  const gc = fullGcFunction()
  if (gc === null) return false
  if (gcObserver !== undefined) ownGcs++
  gc()
  usedAfterFullGc = getHeapStatistics().used_heap_size
  return true
}

// the heap in use (live, or garbage not collected yet) after the last full GC
let usedAfterFullGc = getHeapStatistics().used_heap_size
// growth since the last full GC above which an idle agent collects (~50 ms at 45 MB live)
const GARBAGE_GC_BYTES = 8 << 20
// doubled (up to 64 MiB) after a collection that found most of the growth alive
let garbageGcBytes = GARBAGE_GC_BYTES

/** Bytes the heap in use grew by since the last full GC (in an idle agent: promoted garbage). */
export function heapGrownSinceFullGc(): number {
  return getHeapStatistics().used_heap_size - usedAfterFullGc
}

/**
 * One full GC when the heap in use grew by over 8 MiB since the last. An idle agent's
 * short-lived objects (a probe's timers and buffers, a request of a few seconds) outlive the
 * 1 MiB young generation's two scavenges and are promoted, and the old generation keeps them
 * until V8 reaches its limit, which for a live heap of 45 MB is over 100 MB. 50 idle agents on
 * one machine promoted ~1.5 MiB a minute each: V8 heap in use 49 -> 67 MiB and RSS 121 -> 142 MiB
 * in 12 idle minutes, with 2 full GCs (bench:fleet, 2026-12-06 23:10). Every GC that V8 runs
 * itself resets the count too (watchGcs observes them). Returns whether it ran.
 */
export function collectPromotedGarbage(): boolean {
  const grown = heapGrownSinceFullGc()
  if (grown <= garbageGcBytes) return false
  const before = usedAfterFullGc
  if (!runOwnFullGc()) return false
  // most of it was alive (the agent is still building up): wait for more growth next time
  const alive = usedAfterFullGc - before
  garbageGcBytes = alive > grown / 2 ? Math.min(garbageGcBytes * 2, 64 << 20) : GARBAGE_GC_BYTES
  return true
}

function fullGcFunction(): (() => void) | null {
  if (fullGc === undefined) {
    try {
      // the flag exposes gc() to contexts made after it; the agent's own global stays as it was
      setFlagsFromString('--expose-gc')
      fullGc = runInNewContext('gc') as () => void
    } catch {
      fullGc = null
    }
  }
  return fullGc
}

/** How often an idle agent compacts its old generation (compactHeap). */
export const COMPACT_EVERY_MS = 600_000
// committed heap not in use above which a compaction is worth its CPU (~0.3 s on a loaded machine)
const UNUSED_HEAP_COMPACT_BYTES = 8 << 20

/** Bytes V8 holds committed for the JavaScript heap beyond what live objects use. */
export function unusedHeapBytes(): number {
  const h = getHeapStatistics()
  return h.total_heap_size - h.used_heap_size
}

/**
 * One full collection that compacts every old-generation page, so that pages left part-full
 * go back to the system. A plain full GC frees only empty pages; an idle agent's old generation
 * ends fragmented (what each connection's traffic left behind), and committed-but-unused heap
 * grew with the fleet: 6 MiB at 5 agents, 8 at 20, 13 at 30. One compaction took a 20-agent
 * fleet's median RSS from 120.6 to 110.6 MiB (sim/PROFILE.md, 'Memory per connection').
 * Returns whether it ran.
 */
export function compactHeap(): boolean {
  if (unusedHeapBytes() <= UNUSED_HEAP_COMPACT_BYTES) return false
  try {
    setFlagsFromString('--compact-on-every-full-gc')
    return runOwnFullGc()
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc')
  }
}

/** How often the agent looks whether it is idle with a grown young generation. */
export const SHRINK_CHECK_MS = 10_000

/**
 * Whether an interval was quiet enough to shrink the young generation in: the event loop idle,
 * or no scavenge at all (less allocated than one semi-space in the interval, a low allocation
 * rate to V8 too). The second is what an idle agent in a fleet on a loaded machine shows: over 30
 * agents at load 38 every agent's loop was 3-13% busy in every idle 10 s (probes over 29
 * connections; a starved process's busy spells last longer in wall time), so the loop test alone
 * never passed and a young generation grown in the join storm stayed (sim/PROFILE.md, 'Memory
 * per connection').
 */
function quietInterval(utilization: number, scavenged: number): boolean {
  return utilization < IDLE_UTILIZATION || scavenged === 0
}

// One observer of V8's GCs serves everything here: it counts scavenges (young-generation
// collections), notes the heap in use after each full GC (heapGrownSinceFullGc), and passes on the
// full GCs the agent did not run itself (compactions and shrinks are no sign of bytes moving).
let gcObserver: PerformanceObserver | undefined
let gcWatchers = 0
let scavenges = 0
// full GCs run by runOwnFullGc whose entries the observer has not seen yet
let ownGcs = 0
const majorWatchers = new Set<(e: PerformanceEntry) => void>()

/** Start watching GCs (onMajor: V8's own full GCs, not the agent's). Returns its stop. */
function watchGcs(onMajor?: (e: PerformanceEntry) => void): () => void {
  if (onMajor !== undefined) majorWatchers.add(onMajor)
  if (gcWatchers++ === 0) {
    gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = (e as { detail?: { kind?: number } }).detail?.kind
        if (kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges++
        else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
          usedAfterFullGc = getHeapStatistics().used_heap_size
          if (ownGcs > 0) ownGcs--
          else for (const w of majorWatchers) w(e)
        }
      }
    })
    gcObserver.observe({ entryTypes: ['gc'] })
  }
  let stopped = false
  return () => {
    if (stopped) return
    stopped = true
    if (onMajor !== undefined) majorWatchers.delete(onMajor)
    if (--gcWatchers > 0) return
    gcObserver?.disconnect()
    gcObserver = undefined
    ownGcs = 0
  }
}

/**
 * Give memory back while the agent idles: every `checkMs`, when the last interval was quiet
 * (quietInterval), collect promoted garbage unless bytes are moving (collectPromotedGarbage), shrink the young generation (a no-op unless it grew), and after COMPACT_EVERY_MS
 * of quiet intervals compact the old generation (a no-op unless 8 MiB are unused); every `ms`, give free
 * native memory back (trimNativeMemory). The timers do not keep the process alive. Returns their stop.
 */
export function trimNativeMemoryEvery(ms = TRIM_EVERY_MS, checkMs = SHRINK_CHECK_MS): () => void {
  let last = performance.eventLoopUtilization()
  const stopWatching = watchGcs()
  let lastScavenges = scavenges
  // a collection that left it grown (V8 judged the allocation rate not low) waits 2, 4, ... 64
  // checks before the next try, so that an agent V8 will not shrink does not pay 30 ms every 10 s
  let failures = 0
  let wait = 0
  // quiet time since the last compaction (compactHeap), from a random phase: the first one after
  // 5-15 quiet minutes, then every 10. Agents that started together (a join storm, a host's boot)
  // otherwise all compact in the same seconds 10 quiet minutes later (~0.3 s of CPU each: 50
  // agents on 2 cores would starve each other for seconds)
  let sinceCompact = (Math.random() - 0.5) * COMPACT_EVERY_MS
  const check = setInterval(() => {
    const now = performance.eventLoopUtilization()
    const utilization = performance.eventLoopUtilization(now, last).utilization
    const scavenged = scavenges - lastScavenges
    last = now
    if (!quietInterval(utilization, scavenged)) {
      lastScavenges = scavenges
      return
    }
    // not while bytes move: V8's own full GCs keep up then (adaptHeapGrowth)
    if (heapGrowth() === 'idle' || heapGrowth() === 'user') collectPromotedGarbage()
    sinceCompact += checkMs
    if (sinceCompact >= COMPACT_EVERY_MS) {
      sinceCompact = 0
      compactHeap()
    }
    if (wait > 0) wait--
    else if (shrinkYoungGeneration()) {
      if (newSpaceBytes() > NEW_SPACE_SHRINK_BYTES) wait = 2 ** Math.min(++failures, 6)
      else failures = 0
    }
    // the shrink's own full GC is no allocation: the next interval starts from here
    lastScavenges = scavenges
  }, checkMs)
  const trim = setInterval(() => void trimNativeMemory(), ms)
  check.unref()
  trim.unref()
  return () => {
    clearInterval(check)
    clearInterval(trim)
    stopWatching()
  }
}

/**
 * All of the above for the agent process, before it allocates: the growing factor fixed
 * (fixHeapGrowth) and switched with what the agent does (adaptHeapGrowth), and memory given back
 * while it idles (trimNativeMemoryEvery). Returns the stop.
 */
export function manageHeap(): () => void {
  fixHeapGrowth()
  const stopAdapting = adaptHeapGrowth()
  const stopTrimming = trimNativeMemoryEvery()
  return () => {
    stopAdapting()
    stopTrimming()
  }
}
