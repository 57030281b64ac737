import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { HEAP_GROWING_PERCENT } from '../../src/agent/heap.js'

const HEAP = fileURLToPath(new URL('../../src/agent/heap.js', import.meta.url))

/** The growing factors V8 printed for the full GCs of a child that calls fixHeapGrowth() first. */
function factors(nodeArgs: string[], env: NodeJS.ProcessEnv = {}): number[] {
  const script = `
    const { fixHeapGrowth } = await import(${JSON.stringify(HEAP)})
    fixHeapGrowth()
    globalThis.keep = Array.from({ length: 200000 }, (_, i) => ({ i, s: String(i) }))
    for (let i = 0; i < 3; i++) globalThis.gc()
  `
  const r = spawnSync(
    process.execPath,
    ['--expose-gc', '--trace-gc-verbose', ...nodeArgs, '--input-type=module', '-e', script],
    { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', ...env }, timeout: 60_000 },
  )
  assert.equal(r.status, 0, r.stderr)
  // "[HeapController] Limit: old size: 37205 KB, new limit: 90518 KB (2.0)"
  return [...r.stdout.matchAll(/\[HeapController\] Limit: .*\((\d+\.\d+)\)/g)].map((m) => Number(m[1]))
}

/**
 * RSS (MiB) of a child that fills malloc's arena with 64 KiB Buffers, frees 15 of every 16 (the
 * survivors keep the arena from shrinking by itself), then, with `trim`, calls trimNativeMemory().
 */
function rssAfterFree(trim: boolean): { before: number; after: number; trimmed: boolean } {
  const script = `
    const { trimNativeMemory } = await import(${JSON.stringify(HEAP)})
    const rss = () => process.memoryUsage().rss / 2 ** 20
    let bufs = Array.from({ length: 3200 }, () => Buffer.allocUnsafeSlow(65536).fill(1))
    const before = rss()
    globalThis.keep = bufs.filter((_, i) => i % 16 === 0)
    bufs = undefined
    for (let i = 0; i < 3; i++) globalThis.gc()
    const trimmed = ${trim} ? await trimNativeMemory() : false
    console.log(JSON.stringify({ before, after: rss(), trimmed }))
  `
  return runChild(script, ['--expose-gc'])
}

describe('agent native memory', () => {
  it('freed native memory goes back to the system after a trim, not before', () => {
    // 200 MiB allocated, 187 MiB freed: without a trim glibc keeps it resident for reuse
    const kept = rssAfterFree(false)
    assert.ok(kept.before - kept.after < 50, `RSS fell without a trim: ${JSON.stringify(kept)}`)
    const trimmed = rssAfterFree(true)
    assert.equal(trimmed.trimmed, true)
    assert.ok(trimmed.before - trimmed.after > 150, `a trim gave back too little: ${JSON.stringify(trimmed)}`)
  })
})

describe('agent heap growth', () => {
  it("full GCs set the next limit at a fixed factor, not at V8's adaptive one", () => {
    const seen = factors([])
    assert.ok(seen.length >= 3, `no full GC traced: ${seen}`)
    for (const f of seen) assert.equal(f, 1 + HEAP_GROWING_PERCENT / 100)
  })

  it("a user's own --heap-growing-percent wins", () => {
    for (const f of factors(['--heap-growing-percent=50'])) assert.equal(f, 1.5)
  })
})

/** Runs an ES module script in a child node (extra node flags first); its stdout is JSON. */
function runChild(script: string, nodeArgs: string[] = []) {
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
    timeout: 60_000,
  })
  assert.equal(r.status, 0, r.stderr)
  return JSON.parse(r.stdout)
}

// what moving bytes looks like to V8: many short-lived objects, some surviving a while (this
// grows the young generation)
const GROW_YOUNG = `
  let keep = []
  for (let i = 0; i < 3e6; i++) {
    keep.push({ i, b: new Uint8Array(64) })
    if (keep.length > 20000) keep = []
  }
  keep = []
`

