import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { HEAP_GROWING_PERCENT, IDLE_HEAP_GROWING_PERCENT } from '../../src/agent/heap.js'

const HEAP = fileURLToPath(new URL('../../src/agent/heap.js', import.meta.url))

/** The growing factors V8 printed for the full GCs of a child that calls fixHeapGrowth() first. */
function factors(nodeArgs: string[], env: NodeJS.ProcessEnv = {}): number[] {
  return traced(
    `
    const { fixHeapGrowth } = await import(${JSON.stringify(HEAP)})
    fixHeapGrowth()
    globalThis.keep = Array.from({ length: 200000 }, (_, i) => ({ i, s: String(i) }))
    for (let i = 0; i < 3; i++) globalThis.gc()
  `,
    nodeArgs,
    env,
  ).factors
}

/**
 * A child under adaptHeapGrowth with a 0.5 s calm: it starts, stays calm, moves 1 GiB in
 * short-lived 64 KiB Buffers (as socket reads and Noise plaintext are), then stays calm again.
 * The growing factors of its full GCs in order, and what heapGrowth() said after each phase.
 */
function busyThenCalm(nodeArgs: string[] = []) {
  const r = traced(
    `
    const { adaptHeapGrowth, fixHeapGrowth, heapGrowth } = await import(${JSON.stringify(HEAP)})
    fixHeapGrowth()
    // calm after 3-6 s without a pair of close full GCs: shorter, and a busy spell descheduled on
    // a loaded machine looked calm between two of its own GCs (two CI runs at once, 2026-12-07)
    const stop = adaptHeapGrowth(3000, 100)
    const started = heapGrowth()
    globalThis.keep = Array.from({ length: 200000 }, (_, i) => ({ i, s: String(i) }))
    // calm: idle within 3-6 s plus a check (at most 25 s on a starved machine)
    const calm = async () => {
      for (let i = 0; i < 250 && ['start', 'bulk'].includes(heapGrowth()); i++) await new Promise((r) => setTimeout(r, 100))
      return heapGrowth()
    }
    const first = await calm()
    const busy = []
    for (let i = 0; i < 8; i++) {
      for (let j = 0; j < 2048; j++) Buffer.allocUnsafeSlow(65536).fill(j & 255)
      await new Promise((r) => setImmediate(r))
      busy.push(heapGrowth())
    }
    const last = await calm()
    stop()
    console.log('MODES ' + JSON.stringify({ started, first, busy, last }))
  `,
    nodeArgs,
  )
  const modes = JSON.parse(/MODES (.*)/.exec(r.stdout)?.[1] ?? 'null') as {
    started: string
    first: string
    busy: string[]
    last: string
  }
  return { factors: r.factors, ...modes }
}

function traced(script: string, nodeArgs: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(
    process.execPath,
    ['--expose-gc', '--trace-gc-verbose', ...nodeArgs, '--input-type=module', '-e', script],
    { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', ...env }, timeout: 60_000 },
  )
  assert.equal(r.status, 0, r.stderr)
  // "[HeapController] Limit: old size: 37205 KB, new limit: 90518 KB (2.0)"
  const factors = [...r.stdout.matchAll(/\[HeapController\] Limit: .*\((\d+\.\d+)\)/g)].map((m) =>
    Number(m[1]),
  )
  return { factors, stdout: r.stdout }
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
  it("start-up's full GCs are left to V8's adaptive factor (up to 4x), neither fixed one", () => {
    const seen = factors([])
    assert.ok(seen.length >= 3, `no full GC traced: ${seen}`)
    const fixed = [1 + HEAP_GROWING_PERCENT / 100, 1 + IDLE_HEAP_GROWING_PERCENT / 100]
    for (const f of seen) assert.ok(!fixed.includes(f), `a fixed factor at start-up: ${seen}`)
  })

  it('a calm agent goes to the small factor, moving bytes switches back within a few full GCs, and calm again back', () => {
    const r = busyThenCalm()
    const letter = new Map([
      [1 + IDLE_HEAP_GROWING_PERCENT / 100, 'I'],
      [1 + HEAP_GROWING_PERCENT / 100, 'B'],
    ])
    const seq = r.factors.map((f) => letter.get(f) ?? '?').join('')
    assert.deepEqual(
      [r.started, r.first, r.busy.at(-1), r.last],
      ['start', 'idle', 'bulk', 'idle'],
      JSON.stringify(r),
    )
    // start-up at V8's own factor, the switch to idle runs a full GC at once, the busy spell's
    // first few at the small one, then the large one, and the calm's own full GC at the small one
    const m = /^\?*(I+)B+I$/.exec(seq)
    assert.ok(m !== null, `factors in order: ${seq}`)
    // the switch is seen where the spell yields to the event loop (the GC observer reports there):
    // within its first half (512 MiB of 1 GiB). Seen after the first or second chunk in 9 runs of
    // 10 and after the third in one (2026-12-07, quiet); a bound of 7 full GCs failed 1 run in 4
    // (8-10 GCs before the switch, main as well): how many fit between two yields varies.
    const first = r.busy.indexOf('bulk')
    assert.ok(
      first >= 0 && first <= 3,
      `bulk only after ${first + 1} of 8 chunks: ${JSON.stringify(r.busy)} ${seq}`,
    )
  })

  it("a user's own --heap-growing-percent wins, idle or busy", () => {
    for (const f of factors(['--heap-growing-percent=50'])) assert.equal(f, 1.5)
    const r = busyThenCalm(['--heap-growing-percent=50'])
    assert.ok(r.factors.length >= 3, `no full GC traced: ${r.factors}`)
    for (const f of r.factors) assert.equal(f, 1.5)
    assert.deepEqual([...new Set([r.started, r.first, ...r.busy, r.last])], ['user'])
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

describe('agent promoted garbage', () => {
  it('is collected once the heap in use grew by over 8 MiB since the last full GC, and not before', () => {
    const script = `
      const { collectPromotedGarbage, heapGrownSinceFullGc } = await import(${JSON.stringify(HEAP)})
      const early = collectPromotedGarbage()
      // objects that live long enough to be promoted, then are dropped, as a probe's are
      let a = []
      for (let i = 0; i < 300000; i++) a.push({ i, s: 'x' + i, p: [i, i] })
      a = undefined
      const grown = heapGrownSinceFullGc()
      const ran = collectPromotedGarbage()
      const after = heapGrownSinceFullGc()
      const again = collectPromotedGarbage()
      console.log(JSON.stringify({ early, grown, ran, after, again }))
    `
    const o = runChild(script)
    assert.equal(o.early, false, `nothing to collect at start: ${JSON.stringify(o)}`)
    assert.ok(o.grown > 8 << 20, `the garbage grew the heap in use: ${JSON.stringify(o)}`)
    assert.equal(o.ran, true)
    assert.ok(o.after < 1 << 20, `collected: ${JSON.stringify(o)}`)
    assert.equal(o.again, false, 'once is enough')
  })
})
