import { dominators, load } from './heap-graph.mjs'

// sim/PROFILE.md, 'What each connected member costs': what the instances of a class retain, by constructor (type:name)
//   node sim/heap-under.mjs FILE CLASSNAME [TOP]
const [, , file, cls, topArg] = process.argv
const g = load(file)
const { idom, post, visited } = dominators(g)
const S = (i) => g.strings[g.name[i]]
const T = (i) => g.nodeTypes[g.type[i]]
const under = new Int8Array(g.N)
for (let p = post.length - 1; p >= 0; p--) {
  const v = post[p]
  if (v === 0) continue
  under[v] = (T(v) === 'object' && S(v) === cls) || under[idom[v]] ? 1 : 0
}
const by = new Map()
let total = 0
for (let v = 0; v < g.N; v++) {
  if (!visited[v] || !under[v]) continue
  const k = `${T(v)}:${S(v).slice(0, 50)}`
  const e = by.get(k) ?? { n: 0, size: 0 }
  e.n++
  e.size += g.size[v]
  total += g.size[v]
  by.set(k, e)
}
console.log(`${cls}: ${(total / 1024).toFixed(1)} KiB retained`)
for (const [k, e] of [...by].sort((a, b) => b[1].size - a[1].size).slice(0, Number(topArg ?? 20)))
  console.log(`${(e.size / 1024).toFixed(1).padStart(8)} KiB ${String(e.n).padStart(6)}  ${k}`)
