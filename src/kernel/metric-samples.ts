import type { Registry } from 'prom-client'

/** One sample of a metric, as the Prometheus text shows it on a line (histograms: _bucket, _sum, _count). */
export interface MetricSample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Every sample of a registry, read from prom-client's objects (no text to parse). */
export async function samplesOf(registry: Registry): Promise<MetricSample[]> {
  const out: MetricSample[] = []
  for (const m of await registry.getMetricsAsJSON()) {
    for (const v of m.values) {
      const labels: Record<string, string> = {}
      for (const [k, x] of Object.entries(v.labels)) if (x !== undefined) labels[k] = String(x)
      out.push({ name: (v as { metricName?: string }).metricName ?? m.name, labels, value: v.value })
    }
  }
  return out
}

/** Metrics read at one moment; get() sums the samples of `name` whose labels include `labels`. */
export class MetricsSnapshot {
  constructor(readonly samples: readonly MetricSample[]) {}

  get(name: string, labels: Record<string, string> = {}): number {
    let sum = 0
    for (const s of this.samples) {
      if (s.name !== name) continue
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value
    }
    return sum
  }
}
