// The dashboard's picture of the cluster: filled from the control API's GET routes (through
// the UI server's /api/ proxy) and kept current by its event stream. Events are applied to
// this state directly; a debounced re-read fills in what an event does not carry.

const MAX_POINTS = 180 // samples kept per chart series (15 min at one every 5 s)

export const state = {
  status: undefined,
  members: new Map(), // peerId -> member view (as /v1/members)
  datasets: [],
  holders: new Map(), // root CID -> { providers, at }
  requests: [],
  requestDetail: new Map(), // id -> /v1/requests/:id
  instances: [],
  samples: [], // [{ t, values: Map(seriesKey -> number) }]
  traffic: [], // [{ t, peers: Map(peerId -> { in, out }) }]: bytes with each member so far, per sample
  events: [], // newest first, for the activity list
  connected: false,
  error: undefined,
}

const listeners = new Set()
export const onChange = (fn) => listeners.add(fn)
const changed = () => {
  for (const fn of listeners) fn()
}

export async function api(path) {
  const res = await fetch(`/api${path}`, { credentials: 'same-origin' })
  if (!res.ok) {
    const text = await res.text()
    throw new Error(`${path}: ${res.status} ${text.slice(0, 200)}`)
  }
  return res.headers.get('content-type')?.includes('json') ? res.json() : res.text()
}

/** Show a failed read's error (until a read works); true when the read worked. */
const guard = (p) =>
  p.then(
    () => {
      state.error = undefined
      return true
    },
    (err) => {
      state.error = err.message
      if (perf.readErrors.length < 20) perf.readErrors.push(err.message) // what a test prints
      return false
    },
  )

export function loadMembers() {
  return guard(
    api('/v1/members').then(({ members }) => {
      // keep the old object of a member that did not change: views skip it by identity
      const next = new Map()
      for (const m of members) {
        const prev = state.members.get(m.peerId)
        next.set(m.peerId, prev !== undefined && sameMember(prev, m) ? prev : m)
      }
      state.members = next
    }),
  )
}
const sameMember = (a, b) => {
  for (const k of Object.keys(b)) {
    const x = a[k]
    const y = b[k]
    if (x !== y && (typeof y !== 'object' || JSON.stringify(x) !== JSON.stringify(y))) return false
  }
  return true
}

export const loadStatus = () => guard(api('/v1/status').then((s) => (state.status = s)))
export const loadDatasets = () =>
  guard(api('/v1/datasets').then(({ datasets }) => (state.datasets = datasets)))
export const loadRequests = () =>
  guard(api('/v1/requests').then(({ requests }) => (state.requests = requests)))
export const loadInstances = () =>
  guard(api('/v1/instances').then(({ instances }) => (state.instances = instances)))

export async function loadRequest(id) {
  await guard(api(`/v1/requests/${encodeURIComponent(id)}`).then((r) => state.requestDetail.set(id, r)))
  changed()
}

/** Who holds a dataset's root right now (each member asked by the agent, bounded in time). */
export async function loadHolders(root) {
  try {
    const s = await api(`/v1/blocks/${encodeURIComponent(root)}/stat`)
    state.holders.set(root, { providers: s.providers, local: s.local, at: Date.now() })
  } catch (err) {
    state.holders.set(root, { providers: [], error: err.message, at: Date.now() })
  }
  changed()
}

/** Prometheus text -> Map(series key -> value); series keys keep their labels. */
export function parseMetrics(text) {
  const out = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    const v = Number(line.slice(i + 1))
    if (Number.isFinite(v)) out.set(line.slice(0, i), v)
  }
  return out
}

/** One sample of /metrics and of the per-member traffic, then one render. */
export async function sampleMetrics() {
  await Promise.all([sampleAgentMetrics(), sampleTraffic()])
  changed()
}

async function sampleAgentMetrics() {
  try {
    const values = parseMetrics(await api('/metrics'))
    state.samples.push({ t: Date.now() / 1000, values })
    if (state.samples.length > MAX_POINTS) state.samples.shift()
  } catch (err) {
    state.error = err.message
  }
}

/** Bytes with each member so far (/v1/traffic), sampled with /metrics: two samples give a rate. */
export async function sampleTraffic() {
  try {
    const { at, peers } = await api('/v1/traffic')
    const map = new Map()
    for (const p of peers) map.set(p.peerId, { in: p.bytesIn, out: p.bytesOut })
    state.traffic.push({ t: at / 1000, peers: map })
    if (state.traffic.length > MAX_POINTS) state.traffic.shift()
  } catch {
    // an agent without the route (older version): no traffic charts, nothing else lost
  }
}

