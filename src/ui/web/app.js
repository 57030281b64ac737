// The dashboard page: preact + htm (no build step), one render of the whole view per change.
import htm from 'htm'
import { h, render } from 'preact'
import { useEffect, useLayoutEffect, useRef } from 'preact/hooks'
import { CanvasGraph } from './canvas-graph.js'
import { CHARTS, columns, makeChart } from './charts.js'
import { LABELS_UP_TO } from './graph-layout.js'
import {
  connect,
  loadAll,
  loadHolders,
  loadRequest,
  onChange,
  perf,
  renderDone,
  sampleMetrics,
  state,
  trafficColumns,
  trafficOf,
} from './store.js'

const html = htm.bind(h)

const VIEWS = [
  ['graph', 'graph'],
  ['members', 'members'],
  ['datasets', 'datasets'],
  ['requests', 'requests'],
  ['instances', 'instances'],
  ['metrics', 'metrics'],
]

const route = () => {
  const [view = 'graph', arg] = location.hash.replace(/^#\/?/, '').split('/')
  return { view, arg: arg === undefined ? undefined : decodeURIComponent(arg) }
}

const ago = (t) => {
  if (!t) return '-'
  const s = Math.max(0, Math.round((Date.now() - t) / 1000))
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)}m ago` : `${Math.floor(s / 3600)}h ago`
}
const fmtTags = (tags) =>
  Object.entries(tags ?? {})
    .filter(([k]) => !k.startsWith('mesh.'))
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')
const byName = (a, b) => a.name.localeCompare(b.name)
const members = () => [...state.members.values()].sort(byName)
const nameOf = (peerId) => state.members.get(peerId)?.name ?? `${String(peerId).slice(0, 10)}…`

const fmtBytes = (n) => {
  if (n === undefined || n === null) return '-'
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let i = 0
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000
    i++
  }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`
}

function Status({ s }) {
  return html`<span class="status ${s}">${s}</span>`
}

// ---- graph -----------------------------------------------------------------------------------
let graph // the graph as drawn while the graph view is shown: a CanvasGraph or (small) a MeshGraph
let graphBox // the graph view's element while it is mounted
let loadingCytoscape = false
const openMember = (id) => (location.hash = `#/member/${encodeURIComponent(id)}`)
const markDrawn = () =>
  requestAnimationFrame(() => {
    perf.graphDrawn ??= performance.now()
  })
/**
 * Draw the members into the graph view: above LABELS_UP_TO on a plain canvas, at once, in the
 * page's own frame (cytoscape's first frame of 1,000 members cost ~0.7 s of CPU); up to it with
 * cytoscape (labels, RTT on the edges), loaded on first use. A cluster that crosses the
 * threshold gets the other renderer.
 */
function drawGraph(box) {
  const large = state.members.size > LABELS_UP_TO
  if (graph !== undefined && graph instanceof CanvasGraph === large) {
    graph.update(state.members)
    return
  }
  graph?.destroy()
  graph = undefined
  if (large) {
    graph = new CanvasGraph(box, openMember, state.members)
    markDrawn()
    return
  }
  if (loadingCytoscape) return
  loadingCytoscape = true
  void import('./graph.js').then(({ MeshGraph }) => {
    loadingCytoscape = false
    // the view went away, or the cluster grew past the threshold meanwhile: the next render decides
    if (graphBox !== box || graph !== undefined || state.members.size > LABELS_UP_TO) return schedule()
    graph = new MeshGraph(box, openMember, state.members)
    markDrawn()
  })
}
function GraphView() {
  const box = useRef()
  useLayoutEffect(() => {
    graphBox = box.current
    return () => {
      graphBox = undefined
      graph?.destroy()
      graph = undefined
    }
  }, [])
  // every render: apply what changed (cheap: unchanged members are skipped by identity)
  useLayoutEffect(() => drawGraph(box.current))
  const counts = {}
  for (const m of state.members.values()) counts[m.status] = (counts[m.status] ?? 0) + 1
  // the canvas graph draws every edge solid (see canvas-graph.js): the legend says so
  const solid = state.members.size > LABELS_UP_TO ? 'solid' : ''
  return html`<div class="graph-wrap">
    <div class="legend ${solid}">
      <span class="k direct">direct</span><span class="k webrtc">WebRTC</span><span class="k relayed">relayed</span>
      <span>${state.members.size} members: ${Object.entries(counts)
        .map(([k, v]) => `${v} ${k}`)
        .join(', ')}</span>
    </div>
    <div id="graph" ref=${box}></div>
  </div>`
}

