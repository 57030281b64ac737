/**
 * How often a member runs a periodic push-pull sync, by cluster size (issue 18). A sync digest
 * carries 8 bytes per row each way, so at a fixed interval anti-entropy grows with N per member
 * (5 kB/s of 7 at 10,000 members). Piggybacked gossip carries news; the periodic sync only
 * repairs what gossip missed, so it can run less often in a large cluster. As memberlist's
 * pushPullScale: above 32 members the interval is multiplied by ceil(log2 N - log2 32) + 1
 * (x6 at 1,000, x10 at 10,000). Syncs on a new connection are not scaled.
 */
export const SYNC_SCALE_THRESHOLD = 32

/** The multiplier of the periodic sync interval for a cluster of `members` (1 up to 32). */
export function syncScale(members: number): number {
  if (!(members > SYNC_SCALE_THRESHOLD)) return 1
  return Math.ceil(Math.log2(members) - Math.log2(SYNC_SCALE_THRESHOLD)) + 1
}
