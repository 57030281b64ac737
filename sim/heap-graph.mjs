import { readFileSync } from 'node:fs'

// A V8 heap snapshot as flat arrays, and its dominator tree: shared by heap-by-module.mjs and heap-diff.mjs
export function load(path) {
  const s = JSON.parse(readFileSync(path, 'utf8'))
  const m = s.snapshot.meta
  const nf = m.node_fields,
    ef = m.edge_fields
  const NF = nf.length,
    EF = ef.length
  const nodeTypes = m.node_types[0],
    edgeTypes = m.edge_types[0]
  const iType = nf.indexOf('type'),
    iName = nf.indexOf('name'),
    iId = nf.indexOf('id'),
    iSize = nf.indexOf('self_size'),
    iEC = nf.indexOf('edge_count')
  const eType = ef.indexOf('type'),
    eName = ef.indexOf('name_or_index'),
    eTo = ef.indexOf('to_node')
  const N = s.nodes.length / NF
  const type = new Uint8Array(N),
    name = new Uint32Array(N),
    size = new Float64Array(N),
    firstEdge = new Uint32Array(N + 1),
    id = new Uint32Array(N)
  let e = 0
  for (let i = 0; i < N; i++) {
    type[i] = s.nodes[i * NF + iType]
    name[i] = s.nodes[i * NF + iName]
    size[i] = s.nodes[i * NF + iSize]
    id[i] = s.nodes[i * NF + iId]
    firstEdge[i] = e
    e += s.nodes[i * NF + iEC]
  }
  firstEdge[N] = e
  const E = s.edges.length / EF
  const etype = new Uint8Array(E),
    ename = new Uint32Array(E),
    eto = new Uint32Array(E)
  for (let j = 0; j < E; j++) {
    etype[j] = s.edges[j * EF + eType]
    ename[j] = s.edges[j * EF + eName]
    eto[j] = s.edges[j * EF + eTo] / NF
  }
  return {
    N,
    E,
    type,
    name,
    size,
    id,
    firstEdge,
    etype,
    ename,
    eto,
    strings: s.strings,
    nodeTypes,
    edgeTypes,
    locations: s.locations,
    NF,
  }
}
/** The name of the edge from node `from` to node `to` ('?' when there is none). */
export function edgeName(g, from, to) {
  for (let k = g.firstEdge[from]; k < g.firstEdge[from + 1]; k++)
    if (g.eto[k] === to) {
      const t = g.edgeTypes[g.etype[k]]
      return t === 'element' || t === 'hidden' ? `[${t}]` : String(g.strings[g.ename[k]] ?? g.ename[k])
    }
  return '?'
}

// dominator tree (Cooper-Harvey-Kennedy iterative) from root 0, skipping weak edges
export function dominators(g) {
  const { N, firstEdge, etype, eto, edgeTypes } = g
  const weak = edgeTypes.indexOf('weak'),
    shortcut = edgeTypes.indexOf('shortcut')
  const order = new Int32Array(N).fill(-1),
    post = []
  // iterative DFS postorder
  const stack = [0],
    it = [firstEdge[0]]
  order[0] = -2
  const visited = new Uint8Array(N)
  visited[0] = 1
  while (stack.length) {
    const v = stack[stack.length - 1]
    const k = it[it.length - 1]
    if (k < firstEdge[v + 1]) {
      it[it.length - 1]++
      if (etype[k] === weak || etype[k] === shortcut) continue
      const w = eto[k]
      if (!visited[w]) {
        visited[w] = 1
        stack.push(w)
        it.push(firstEdge[w])
      }
    } else {
      stack.pop()
      it.pop()
      post.push(v)
    }
  }
  const po = new Int32Array(N).fill(-1)
  post.forEach((v, i) => {
    po[v] = i
  })
  // predecessors
  const predCount = new Uint32Array(N + 1)
  for (let v = 0; v < N; v++)
    if (visited[v])
      for (let k = firstEdge[v]; k < firstEdge[v + 1]; k++) {
        if (etype[k] === weak || etype[k] === shortcut) continue
        predCount[eto[k] + 1]++
      }
  for (let i = 0; i < N; i++) predCount[i + 1] += predCount[i]
  const preds = new Uint32Array(predCount[N])
  const fill = predCount.slice()
  for (let v = 0; v < N; v++)
    if (visited[v])
      for (let k = firstEdge[v]; k < firstEdge[v + 1]; k++) {
        if (etype[k] === weak || etype[k] === shortcut) continue
        preds[fill[eto[k]]++] = v
      }
  const idom = new Int32Array(N).fill(-1)
  idom[0] = 0
  const intersect = (a, b) => {
    while (a !== b) {
      while (po[a] < po[b]) a = idom[a]
      while (po[b] < po[a]) b = idom[b]
    }
    return a
  }
  let changed = true
  while (changed) {
    changed = false
    for (let i = post.length - 2; i >= 0; i--) {
      const v = post[i]
      let nd = -1
      for (let p = predCount[v]; p < predCount[v + 1]; p++) {
        const u = preds[p]
        if (idom[u] === -1) continue
        nd = nd === -1 ? u : intersect(u, nd)
      }
      if (nd !== idom[v]) {
        idom[v] = nd
        changed = true
      }
    }
  }
  const retained = Float64Array.from(g.size)
  for (const v of post) if (v !== 0 && idom[v] >= 0) retained[idom[v]] += retained[v]
  // post order: children before parents, so sums are complete
  return { idom, retained, post, visited }
}

/**
 * The script (a Script node) each object belongs to directly, or -1: scripts themselves, code
 * objects (SharedFunctionInfos, bytecode, ...) by their script, closures by their
 * SharedFunctionInfo, Contexts by their ScopeInfo, module records by their generator.
 */
export function scriptOf(g) {
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
  return direct
}

/** A script's package, or src/<folder> for mesh's own. */
export const pkgOf = (url) => {
  url = url.replace(/^file:\/\//, '')
  const m = url.match(/node_modules\/((@[^/]+\/)?[^/]+)/)
  if (m) return m[1]
  const d = url.match(/\/dist\/(src|protocols|sim|test)\/([^/]+)/)
  if (d) return `mesh:${d[1]}/${d[2]}`
  if (url.startsWith('node:')) return 'node-internal'
  return url.slice(0, 50)
}
