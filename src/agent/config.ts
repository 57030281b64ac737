import { readFileSync } from 'node:fs'
import { homedir, hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import YAML from 'yaml'
import { z } from 'zod'
import { dataPaths } from '../kernel/datadir.js'
import { editDistance } from '../membership/names.js'
import { parseCidr } from '../nat/reachability.js'
import { OverlayConfigSchema } from '../overlay/config.js'

const multiaddrString = z.string().refine(
  (s) => {
    try {
      multiaddr(s)
      return true
    } catch {
      return false
    }
  },
  { message: 'expected a multiaddr such as /ip4/0.0.0.0/tcp/4701' },
)

// tunnel.allowPorts: a YAML list, one number, or '22,2222' (MESH_TUNNEL__ALLOW_PORTS)
const portList = z.preprocess(
  (v) => {
    if (typeof v === 'number') return [v]
    if (typeof v === 'string')
      return v
        .split(',')
        .filter((s) => s.trim() !== '')
        .map((s) => Number(s.trim()))
    if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' && x.trim() !== '' ? Number(x) : x))
    return v
  },
  z.array(z.number().int().min(1, 'expected TCP ports 1-65535').max(65535, 'expected TCP ports 1-65535')),
)

// blocks sizes: a number of bytes, or '512MiB', '10GiB', '1.5G' (MESH_BLOCKS__CACHE_BYTES=20GiB)
const byteSize = z.preprocess(
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

const cidrString = z.string().refine(
  (s) => {
    try {
      parseCidr(s)
      return true
    } catch {
      return false
    }
  },
  { message: 'expected a network such as 198.18.0.0/15 or 2001:db8::/32' },
)

const SSH_HOST_KEYS = ['/etc/ssh/ssh_host_ed25519_key.pub', '/etc/ssh/ssh_host_ecdsa_key.pub']

/** The agent's configuration. Every key has a default, so an empty file is valid. */
export const ConfigSchema = z
  .object({
    name: z
      .string()
      .regex(
        /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
        'expected a DNS label: a-z, 0-9 and -, at most 63 characters',
      )
      .default(defaultName()),
    listen: z.array(multiaddrString).default(['/ip4/0.0.0.0/tcp/4701']),
    announce: z.array(multiaddrString).default([]),
    bootstrap: z.array(multiaddrString).default([]),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    // auto: readable lines when stderr is a terminal, JSON lines otherwise (journald, files, pipes)
    logFormat: z.enum(['auto', 'pretty', 'json']).default('auto'),
    dialTimeoutMs: z.number().int().min(100).max(120_000).default(5_000),
    authTimeoutMs: z.number().int().min(100).max(60_000).default(5_000),
    // a revoked member stops with exit code 4 (systemd: RestartPreventExitStatus=4); false keeps
    // it running, dialing nobody, so that `mesh status` can say what happened
    exitWhenRevoked: z.boolean().default(true),
    relay: z
      .object({
        server: z.boolean().default(true),
        reservations: z.number().int().min(0).max(32).default(2),
      })
      .strict()
      .default({ server: true, reservations: 2 }),
    webrtc: z
      .object({
        enabled: z.boolean().default(true),
        iceServers: z.array(z.string().regex(/^(stun|turn|turns):/, 'expected stun:HOST:PORT')).default([]),
      })
      .strict()
      .default({ enabled: true, iceServers: [] }),
    nat: z
      .object({
        // answer STUN binding requests from members: 'auto' when this member has a reachable address
        stun: z.enum(['auto', 'on', 'off']).default('auto'),
        // UDP port for STUN; 0: the same number as the first TCP listen port
        stunPort: z.number().int().min(0).max(65_535).default(0),
        // networks that count as reachable besides public addresses (a lab, a corporate WAN)
        reachableNetworks: z.array(cidrString).default([]),
        // after a relayed connection opens, try a direct WebRTC connection through it
        webrtcUpgrade: z.boolean().default(true),
      })
      .strict()
      .default({ stun: 'auto', stunPort: 0, reachableNetworks: [], webrtcUpgrade: true }),
    tags: z
      .record(
        z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$/, 'expected a tag key such as role or dc')
          .refine(
            (k) => !k.startsWith('mesh.'),
            "tag keys starting with 'mesh.' are set by the agent itself",
          ),
        z.string().max(256),
      )
      .default({}),
    membership: z
      .object({
        probeIntervalMs: z.number().int().min(100).max(60_000).default(1000),
        probeTimeoutMs: z.number().int().min(50).max(30_000).default(500),
        indirectProbes: z.number().int().min(0).max(16).default(3),
        suspicionMult: z.number().int().min(1).max(100).default(4),
        syncIntervalMs: z.number().int().min(1000).max(3_600_000).default(30_000),
        tombstoneHours: z
          .number()
          .min(0.001)
          .max(24 * 365)
          .default(24),
        leaveOnTerm: z.boolean().default(true),
      })
      .strict()
      .default({
        probeIntervalMs: 1000,
        probeTimeoutMs: 500,
        indirectProbes: 3,
        suspicionMult: 4,
        syncIntervalMs: 30_000,
        tombstoneHours: 24,
        leaveOnTerm: true,
      }),
    dht: z
      .object({ enabled: z.boolean().default(true) })
      .strict()
      .default({ enabled: true }),
    tunnel: z
      .object({
        // ports on this member's 127.0.0.1 that other members may tunnel to
        allowPorts: portList.default([22]),
        connectTimeoutMs: z.number().int().min(100).max(60_000).default(5_000),
        streamTimeoutMs: z.number().int().min(500).max(60_000).default(5_000),
        directDialTimeoutMs: z.number().int().min(200).max(60_000).default(1_500),
        // 0 turns the relayed -> direct path upgrade off
        pathUpgradeMs: z.number().int().min(0).max(3_600_000).default(10_000),
        maxTunnels: z.number().int().min(1).max(65_536).default(1024),
        // sshd host public keys published in our signed record, so members pin them (mesh ssh)
        sshHostKeys: z
          .array(z.string().min(1))
          .max(8)
          .default([...SSH_HOST_KEYS]),
      })
      .strict()
      .default({
        allowPorts: [22],
        connectTimeoutMs: 5_000,
        streamTimeoutMs: 5_000,
        directDialTimeoutMs: 1_500,
        pathUpgradeMs: 10_000,
        maxTunnels: 1024,
        sshHostKeys: [...SSH_HOST_KEYS],
      }),
    blocks: z
      .object({
        // unpinned cached blocks are evicted (least recently used first) above this many bytes
        cacheBytes: byteSize.default(10 * 2 ** 30),
        // outstanding wants per provider: bytes and count
        windowBytes: byteSize.default(8 * 2 ** 20),
        maxWants: z.number().int().min(1).max(1024).default(32),
        // 0: unlimited; otherwise what this member serves to others, in bytes per second
        serveBytesPerSec: byteSize.default(0),
        // a provider that answers no want for this long is dropped from a transfer
        providerTimeoutMs: z.number().int().min(500).max(600_000).default(20_000),
        // a provider closes an exchange stream that asked for nothing for this long
        idleStreamMs: z.number().int().min(1000).max(3_600_000).default(30_000),
        // a transfer that gets no block from anyone for this long fails
        stallTimeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
        // a target must confirm a verified, pinned copy within this
        replicateTimeoutMs: z.number().int().min(1000).max(86_400_000).default(600_000),
        repairIntervalMs: z.number().int().min(500).max(86_400_000).default(30_000),
        tagSyncIntervalMs: z.number().int().min(500).max(86_400_000).default(30_000),
      })
      .strict()
      .default({
        cacheBytes: 10 * 2 ** 30,
        windowBytes: 8 * 2 ** 20,
        maxWants: 32,
        serveBytesPerSec: 0,
        providerTimeoutMs: 20_000,
        idleStreamMs: 30_000,
        stallTimeoutMs: 60_000,
        replicateTimeoutMs: 600_000,
        repairIntervalMs: 30_000,
        tagSyncIntervalMs: 30_000,
      }),
    elections: z
      .object({
        // the winner gives up (ERROR, next round) when not allocated within this
        roundTimeoutMs: z.number().int().min(500).max(600_000).default(30_000),
        // compute types this member can run: name -> shell command started on allocate, killed on deallocate
        commands: z
          .record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/), z.string().min(1))
          .default({}),
        // finished requests stay listed this long
        keepMs: z.number().int().min(1000).max(86_400_000).default(600_000),
        maintenance: z.boolean().default(false),
      })
      .strict()
      .default({ roundTimeoutMs: 30_000, commands: {}, keepMs: 600_000, maintenance: false }),
    overlay: OverlayConfigSchema,
    metrics: z
      .object({
        listen: z
          .string()
          .regex(
            /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$/,
            'expected a loopback HOST:PORT such as 127.0.0.1:9464',
          )
          .optional(),
      })
      .strict()
      .default({}),
  })
  .strict()

