import type { Logger } from 'pino'
import type { Component } from '../kernel/component.js'

/**
 * Starts components in order and stops the started ones in reverse. A failing
 * start stops what already started; `fail()` lets a running component bring the
 * whole agent down cleanly (for example when its listener dies).
 */
export class Daemon {
  private readonly started: Component[] = []
  private stopping: Promise<void> | undefined
  private readonly done = Promise.withResolvers<Error | undefined>()
  /** a fail() while components are still starting: start() stops and throws it */
  private failure: Error | undefined

  constructor(
    private readonly components: Component[],
    private readonly log: Logger,
  ) {}

  private starting = false

  async start(): Promise<void> {
    this.starting = true
    try {
      await this.startAll()
    } finally {
      this.starting = false
    }
  }

  private async startAll(): Promise<void> {
    for (const c of this.components) {
      const t0 = performance.now()
      try {
        await c.start?.()
      } catch (err) {
        c.lifecycle?.dispose()
        this.log.error({ component: c.name, err: (err as Error).message }, 'component failed to start')
        await this.stop()
        throw err
      }
      this.started.push(c)
      if (this.failure !== undefined) {
        await this.stop(this.failure)
        throw this.failure
      }
      this.log.debug({ component: c.name, ms: Math.round(performance.now() - t0) }, 'component started')
    }
  }

  /** Stop everything (idempotent). */
  stop(reason?: Error): Promise<void> {
    this.stopping ??= (async () => {
      for (const c of [...this.started].reverse()) {
        try {
          await c.stop?.()
        } catch (err) {
          this.log.warn(
            { component: c.name, err: (err as Error).message },
            'component failed to stop cleanly',
          )
        }
        c.lifecycle?.dispose()
      }
      this.started.length = 0
      this.done.resolve(reason)
    })()
    return this.stopping
  }

  /** Called by a component that can no longer run: the agent stops. */
  fail(component: string, err: Error): void {
    this.log.error({ component, err: err.message }, 'component failed; stopping the agent')
    if (this.starting) this.failure ??= err
    else void this.stop(err)
  }

  /** Resolves when the daemon has stopped, with the error that stopped it, if any. */
  get stopped(): Promise<Error | undefined> {
    return this.done.promise
  }
}
