// The mesh as this agent sees it: every member a node, an edge from this agent to each member
// it has a connection to, drawn by path kind (direct, WebRTC, relayed) and labelled with RTT.
// cytoscape draws on a canvas and stays smooth at 1,000 nodes; updates touch only what changed.
import cytoscape from 'cytoscape'

const STYLE = [
  {
    selector: 'node',
    style: {
      label: 'data(label)',
      'font-size': 10,
      // labels only where they can be read: at 1,000 members zoomed out, none are drawn
      'min-zoomed-font-size': 7,
      color: '#ddd',
      'text-valign': 'bottom',
      'text-margin-y': 3,
      width: 14,
      height: 14,
      'background-color': '#3fb950',
    },
  },
  {
    selector: 'node.self',
    style: { shape: 'diamond', width: 22, height: 22, 'background-color': '#58a6ff' },
  },
  { selector: 'node.suspect', style: { 'background-color': '#d29922' } },
  { selector: 'node.dead', style: { 'background-color': '#f85149' } },
  { selector: 'node.left, node.revoked', style: { 'background-color': '#6e7681' } },
  { selector: 'node.maintenance', style: { 'border-width': 3, 'border-color': '#d29922' } },
  {
    selector: 'edge',
    style: {
      width: 1.5,
      'line-color': '#3fb950',
      label: 'data(label)',
      'font-size': 8,
      'min-zoomed-font-size': 7,
      color: '#8b949e',
      'text-rotation': 'autorotate',
      'curve-style': 'straight',
    },
  },
  { selector: 'edge.webrtc', style: { 'line-color': '#58a6ff', 'line-style': 'dashed' } },
  { selector: 'edge.relayed', style: { 'line-color': '#d29922', 'line-style': 'dotted' } },
]

/**
 * Above LABELS_UP_TO members: no label properties at all (each costs a style mapping and a text
 * measurement per element, and nothing is readable at that zoom) and haystack edges, cytoscape's
 * cheapest (a straight line, no control points, no arrows).
 */
const LARGE = STYLE.map(({ selector, style }) => {
  const s = { ...style }
  for (const k of Object.keys(s))
    if (k === 'label' || k.includes('font') || k.startsWith('text-') || k === 'color') delete s[k]
  if (selector === 'edge') s['curve-style'] = 'haystack'
  return { selector, style: s }
})

/** path as /v1/members says it -> edge kind */
export function edgeKind(path) {
  if (path === 'direct') return 'direct'
  if (path === 'webrtc' || path === 'webrtc-direct') return 'webrtc'
  if (path === 'relayed') return 'relayed'
  return undefined
}

const LABELS_UP_TO = 150

const nodeClasses = (m) =>
  [m.self ? 'self' : '', m.status, m.maintenance ? 'maintenance' : ''].join(' ').trim()

const GOLDEN = Math.PI * (3 - Math.sqrt(5))
/**
 * Where the i-th node goes: a sunflower spiral, this agent (i = 0) in the middle; linear time,
 * no simulation, and a member keeps its place while the set does not change.
 */
const spiralRadius = (i, n) => (n <= LABELS_UP_TO ? 90 : 28) * Math.sqrt(Math.max(0, i))
const spiral = (i, n) => {
  const r = spiralRadius(i, n)
  return { x: r * Math.cos(i * GOLDEN), y: r * Math.sin(i * GOLDEN) }
}

export class MeshGraph {
  /** Draws `members` at once. */
  constructor(container, onSelect, members) {
    this.shown = new Map() // peerId -> member object last drawn (compared by identity)
    this.labels = members.size <= LABELS_UP_TO
    const elements = this.elements(
      members,
      [...members.values()].find((m) => m.self),
      true,
    )
    this.cy = cytoscape({
      container,
      style: this.labels ? STYLE : LARGE,
      minZoom: 0.05,
      maxZoom: 4,
      textureOnViewport: true,
      hideEdgesOnViewport: true,
      pixelRatio: 1,
      // a picture to look at and click, not an editor: no dragging or selecting to track
      autoungrabify: true,
      autounselectify: true,
      boxSelectionEnabled: false,
    })
    // added in one batch (one style pass, one redraw), each at its place already: no layout run
    this.cy.batch(() => this.cy.add(elements))
    this.fit()
    this.cy.on('tap', 'node', (e) => onSelect(e.target.id()))
  }

