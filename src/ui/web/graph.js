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

export class MeshGraph {
  constructor(container, onSelect) {
    this.cy = cytoscape({
      container,
      style: STYLE,
      minZoom: 0.05,
      maxZoom: 4,
      textureOnViewport: true,
      hideEdgesOnViewport: true,
      pixelRatio: 1,
    })
    this.shown = new Map() // peerId -> member object last drawn (compared by identity)
    this.cy.on('tap', 'node', (e) => onSelect(e.target.id()))
  }

  /** Draw `members` (Map peerId -> view): add, change and remove only what differs. */
  update(members) {
    const cy = this.cy
    // names and RTTs on the canvas while they can be read; at hundreds of members they cost
    // a text measurement each and show nothing (the table and member page have them)
    const labels = members.size <= LABELS_UP_TO
    const self = [...members.values()].find((m) => m.self)
    const fresh = [] // new elements, added in one call (one style pass, one redraw)
    cy.batch(() => {
      for (const id of this.shown.keys()) {
        if (!members.has(id)) {
          cy.getElementById(id).remove()
          cy.getElementById(`e:${id}`).remove()
          this.shown.delete(id)
        }
      }
      const edges = []
      for (const m of members.values()) {
        const prev = this.shown.get(m.peerId)
        if (prev === m) continue
        this.shown.set(m.peerId, m)
        const kind = self === undefined || m.self ? undefined : edgeKind(m.path)
        const elabel =
          kind === undefined || !labels
            ? ''
            : m.rttMs === undefined
              ? kind
              : `${kind} ${Math.round(m.rttMs)}ms`
        const label = labels ? m.name : ''
        const edgeId = `e:${m.peerId}`
        if (prev === undefined) {
          fresh.push({ group: 'nodes', data: { id: m.peerId, label }, classes: nodeClasses(m) })
          if (kind !== undefined)
            edges.push({
              group: 'edges',
              data: { id: edgeId, source: self.peerId, target: m.peerId, label: elabel, kind },
              classes: kind,
            })
          continue
        }
        const node = cy.getElementById(m.peerId)
        if (node.data('label') !== label) node.data('label', label)
        node.classes(nodeClasses(m))
        const edge = cy.getElementById(edgeId)
        if (kind === undefined) {
          if (!edge.empty()) edge.remove()
        } else if (edge.empty()) {
          edges.push({
            group: 'edges',
            data: { id: edgeId, source: self.peerId, target: m.peerId, label: elabel, kind },
            classes: kind,
          })
        } else if (edge.data('label') !== elabel || edge.data('kind') !== kind) {
          edge.data({ label: elabel, kind })
          edge.classes(kind)
        }
      }
      // edges after nodes: an edge needs both ends
      fresh.push(...edges)
      if (fresh.length > 0) cy.add(fresh)
    })
    if (fresh.some((e) => e.group === 'nodes')) this.layout(self?.peerId)
  }

  layout(selfId) {
    // a sunflower spiral: this agent in the middle, members by name around it; linear time,
    // no simulation, the same place for a member on every redraw
    const nodes = this.cy.nodes().sort((a, b) => (a.id() === selfId ? -1 : b.id() === selfId ? 1 : 0))
    const golden = Math.PI * (3 - Math.sqrt(5))
    this.cy.batch(() => {
      nodes.forEach((n, i) => {
        const r = (nodes.length <= LABELS_UP_TO ? 90 : 28) * Math.sqrt(i)
        n.position({ x: r * Math.cos(i * golden), y: r * Math.sin(i * golden) })
      })
    })
    this.cy.fit(undefined, 40)
    // a handful of members: normal size, not blown up to the whole window
    if (this.cy.zoom() > 1.2) {
      this.cy.zoom(1.2)
      this.cy.center()
    }
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
