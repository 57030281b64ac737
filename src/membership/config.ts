import { z } from 'zod'

/** `membership:` in the agent's config: the failure detector and anti-entropy. */
export const MembershipConfigSchema = z
  .object({
    probeIntervalMs: z.number().int().min(100).max(60_000).default(1000),
    probeTimeoutMs: z.number().int().min(50).max(30_000).default(500),
    indirectProbes: z.number().int().min(0).max(16).default(3),
    // minimum suspicion = max(3, suspicionMult x log10 N) probe intervals (memberlist LAN: 4)
    suspicionMult: z.number().min(0.25).max(100).default(1),
    // a closed connection whose redial fails moves its member up the probe order (Swim.closed).
    // Off: on a loaded machine its early probes fail together and count as Lifeguard's
    // confirmations at once (protocols/membership.md)
    probeOnClose: z.boolean().default(false),
    syncIntervalMs: z.number().int().min(1000).max(3_600_000).default(30_000),
    tombstoneHours: z
      .number()
      .min(0.001)
      .max(24 * 365)
      .default(24),
    leaveOnTerm: z.boolean().default(true),
  })
  .strict()

export type MembershipConfig = z.infer<typeof MembershipConfigSchema>

/** The defaults, written once above: SWIM and the simulator read them from here. */
export const MEMBERSHIP_DEFAULTS: MembershipConfig = MembershipConfigSchema.parse({})
