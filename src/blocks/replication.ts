/**
 * Replica placement, sans-IO: rendezvous (highest random weight) hashing of a dataset root over
 * members, the write quorum, and who repairs. Every member computes the same answer from the
 * same member list, and a member joining or leaving moves only the copies it must.
 */
import { createHash } from 'node:crypto'

export type MemberStatus = 'alive' | 'suspect' | 'dead' | 'left'

export interface Candidate {
  peerId: string
  status: MemberStatus
}

/** The member's weight for this root: SHA-256(root \n peer), compared bytewise. */
export function weight(root: string, peerId: string): Buffer {
  return createHash('sha256').update(`${root}\n${peerId}`).digest()
}

/** Peer IDs by decreasing weight for `root` (ties, impossible in practice, by peer ID). */
export function rank(root: string, peers: readonly string[]): string[] {
  const w = new Map(peers.map((p) => [p, weight(root, p)]))
  return [...new Set(peers)].sort(
    (a, b) => Buffer.compare(w.get(b)!, w.get(a)!) || (a < b ? -1 : a > b ? 1 : 0),
  )
}

export const quorum = (n: number): number => Math.floor(n / 2) + 1

export interface Placement {
  /** the N alive members with the highest weight: where the copies go */
  targets: string[]
  /**
   * members that would hold a copy if every member were alive (top N of all members not
   * gone for good) but are not alive now: named in a failed write
   */
  missing: Array<{ peerId: string; status: MemberStatus }>
}

export function placement(root: string, n: number, members: readonly Candidate[]): Placement {
  const alive = members.filter((m) => m.status === 'alive').map((m) => m.peerId)
  const targets = rank(root, alive).slice(0, n)
  const status = new Map(members.map((m) => [m.peerId, m.status]))
  const known = members.filter((m) => m.status !== 'left').map((m) => m.peerId)
  const ideal = rank(root, known).slice(0, n)
  const missing = ideal
    .filter((p) => status.get(p) !== 'alive')
    .map((p) => ({ peerId: p, status: status.get(p)! }))
  return { targets, missing }
}

/**
 * The members a holder must ask before it may repair: those ranked above it among the alive.
 * The highest-ranked alive member holding a complete copy is the one that repairs, so two
 * holders never both place the same missing copy.
 */
export function rankedAbove(root: string, self: string, alive: readonly string[], limit: number): string[] {
  const r = rank(root, [...alive, self])
  return r.slice(0, r.indexOf(self)).slice(0, limit)
}
