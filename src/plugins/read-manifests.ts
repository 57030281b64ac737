import { callInWorker } from '../kernel/worker-call.js'
import { PluginError } from './plugin-error.js'
import type { Manifest } from './schema.js'

/**
 * Plugins' mesh.json texts validated by schema.ts in a short-lived worker thread: every agent
 * reads the built-in plugins' manifests at start, and zod, imported here, would stay in its heap
 * for good (sim/PROFILE.md). Each entry: the manifest, or the PluginError that says what is wrong.
 */
export async function parseManifestsOffThread(
  list: { text: string; label: string }[],
): Promise<(Manifest | PluginError)[]> {
  if (list.length === 0) return []
  const parsed = await callInWorker<({ manifest: Manifest } | { error: string })[]>(
    new URL('./schema.js', import.meta.url),
    'parseManifests',
    list,
  )
  return parsed.map((p) => ('manifest' in p ? p.manifest : new PluginError(p.error)))
}
