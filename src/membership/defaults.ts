/**
 * The `membership:` defaults, written once: config.ts's schema gives them to a config that
 * leaves a key out, and SWIM and the simulator read them from here without loading zod. Not typed
 * as MembershipConfig, which the schema defines from these (kernel-off-thread.test.ts checks).
 */
export const MEMBERSHIP_DEFAULTS = {
  probeIntervalMs: 1000,
  probeTimeoutMs: 500,
  indirectProbes: 3,
  suspicionMult: 1,
  probeOnClose: true,
  syncIntervalMs: 30_000,
  tombstoneHours: 24,
  leaveOnTerm: true,
}
