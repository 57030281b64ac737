import { ConfigError } from '../kernel/config-error.js'
import { callInWorker } from '../kernel/worker-call.js'
import type { Config, LoadOptions } from './config.js'

export interface ConfigRead {
  config: Config
  /** MESH_* variables that look like a mistyped config variable, for the log */
  warnings: string[]
}

/**
 * The agent's config (config.ts's loadConfig: file, MESH_* variables, flags), read and validated
 * in a short-lived worker thread: the schemas are zod's, which would otherwise stay in the heap
 * of every agent for good (~3 MiB; sim/PROFILE.md) for a check made once at start. Throws the
 * same ConfigError, with the same message, as loadConfig.
 */
export function readConfig(opts: Omit<LoadOptions, 'warn'>): Promise<ConfigRead> {
  return callInWorker(
    new URL('./config.js', import.meta.url),
    'loadConfigAndWarnings',
    // the environment as this thread sees it now (a worker copies process.env when it starts, too)
    { ...opts, env: { ...(opts.env ?? process.env) } },
    { ConfigError },
  )
}
