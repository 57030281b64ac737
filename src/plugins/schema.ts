import { z } from 'zod'
import { PluginError } from './plugin-error.js'

/** The plugin API version this agent speaks; `mesh_plugin_api` must equal it. */
export const PLUGIN_API = 1

export const HOOK_EVENTS = ['after_start_instance', 'after_slave', 'after_join', 'cluster_change'] as const
export type HookEvent = (typeof HOOK_EVENTS)[number]

// names go into member records (computeTypes) and instance names: keep them short and plain
const TYPE_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/
const command = z.string().trim().min(1, 'expected a shell command (a non-empty string)').max(16_384)

const ComputeType = z
  .object({
    /** exits 0 when this machine can start instances of this type */
    available: command,
    /** starts one instance (env MESH_INSTANCE_ID, MESH_JOIN_TOKEN, ...) */
    start_instance: command,
    /** prints the instance's SSH host (optional: without it the instance joins by itself) */
    get_hostname: command.optional(),
    /** prints the instance's SSH port (default 22) */
    get_port: command.optional(),
    /** exits 0 when the instance is gone or broken (stale), non-zero while it is fine */
    detect_stale_instance: command,
    /** removes the instance; must succeed when it is already gone */
    clean_up_instance: command,
    /** prints the instance's last log lines (optional): shown when it fails to join */
    instance_logs: command.optional(),
    /** seconds each of these commands may run (default 300) */
    timeout_s: z.number().int().min(1).max(3600).optional(),
  })
  .strict()

const ServerType = z
  .object({
    /** runs on the new instance (over SSH when the compute type gives an endpoint, else locally) */
    bootstrap: command,
    /** an optional source repo the bootstrap may use (env MESH_SERVER_SOURCE) */
    source: z.string().min(1).max(1024).optional(),
    timeout_s: z.number().int().min(1).max(3600).optional(),
  })
  .strict()

const Hook = z
  .object({
    /** the command runs only when this exits 0 (default: always) */
    predicate: command.optional(),
    command,
    timeout_s: z.number().int().min(1).max(3600).optional(),
  })
  .strict()

const typeMap = <T extends z.ZodTypeAny>(t: T) =>
  z
    .record(z.string().regex(TYPE_NAME_RE, 'expected a name of a-z, 0-9 and - (at most 32 characters)'), t)
    .default({})

export const ManifestSchema = z
  .object({
    mesh_plugin_api: z.literal(PLUGIN_API, {
      message: `expected ${PLUGIN_API} (the plugin API this mesh speaks)`,
    }),
    description: z.string().max(1024).optional(),
    compute_types: typeMap(ComputeType),
    server_types: typeMap(ServerType),
    hooks: z
      .object(Object.fromEntries(HOOK_EVENTS.map((e) => [e, z.array(Hook).max(64).optional()])))
      .strict()
      .default({}),
  })
  .strict()

export type Manifest = z.infer<typeof ManifestSchema>
export type ComputeTypeDef = z.infer<typeof ComputeType>
export type ServerTypeDef = z.infer<typeof ServerType>
export type HookDef = z.infer<typeof Hook>

/**
 * Parse a plugin's mesh.json. A broken one throws a PluginError naming the file, each bad key
 * and the problem, e.g. `plugins/x/mesh.json: key 'compute_types.vm.start_instance': expected ...`.
 */
export function parseManifest(text: string, file: string): Manifest {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new PluginError(`${file}: not valid JSON (${(err as Error).message}); fix the file and try again`)
  }
  const r = ManifestSchema.safeParse(doc)
  if (r.success) return r.data
  const lines = r.error.issues.map((i) => {
    const key = i.path.join('.')
    if (i.code === 'unrecognized_keys')
      return `unknown key ${i.keys.map((k) => `'${[...i.path, k].join('.')}'`).join(', ')}`
    if (i.code === 'invalid_type' && i.input === undefined) return `key '${key}': missing (required)`
    if (i.code === 'invalid_key') return `key '${key}': bad name: ${i.issues[0]?.message ?? i.message}`
    return `key '${key || '(top level)'}': ${i.message}`
  })
  throw new PluginError(`${file} is not a valid plugin manifest:\n  ${lines.join('\n  ')}`)
}

/**
 * parseManifest for each of a list of mesh.json texts, in the worker thread read-manifests.ts
 * starts: each a manifest or the PluginError's message (plain data, as a worker's answer must be).
 */
export function parseManifests(
  list: { text: string; label: string }[],
): ({ manifest: Manifest } | { error: string })[] {
  return list.map(({ text, label }) => {
    try {
      return { manifest: parseManifest(text, label) }
    } catch (err) {
      return { error: (err as Error).message }
    }
  })
}
