import type { Logger } from 'pino'
import type { Reporter } from '../reporter/reporter.js'

/**
 * Every part of the agent has this shape: a factory that takes its config and
 * dependencies and does nothing else, and optional start/stop. The daemon starts
 * components in the order given and stops them in reverse.
 */
export interface Component {
  readonly name: string
  start?(): Promise<void>
  stop?(): Promise<void>
}

/** What the reporter hands each component. */
export interface ComponentContext {
  log: Logger
  reporter: Reporter
}
