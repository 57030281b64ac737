import type { Logger } from 'pino'
import type { Component } from '../kernel/component.js'

// how long a stop during start-up waits for the component that is starting (see stop())
export const CANCEL_WAIT_MS = 30_000

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
  /** stop() was called while components were starting: start() stops at the next one */
  private cancel: { reason: Error | undefined } | undefined

  /**
   * Start the components in order. A stop() meanwhile (a SIGTERM during start-up) lets the
   * component that is starting finish, since it may already hold what its stop() releases (the
   * overlay's device and NAME.mesh lines), then stops every started one and starts no more:
   * start() then resolves, and `stopped` says the daemon stopped.
   */
  async start(): Promise<void> {
    if (this.stopping !== undefined) return
    this.starting = true
    try {
      await this.startAll()
    } finally {
      this.starting = false
    }
  }

  private async startAll(): Promise<void> {
    for (const c of this.components) {
      if (this.cancel !== undefined) break
      const t0 = performance.now()
      try {
        await c.start?.()
      } catch (err) {
        c.lifecycle?.dispose()
        this.log.error({ component: c.name, err: (err as Error).message }, 'component failed to start')
        await this.stopAll()
        throw err
      }
      if (this.stopping !== undefined) {
        // stopped without it (it took longer than CANCEL_WAIT_MS): it stops now, alone
        await this.stopOne(c)
        return
      }
      this.started.push(c)
      if (this.failure !== undefined) {
        await this.stopAll(this.failure)
        throw this.failure
      }
      this.log.debug({ component: c.name, ms: Math.round(performance.now() - t0) }, 'component started')
    }
    if (this.cancel !== undefined) {
      this.log.info({ started: this.started.map((c) => c.name) }, 'stopped during start-up')
      await this.stopAll(this.cancel.reason)
    }
  }

  /** Stop everything (idempotent); during start-up, once the component starting now has started. */
  stop(reason?: Error): Promise<void> {
    if (this.starting && this.stopping === undefined) {
      this.cancel ??= { reason }
      // a start can take long (a joiner tries its inviter for minutes): the started ones are
      // stopped without it after a while, so a stop asked for is not held up for minutes
      const late = setTimeout(() => void this.stopAll(reason), CANCEL_WAIT_MS)
      return this.done.promise.then(() => clearTimeout(late))
    }
    return this.stopAll(reason)
  }

  private stopAll(reason?: Error): Promise<void> {
    this.stopping ??= (async () => {
      for (const c of [...this.started].reverse()) await this.stopOne(c)
      this.started.length = 0
      this.done.resolve(reason)
    })()
    return this.stopping
  }

  private async stopOne(c: Component): Promise<void> {
    try {
      await c.stop?.()
    } catch (err) {
      this.log.warn({ component: c.name, err: (err as Error).message }, 'component failed to stop cleanly')
    }
    c.lifecycle?.dispose()
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
