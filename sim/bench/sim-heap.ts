// Heap bytes per member row of a formed simulated cluster (issue 18: what a row costs decides
// whether 10,000 members fit in 2 GB). Forms the cluster, collects garbage, and divides the live
// heap the cluster added by the rows its tables hold; --snapshot FILE also writes a heap snapshot,
// and --summary FILE prints an earlier snapshot's self sizes by object kind (a separate run: the
// parse needs as much memory as the heap it reads).
//
//   node --expose-gc dist/sim/bench/sim-heap.js --nodes 2500 --observers 100 [--snapshot F]
//   node dist/sim/bench/sim-heap.js --summary F
import { readFileSync } from 'node:fs'
import { writeHeapSnapshot } from 'node:v8'
import { Sim } from '../sim.js'

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name)
  return i > 0 ? process.argv[i + 1] : undefined
}

function summary(file: string): void {
  const s = JSON.parse(readFileSync(file, 'utf8'))
  const f: string[] = s.snapshot.meta.node_fields
  const types: string[] = s.snapshot.meta.node_types[0]
  const [ti, ni, si] = ['type', 'name', 'self_size'].map((x) => f.indexOf(x))
  const by = new Map<string, { n: number; bytes: number }>()
  let total = 0
  for (let i = 0; i < s.nodes.length; i += f.length) {
    const type = types[s.nodes[i + ti]]
    // strings and numbers by type; objects and arrays by constructor or internal name
    const key = type === 'string' || type === 'number' ? type : `${type} ${s.strings[s.nodes[i + ni]]}`
    const e = by.get(key) ?? { n: 0, bytes: 0 }
    e.n++
    e.bytes += s.nodes[i + si]
    by.set(key, e)
    total += s.nodes[i + si]
  }
  const top = [...by].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 25)
  console.log(`total ${(total / 1e6).toFixed(1)} MB`)
  for (const [k, e] of top) console.log(`${(e.bytes / 1e6).toFixed(1)} MB\t${e.n}\t${k.slice(0, 80)}`)
}

function form(): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run node with --expose-gc')
  const n = Number(arg('--nodes') ?? 2500)
  const observers = arg('--observers')
  const sim = new Sim({
    seed: Number(arg('--seed') ?? 7),
    expectedNodes: n,
    ...(observers !== undefined ? { observers: Number(observers) } : {}),
  })
  // typed arrays' contents live outside the JS heap: counted too
  const used = (): number => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers
  gc()
  const before = used()
  sim.form(n)
  gc()
  const after = used()
  let rows = 0
  let full = 0
  for (const node of sim.nodes) {
    rows += node.table.size
    if (node.full) full++
  }
  const mb = (x: number) => `${(x / 1e6).toFixed(1)} MB`
  console.log(
    `${n} members (${full} full), ${rows} rows: heap and buffers ${mb(before)} -> ${mb(after)}, ` +
      `${((after - before) / rows).toFixed(1)} B per row; RSS ${mb(process.memoryUsage().rss)}`,
  )
  const file = arg('--snapshot')
  if (file !== undefined) writeHeapSnapshot(file)
  // keep the cluster reachable until the snapshot is written
  if (sim.nodes.length !== n) throw new Error('lost nodes')
}

const sum = arg('--summary')
if (sum !== undefined) summary(sum)
else form()
