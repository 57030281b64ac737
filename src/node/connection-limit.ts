/**
 * libp2p's connection limit, fitted to the cluster. Every agent keeps a connection to every alive
 * member (membership connectMembers, node reconnect), and libp2p refuses an inbound connection
 * once it holds maxConnections (300 by default) and prunes past it. In a larger cluster members
 * would refuse each other's probes (suspicions, refutations) and dial and prune in a loop. So the
 * limit grows with the members the agent knows: two connections per member (a crossed dial, or a
 * relayed or WebRTC path beside a direct one, until one-connection.ts closes the extra), plus a
 * margin for joiners and for strangers whose upgrades are pending (bounded on their own:
 * inbound-limits.ts). It never falls below the configured floor, and never shrinks: lowering it
 * makes libp2p prune connections at once.
 */

/** room above two connections per member */
export const CONNECTION_MARGIN = 64

/** The limit for `members` members, given the one in force (which starts at the configured floor). */
export function connectionLimit(members: number, current: number): number {
  return Math.max(current, 2 * members + CONNECTION_MARGIN)
}
