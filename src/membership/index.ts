/**
 * Membership core: sans-IO, no timers, no libp2p. Time comes in as `now` (ms), randomness
 * through an injected rng, so the same code runs in the agent and in the simulator.
 *
 * MembershipCore (core.ts) is those pieces put together, as the agent's adapter (service.ts) and
 * the simulator both run them; the notes below are what it does.
 *
 * How the pieces fit (the driver is the agent's libp2p adapter or the simulator):
 * - MemberTable holds the signed records and claims; feed it everything that arrives (gossip,
 *   push-pull diffs) and what our own failure detector concludes; each Change is a
 *   cluster_change event. A Change about ourselves that is not 'alive' at our incarnation
 *   means: swim.selfSuspected(claim incarnation), then sign and spread a fresh record.
 * - Swim decides whom to probe and when someone is suspect or dead. Keep its member set in
 *   step with the table (alive and suspect members), pass it suspicion claims (onSuspect) and
 *   higher incarnations (onRefute / addMember), turn its 'suspect' / 'dead' actions into
 *   signed claims for the table.
 * - overlayAddress and resolveMember / displayNames answer "who is X".
 */
export * from './broadcasts.js'
export * from './core.js'
export * from './merge.js'
export * from './names.js'
export * from './overlay.js'
export * from './record.js'
export * from './swim.js'
export * from './sync-scale.js'
