/**
 * Votes and elections for work placement, Aquarium Fish style: sans-IO, no timers, no libp2p.
 * Time comes in as `now` (ms since the epoch: request ages are compared across members),
 * randomness through an injected rng, signatures through the membership Signer / Verifier.
 *
 * How the pieces fit (the driver is the agent's adapter or the simulator):
 * - messages.ts: the request, vote, report and cancel messages, their canonical bytes, signing
 *   and shape checks. protocols/election.md is the spec.
 * - rule.ts: the winner rule, which of two conflicting votes / reports to keep, and assess(),
 *   the default "can I take this" judgement.
 * - core.ts: ElectionCore, one per member. Feed it every message and every death claim the
 *   membership table accepts; run tick() at nextWakeup(); do what its effects say ('send',
 *   'vote-needed' -> vote(), 'act' -> start, then report(), 'stand-down' -> stop and undo).
 */
export * from './core.js'
export * from './messages.js'
export * from './rule.js'
