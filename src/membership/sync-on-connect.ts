import type { Status } from './record.js'

/**
 * Whether a new connection runs a push-pull sync (the agent's service.ts and the simulator).
 * It is there for a member that may hold stale news: a joiner, or a member back from a restart
 * or a partition. So a side syncs when it holds the other side as not alive (unknown, dead,
 * left: a member we hold dead that connects is back, and its new record should not wait on
 * gossip), and the dialer also when its own last completed sync is `gapMs` old: a joiner
 * dialling every member syncs once per gap, not once per member. Once per member, every joiner
 * of a join storm exchanged a whole-table digest with every member: 603,154 syncs and 1.2 MB/s
 * per member for 1,000 members in the simulator (seed 7), against 37,824 and 21 kB/s this way,
 * with every joiner known everywhere sooner (p99 19.8 -> 16.0 s).
 */
export function syncOnConnect(o: {
  /** we dialled this connection */
  outbound: boolean
  /** the other side's row in our table, if any */
  peerStatus: Status | undefined
  /** when a sync we started last completed (-Infinity: never) */
  lastSyncOkAt: number
  now: number
  /** the least time between a dialer's syncs with members it holds alive */
  gapMs: number
}): boolean {
  if (o.peerStatus !== 'alive' && o.peerStatus !== 'suspect') return true
  return o.outbound && o.now - o.lastSyncOkAt >= o.gapMs
}