  /**
   * The elements for members not drawn yet (all of them the first time), nodes before edges;
   * with `place`, each at its spiral position (this agent, `self`, first).
   */
  elements(members, self, place) {
    const order =
      self === undefined ? [...members.values()] : [self, ...[...members.values()].filter((m) => m !== self)]
    const nodes = []
    const edges = []
    order.forEach((m, i) => {
      if (this.shown.has(m.peerId)) return
      this.shown.set(m.peerId, m)
      const node = {
        group: 'nodes',
        data: { id: m.peerId, label: this.labels ? m.name : '' },
        classes: nodeClasses(m),
      }
      if (place) node.position = spiral(i, members.size)
      nodes.push(node)
      const e = this.edge(m, self)
      if (e !== undefined) edges.push(e)
    })
    return [...nodes, ...edges]
  }

  /** The edge from this agent to `m` by path kind, or none (no connection, or `m` is this agent). */
  edge(m, self) {
    const kind = self === undefined || m.self ? undefined : edgeKind(m.path)
    if (kind === undefined) return undefined
    const label = !this.labels ? '' : m.rttMs === undefined ? kind : `${kind} ${Math.round(m.rttMs)}ms`
    return {
      group: 'edges',
      data: { id: `e:${m.peerId}`, source: self.peerId, target: m.peerId, label, kind },
      classes: kind,
    }
  }

  /** Draw `members` (Map peerId -> view): add, change and remove only what differs. */
  update(members) {
    const cy = this.cy
    const labels = members.size <= LABELS_UP_TO
    if (labels !== this.labels) {
      // crossed the label threshold: new style, labels set again on every element below
      this.labels = labels
      cy.style(labels ? STYLE : LARGE)
      this.shown = new Map([...this.shown.keys()].map((id) => [id, undefined]))
    }
    const self = [...members.values()].find((m) => m.self)
    let added = false
    cy.batch(() => {
      for (const id of this.shown.keys()) {
        if (!members.has(id)) {
          cy.getElementById(id).remove()
          cy.getElementById(`e:${id}`).remove()
          this.shown.delete(id)
        }
      }
      const fresh = []
      for (const m of members.values()) {
        if (!this.shown.has(m.peerId)) {
          fresh.push(m)
          continue
        }
        if (this.shown.get(m.peerId) === m) continue
        this.shown.set(m.peerId, m)
        const node = cy.getElementById(m.peerId)
        const label = labels ? m.name : ''
        if (node.data('label') !== label) node.data('label', label)
        const classes = nodeClasses(m)
        if (node.className().join(' ') !== classes) node.classes(classes)
        const want = this.edge(m, self)
        const edge = cy.getElementById(`e:${m.peerId}`)
        if (want === undefined) {
          if (!edge.empty()) edge.remove()
        } else if (edge.empty()) cy.add(want)
        else if (edge.data('label') !== want.data.label || edge.data('kind') !== want.data.kind) {
          edge.data({ label: want.data.label, kind: want.data.kind })
          edge.classes(want.classes)
        }
      }
      if (fresh.length > 0) {
        // edges after nodes: an edge needs both ends
        cy.add(this.elements(new Map(fresh.map((m) => [m.peerId, m])), self, false))
        added = true
      }
    })
    if (added) this.layout(self?.peerId)
  }

  /** Everyone to their spiral place again (members came): linear, no simulation. */
  layout(selfId) {
    const nodes = this.cy.nodes().sort((a, b) => (a.id() === selfId ? -1 : b.id() === selfId ? 1 : 0))
    this.cy.batch(() => {
      nodes.forEach((n, i) => {
        n.position(spiral(i, nodes.length))
      })
    })
    this.fit()
  }

  /**
   * Show the whole spiral. Its extent is known from the layout, so no bounding box is asked of
   * cytoscape (which would compute every element's style and label at once, most of the cost of
   * drawing 1,000 members).
   */
  fit() {
    const n = this.cy.nodes().length
    const r = spiralRadius(n - 1, n) + 40 // the outermost node, its size and its label
    const w = this.cy.width()
    const h = this.cy.height()
    // a handful of members: normal size, not blown up to the whole window
    const zoom = Math.min(1.2, Math.max(0.05, Math.min(w, h) / 2 / Math.max(r, 1)))
    this.cy.viewport({ zoom, pan: { x: w / 2, y: h / 2 } })
  }

  /** What the page shows, for the browser test and for people: node and edge counts by kind. */
  summary() {
    const edges = {}
    for (const e of this.cy.edges()) edges[e.data('kind')] = (edges[e.data('kind')] ?? 0) + 1
    const nodes = {}
    for (const n of this.cy.nodes()) {
      const s = this.shown.get(n.id())?.status ?? 'unknown'
      nodes[s] = (nodes[s] ?? 0) + 1
    }
    return { nodes: this.cy.nodes().length, byStatus: nodes, edges }
  }

  destroy() {
    this.cy.destroy()
  }
}
