import { z } from 'zod'

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

const SSH_HOST_KEYS = ['/etc/ssh/ssh_host_ed25519_key.pub', '/etc/ssh/ssh_host_ecdsa_key.pub']

/** `tunnel:` which local ports members may reach, and the timings of a tunnel's set-up. */
export const TunnelConfigSchema = z
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

export type TunnelConfig = z.infer<typeof TunnelConfigSchema>
