/** A plugin that cannot be installed, loaded or run; apart from schema.ts, which loads zod. */
export class PluginError extends Error {
  override name = 'PluginError'
}