// ---- members ---------------------------------------------------------------------------------
function MemberRow({ m }) {
  return html`<tr data-peer=${m.peerId} data-status=${m.status}>
    <td><a href="#/member/${encodeURIComponent(m.peerId)}">${m.name}</a>${m.self ? ' (this agent)' : ''}</td>
    <td><${Status} s=${m.status} /></td>
    <td>${m.path}</td>
    <td class="num">${m.rttMs === undefined ? '-' : `${Math.round(m.rttMs)} ms`}</td>
    <td>${m.overlay}</td>
    <td>${m.version}</td>
    <td>${m.maintenance ? 'yes' : ''}</td>
    <td class="tags">${fmtTags(m.tags)}</td>
    <td class="traffic">${trafficOf(m.peerId) === undefined ? '' : html`<${Spark} peerId=${m.peerId} />`}</td>
  </tr>`
}

const SPARK_POINTS = 36 // 3 minutes at one sample every 5 s
/** A member's traffic (in + out bytes/s) over the last minutes as a tiny line, its rate as text. */
function Spark({ peerId }) {
  const [, rin, rout] = trafficColumns(peerId, SPARK_POINTS)
  const ys = rin.map((v, i) => (v ?? 0) + (rout[i] ?? 0))
  const max = Math.max(1, ...ys)
  const w = 60
  const hgt = 14
  const pts = ys.map(
    (y, i) => `${((i + SPARK_POINTS - ys.length) * w) / (SPARK_POINTS - 1)},${hgt - (y / max) * hgt}`,
  )
  const now = ys.at(-1)
  return html`<span class="spark" title=${`in ${fmtBytes(rin.at(-1))}/s, out ${fmtBytes(rout.at(-1))}/s`}>
    <svg width=${w} height=${hgt}><polyline points=${pts.join(' ')} /></svg>
    <span class="rate">${now === undefined ? '' : `${fmtBytes(now)}/s`}</span>
  </span>`
}

// rows re-render only when their member object changed, or (members we exchange bytes with)
// when a new traffic sample came
const rowCache = new WeakMap()
function MembersView() {
  return html`<table class="members">
    <thead><tr><th>name</th><th>status</th><th>path</th><th>rtt</th><th>overlay</th><th>version</th><th>maintenance</th><th>tags</th><th>traffic</th></tr></thead>
    <tbody>${members().map((m) => {
      const sample = trafficOf(m.peerId) === undefined ? undefined : state.traffic.at(-1)
      let row = rowCache.get(m)
      if (row === undefined || row.sample !== sample) {
        row = { sample, vnode: html`<${MemberRow} key=${m.peerId} m=${m} />` }
        rowCache.set(m, row)
      }
      return row.vnode
    })}</tbody>
  </table>`
}

