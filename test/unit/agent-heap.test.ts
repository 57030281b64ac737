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