/** One member's traffic as uPlot columns: [times, bytes/s in, bytes/s out], from `last` samples. */
export function trafficColumns(peerId, last = MAX_POINTS) {
  const xs = state.traffic.slice(-last - 1)
  const t = []
  const rin = []
  const rout = []
  for (let i = 1; i < xs.length; i++) {
    const a = xs[i - 1].peers.get(peerId)
    const b = xs[i].peers.get(peerId)
    const dt = xs[i].t - xs[i - 1].t
    t.push(xs[i].t)
    // a member first counted between two samples starts from zero
    rin.push(b === undefined || dt <= 0 ? null : Math.max(0, (b.in - (a?.in ?? 0)) / dt))
    rout.push(b === undefined || dt <= 0 ? null : Math.max(0, (b.out - (a?.out ?? 0)) / dt))
  }
  return [t, rin, rout]
}

/** Bytes with a member so far, from the newest sample. */
export const trafficOf = (peerId) => state.traffic.at(-1)?.peers.get(peerId)

// ---- live updates ---------------------------------------------------------------------------

const timers = new Map()
/** Re-read something once after a burst of events, not once per event. */
function soon(key, fn, ms = 300) {
  if (timers.has(key)) return
  timers.set(
    key,
    setTimeout(async () => {
      timers.delete(key)
      await fn()
      changed()
    }, ms),
  )
}

/** Timings of applied updates, read by the browser test (median of apply + render). */
export const perf = { updates: [], readErrors: [], firstPaint: undefined, graphDrawn: undefined }
let pending // an update being timed: its start, until the render after it finishes
export const renderDone = () => {
  if (pending === undefined) return
  const started = pending
  pending = undefined
  // until the next frame has run: the graph's canvas is drawn there
  requestAnimationFrame(() => perf.updates.push(performance.now() - started))
}

/** Apply one event to the state; returns true when the page should render again now. */
export function applyEvent(e) {
  state.events.unshift(e)
  if (state.events.length > 200) state.events.length = 200
  const d = e.data ?? {}
  switch (e.type) {
    case 'cluster_change': {
      const m = state.members.get(d.peerId)
      if (m === undefined) {
        state.members.set(d.peerId, {
          peerId: d.peerId,
          name: d.name,
          overlay: d.overlay,
          status: d.after,
          path: '-',
          tags: {},
          version: '',
          maintenance: false,
          incarnation: d.incarnation,
          since: e.time,
        })
      } else {
        // a new object: views compare by identity to skip unchanged rows
        state.members.set(d.peerId, { ...m, status: d.after, incarnation: d.incarnation, since: e.time })
      }
      soon('members', loadMembers, 1000)
      return true
    }
    case 'peer:connect':
    case 'peer:disconnect':
      soon('members', loadMembers, 500)
      return false
    case 'dataset_tag':
      soon('datasets', loadDatasets)
      return false
    case 'request_decided':
    case 'request_no_candidate':
    case 'request_change':
    case 'request_new_round':
      soon('requests', loadRequests)
      if (typeof d.id === 'string') soon(`request:${d.id}`, () => loadRequest(d.id))
      soon('instances', loadInstances, 1500)
      return false
    default:
      return false
  }
}

/** The event stream; EventSource reconnects by itself when the agent restarts. */
export function connect() {
  const es = new EventSource('/api/events')
  es.onopen = () => {
    state.connected = true
    // whatever happened while disconnected: read it all again
    void Promise.all([loadMembers(), loadDatasets(), loadRequests(), loadInstances()]).then(changed)
  }
  es.onerror = () => {
    state.connected = false
    changed()
  }
  const types = [
    'cluster_change',
    'peer:connect',
    'peer:disconnect',
    'dataset_tag',
    'request_decided',
    'request_no_candidate',
    'request_change',
    'request_new_round',
    'agent_stopping',
  ]
  for (const t of types)
    es.addEventListener(t, (msg) => {
      const started = performance.now()
      let e
      try {
        e = JSON.parse(msg.data)
      } catch {
        return
      }
      if (applyEvent(e)) {
        pending ??= started
        changed()
      }
    })
  return es
}

let retryMs = 0 // the wait before a failed read is tried again (0: the last read worked)
let retryTimer
export async function loadAll() {
  const read = await Promise.all([
    loadStatus(),
    loadMembers(),
    loadDatasets(),
    loadRequests(),
    loadInstances(),
  ])
  perf.fetched ??= performance.now()
  changed()
  // a failed read (the agent restarting, a busy machine) is tried again soon, 0.25 s doubling
  // to 8 s, rather than at the next 15 s round: the page must not stay empty that long
  clearTimeout(retryTimer)
  if (!read.includes(false)) retryMs = 0
  else {
    retryMs = Math.min(retryMs === 0 ? 250 : retryMs * 2, 8000)
    retryTimer = setTimeout(() => void loadAll(), retryMs)
  }
}
