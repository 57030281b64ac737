// What the simulator measures, kept up to date incrementally (never an N x N scan per step).
//
// A view is right when an observer (a full node that is running and has not left) holds
// 'alive' for a member that is running, and 'dead', 'left' or no row at all for one that is
// not. `wrong` counts wrong (observer, member) pairs; the cluster has converged when it is 0.
// Detection time: from a crash until every observer says dead/left. Convergence time of an
// event (join, restart, leave): until every observer holds the right view of that member.
import type { Status } from '../src/membership/record.js'

export type EventKind = 'join' | 'restart' | 'leave'

export interface FalsePositives {
  /** dead claims made about a member that was running, outside any partition */
  deadClaims: number
  deadMembers: number
  /** the same, across a partition (expected: the other side looks dead) */
  partitionDeadClaims: number
  partitionDeadMembers: number
  /** suspicions of a running member (outside a partition) */
  suspectClaims: number
  suspectMembers: number
  partitionSuspectClaims: number
  /** dead claims about a member's previous incarnation after it restarted (the old process did die) */
  staleDeadClaims: number
}

const ok = (s: Status | undefined, up: boolean): boolean =>
  up ? s === 'alive' : s !== 'alive' && s !== 'suspect'

export class Tracker {
  readonly truthUp: boolean[] = []
  private readonly inUniverse: boolean[] = []
  readonly universe: number[] = []
  private readonly counted: boolean[] = []
  private readonly countedList = new Set<number>()
  private readonly wrongM: number[] = []
  private readonly wrongO: number[] = []
  total = 0
  private readonly crashAt = new Map<number, number>()
  private readonly pending = new Map<number, { at: number; kind: EventKind }>()
  readonly detections: number[] = []
  /** per detected crash: crash -> first suspicion, first suspicion -> first death claim, that -> seen dead by all */
  readonly phases = { suspect: [] as number[], suspicion: [] as number[], spread: [] as number[] }
  private readonly firstClaim = new Map<number, { suspect?: number; dead?: number }>()
  /** crashed members that restarted or were forgotten before every observer saw them dead */
  undetected = 0
  readonly convergence: Record<EventKind, number[]> = { join: [], restart: [], leave: [] }
  /** times at which `total` went from 0 to more (true) or back to 0 (false) */
  readonly transitions: Array<[number, boolean]> = []
  readonly series: Array<[number, number, number]> = []
  private readonly fpDead = new Set<number>()
  private readonly fpPartDead = new Set<number>()
  private readonly fpSuspect = new Set<number>()
  readonly fp: FalsePositives = {
    deadClaims: 0,
    deadMembers: 0,
    partitionDeadClaims: 0,
    partitionDeadMembers: 0,
    suspectClaims: 0,
    suspectMembers: 0,
    partitionSuspectClaims: 0,
    staleDeadClaims: 0,
  }
  /** last time anything about `m` was disturbed: for "never converged" */
  readonly lastEventAt: number[] = []

  constructor(
    private readonly view: (o: number, m: number) => Status | undefined,
    private readonly clock: () => number,
  ) {}

  get observers(): number {
    return this.countedList.size
  }

  wrongOf(m: number): number {
    return this.wrongM[m] ?? 0
  }

  /** A member starts to exist (running). */
  addMember(m: number): void {
    if (this.inUniverse[m]) return
    this.inUniverse[m] = true
    this.universe.push(m)
    this.truthUp[m] = true
    this.wrongM[m] = 0
    this.lastEventAt[m] = this.clock()
    for (const o of this.countedList) if (!ok(this.view(o, m), true)) this.bump(o, m, 1)
    this.settle(m)
  }

  /** The member started, crashed, left or came back. */
  setTruth(m: number, up: boolean): void {
    if (this.truthUp[m] === up) return
    this.lastEventAt[m] = this.clock()
    for (const o of this.countedList) {
      const s = this.view(o, m)
      const d = (ok(s, up) ? 0 : 1) - (ok(s, !up) ? 0 : 1)
      if (d !== 0) this.bump(o, m, d)
    }
    this.truthUp[m] = up
    this.settle(m)
  }

  observerUp(o: number): void {
    if (this.counted[o]) return
    this.counted[o] = true
    this.countedList.add(o)
    this.wrongO[o] = 0
    for (const m of this.universe) if (!ok(this.view(o, m), this.truthUp[m])) this.bump(o, m, 1)
    for (const m of this.universe) this.settle(m)
  }

  /** Call before the observer's table goes away. */
  observerDown(o: number): void {
    if (!this.counted[o]) return
    for (const m of this.universe) if (!ok(this.view(o, m), this.truthUp[m])) this.bump(o, m, -1)
    this.counted[o] = false
    this.countedList.delete(o)
    for (const m of this.universe) this.settle(m)
  }

