import { dominators, edgeName, load, pkgOf, scriptOf } from './heap-graph.mjs'

// What more peers cost in the live heap (sim/PROFILE.md, "What each connected member costs"):
// two heap snapshots of one agent (a small and a large cluster), compared three ways:
//  - by constructor (the node's type and name): count and self size;
//  - by owner: every object is charged to its nearest dominator that is an instance of a named
//    class (not Object, Array, Map, ...), a closure, or a script's own code or Context, and to
//    the property of that owner it hangs from ("GossipSub.score", "YamuxMuxer.streams"), so
//    per-peer maps show under the class holding them;
//  - by owner class alone (count of instances and what they hold).
// Sizes are divided by PEERS (the difference in connected members) when given.
//   node sim/heap-diff.mjs SMALL.heapsnapshot LARGE.heapsnapshot [PEERS] [TOP]
const [, , a, b, peersArg, topArg] = process.argv
const PEERS = Number(peersArg ?? 1) || 1
const TOP = Number(topArg ?? 40)
const GENERIC = new Set([
  'Object',
  'Array',
  'Map',
  'Set',
  'WeakMap',
  'WeakSet',
  'WeakRef',
  'Promise',
  'Function',
  'Error',
  'ArrayBuffer',
  'Uint8Array',
  'Buffer',
  'DataView',
  'Generator',
  'AsyncGenerator',
  'global',
  'Window',
  'process',
])

function summarize(path) {
  const g = load(path)
  const { idom, post, visited } = dominators(g)
  const S = (i) => g.strings[g.name[i]]
  const T = (i) => g.nodeTypes[g.type[i]]
  const direct = scriptOf(g)
  const isClass = (i) => {
    if (T(i) !== 'object') return false
    const n = S(i)
    return (
      n !== '' && !GENERIC.has(n) && !n.startsWith('system /') && !n.startsWith('(') && /^[A-Z_$]/.test(n)
    )
  }
  // an owner: a class instance, a closure (by name and package), or what belongs to a script
  // directly (its code, a module's or function's Context: by package)
  const ownerLabel = (i) => {
    if (isClass(i)) return S(i)
    const sc = direct[i]
    if (T(i) === 'closure') return `${S(i) || '(anonymous)'}() in ${sc >= 0 ? pkgOf(S(sc)) : '?'}`
    if (sc < 0) return undefined
    if (T(i) === 'code') return `code of ${pkgOf(S(sc))}`
    return `context in ${pkgOf(S(sc))}`
  }
  const labels = new Array(g.N)
  const isOwner = (i) => {
    const l = ownerLabel(i)
    if (l !== undefined) labels[i] = l
    return l !== undefined
  }
  const owner = new Int32Array(g.N).fill(-1)
  const via = new Array(g.N)
  for (let p = post.length - 1; p >= 0; p--) {
    const v = post[p]
    if (v === 0) continue
    const d = idom[v]
    if (isOwner(v)) {
      owner[v] = v
      via[v] = ''
    } else if (d >= 0 && owner[d] === d) {
      owner[v] = d
      via[v] = edgeName(g, d, v)
    } else if (d >= 0) {
      owner[v] = owner[d]
      via[v] = via[d]
    }
  }
  const byCtor = new Map(),
    byOwner = new Map(),
    byClass = new Map(),
    byNoOwner = new Map()
  const add = (m, k, size, n = 1) => {
    const e = m.get(k) ?? { n: 0, size: 0 }
    e.n += n
    e.size += size
    m.set(k, e)
  }
  let live = 0
  for (let v = 0; v < g.N; v++) {
    if (!visited[v]) continue
    const sz = g.size[v]
    live += sz
    add(byCtor, `${T(v)}:${S(v).slice(0, 60)}`, sz)
    const o = owner[v]
    if (o < 0) {
      add(byOwner, '(no owner)', sz)
      add(byNoOwner, `${T(v)}:${S(v).slice(0, 60)}`, sz)
      continue
    }
    const cls = labels[o]
    add(byOwner, via[v] === '' ? `${cls} (self)` : `${cls}.${via[v]}`, sz, via[v] === '' ? 1 : 0)
    add(byClass, cls, sz, v === o ? 1 : 0)
  }
  return { live, byCtor, byOwner, byClass, byNoOwner }
}

const A = summarize(a)
const B = summarize(b)
const MB = (x) => (x / 1048576).toFixed(2)
const KB = (x) => (x / 1024).toFixed(1)
console.log(
  `live ${MB(A.live)} -> ${MB(B.live)} MiB, +${MB(B.live - A.live)}; per peer ${KB((B.live - A.live) / PEERS)} KiB`,
)
function table(title, ka) {
  const keys = new Set([...A[ka].keys(), ...B[ka].keys()])
  const rows = [...keys].map((k) => {
    const x = A[ka].get(k) ?? { n: 0, size: 0 },
      y = B[ka].get(k) ?? { n: 0, size: 0 }
    return { k, dn: y.n - x.n, ds: y.size - x.size, y }
  })
  rows.sort((p, q) => q.ds - p.ds)
  console.log(`\n${title}: KiB more per peer, count more per peer (large cluster's total KiB)`)
  for (const r of rows.slice(0, TOP))
    console.log(
      `${KB(r.ds / PEERS).padStart(8)} ${(r.dn / PEERS).toFixed(1).padStart(8)}  ${r.k.slice(0, 90).padEnd(90)} ${KB(r.y.size)}`,
    )
}
table('by constructor', 'byCtor')
table('by owning class and property', 'byOwner')
table('by owning class', 'byClass')
table('what no owner holds, by constructor', 'byNoOwner')
