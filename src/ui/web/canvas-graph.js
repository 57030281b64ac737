// The mesh graph above LABELS_UP_TO members, drawn on one plain 2D canvas: the same spiral,
// node colours and edge colours as graph.js, no labels (none are readable at that zoom). cytoscape
// spent ~0.7 s of main-thread CPU on its first frame of 1,000 members (styles, bounding boxes,
// texture caches; profile in the README); here a whole frame is one path per colour and per
// edge kind, a few milliseconds, so the first frame comes with the page and every update
// simply draws again. Drag pans, the wheel zooms, a click on a node opens that member.
import { edgeKind, fitSpiral, inOrder, spiral } from './graph-layout.js'

const NODE = 14 // diameter in graph units, as graph.js
const SELF = 22
const FILL = {
  alive: '#3fb950',
  suspect: '#d29922',
  dead: '#f85149',
  left: '#6e7681',
  revoked: '#6e7681',
}
const SELF_FILL = '#58a6ff'
const MAINTENANCE = '#d29922'
/**
 * Edge kinds by colour only, solid: dashed and dotted lines (graph.js's) cost the software
 * rasteriser ~75 ms a frame for 1,000 edges against ~10 ms solid (measured in this Chromium),
 * and at this zoom the dashes of crossing lines cannot be told apart anyway.
 */
const EDGE = { direct: '#3fb950', webrtc: '#58a6ff', relayed: '#d29922' }
/** a press that moves less than this (CSS pixels) is a click, not a drag */
const CLICK_SLOP = 4

export class CanvasGraph {
  /** Draws `members` (Map peerId -> member view) at once. */
  constructor(container, onSelect, members) {
    this.container = container
    this.onSelect = onSelect
    this.canvas = document.createElement('canvas')
    this.canvas.style.display = 'block'
    this.canvas.dataset.graph = 'canvas'
    container.append(this.canvas)
    this.ctx = this.canvas.getContext('2d')
    this.nodes = [] // [{ m, x, y }] in spiral order, this agent first
    this.view = undefined // { zoom, pan }: set by fit, then by the user's pans and zooms
    this.frame = undefined
    this.place(members)
    this.resize()
    this.listen()
    this.resizer = new ResizeObserver(() => this.resize())
    this.resizer.observe(container)
  }

  /** Draw `members` now: positions again only when the set changed (a spiral slot is its index). */
  update(members) {
    const same =
      members.size === this.nodes.length && this.nodes.every((n) => members.get(n.m.peerId) !== undefined)
    if (same) for (const n of this.nodes) n.m = members.get(n.m.peerId)
    else {
      this.place(members)
      this.fit()
    }
    this.draw()
  }

  place(members) {
    const order = inOrder(members)
    this.nodes = order.map((m, i) => ({ m, ...spiral(i, order.length) }))
  }

  fit() {
    this.view = fitSpiral(this.nodes.length, this.width, this.height)
  }

  resize() {
    const w = this.container.clientWidth
    const h = this.container.clientHeight
    if (w === this.width && h === this.height) return
    const ratio = window.devicePixelRatio || 1
    this.width = w
    this.height = h
    this.canvas.width = Math.round(w * ratio)
    this.canvas.height = Math.round(h * ratio)
    this.canvas.style.width = `${w}px`
    this.canvas.style.height = `${h}px`
    this.ratio = ratio
    this.fit()
    this.draw()
  }

