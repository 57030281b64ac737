import { hostname } from 'node:os'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { BlocksConfigSchema } from '../blocks/config.js'
import { ElectionsConfigSchema } from '../election/config.js'
import { loadConfig as loadFromSources } from '../kernel/config.js'
import { dataPaths } from '../kernel/datadir.js'
import { MetricsConfigSchema } from '../kernel/metrics-config.js'
import { MembershipConfigSchema } from '../membership/config.js'
import { NatConfigSchema } from '../nat/config.js'
import { DhtConfigSchema, RelayConfigSchema, WebrtcConfigSchema } from '../node/config.js'
import { OverlayConfigSchema } from '../overlay/config.js'
import { TunnelConfigSchema } from '../tunnel/config.js'
import { UiConfigSchema } from '../ui/config.js'

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

/**
 * The agent's configuration: its own keys, then one section per component, each
 * schema and its defaults in that component's config.ts. Every key has a default,
 * so an empty file is valid.
 */
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
    // libp2p's limit on open connections; raised to 2 x members + 64 as the cluster grows
    maxConnections: z.number().int().min(2).max(100_000).default(300),
    // a revoked member stops with exit code 4 (systemd: RestartPreventExitStatus=4); false keeps
    // it running, dialing nobody, so that `mesh status` can say what happened
    exitWhenRevoked: z.boolean().default(true),
    relay: RelayConfigSchema.prefault({}),
    webrtc: WebrtcConfigSchema.prefault({}),
    nat: NatConfigSchema.prefault({}),
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
    membership: MembershipConfigSchema.prefault({}),
    dht: DhtConfigSchema.prefault({}),
    tunnel: TunnelConfigSchema.prefault({}),
    blocks: BlocksConfigSchema.prefault({}),
    elections: ElectionsConfigSchema.prefault({}),
    overlay: OverlayConfigSchema,
    metrics: MetricsConfigSchema.prefault({}),
    ui: UiConfigSchema.prefault({}),
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

export interface LoadOptions {
  dataDir: string
  /** an explicit file; when absent `<dataDir>/config.yaml` is read if it exists */
  configFile?: string
  env?: NodeJS.ProcessEnv
  /** values from command-line flags, already as config keys */
  flags?: Record<string, unknown>
  /** told about MESH_* variables that look like a mistyped config variable */
  warn?: (message: string) => void
}

/** The agent's config: the file (--config, MESH_CONFIG or <dataDir>/config.yaml), MESH_* variables, flags. */
export function loadConfig(opts: LoadOptions): Config {
  const env = opts.env ?? process.env
  const named = opts.configFile ?? env.MESH_CONFIG
  return loadFromSources(ConfigSchema, {
    file: named ?? dataPaths(opts.dataDir).config,
    fileRequired: named !== undefined,
    env,
    flags: opts.flags,
    warn: opts.warn,
  })
}

/** loadConfig with its warnings returned, not told: what read-config.ts's worker thread runs. */
export function loadConfigAndWarnings(opts: Omit<LoadOptions, 'warn'>): {
  config: Config
  warnings: string[]
} {
  const warnings: string[] = []
  const config = loadConfig({ ...opts, warn: (w) => warnings.push(w) })
  return { config, warnings }
}
