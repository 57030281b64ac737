import type { Logger } from 'pino'
import type { Reporter } from './reporter.js'

/**
 * Every part of the agent has this shape: a factory that takes its config and
 * dependencies and does nothing else, and optional start/stop. The daemon starts
 * components in the order given and stops them in reverse; after a component's
 * stop() it disposes the component's `lifecycle`, so stop() only has to undo what
 * a Lifecycle cannot (closing servers, saving state).
 */
export interface Component {
  readonly name: string
  start?(): Promise<void>
  stop?(): Promise<void>
  /** timers, listeners and subscriptions the daemon disposes after stop() */
  readonly lifecycle?: Lifecycle
}

/** What the reporter hands each component. */
export interface ComponentContext {
  log: Logger
  reporter: Reporter
}

type Disposer = () => void

/**
 * What a running component holds open: intervals, timeouts, listeners and
 * subscriptions, registered as they are made and all released by dispose().
 * Timers are unref'd: none of them keeps the process alive on its own.
 */
export class Lifecycle {
  private readonly disposers = new Set<Disposer>()

  /** Run `fn` every `ms` until disposed. */
  every(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setInterval(fn, ms)
    t.unref()
    this.add(() => clearInterval(t))
    return t
  }

  /** Run `fn` once after `ms` unless disposed first. */
  after(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.disposers.delete(clear)
      fn()
    }, ms)
    t.unref()
    const clear = () => clearTimeout(t)
    this.add(clear)
    return t
  }

  /** Anything else to undo at dispose: an unsubscribe function, a removeEventListener... */
  add(dispose: Disposer): Disposer {
    this.disposers.add(dispose)
    return dispose
  }

  /** Release everything registered, newest first (a stopped component may start again). */
  dispose(): void {
    const all = [...this.disposers].reverse()
    this.disposers.clear()
    for (const d of all) {
      try {
        d()
      } catch {}
    }
  }
}
