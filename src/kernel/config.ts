import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { z } from 'zod'
import { ConfigError } from './config-error.js'
import { editDistance } from './edit-distance.js'

// loaded on first use: an agent with no config file and no structured MESH_* value never needs
// the YAML parser, which would stay in its memory (about 300 KiB of source) for nothing
let yaml: typeof import('yaml') | undefined
const YAML = {
  parse(text: string): unknown {
    yaml ??= createRequire(import.meta.url)('yaml') as typeof import('yaml')
    return yaml.parse(text)
  },
}

export interface ConfigSources {
  /** the YAML file to read */
  file: string
  /** true when the user named the file: then a missing file is an error, not an empty config */
  fileRequired: boolean
  env?: NodeJS.ProcessEnv
  /** values from command-line flags, already as config keys (`relay.server`) */
  flags?: Record<string, unknown>
  /** told about MESH_* variables that look like a mistyped config variable */
  warn?: (message: string) => void
}

const ENV_PREFIX = 'MESH_'

/** A size: a number of bytes, or '512MiB', '10GiB', '1.5G' (MESH_BLOCKS__CACHE_BYTES=20GiB). */
export const byteSize = z.preprocess(
  (v) => {
    if (typeof v !== 'string') return v
    const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$/i.exec(v)
    if (m === null) return v
    const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[
      m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'
    ]
    return Math.round(Number(m[1]) * mult)
  },
  z.number({ message: "expected a size in bytes such as 1073741824 or '1GiB'" }).int().min(0),
)

type Source = { kind: 'file' | 'env' | 'flag'; where: string }

/** One place in the schema an environment variable can set. */
interface EnvPath {
  path: string[]
  /** a plain list: the variable is split at commas */
  list: boolean
  /** a record (tags): MESH_TAGS__ROLE sets tags.role, any key below is accepted */
  record: boolean
}

/** `probeIntervalMs` -> `PROBE_INTERVAL_MS`; path parts are joined with `__`. */
export function envName(path: string[]): string {
  return ENV_PREFIX + path.map((p) => p.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()).join('__')
}

/** `ROLE` -> `role`, `PROBE_INTERVAL_MS` -> `probeIntervalMs`: the inverse of envName for one part. */
function envPart(part: string): string {
  return part.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())
}

function unwrap(t: z.ZodType): z.ZodType {
  let cur: z.ZodType = t
  while (
    cur instanceof z.ZodDefault ||
    cur instanceof z.ZodPrefault ||
    cur instanceof z.ZodOptional ||
    cur instanceof z.ZodNullable
  )
    cur = cur.unwrap() as z.ZodType
  return cur
}

/** Every path of the schema an environment variable may set: objects, records and leaves. */
function envPaths(schema: z.ZodType, path: string[] = []): EnvPath[] {
  const t = unwrap(schema)
  const here: EnvPath[] =
    path.length === 0 ? [] : [{ path, list: t instanceof z.ZodArray, record: t instanceof z.ZodRecord }]
  if (t instanceof z.ZodObject) {
    return [
      ...here,
      ...Object.entries(t.shape as Record<string, z.ZodType>).flatMap(([k, v]) => envPaths(v, [...path, k])),
    ]
  }
  return here
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj
  for (const p of path.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null) cur[p] = {}
    cur = cur[p] as Record<string, unknown>
  }
  cur[path[path.length - 1]] = value
}

function parseScalar(raw: string, isList: boolean): unknown {
  // a list is comma-separated ('a,b'), or a YAML flow sequence when it needs structure
  // ('[{from: a, proto: tcp}]', as overlay.allow does)
  if (isList && raw.trim().startsWith('[')) {
    try {
      return YAML.parse(raw)
    } catch {
      return raw
    }
  }
  if (isList) {
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0)
  }
  const plain = plainScalar(raw)
  if (plain !== undefined) return plain
  try {
    return YAML.parse(raw)
  } catch {
    return raw
  }
}

/**
 * What YAML reads a plain value as, for the values MESH_* variables usually hold (true, false, a
 * decimal integer, a word, a path), without loading the YAML parser: one variable such as
 * MESH_OVERLAY__INTERFACE=false loaded it into every agent, and it stays (about 0.5 MiB of heap).
 * undefined for anything else (null, ~, 0x1F, 1e3, 1.5, quoted or spaced text): YAML decides.
 * Checked against yaml.parse on 200,000 random short strings (sim/PROFILE.md).
 */
export function plainScalar(raw: string): unknown {
  if (raw === 'true') return true
  if (raw === 'false') return false
  if (/^-?(0|[1-9]\d{0,14})$/.test(raw)) return Number(raw)
  if (/^[A-Za-z][A-Za-z0-9_-]*$/.test(raw) && !/^(true|false|null)$/i.test(raw)) return raw
  if (/^\/[A-Za-z0-9_./-]*$/.test(raw)) return raw
  return undefined
}

