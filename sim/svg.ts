// Hand-written SVG line charts (no dependencies), for the README: figures against N from a
// sweep, and a timeline of wrong views for each run.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Summary } from './report.js'

export interface Series {
  name: string
  points: Array<[number, number]>
  dash?: boolean
}

export interface ChartOptions {
  title: string
  xLabel: string
  yLabel: string
  series: Series[]
  logX?: boolean
  logY?: boolean
  width?: number
  height?: number
  /** start the y axis at zero (linear axes) */
  zeroY?: boolean
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf']

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count)
  const mag = 10 ** Math.floor(Math.log10(raw))
  const n = raw / mag
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag
}

function ticks(min: number, max: number, log: boolean): number[] {
  if (log) {
    const out: number[] = []
    for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) out.push(10 ** e)
    return out
  }
  const step = niceStep(max - min, 5)
  const out: number[] = []
  for (let v = Math.floor(min / step) * step; v < max + step; v += step) out.push(Math.round(v * 1e9) / 1e9)
  return out
}

function label(v: number): string {
  if (v === 0) return '0'
  const a = Math.abs(v)
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`
  if (a < 0.01) return v.toExponential(0)
  return `${+v.toPrecision(3)}`
}

export function lineChart(o: ChartOptions): string {
  const W = o.width ?? 640
  const H = o.height ?? 360
  const m = { l: 64, r: 16, t: 36, b: 64 }
  const pts = o.series
    .flatMap((s) => s.points)
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0))
  let x0 = Math.min(...pts.map((p) => p[0]))
  let x1 = Math.max(...pts.map((p) => p[0]))
  let y0 = Math.min(...pts.map((p) => p[1]))
  let y1 = Math.max(...pts.map((p) => p[1]))
  if (pts.length === 0) {
    x0 = 1
    x1 = 10
    y0 = 1
    y1 = 10
  }
  if (o.zeroY && !o.logY) y0 = Math.min(0, y0)
  if (x0 === x1) x1 = x0 * 2 || 1
  if (y0 === y1) y1 = y0 * 2 || 1
  const xt = ticks(x0, x1, o.logX === true)
  const yt = ticks(y0, y1, o.logY === true)
  if (o.logX) {
    x0 = Math.min(x0, xt[0])
    x1 = Math.max(x1, xt[xt.length - 1])
  }
  y0 = Math.min(y0, yt[0])
  y1 = Math.max(y1, yt[yt.length - 1])
  const fx = (x: number) => {
    const u = o.logX
      ? (Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))
      : (x - x0) / (x1 - x0)
    return m.l + u * (W - m.l - m.r)
  }
  const fy = (y: number) => {
    const u = o.logY
      ? (Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))
      : (y - y0) / (y1 - y0)
    return H - m.b - u * (H - m.t - m.b)
  }
  const out: string[] = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(o.title)}</title>`,
  )
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`)
  out.push(
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(o.title)}</text>`,
  )
  for (const t of xt) {
    if (t < x0 || t > x1) continue
    const x = fx(t).toFixed(1)
    out.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${H - m.b}" stroke="#eee"/>`)
    out.push(`<text x="${x}" y="${H - m.b + 16}" text-anchor="middle">${label(t)}</text>`)
  }
  for (const t of yt) {
    if (t < y0 || t > y1) continue
    const y = fy(t).toFixed(1)
    out.push(`<line x1="${m.l}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#eee"/>`)
    out.push(`<text x="${m.l - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${label(t)}</text>`)
  }
  out.push(`<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="#333"/>`)
  out.push(`<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="#333"/>`)
  out.push(
    `<text x="${(m.l + W - m.r) / 2}" y="${H - m.b + 34}" text-anchor="middle">${esc(o.xLabel)}</text>`,
  )
  out.push(
    `<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  )
  o.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]
    const ps = s.points.filter(
      ([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0),
    )
    if (ps.length === 0) return
    const d = ps.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${fx(x).toFixed(1)},${fy(y).toFixed(1)}`).join(' ')
    out.push(
      `<path d="${d}" fill="none" stroke="${c}" stroke-width="2"${s.dash ? ' stroke-dasharray="6 4"' : ''}/>`,
    )
    if (ps.length <= 12)
      for (const [x, y] of ps)
        out.push(`<circle cx="${fx(x).toFixed(1)}" cy="${fy(y).toFixed(1)}" r="3" fill="${c}"/>`)
    // legend along the bottom
    const lx = m.l + i * ((W - m.l - m.r) / Math.max(1, o.series.length))
    const ly = H - 12
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 18}" y2="${ly}" stroke="${c}" stroke-width="2"${s.dash ? ' stroke-dasharray="6 4"' : ''}/>`,
    )
    out.push(`<text x="${lx + 22}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`)
  })
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