  /** An observer's status for `m` changed. */
  row(o: number, m: number, before: Status | undefined, after: Status): void {
    if (!this.counted[o] || !this.inUniverse[m]) return
    const up = this.truthUp[m]
    const d = (ok(after, up) ? 0 : 1) - (ok(before, up) ? 0 : 1)
    if (d === 0) return
    this.bump(o, m, d)
    this.settle(m)
  }

  crashed(m: number): void {
    this.crashAt.set(m, this.clock())
    this.pending.delete(m)
    this.settle(m)
  }

  expect(m: number, kind: EventKind): void {
    if (this.crashAt.delete(m)) this.undetected++
    this.pending.set(m, { at: this.clock(), kind })
    this.settle(m)
  }

  claim(type: 'suspect' | 'dead', subject: number, acrossPartition: boolean, stale = false): void {
    if (!this.truthUp[subject]) {
      if (this.crashAt.has(subject)) {
        const c = this.firstClaim.get(subject) ?? {}
        c[type] ??= this.clock()
        this.firstClaim.set(subject, c)
      }
      return
    }
    if (stale) {
      if (type === 'dead') this.fp.staleDeadClaims++
    } else if (type === 'suspect' && acrossPartition) {
      this.fp.partitionSuspectClaims++
    } else if (type === 'suspect') {
      this.fp.suspectClaims++
      this.fpSuspect.add(subject)
      this.fp.suspectMembers = this.fpSuspect.size
    } else if (acrossPartition) {
      this.fp.partitionDeadClaims++
      this.fpPartDead.add(subject)
      this.fp.partitionDeadMembers = this.fpPartDead.size
    } else {
      this.fp.deadClaims++
      this.fpDead.add(subject)
      this.fp.deadMembers = this.fpDead.size
    }
  }

  sample(): void {
    this.series.push([this.clock(), this.total, this.countedList.size])
  }

  /** Members whose views are still wrong, with when they were last disturbed. */
  unsettled(): Array<{ member: number; wrong: number; since: number; up: boolean }> {
    const out = []
    for (const m of this.universe) {
      const w = this.wrongM[m]
      if (w > 0) out.push({ member: m, wrong: w, since: this.lastEventAt[m], up: this.truthUp[m] })
    }
    return out
  }

  /** Crashes not yet seen dead by every observer. */
  pendingDetections(): number {
    return this.crashAt.size
  }

  /**
   * For crashes not yet seen dead by every observer: crash -> first suspicion and crash -> first
   * death claim (by anyone). The detector's part of detection, whatever dissemination did after.
   */
  pendingPhases(): { suspect: number[]; firstDeath: number[] } {
    const out = { suspect: [] as number[], firstDeath: [] as number[] }
    for (const [m, c] of this.crashAt) {
      const f = this.firstClaim.get(m)
      if (f === undefined) continue
      if (f.suspect !== undefined || f.dead !== undefined)
        out.suspect.push(
          Math.min(f.suspect ?? Number.POSITIVE_INFINITY, f.dead ?? Number.POSITIVE_INFINITY) - c,
        )
      if (f.dead !== undefined) out.firstDeath.push(f.dead - c)
    }
    return out
  }

  private bump(o: number, m: number, d: number): void {
    this.wrongM[m] += d
    this.wrongO[o] += d
    const before = this.total
    this.total += d
    if (before === 0 && this.total > 0) this.transitions.push([this.clock(), true])
    else if (before > 0 && this.total === 0) this.transitions.push([this.clock(), false])
  }

  private settle(m: number): void {
    if (this.wrongM[m] !== 0) return
    const now = this.clock()
    const c = this.crashAt.get(m)
    if (c !== undefined && !this.truthUp[m]) {
      this.detections.push(now - c)
      this.crashAt.delete(m)
      const f = this.firstClaim.get(m)
      this.firstClaim.delete(m)
      if (f?.dead !== undefined) {
        // a death claimed without a suspicion of ours first counts as a suspicion of no length
        const s = Math.min(f.suspect ?? f.dead, f.dead)
        this.phases.suspect.push(s - c)
        this.phases.suspicion.push(f.dead - s)
        this.phases.spread.push(now - f.dead)
      }
    }
    const p = this.pending.get(m)
    if (p !== undefined) {
      this.convergence[p.kind].push(now - p.at)
      this.pending.delete(m)
    }
  }
}

// ---- statistics ----------------------------------------------------------------------------

export function quantile(xs: readonly number[], q: number): number | undefined {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))
  return s[i]
}

export interface Dist {
  count: number
  p50?: number
  p99?: number
  max?: number
}

/** count, p50, p99 and max, in seconds, of values in ms */
export function dist(xs: readonly number[]): Dist {
  const s = (v: number | undefined) => (v === undefined ? undefined : Math.round(v) / 1000)
  return { count: xs.length, p50: s(quantile(xs, 0.5)), p99: s(quantile(xs, 0.99)), max: s(quantile(xs, 1)) }
}
