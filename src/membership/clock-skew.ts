/**
 * How far each member's clock is from ours, from the probes we already send (no extra traffic):
 * a probe reply carries the responder's clock when it answered, so with our send and receive
 * times its offset is `remote - (sent + received) / 2`, wrong by at most half the round trip.
 * As in NTP, the sample with the shortest round trip of the last few is the one believed.
 *
 * Skewed clocks make invites and certificates look expired or not yet valid, and logs across
 * machines hard to read: `mesh doctor` and `mesh members -v` show it.
 */
export interface ClockSample {
  /** remote clock minus ours, in ms (positive: the member is ahead) */
  offsetMs: number
  /** the round trip it was measured over: the offset is good to half of it */
  rttMs: number
  /** when it was taken (our clock) */
  at: number
}

const KEEP = 8

export class ClockSkew {
  private readonly samples = new Map<string, ClockSample[]>()

  /** One probe: sent at `sentAt`, answered with `remoteNow`, reply received at `receivedAt`. */
  add(peer: string, sentAt: number, receivedAt: number, remoteNow: number): void {
    if (!(remoteNow > 0) || receivedAt < sentAt) return // an old peer sends no clock
    const list = this.samples.get(peer) ?? []
    list.push({ offsetMs: remoteNow - (sentAt + receivedAt) / 2, rttMs: receivedAt - sentAt, at: receivedAt })
    if (list.length > KEEP) list.shift()
    this.samples.set(peer, list)
  }

  /** The best recent estimate for `peer`, or undefined before its first answered probe. */
  of(peer: string): ClockSample | undefined {
    const list = this.samples.get(peer)
    if (list === undefined || list.length === 0) return undefined
    return list.reduce((best, s) => (s.rttMs < best.rttMs ? s : best))
  }

  forget(peer: string): void {
    this.samples.delete(peer)
  }
}
