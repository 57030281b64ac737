/**
 * A configuration that cannot be used; the message says where the bad value came from. Apart from
 * config.ts so that an agent can throw and recognise it without loading zod (config.ts's schemas
 * run in a worker thread: read-config.ts).
 */
export class ConfigError extends Error {
  override name = 'ConfigError'
}