function MemberView({ id }) {
  const m = state.members.get(id) ?? [...state.members.values()].find((x) => x.name === id)
  if (m === undefined) return html`<p>No member ${id} (yet).</p>`
  const conns = (state.status?.connections ?? []).filter((c) => c.peerId === m.peerId)
  const held = state.datasets.filter((d) =>
    state.holders.get(d.root)?.providers?.some((p) => p.peerId === m.peerId),
  )
  const won = state.requests.filter((r) => r.winner === m.peerId)
  return html`<div class="detail">
    <h2>${m.name} <${Status} s=${m.status} /></h2>
    ${m.self ? '' : html`<${TrafficChart} key=${m.peerId} peerId=${m.peerId} name=${m.name} />`}
    <dl>
      <dt>peer ID</dt><dd>${m.peerId}</dd>
      <dt>overlay</dt><dd>${m.overlay}</dd>
      <dt>path</dt><dd>${m.path}${m.rttMs === undefined ? '' : `, ${Math.round(m.rttMs)} ms`}</dd>
      <dt>version</dt><dd>${m.version}</dd>
      <dt>incarnation</dt><dd>${m.incarnation}</dd>
      <dt>status since</dt><dd>${ago(m.since)}</dd>
      <dt>maintenance</dt><dd>${m.maintenance ? 'on' : 'off'}</dd>
      <dt>compute types</dt><dd>${(m.computeTypes ?? []).join(', ') || '-'}</dd>
      <dt>resources</dt><dd>${m.resources ? `${m.resources.cpus} CPUs, ${(m.resources.memoryBytes / 2 ** 30).toFixed(1)} GiB memory, ${(m.resources.diskFreeBytes / 2 ** 30).toFixed(1)} GiB disk free` : '-'}</dd>
      <dt>clock offset</dt><dd>${m.clockOffsetMs === undefined ? '-' : `${m.clockOffsetMs} ms`}</dd>
      <dt>tags</dt><dd>${Object.entries(m.tags ?? {}).map(([k, v]) => html`<div>${k}=${v}</div>`)}</dd>
      <dt>addresses</dt><dd>${(m.addrs ?? []).map((a) => html`<div>${a}</div>`)}</dd>
      <dt>connections here</dt><dd>${conns.length === 0 ? '-' : conns.map((c) => html`<div>${c.path} ${c.direction} ${c.remoteAddr}</div>`)}</dd>
      <dt>datasets held</dt><dd>${held.map((d) => `${d.dataset}:${d.tag}`).join(', ') || '-'}</dd>
      <dt>requests won</dt><dd>${won.map((r) => r.id).join(', ') || '-'}</dd>
      <dt>traffic</dt><dd class="traffic-total">${traffic(m)}</dd>
    </dl>
  </div>`
}
function traffic(m) {
  if (m.self) return '-'
  const t = trafficOf(m.peerId)
  if (t === undefined) return 'none counted (no connection since this agent started)'
  return `${fmtBytes(t.in)} received, ${fmtBytes(t.out)} sent since this agent started`
}
/** Bytes/s to and from one member, from the page's samples of /v1/traffic. */
function TrafficChart({ peerId, name }) {
  const el = useRef()
  const plot = useRef()
  const chart = {
    title: `traffic with ${name} (bytes/s)`,
    series: [{ label: 'received' }, { label: 'sent' }],
  }
  useLayoutEffect(() => plotIn(el, plot, chart, () => trafficColumns(peerId), 560), [])
  useLayoutEffect(() => plot.current?.setData(trafficColumns(peerId)))
  return html`<div class="chart member-traffic" data-peer=${peerId} ref=${el}></div>`
}