/** Keys allowed at `path` of the schema, for "unknown key" messages. */
function allowedKeys(schema: z.ZodType, path: string[]): string[] {
  let shape: z.ZodType = schema
  for (const p of path) {
    const inner = unwrap(shape)
    if (inner instanceof z.ZodObject) shape = (inner.shape as Record<string, z.ZodType>)[p]
  }
  const obj = shape === undefined ? undefined : unwrap(shape)
  return obj instanceof z.ZodObject ? Object.keys(obj.shape) : []
}

/**
 * A config from the YAML file, then MESH_* environment variables, then flags; the
 * later wins. Environment variables are read for the schema's own paths only
 * (MESH_LOG_LEVEL -> logLevel, MESH_RELAY__SERVER -> relay.server), so variables
 * set for other purposes (plugin commands get MESH_INSTANCE_ID...) are never
 * mistaken for config. An invalid value fails with where it came from, the key and
 * what is allowed; an unknown key with the nearest real one.
 */
export function loadConfig<S extends z.ZodType>(schema: S, src: ConfigSources): z.infer<S> {
  const env = src.env ?? process.env
  const merged: Record<string, unknown> = {}
  const sources = new Map<string, Source>()

  let text: string | undefined
  try {
    text = readFileSync(src.file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || src.fileRequired) {
      throw new ConfigError(`cannot read config file ${src.file}: ${(err as Error).message}`)
    }
  }
  if (text !== undefined) {
    let doc: unknown
    try {
      doc = YAML.parse(text) ?? {}
    } catch (err) {
      throw new ConfigError(`config file ${src.file} is not valid YAML: ${(err as Error).message}`)
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      throw new ConfigError(`config file ${src.file} must be a YAML mapping of keys to values`)
    }
    for (const [k, v] of Object.entries(doc)) {
      merged[k] = v
      sources.set(k, { kind: 'file', where: src.file })
    }
  }

  const known = envPaths(schema)
  const names = new Set(known.map((p) => envName(p.path)))
  // parents first, so MESH_RELAY='{server: false}' then MESH_RELAY__RESERVATIONS=0 both count
  for (const p of known) {
    const name = envName(p.path)
    const raw = env[name]
    if (raw !== undefined) {
      setPath(merged, p.path, parseScalar(raw, p.list))
      sources.set(p.path.join('.'), { kind: 'env', where: name })
    }
    if (!p.record) continue
    for (const [k, v] of Object.entries(env)) {
      if (!k.startsWith(`${name}__`) || v === undefined) continue
      const path = [
        ...p.path,
        ...k
          .slice(name.length + 2)
          .split('__')
          .map(envPart),
      ]
      setPath(merged, path, parseScalar(v, false))
      sources.set(path.join('.'), { kind: 'env', where: k })
      names.add(k)
    }
  }
  if (src.warn !== undefined) {
    for (const k of Object.keys(env)) {
      if (!k.startsWith(ENV_PREFIX) || names.has(k)) continue
      const near = [...names].find((n) => editDistance(k, n, 1) <= 1)
      if (near !== undefined) {
        src.warn(`environment variable ${k} is not a config variable; did you mean ${near}?`)
        continue
      }
      // `__` is config's own separator: MESH_MEMBERSHIP__PROBE_INTERVAL names a section that
      // exists, so it was meant as config; say which variables that section has
      const cut = k.lastIndexOf('__')
      if (cut < 0 || !names.has(k.slice(0, cut))) continue
      const section = k.slice(0, cut)
      const siblings = [...names].filter(
        (n) => n.startsWith(`${section}__`) && !n.slice(section.length + 2).includes('__'),
      )
      if (siblings.length === 0) continue
      const best = siblings.reduce((a, b) => (editDistance(k, b, 99) < editDistance(k, a, 99) ? b : a))
      src.warn(
        `environment variable ${k} is not a config variable and is ignored; did you mean ${best}? (${section} has ${siblings.join(', ')})`,
      )
    }
  }

  for (const [k, v] of Object.entries(src.flags ?? {})) {
    if (v === undefined) continue
    setPath(merged, k.split('.'), v)
    sources.set(k, { kind: 'flag', where: `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` })
  }

  const result = schema.safeParse(merged)
  if (result.success) return result.data
  const lines = result.error.issues.map((issue) => {
    const key = issue.path.join('.')
    const top = String(issue.path[0] ?? '')
    const from = sources.get(key) ?? sources.get(issue.path.slice(0, 2).join('.')) ?? sources.get(top)
    const where = from === undefined ? '' : `${from.where}: `
    if (issue.code === 'unrecognized_keys') {
      const allowed = allowedKeys(schema, issue.path.map(String))
      // a typo of a real key: say which, before the whole list
      const guesses = issue.keys.flatMap((k) => {
        const near = allowed.find((a) => editDistance(k.toLowerCase(), a.toLowerCase(), 2) <= 2)
        return near === undefined ? [] : [`'${[...issue.path, near].join('.')}'`]
      })
      const hint = guesses.length > 0 ? ` (did you mean ${guesses.join(', ')}?)` : ''
      return `${where}unknown key ${issue.keys.map((k) => `'${[...issue.path, k].join('.')}'`).join(', ')}${hint}; allowed keys: ${allowed.join(', ')}`
    }
    return `${where}key '${key}': ${issue.message}`
  })
  throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`)
}