export type Config = z.infer<typeof ConfigSchema>

function defaultName(): string {
  const h = hostname()
    .toLowerCase()
    .split('.')[0]
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
  return h.length > 0 ? h.slice(0, 63) : 'node'
}

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.MESH_DATA_DIR ?? join(homedir(), '.mesh'))
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

type Source = { kind: 'file' | 'env' | 'flag' | 'default'; where: string }

/** Keys of the schema, so `MESH_LOG_LEVEL` maps to `logLevel` and `MESH_RELAY__SERVER` to `relay.server`. */
function envKeyToPath(key: string): string[] {
  return key
    .slice('MESH_'.length)
    .split('__')
    .map((part) => part.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()))
}

const NON_CONFIG_ENV = new Set([
  'MESH_DATA_DIR',
  'MESH_CONFIG',
  'MESH_REQUIRE_SYSTEM',
  'MESH_JOIN',
  // set for plugin commands (src/plugins/component.ts); a command that starts an agent passes them on
  'MESH_JOIN_TOKEN',
  'MESH_INSTANCE_ID',
  'MESH_INSTANCE_HOST',
  'MESH_INSTANCE_PORT',
  'MESH_INSTANCE_DIR',
  'MESH_PLUGIN_DIR',
  'MESH_PLUGIN_NAME',
  'MESH_COMPUTE_TYPE',
  'MESH_SERVER_TYPE',
  'MESH_SERVER_SOURCE',
  'MESH_MEMBERS',
  'MESH_EVENT',
  'MESH_EVENT_DATA',
  'MESH_CLI',
  'MESH_NODE',
  'MESH_CLUSTER',
  'MESH_SELF',
  'MESH_SSH_PUBKEY',
  'MESH_SSH_IDENTITY',
  'MESH_INSTANCE_PEER_ID',
  'MESH_INSTANCE_OVERLAY',
  'MESH_SLAVE_HOST',
  'MESH_SLAVE_PORT',
  'MESH_SLAVE_USER',
  'MESH_SLAVE_MESH',
  'MESH_SLAVE_DATA_DIR',
  'MESH_SLAVE_LISTEN',
  'MESH_DOCKER_IMAGE',
])

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj
  for (const p of path.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null) cur[p] = {}
    cur = cur[p] as Record<string, unknown>
  }
  cur[path[path.length - 1]] = value
}