// ---- datasets --------------------------------------------------------------------------------
function DatasetsView() {
  useEffect(() => {
    for (const d of state.datasets) {
      const h = state.holders.get(d.root)
      if (h === undefined || Date.now() - h.at > 10_000) void loadHolders(d.root)
    }
  })
  if (state.datasets.length === 0)
    return html`<p>No datasets yet: <code>mesh put DIR --tag NAME:TAG</code>.</p>`
  return html`<table class="datasets">
    <thead><tr><th>dataset</th><th>tag</th><th>root</th><th>publisher</th><th>replicas</th><th>held by</th><th>health</th><th>published</th></tr></thead>
    <tbody>${state.datasets.map((d) => {
      const h = state.holders.get(d.root)
      const n = h?.providers?.length
      const health =
        h === undefined
          ? 'checking'
          : d.replicas > 0 && n < d.replicas
            ? `under-replicated (${n}/${d.replicas})`
            : 'ok'
      return html`<tr data-dataset="${d.dataset}:${d.tag}">
        <td>${d.dataset}</td><td>${d.tag}</td><td class="cid" title=${d.root}>${d.root.slice(0, 14)}…</td>
        <td>${d.publisherName}</td><td class="num">${d.replicas}</td>
        <td>${h?.providers?.map((p) => p.name).join(', ') ?? '…'}</td>
        <td class=${health === 'ok' ? 'ok' : 'warn'}>${health}</td><td>${ago(d.time)}</td>
      </tr>`
    })}</tbody>
  </table>`
}

// ---- requests --------------------------------------------------------------------------------
function RequestDetail({ id }) {
  useEffect(() => {
    if (!state.requestDetail.has(id)) void loadRequest(id)
  }, [id])
  const r = state.requestDetail.get(id)
  if (r === undefined) return html`<tr><td colspan="7">loading votes…</td></tr>`
  return html`<tr class="votes"><td colspan="7">
    ${r.rounds.map(
      (round) => html`<div class="round" data-round=${round.round}>
        <b>round ${round.round}</b>
        <table><thead><tr><th>voter</th><th>vote</th><th>score</th><th>why</th></tr></thead><tbody>
        ${round.votes.map(
          (v) => html`<tr class=${v.voter === r.winner && round.round === r.round ? 'winner' : ''}>
            <td>${v.name}${v.voter === r.winner && round.round === r.round ? ' (winner)' : ''}</td>
            <td>${v.yes ? 'yes' : 'no'}</td><td class="num">${v.score}</td>
            <td>${(v.reasons ?? []).join(', ')}${v.note ? ` ${v.note}` : ''}</td></tr>`,
        )}
        </tbody></table>
        ${round.reports.map((x) => html`<div class="report">${x.name}: ${x.state}${x.instance ? ` (${x.instance})` : ''}${x.note ? `: ${x.note}` : ''}</div>`)}
      </div>`,
    )}
    ${r.message ? html`<div class="warn">${r.message}</div>` : ''}
  </td></tr>`
}
function RequestsView({ open }) {
  if (state.requests.length === 0)
    return html`<p>No requests yet: <code>mesh request create --compute-type T</code>.</p>`
  return html`<table class="requests">
    <thead><tr><th>id</th><th>compute type</th><th>status</th><th>round</th><th>voters</th><th>winner</th><th>age</th></tr></thead>
    <tbody>${state.requests.map(
      (r) => html`<tr data-request=${r.id}>
          <td><a href="#/requests/${encodeURIComponent(r.id)}">${r.id}</a></td><td>${r.computeType}</td>
          <td>${r.status}${r.report ? ` (${r.report})` : ''}</td><td class="num">${r.round}</td>
          <td class="num">${r.voters}</td><td class="winner">${r.winnerName ?? (r.winner ? nameOf(r.winner) : '-')}</td><td>${ago(r.created)}</td>
        </tr>
        ${open === r.id ? html`<${RequestDetail} id=${r.id} />` : ''}`,
    )}</tbody>
  </table>`
}

// ---- instances -------------------------------------------------------------------------------
function InstancesView() {
  if (state.instances.length === 0)
    return html`<p>No spawned instances: <code>mesh spawn --compute-type T</code>.</p>`
  const keys = ['name', 'computeType', 'plugin', 'status', 'member', 'host', 'created']
  return html`<table class="instances">
    <thead><tr>${keys.map((k) => html`<th>${k}</th>`)}</tr></thead>
    <tbody>${state.instances.map(
      (i) => html`<tr>${keys.map((k) => html`<td>${k === 'created' ? ago(i[k]) : (i[k] ?? '-')}</td>`)}</tr>`,
    )}</tbody>
  </table>`
}

