import type { Status } from './record.js'

/**
 * Whether a new connection runs a push-pull sync (the agent's service.ts and the simulator).
 * It is there for a member that may hold stale news: a joiner, or a member back from a restart
 * or a partition. A side syncs when it holds the other as not alive (unknown: a joiner; dead or
 * left: a member back, whose new record should not wait on gossip), and the dialer also when its
 * own last completed sync is `gapMs` old: a joiner dialling every member syncs once per gap, not
 * once per member. Once per connection, every joiner of a join storm exchanged a whole-table
 * digest with every member: 1,000 members in the simulator (seed 7, joining through formed
 * members), 590,159 syncs, 132k of them lost to full links, 1.05 MB/s per member, against 37,093
 * syncs and 21 kB/s this way, with joiners known everywhere as soon (p99 16.4 -> 15.6 s).
 * The dialled end still syncs with every joiner it does not know: with that under the same gap
 * too, the few joiners the epidemic missed waited for a periodic sync (300 of 900 not known
 * everywhere after 120 s).
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
