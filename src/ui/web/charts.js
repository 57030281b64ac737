// Small time-series charts of the agent's /metrics, sampled by the page every few seconds.
// uPlot: a few kB, draws thousands of points on a canvas without effort; loaded when the first
// chart is drawn, not with the page (the graph view needs none).

const sumOf = (values, prefix, labelTest) => {
  let s
  for (const [k, v] of values) {
    if (!k.startsWith(prefix)) continue
    const rest = k.slice(prefix.length)
    if (rest !== '' && !rest.startsWith('{')) continue
    if (labelTest !== undefined && !labelTest(rest)) continue
    s = (s ?? 0) + v
  }
  return s
}
const label = (name, value) => (rest) => rest.includes(`${name}="${value}"`)

/** The charts: each series a function of one sample's values; counters become rates per second. */
export const CHARTS = [
  {
    id: 'members',
    title: 'members by status',
    series: ['alive', 'suspect', 'dead'].map((s) => ({
      label: s,
      pick: (v) => sumOf(v, 'mesh_membership_members', label('status', s)),
    })),
  },
  {
    id: 'connections',
    title: 'connections by path',
    series: ['direct', 'webrtc', 'relayed'].map((p) => ({
      label: p,
      pick: (v) => sumOf(v, 'mesh_node_connections', label('path', p)),
    })),
  },
  {
    id: 'gossip',
    title: 'membership traffic (bytes/s)',
    rate: true,
    series: ['in', 'out'].map((d) => ({
      label: d,
      pick: (v) => sumOf(v, 'mesh_membership_bytes_total', label('direction', d)),
    })),
  },
  {
    id: 'blocks',
    title: 'block traffic (bytes/s)',
    rate: true,
    series: [
      { label: 'received', pick: (v) => sumOf(v, 'mesh_blocks_received_bytes_total') },
      { label: 'served', pick: (v) => sumOf(v, 'mesh_blocks_served_bytes_total') },
    ],
  },
  {
    id: 'tunnels',
    title: 'tunnel traffic (bytes/s)',
    rate: true,
    series: ['in', 'out'].map((d) => ({
      label: d,
      pick: (v) => sumOf(v, 'mesh_tunnel_bytes_total', label('direction', d)),
    })),
  },
  {
    id: 'process',
    title: 'agent CPU (%)',
    rate: true,
    series: [{ label: 'cpu', pick: (v) => scale(sumOf(v, 'mesh_process_process_cpu_seconds_total'), 100) }],
  },
  {
    id: 'memory',
    title: 'agent memory (MiB)',
    series: [
      {
        label: 'rss',
        pick: (v) => scale(sumOf(v, 'mesh_process_process_resident_memory_bytes'), 1 / 2 ** 20),
      },
    ],
  },
]

const scale = (x, k) => (x === undefined ? undefined : x * k)

/** uPlot's columns for one chart from the samples: [times, series...], rates where asked. */
export function columns(chart, samples) {
  const times = []
  const cols = chart.series.map(() => [])
  for (let i = chart.rate ? 1 : 0; i < samples.length; i++) {
    const s = samples[i]
    times.push(s.t)
    chart.series.forEach((ser, j) => {
      const v = ser.pick(s.values)
      if (!chart.rate) {
        cols[j].push(v ?? null)
        return
      }
      const prev = ser.pick(samples[i - 1].values)
      const dt = s.t - samples[i - 1].t
      cols[j].push(v === undefined || prev === undefined || dt <= 0 ? null : Math.max(0, (v - prev) / dt))
    })
  }
  return [times, ...cols]
}

const COLORS = ['#3fb950', '#d29922', '#f85149', '#58a6ff', '#bc8cff']

/** A uPlot chart in `el` (resolves once uPlot is loaded). */
export async function makeChart(el, chart, data, width = 360) {
  const { default: uPlot } = await import('uplot')
  return new uPlot(
    {
      title: chart.title,
      width,
      height: 150,
      legend: { show: true },
      axes: [{ stroke: '#8b949e' }, { stroke: '#8b949e', size: 60 }],
      series: [
        {},
        ...chart.series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5 })),
      ],
    },
    data,
    el,
  )
}