function parseScalar(raw: string, isList: boolean): unknown {
  if (isList) {
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0)
  }
  try {
    return YAML.parse(raw)
  } catch {
    return raw
  }
}

const LIST_KEYS = new Set([
  'listen',
  'announce',
  'bootstrap',
  'webrtc.iceServers',
  'nat.reachableNetworks',
  'tunnel.sshHostKeys',
])

export interface LoadOptions {
  dataDir: string
  /** an explicit file; when absent `<dataDir>/config.yaml` is read if it exists */
  configFile?: string
  env?: NodeJS.ProcessEnv
  /** values from command-line flags, already as config keys */
  flags?: Record<string, unknown>
}

/**
 * Config from the YAML file, then MESH_* environment variables, then flags; the
 * later wins. An invalid value fails with where it came from, the key and what is allowed.
 */
export function loadConfig(opts: LoadOptions): Config {
  const env = opts.env ?? process.env
  const file = opts.configFile ?? env.MESH_CONFIG ?? dataPaths(opts.dataDir).config
  const merged: Record<string, unknown> = {}
  const sources = new Map<string, Source>()

  let text: string | undefined
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ENOENT' || opts.configFile !== undefined || env.MESH_CONFIG !== undefined) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`)
    }
  }
  if (text !== undefined) {
    let doc: unknown
    try {
      doc = YAML.parse(text) ?? {}
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid YAML: ${(err as Error).message}`)
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      throw new ConfigError(`config file ${file} must be a YAML mapping of keys to values`)
    }
    for (const [k, v] of Object.entries(doc)) {
      merged[k] = v
      sources.set(k, { kind: 'file', where: file })
    }
  }

  for (const [k, raw] of Object.entries(env)) {
    if (!k.startsWith('MESH_') || NON_CONFIG_ENV.has(k) || raw === undefined) continue
    const path = envKeyToPath(k)
    setPath(merged, path, parseScalar(raw, LIST_KEYS.has(path.join('.'))))
    sources.set(path.join('.'), { kind: 'env', where: k })
  }

  for (const [k, v] of Object.entries(opts.flags ?? {})) {
    if (v === undefined) continue
    setPath(merged, k.split('.'), v)
    sources.set(k, { kind: 'flag', where: `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` })
  }

  const result = ConfigSchema.safeParse(merged)
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const key = issue.path.join('.')
      const top = String(issue.path[0] ?? '')
      const src = sources.get(key) ?? sources.get(issue.path.slice(0, 2).join('.')) ?? sources.get(top)
      const from = src === undefined ? '' : src.kind === 'file' ? `${src.where}: ` : `${src.where}: `
      if (issue.code === 'unrecognized_keys') {
        const allowed = allowedKeys(issue.path.map(String))
        // a typo of a real key: say which, before the whole list
        const guesses = issue.keys.flatMap((k) => {
          const near = allowed.find((a) => editDistance(k.toLowerCase(), a.toLowerCase(), 2) <= 2)
          return near === undefined ? [] : [`'${[...issue.path, near].join('.')}'`]
        })
        const hint = guesses.length > 0 ? ` (did you mean ${guesses.join(', ')}?)` : ''
        return `${from}unknown key ${issue.keys.map((k) => `'${[...issue.path, k].join('.')}'`).join(', ')}${hint}; allowed keys: ${allowed.join(', ')}`
      }
      return `${from}key '${key}': ${issue.message}`
    })
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`)
  }
  return result.data
}

function allowedKeys(path: string[]): string[] {
  let shape: z.ZodTypeAny = ConfigSchema
  for (const p of path) {
    const inner = unwrap(shape)
    if (inner instanceof z.ZodObject) shape = inner.shape[p] as z.ZodTypeAny
  }
  const obj = unwrap(shape)
  return obj instanceof z.ZodObject ? Object.keys(obj.shape) : []
}

function unwrap(t: z.ZodTypeAny): z.ZodTypeAny {
  let cur: any = t
  while (cur instanceof z.ZodDefault || cur instanceof z.ZodOptional) cur = cur.unwrap()
  return cur
}
