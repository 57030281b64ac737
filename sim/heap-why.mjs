import { dominators, edgeName, load } from './heap-graph.mjs'

// sim/PROFILE.md, 'What each connected member costs': for nodes matching a type:name regex, their dominator chains (grouped), largest first
//   node sim/heap-why.mjs FILE REGEX [DEPTH] [TOP]
const [, , file, re, depthArg, topArg] = process.argv
const g = load(file)
const { idom, retained, visited } = dominators(g)
const S = (i) => g.strings[g.name[i]]
const T = (i) => g.nodeTypes[g.type[i]]
const rx = new RegExp(re)
const D = Number(depthArg ?? 6)
const groups = new Map()
for (let v = 0; v < g.N; v++) {
  if (!visited[v]) continue
  if (!rx.test(`${T(v)}:${S(v)}`)) continue
  const chain = []
  let x = v
  for (let d = 0; d < D && x > 0; d++) {
    const p = idom[x]
    chain.push(`${T(p)}:${S(p).slice(0, 40)}.${edgeName(g, p, x)}`)
    x = p
  }
  const k = chain.join(' <- ')
  const e = groups.get(k) ?? { n: 0, size: 0, ret: 0 }
  e.n++
  e.size += g.size[v]
  e.ret += retained[v]
  groups.set(k, e)
}
for (const [k, e] of [...groups].sort((a, b) => b[1].ret - a[1].ret).slice(0, Number(topArg ?? 25)))
  console.log(`${(e.ret / 1024).toFixed(1).padStart(8)} KiB ret ${String(e.n).padStart(5)}  ${k}`)