// ---- metrics ---------------------------------------------------------------------------------
/** Make a chart in el.current once uPlot is loaded, with the data of that moment; returns its cleanup. */
function plotIn(el, plot, chart, data, width) {
  let gone = false
  void makeChart(el.current, chart, data(), width).then((p) => {
    if (gone) p.destroy()
    else plot.current = p
  })
  return () => {
    gone = true
    plot.current?.destroy()
    plot.current = undefined
  }
}
function Chart({ chart }) {
  const el = useRef()
  const plot = useRef()
  useLayoutEffect(() => plotIn(el, plot, chart, () => columns(chart, state.samples)), [])
  useLayoutEffect(() => plot.current?.setData(columns(chart, state.samples)))
  return html`<div class="chart" ref=${el}></div>`
}
function MetricsView() {
  return html`<div class="charts">${CHARTS.map((c) => html`<${Chart} key=${c.id} chart=${c} />`)}</div>`
}

// ---- page ------------------------------------------------------------------------------------
function App() {
  const { view, arg } = route()
  let body
  if (view === 'member') body = html`<${MemberView} id=${arg} />`
  else if (view === 'members') body = html`<${MembersView} />`
  else if (view === 'datasets') body = html`<${DatasetsView} />`
  else if (view === 'requests') body = html`<${RequestsView} open=${arg} />`
  else if (view === 'instances') body = html`<${InstancesView} />`
  else if (view === 'metrics') body = html`<${MetricsView} />`
  else body = html`<${GraphView} />`
  const s = state.status
  return html`<header>
      <b>mesh</b> ${s ? html`<span>${s.cluster.name} · ${s.name} · ${s.version}</span>` : ''}
      <nav>${VIEWS.map(([id, label]) => html`<a href="#/${id}" class=${view === id ? 'on' : ''}>${label}</a>`)}</nav>
      <span class="conn ${state.connected ? 'live' : 'off'}">${state.connected ? 'live' : 'reconnecting…'}</span>
    </header>
    ${state.error ? html`<div class="error">${state.error}</div>` : ''}
    <main data-view=${view}>${body}</main>`
}

const root = document.getElementById('app')
root.textContent = '' // the 'loading' line: preact owns this element from now on
let queued = false // a render is due
let throttled = false // rendered since the last frame: the next render waits for the next frame
function draw() {
  queued = false
  throttled = true
  requestAnimationFrame(() => {
    throttled = false
    if (queued) draw()
  })
  const t = performance.now()
  render(html`<${App} />`, root)
  perf.firstDrawMs ??= performance.now() - t
  renderDone()
}
/**
 * Render right after the events that caused it, but at most once a frame: a burst (a partition
 * changes hundreds of members at once) is one render per frame, not one per event.
 */
function schedule() {
  if (queued) return
  queued = true
  if (!throttled) queueMicrotask(draw)
}
onChange(schedule)
addEventListener('hashchange', schedule)

// what the browser test reads: timings, and the graph as drawn
window.meshUi = {
  perf,
  graph: () => graph?.summary(),
  /** where a member is drawn on the canvas graph (CSS pixels in it), to click it */
  graphPoint: (peerId) => graph?.pointOf?.(peerId),
  state,
  trafficOf,
  trafficColumns,
}

perf.started = performance.now() // modules loaded
await loadAll()
perf.loaded = performance.now() // the cluster read
draw()
perf.drawn = performance.now()
// the frame that follows has the page (and, above LABELS_UP_TO members, the graph's canvas)
requestAnimationFrame(() => {
  perf.firstPaint = performance.now()
})
connect()
void sampleMetrics()
setInterval(sampleMetrics, 5000)
// what events do not say (RTT, new connections) is read again now and then
setInterval(() => void loadAll(), 15_000)
setInterval(schedule, 5000) // "5s ago" stays true
