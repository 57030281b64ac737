// The mesh as this agent sees it, up to LABELS_UP_TO members: every member a node, an edge from
// this agent to each member it has a connection to, drawn by path kind (direct, WebRTC, relayed)
// and labelled with RTT. cytoscape draws it on a canvas; updates touch only what changed. Larger
// clusters are drawn by canvas-graph.js (cytoscape's first frame of 1,000 members cost ~0.7 s).
import cytoscape from 'cytoscape'
import { edgeKind, fitSpiral, nodeClasses, spiral } from './graph-layout.js'

const STYLE = [
  {
    selector: 'node',
    style: {
      label: 'data(label)',
      'font-size': 10,
      // labels only where they can be read (zoomed out far, none are drawn)
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

export class MeshGraph {
  /** Draws `members` at once. */
  constructor(container, onSelect, members) {
    this.shown = new Map() // peerId -> member object last drawn (compared by identity)
    const elements = this.elements(
      members,
      [...members.values()].find((m) => m.self),
      true,
    )
    this.cy = cytoscape({
      container,
      style: STYLE,
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
        data: { id: m.peerId, label: m.name },
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
    const label = m.rttMs === undefined ? kind : `${kind} ${Math.round(m.rttMs)}ms`
    return {
      group: 'edges',
      data: { id: `e:${m.peerId}`, source: self.peerId, target: m.peerId, label, kind },
      classes: kind,
    }
  }

  /** Draw `members` (Map peerId -> view): add, change and remove only what differs. */
  update(members) {
    const cy = this.cy
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
        const label = m.name
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
   * Show the whole spiral, from its known extent: no bounding box is asked of cytoscape (which
   * would compute every element's style and label at once, most of the cost of drawing 1,000).
   */
  fit() {
    this.cy.viewport(fitSpiral(this.cy.nodes().length, this.cy.width(), this.cy.height()))
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
    return { nodes: this.cy.nodes().length, byStatus: nodes, edges, renderer: 'cytoscape' }
  }

  destroy() {
    this.cy.destroy()
  }
}
