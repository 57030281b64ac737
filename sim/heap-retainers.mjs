import { load } from './heap-graph.mjs'

// sim/PROFILE.md, 'What each connected member costs': the N largest nodes matching a type:name regex and who points at them
//   node sim/heap-retainers.mjs FILE REGEX [N]
const [, , file, re, nArg] = process.argv
const g = load(file)
const S = (i) => g.strings[g.name[i]]
const T = (i) => g.nodeTypes[g.type[i]]
const rx = new RegExp(re)
const hits = []
for (let v = 0; v < g.N; v++) if (rx.test(`${T(v)}:${S(v)}`)) hits.push(v)
hits.sort((a, b) => g.size[b] - g.size[a])
const want = new Set(hits.slice(0, Number(nArg ?? 5)))
const from = new Map()
for (let u = 0; u < g.N; u++)
  for (let k = g.firstEdge[u]; k < g.firstEdge[u + 1]; k++) {
    const w = g.eto[k]
    if (!want.has(w)) continue
    const t = g.edgeTypes[g.etype[k]]
    const nm = t === 'element' || t === 'hidden' ? `[${g.ename[k]}]` : g.strings[g.ename[k]]
    const l = from.get(w) ?? []
    if (l.length < 6) l.push(`${T(u)}:${S(u).slice(0, 50)} --${t}:${nm}-->`)
    from.set(w, l)
  }
for (const v of want)
  console.log(`${g.size[v]} B ${T(v)}:${S(v).slice(0, 40)}\n   ${(from.get(v) ?? []).join('\n   ')}`)