/** Young-generation sizes (bytes) of a child that churns short-lived objects, then idles. */
function youngGeneration(shrink: boolean): { busy: number; after: number; ran: boolean } {
  const script = `
    const { newSpaceBytes, shrinkYoungGeneration } = await import(${JSON.stringify(HEAP)})
    ${GROW_YOUNG}
    const busy = newSpaceBytes()
    // then idle, as the agent is when it shrinks (V8 shrinks when its allocation rate is low)
    await new Promise((r) => setTimeout(r, 6000))
    // up to eight tries 2 s apart, as the agent tries again at later checks: V8 decides from its
    // own allocation-rate samples, and a child descheduled on a loaded machine (CI) kept it
    // through three tries (2026-12-06, two CI runs at once)
    let ran = false
    for (let i = 0; ${shrink} && i < 8; i++) {
      ran = shrinkYoungGeneration() || ran
      if (newSpaceBytes() <= 2 << 20) break
      await new Promise((r) => setTimeout(r, 2000))
    }
    console.log(JSON.stringify({ busy, after: newSpaceBytes(), ran }))
  `
  return runChild(script)
}

describe('agent young generation', () => {
  it('stays grown after a busy spell until shrunk, then is back near its start size', () => {
    const kept = youngGeneration(false)
    assert.ok(kept.busy > 8 << 20, `the busy spell grew it: ${JSON.stringify(kept)}`)
    assert.equal(kept.after, kept.busy, 'V8 does not shrink it by itself while idle')
    const shrunk = youngGeneration(true)
    assert.equal(shrunk.ran, true)
    assert.ok(shrunk.after <= 2 << 20, `shrunk to ${shrunk.after} bytes: ${JSON.stringify(shrunk)}`)
  })
})

/**
 * Young-generation size (bytes) of a child that grows it, then keeps its event loop about 20%
 * busy with work that allocates nothing, as an idle agent among many on a loaded machine is,
 * under trimNativeMemoryEvery with a 1 s check.
 */
function youngGenerationBusyLoop(): { busy: number; after: number } {
  const script = `
    const { newSpaceBytes, trimNativeMemoryEvery } = await import(${JSON.stringify(HEAP)})
    ${GROW_YOUNG}
    const busy = newSpaceBytes()
    const stop = trimNativeMemoryEvery(600000, 1000)
    // 40 ms of arithmetic every 200 ms, for at most 20 s or until it shrank
    let x = 0
    const t0 = performance.now()
    while (performance.now() - t0 < 20000 && newSpaceBytes() > 2 << 20) {
      const end = performance.now() + 40
      while (performance.now() < end) for (let i = 0; i < 1e5; i++) x = (x + i) | 0
      await new Promise((r) => setTimeout(r, 160))
    }
    stop()
    console.log(JSON.stringify({ busy, after: newSpaceBytes(), x: x & 1 }))
  `
  return runChild(script)
}

describe('agent young generation, loop busy but allocating nothing', () => {
  it('is shrunk although the event loop is not idle', () => {
    const r = youngGenerationBusyLoop()
    assert.ok(r.busy > 8 << 20, `the busy spell grew it: ${JSON.stringify(r)}`)
    assert.ok(r.after <= 2 << 20, `still ${r.after} bytes: ${JSON.stringify(r)}`)
  })
})

describe('agent old generation', () => {
  it('a compaction gives back part-full pages that plain full collections keep', () => {
    const script = `
      const { compactHeap, unusedHeapBytes } = await import(${JSON.stringify(HEAP)})
      const { getHeapStatistics } = await import('node:v8')
      // an old generation fragmented as a long-running agent's: promoted, then every other object dropped
      let a = []
      for (let i = 0; i < 400000; i++) a.push({ i, s: 'x' + i, p: [i, i] })
      globalThis.gc(); globalThis.gc()
      globalThis.keep = a.filter((_, i) => i % 2 === 0)
      a = undefined
      for (let i = 0; i < 3; i++) globalThis.gc()
      const plain = getHeapStatistics().total_heap_size
      const unused = unusedHeapBytes()
      const ran = compactHeap()
      console.log(JSON.stringify({ plain, unused, ran, compacted: getHeapStatistics().total_heap_size }))
    `
    const o = runChild(script, ['--expose-gc'])
    assert.equal(o.ran, true, JSON.stringify(o))
    assert.ok(o.plain - o.compacted > 8 << 20, `a compaction gave back too little: ${JSON.stringify(o)}`)
  })
})
