import { dominators, load, pkgOf, scriptOf } from './heap-graph.mjs'

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
const direct = scriptOf(g)
// walk from root down (reverse post order): owner = direct or parent's owner
const owner = new Int32Array(g.N).fill(-1)
for (let p = post.length - 1; p >= 0; p--) {
  const v = post[p]
  owner[v] = direct[v] >= 0 ? direct[v] : v === 0 ? -1 : owner[idom[v]]
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
