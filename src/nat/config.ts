import { z } from 'zod'
import { parseCidr } from './reachability.js'

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

/** `nat:` STUN for members, what counts as reachable, WebRTC upgrades of relayed connections. */
export const NatConfigSchema = z
  .object({
    // answer STUN binding requests from members: 'auto' when this member has a reachable address
    stun: z.enum(['auto', 'on', 'off']).default('auto'),
    // UDP port for STUN; 0: the same number as the first TCP listen port
    stunPort: z.number().int().min(0).max(65_535).default(0),
    // networks that count as reachable besides public addresses (a lab, a corporate WAN)
    reachableNetworks: z.array(cidrString).default([]),
    // after a relayed connection opens, try a direct WebRTC connection through it
    webrtcUpgrade: z.boolean().default(true),
    // close a WebRTC path that carried no tunnel, blocks or mesh0 traffic for this long (the
    // relayed connection keeps the member reachable; the path comes back on the next use), and
    // release libdatachannel's threads once none is left; 0: keep WebRTC paths open
    parkIdleMs: z.number().int().min(0).default(300_000),
  })
  .strict()

export type NatConfig = z.infer<typeof NatConfigSchema>