/** Charts for a set of runs: against N where a scenario ran at several sizes, and one timeline per run. */
export function writeCharts(results: Summary[], dir: string): string[] {
  const written: string[] = []
  const put = (name: string, svg: string) => {
    const p = join(dir, name)
    writeFileSync(p, svg)
    written.push(p)
  }
  const byScenario = new Map<string, Summary[]>()
  for (const s of results) byScenario.set(s.scenario, [...(byScenario.get(s.scenario) ?? []), s])
  for (const [name, runs] of byScenario) {
    const sorted = [...runs].sort((a, b) => a.nodes - b.nodes)
    if (sorted.length >= 2) {
      const pt = (f: (s: Summary) => number | null | undefined): Array<[number, number]> =>
        sorted
          .map((s) => [s.nodes, f(s) ?? Number.NaN] as [number, number])
          .filter(([, y]) => Number.isFinite(y))
      const time: Series[] = []
      if (sorted.some((s) => s.detection.count > 0)) {
        time.push({ name: 'detection p50', points: pt((s) => s.detection.p50) })
        time.push({ name: 'detection p99', points: pt((s) => s.detection.p99), dash: true })
      }
      for (const k of ['join', 'restart', 'leave'] as const) {
        if (sorted.some((s) => s.convergence[k].count > 0)) {
          time.push({ name: `${k} p50`, points: pt((s) => s.convergence[k].p50) })
          time.push({ name: `${k} p99`, points: pt((s) => s.convergence[k].p99), dash: true })
        }
      }
      if (sorted.some((s) => s.settleS !== null && s.lastDisruptionS !== null))
        time.push({
          name: 'all views right',
          points: pt((s) => (s.lastDisruptionS === null ? null : s.settleS)),
        })
      if (time.length > 0) {
        put(
          `${name}-time-vs-n.svg`,
          lineChart({
            title: `${name}: detection and convergence against cluster size`,
            xLabel: 'members (N)',
            yLabel: 'seconds',
            series: time,
            logX: true,
            zeroY: true,
          }),
        )
      }
      const bytes: Series[] = [
        { name: 'total', points: pt((s) => s.bytesPerNodePerS.total) },
        { name: 'probe', points: pt((s) => s.bytesPerNodePerS.probe), dash: true },
        {
          name: 'gossip+ihave',
          points: pt((s) => s.bytesPerNodePerS.gossip + s.bytesPerNodePerS.ihave),
          dash: true,
        },
        { name: 'sync', points: pt((s) => s.bytesPerNodePerS.sync), dash: true },
      ]
      // with light members: what a full member sends (a light one forwards less; MODEL.md)
      if (sorted.some((s) => s.fullNodeBytesPerS != null))
        bytes.push({
          name: 'total, full members',
          points: pt((s) => s.fullNodeBytesPerS ?? s.bytesPerNodePerS.total),
        })
      put(
        `${name}-bytes-vs-n.svg`,
        lineChart({
          title: `${name}: bytes sent per member per second`,
          xLabel: 'members (N)',
          yLabel: 'bytes/s per member',
          series: bytes,
          logX: true,
          logY: true,
        }),
      )
    }
    for (const s of sorted) {
      const pts: Array<[number, number]> = s.series.map(([t, w, o]) => [
        t,
        o > 0 ? (100 * w) / (o * Math.max(1, s.liveAtEnd)) : 0,
      ])
      put(
        `${name}-${s.nodes}-timeline.svg`,
        lineChart({
          title: `${name}, ${s.nodes} members: views not yet right`,
          xLabel: 'simulated seconds',
          yLabel: '% of (observer, member) views',
          series: [{ name: 'wrong views', points: pts }],
          zeroY: true,
        }),
      )
    }
  }
  return written
}
