import { dominators, load } from './heap-graph.mjs'

// The live heap of a heap snapshot by the module (package, or src/<folder> for mesh's own) that
// holds it: every object is charged to the script of its nearest owner in the dominator tree (a
// Script, a SharedFunctionInfo or closure of it, a Context by its ScopeInfo, a module record);
// what no script owns is 'unattributed' (shared maps, objects reachable from several modules).
// sim/PROFILE.md, "What an idle agent's heap holds". SCRIPTS=N: also the N largest scripts; UN=1: what is unattributed.
//   node sim/heap-by-module.mjs FILE.heapsnapshot [TOP]
const g = load(process.argv[2])
const { idom, post, visited } = dominators(g)
const S = (i) => g.strings[g.name[i]]
const T = (i) => g.nodeTypes[g.type[i]]
const edge = (i, nm) => {
  for (let k = g.firstEdge[i]; k < g.firstEdge[i + 1]; k++)
    if (
      g.strings[g.ename[k]] === nm &&
      g.edgeTypes[g.etype[k]] !== 'element' &&
      g.edgeTypes[g.etype[k]] !== 'hidden'
    )
      return g.eto[k]
  return -1
}
const isScript = (i) => T(i) === 'code' && /^(file:\/\/|\/|node:)/.test(S(i)) && edge(i, 'source') >= 0
const direct = new Int32Array(g.N).fill(-1)
const scopeOwner = new Map()
for (let i = 0; i < g.N; i++) {
  if (isScript(i)) direct[i] = i
}
for (let i = 0; i < g.N; i++) {
  if (T(i) !== 'code') continue
  const sc = edge(i, 'script_or_debug_info')
  if (sc >= 0 && direct[sc] === sc) {
    direct[i] = sc
    const si = edge(i, 'name_or_scope_info')
    if (si >= 0) scopeOwner.set(si, sc)
    const _fm = edge(i, 'raw_outer_scope_info_or_feedback_metadata')
  }
}
for (let i = 0; i < g.N; i++) {
  if (T(i) === 'closure') {
    const sh = edge(i, 'shared')
    if (sh >= 0 && direct[sh] >= 0) direct[i] = direct[sh]
  }
}
for (let i = 0; i < g.N; i++) {
  if (S(i) === 'system / Context') {
    const si = edge(i, 'scope_info')
    if (si >= 0 && scopeOwner.has(si)) direct[i] = scopeOwner.get(si)
  }
}
// module records: SourceTextModule -> Generator -> closure
for (let i = 0; i < g.N; i++)
  if (S(i) === 'system / SourceTextModule') {
    for (let k = g.firstEdge[i]; k < g.firstEdge[i + 1]; k++) {
      const w = g.eto[k]
      if (S(w) === 'Generator') {
        const f = edge(w, 'function')
        if (f >= 0 && direct[f] >= 0) direct[i] = direct[f]
      }
    }
  }
// walk from root down (reverse post order): owner = direct or parent's owner
const owner = new Int32Array(g.N).fill(-1)
for (let p = post.length - 1; p >= 0; p--) {
  const v = post[p]
  owner[v] = direct[v] >= 0 ? direct[v] : v === 0 ? -1 : owner[idom[v]]
}
const pkgOf = (url) => {
  url = url.replace(/^file:\/\//, '')
  const m = url.match(/node_modules\/((@[^/]+\/)?[^/]+)/)
  if (m) return m[1]
  const d = url.match(/\/dist\/(src|protocols|sim|test)\/([^/]+)/)
  if (d) return `mesh:${d[1]}/${d[2]}`
  if (url.startsWith('node:')) return 'node-internal'
  return url.slice(0, 50)
}
const byPkg = new Map(),
  byScript = new Map()
let un = 0,
  live = 0
const unBy = new Map()
for (let v = 0; v < g.N; v++) {
  if (!visited[v]) continue
  live += g.size[v]
  if (owner[v] < 0) {
    un += g.size[v]
    const _d = idom[v]
    const k = `${T(v)}:${S(v).slice(0, 40)}`
    unBy.set(k, (unBy.get(k) ?? 0) + g.size[v])
    continue
  }
  const url = S(owner[v])
  const p = pkgOf(url)
  byPkg.set(p, (byPkg.get(p) ?? 0) + g.size[v])
  byScript.set(url, (byScript.get(url) ?? 0) + g.size[v])
}
const MB = (x) => (x / 1048576).toFixed(2)
console.log('live', MB(live), 'unattributed', MB(un))
const top = [...byPkg].sort((a, b) => b[1] - a[1])
for (const [p, s] of top.slice(0, +(process.argv[3] ?? 60))) console.log(p.padEnd(50), MB(s))
if (process.env.SCRIPTS)
  for (const [p, s] of [...byScript].sort((a, b) => b[1] - a[1]).slice(0, +process.env.SCRIPTS || 40))
    console.log(p.padEnd(100), MB(s))
if (process.env.UN)
  for (const [p, s] of [...unBy].sort((a, b) => b[1] - a[1]).slice(0, 30))
    console.log('UN', p.padEnd(60), MB(s))
