import { z } from 'zod'
import { MEMBERSHIP_DEFAULTS as D } from './defaults.js'

/** `membership:` in the agent's config: the failure detector and anti-entropy; defaults in defaults.ts. */
export const MembershipConfigSchema = z
  .object({
    probeIntervalMs: z.number().int().min(100).max(60_000).default(D.probeIntervalMs),
    probeTimeoutMs: z.number().int().min(50).max(30_000).default(D.probeTimeoutMs),
    indirectProbes: z.number().int().min(0).max(16).default(D.indirectProbes),
    // minimum suspicion = max(3, suspicionMult x log10 N) probe intervals (memberlist LAN: 4)
    suspicionMult: z.number().min(0.25).max(100).default(D.suspicionMult),
    // a closed connection whose redial is refused (a killed process) moves its member up the
    // probe order (Swim.closed); a redial that only times out does not (protocols/membership.md)
    probeOnClose: z.boolean().default(D.probeOnClose),
    syncIntervalMs: z.number().int().min(1000).max(3_600_000).default(D.syncIntervalMs),
    tombstoneHours: z
      .number()
      .min(0.001)
      .max(24 * 365)
      .default(D.tombstoneHours),
    leaveOnTerm: z.boolean().default(D.leaveOnTerm),
  })
  .strict()

export type MembershipConfig = z.infer<typeof MembershipConfigSchema>
