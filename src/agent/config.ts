import { hostname } from 'node:os'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { loadConfig as loadFromSources } from '../kernel/config.js'
import { dataPaths } from '../kernel/datadir.js'
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
