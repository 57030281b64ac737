// What both graph renderers share: where each member goes (a sunflower spiral, this agent in
// the middle), its classes, the edge kinds and the viewport that shows the whole spiral.
// No library here: the canvas renderer loads this without cytoscape.

/** Up to this many members the graph has labels and is drawn by cytoscape; above, by canvas-graph.js. */
export const LABELS_UP_TO = 150

/** path as /v1/members says it -> edge kind */
export function edgeKind(path) {
  if (path === 'direct') return 'direct'
  if (path === 'webrtc' || path === 'webrtc-direct') return 'webrtc'
  if (path === 'relayed') return 'relayed'
  return undefined
}

export const nodeClasses = (m) =>
  [m.self ? 'self' : '', m.status, m.maintenance ? 'maintenance' : ''].join(' ').trim()

const GOLDEN = Math.PI * (3 - Math.sqrt(5))
/**
 * Where the i-th node goes: a sunflower spiral, this agent (i = 0) in the middle; linear time,
 * no simulation, and a member keeps its place while the set does not change.
 */
export const spiralRadius = (i, n) => (n <= LABELS_UP_TO ? 90 : 28) * Math.sqrt(Math.max(0, i))
export const spiral = (i, n) => {
  const r = spiralRadius(i, n)
  return { x: r * Math.cos(i * GOLDEN), y: r * Math.sin(i * GOLDEN) }
}

/** The members in drawing order: this agent first (the spiral's middle), then as given. */
export function inOrder(members) {
  const all = [...members.values()]
  const self = all.find((m) => m.self)
  return self === undefined ? all : [self, ...all.filter((m) => m !== self)]
}

/**
 * Zoom and pan that show the whole spiral of n nodes in a w x h box. Its extent is known from
 * the layout, so nothing has to measure the drawn elements.
 */
export function fitSpiral(n, w, h) {
  const r = spiralRadius(n - 1, n) + 40 // the outermost node, its size and its label
  // a handful of members: normal size, not blown up to the whole window
  const zoom = Math.min(1.2, Math.max(0.05, Math.min(w, h) / 2 / Math.max(r, 1)))
  return { zoom, pan: { x: w / 2, y: h / 2 } }
}