  /** One frame: edges by kind, then nodes by colour, each group a single path. */
  draw() {
    const { ctx, view, ratio } = this
    ctx.setTransform(1, 0, 0, 1, 0, 0)
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height)
    ctx.setTransform(ratio * view.zoom, 0, 0, ratio * view.zoom, ratio * view.pan.x, ratio * view.pan.y)
    const self = this.nodes[0]?.m.self ? this.nodes[0] : undefined
    if (self !== undefined) {
      ctx.lineWidth = 1.5
      for (const [kind, color] of Object.entries(EDGE)) {
        ctx.beginPath()
        for (const n of this.nodes) {
          if (n === self || edgeKind(n.m.path) !== kind) continue
          ctx.moveTo(self.x, self.y)
          ctx.lineTo(n.x, n.y)
        }
        ctx.strokeStyle = color
        ctx.stroke()
      }
    }
    const byFill = new Map()
    for (const n of this.nodes) {
      if (n === self) continue
      const fill = FILL[n.m.status] ?? FILL.left
      const list = byFill.get(fill)
      if (list === undefined) byFill.set(fill, [n])
      else list.push(n)
    }
    const r = NODE / 2
    for (const [fill, list] of byFill) {
      ctx.beginPath()
      for (const n of list) {
        ctx.moveTo(n.x + r, n.y)
        ctx.arc(n.x, n.y, r, 0, 2 * Math.PI)
      }
      ctx.fillStyle = fill
      ctx.fill()
    }
    ctx.beginPath()
    for (const n of this.nodes) {
      if (!n.m.maintenance) continue
      ctx.moveTo(n.x + r + 1.5, n.y)
      ctx.arc(n.x, n.y, r + 1.5, 0, 2 * Math.PI)
    }
    ctx.lineWidth = 3
    ctx.strokeStyle = MAINTENANCE
    ctx.stroke()
    if (self !== undefined) {
      const s = SELF / 2
      ctx.beginPath()
      ctx.moveTo(self.x, self.y - s)
      ctx.lineTo(self.x + s, self.y)
      ctx.lineTo(self.x, self.y + s)
      ctx.lineTo(self.x - s, self.y)
      ctx.closePath()
      ctx.fillStyle = FILL[self.m.status] === FILL.alive ? SELF_FILL : (FILL[self.m.status] ?? SELF_FILL)
      ctx.fill()
    }
  }

  /** Draw on the next frame (pans and zooms come faster than frames). */
  redraw() {
    this.frame ??= requestAnimationFrame(() => {
      this.frame = undefined
      this.draw()
    })
  }

  /** The node under a point of the canvas (CSS pixels), if any. */
  nodeAt(px, py) {
    const { zoom, pan } = this.view
    const x = (px - pan.x) / zoom
    const y = (py - pan.y) / zoom
    // a node is small on screen at 1,000 members: accept a few pixels around it
    const reach = (NODE / 2 + 3 / zoom) ** 2
    let best
    let bestD = reach
    for (const n of this.nodes) {
      const d = (n.x - x) ** 2 + (n.y - y) ** 2
      if (d <= bestD) {
        best = n
        bestD = d
      }
    }
    return best
  }

  listen() {
    const c = this.canvas
    let press // { x, y, pan, moved } while a button is down
    const at = (e) => {
      const b = c.getBoundingClientRect()
      return { x: e.clientX - b.left, y: e.clientY - b.top }
    }
    c.addEventListener('pointerdown', (e) => {
      const p = at(e)
      press = { ...p, pan: { ...this.view.pan }, moved: false }
      c.setPointerCapture(e.pointerId)
    })
    c.addEventListener('pointermove', (e) => {
      const p = at(e)
      if (press === undefined) {
        c.style.cursor = this.nodeAt(p.x, p.y) === undefined ? 'grab' : 'pointer'
        return
      }
      if (!press.moved && Math.hypot(p.x - press.x, p.y - press.y) < CLICK_SLOP) return
      press.moved = true
      this.view.pan = { x: press.pan.x + p.x - press.x, y: press.pan.y + p.y - press.y }
      this.redraw()
    })
    c.addEventListener('pointerup', (e) => {
      const p = at(e)
      const clicked = press !== undefined && !press.moved
      press = undefined
      if (!clicked) return
      const n = this.nodeAt(p.x, p.y)
      if (n !== undefined) this.onSelect(n.m.peerId)
    })
    c.addEventListener('pointercancel', () => {
      press = undefined
    })
    c.addEventListener(
      'wheel',
      (e) => {
        e.preventDefault()
        const p = at(e)
        const { zoom, pan } = this.view
        const next = Math.min(4, Math.max(0.05, zoom * Math.exp(-e.deltaY * 0.002)))
        // the point under the cursor stays where it is
        this.view = {
          zoom: next,
          pan: { x: p.x - ((p.x - pan.x) * next) / zoom, y: p.y - ((p.y - pan.y) * next) / zoom },
        }
        this.redraw()
      },
      { passive: false },
    )
  }

  /** What the page shows, for the browser test and for people: node and edge counts by kind. */
  summary() {
    const edges = {}
    const byStatus = {}
    const self = this.nodes[0]?.m.self ? this.nodes[0] : undefined
    for (const n of this.nodes) {
      byStatus[n.m.status] = (byStatus[n.m.status] ?? 0) + 1
      const kind = self === undefined || n === self ? undefined : edgeKind(n.m.path)
      if (kind !== undefined) edges[kind] = (edges[kind] ?? 0) + 1
    }
    return { nodes: this.nodes.length, byStatus, edges, renderer: 'canvas' }
  }

  /** Where a member is drawn (CSS pixels in the canvas), for the browser test's click. */
  pointOf(peerId) {
    const n = this.nodes.find((x) => x.m.peerId === peerId)
    if (n === undefined) return undefined
    const { zoom, pan } = this.view
    return { x: n.x * zoom + pan.x, y: n.y * zoom + pan.y }
  }

  destroy() {
    if (this.frame !== undefined) cancelAnimationFrame(this.frame)
    this.resizer.disconnect()
    this.canvas.remove()
  }
}
