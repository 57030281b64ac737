import { createRequire } from 'node:module'
import { type DestinationStream, type Logger, pino } from 'pino'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { MetricsSnapshot, samplesOf } from './metric-samples.js'

// loaded only for a person at a terminal: an agent under systemd or a test writes JSON lines,
// and pino-pretty and its dependencies would stay in its memory for nothing
const prettyStream = (opts: import('pino-pretty').PrettyOptions): DestinationStream =>
  (createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty'))(opts)

export type HealthCheck = () => { ok: boolean; detail?: string } | Promise<{ ok: boolean; detail?: string }>

/**
 * Logs, metrics and health for every component. Each component gets a pino child
 * logger and metric constructors that prefix names with `mesh_<component>_`, so
 * "everything that moves gets a counter" costs one line at the call site.
 */
export class Reporter {
  readonly root: Logger
  readonly registry = new Registry()
  private readonly checks = new Map<string, HealthCheck>()

  /** `pretty`: one coloured line per entry for a person at a terminal; JSON lines otherwise. */
  constructor(opts: { level?: string; destination?: DestinationStream; pretty?: boolean } = {}) {
    this.root = pino(
      { level: opts.level ?? 'info', base: undefined },
      opts.destination ??
        (opts.pretty === true
          ? prettyStream({
              destination: 2,
              sync: true, // nothing lost when the agent exits right after a line
              translateTime: 'SYS:HH:MM:ss.l',
              singleLine: true,
              ignore: 'component',
              messageFormat: '{if component}{component}: {end}{msg}',
            })
          : pino.destination(2)),
    )
    // prom-client samples event-loop lag every 10 ms by default: 100 wake-ups a second, most of
    // an idle agent's CPU (issue 20). One sample every 500 ms still measures each delay exactly.
    collectDefaultMetrics({
      register: this.registry,
      prefix: 'mesh_process_',
      eventLoopMonitoringPrecision: 500,
    })
  }

  forComponent(name: string): ComponentReporter {
    return new ComponentReporter(name, this)
  }

  addHealthCheck(name: string, check: HealthCheck): void {
    this.checks.set(name, check)
  }

  async health(): Promise<{ ok: boolean; checks: Record<string, { ok: boolean; detail?: string }> }> {
    const checks: Record<string, { ok: boolean; detail?: string }> = {}
    let ok = true
    for (const [name, check] of this.checks) {
      try {
        checks[name] = await check()
      } catch (err) {
        checks[name] = { ok: false, detail: (err as Error).message }
      }
      ok &&= checks[name].ok
    }
    return { ok, checks }
  }

  metrics(): Promise<string> {
    return this.registry.metrics()
  }

  /** The metrics as values (GET /v1/metrics; what tests read instead of parsing the text). */
  async snapshot(): Promise<MetricsSnapshot> {
    return new MetricsSnapshot(await samplesOf(this.registry))
  }
}

const metricName = (component: string, name: string) =>
  `mesh_${component.replace(/[^a-zA-Z0-9_]/g, '_')}_${name}`

export class ComponentReporter {
  readonly log: Logger
  constructor(
    readonly component: string,
    private readonly reporter: Reporter,
  ) {
    this.log = reporter.root.child({ component })
  }

  /** `collect`: fill the counter at scrape time from totals kept elsewhere (cheaper on hot paths). */
  counter<L extends string = string>(
    name: string,
    help: string,
    labelNames: L[] = [],
    collect?: (this: Counter<L>) => void | Promise<void>,
  ): Counter<L> {
    return new Counter({
      name: metricName(this.component, name),
      help,
      labelNames,
      registers: [this.reporter.registry],
      collect,
    })
  }

  gauge<L extends string = string>(
    name: string,
    help: string,
    labelNames: L[] = [],
    collect?: (this: Gauge<L>) => void | Promise<void>,
  ): Gauge<L> {
    return new Gauge({
      name: metricName(this.component, name),
      help,
      labelNames,
      registers: [this.reporter.registry],
      collect,
    })
  }

  histogram<L extends string = string>(
    name: string,
    help: string,
    buckets: number[],
    labelNames: L[] = [],
  ): Histogram<L> {
    return new Histogram({
      name: metricName(this.component, name),
      help,
      labelNames,
      buckets,
      registers: [this.reporter.registry],
    })
  }

  health(check: HealthCheck, name = this.component): void {
    this.reporter.addHealthCheck(name, check)
  }
}
