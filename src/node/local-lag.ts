/**
 * Handshake deadlines that hold on a starved machine: Lifeguard's local health, applied to
 * dials, Noise/yamux upgrades and the auth handshake.
 *
 * A deadline of a few seconds is right on a healthy machine (a silent address must not hold a
 * dial, a stranger must not hold a pending slot). On an overloaded one, fixed deadlines feed
 * the overload: 50 agents joining on 2 cores cut their own handshakes off half way, redid them
 * from scratch and never settled, while with every deadline at 30 s all of them joined (README,
 * A fleet on one machine, fifth round). So a deadline stretches with how late this process's own
 * timers run, the way memberlist stretches its probe timeouts by its awareness score: our event
 * loop being late is evidence that we, not the peer, are slow.
 */

/** how often the timer that measures lateness runs (one wake-up a second, as SWIM's tick) */
export const LAG_SAMPLE_MS = 1_000
/** each second the remembered lag falls to this share, unless a later sample is higher */
const LAG_DECAY = 0.8
/** lateness up to this is a healthy, merely busy event loop (GC, a burst of work): no stretch */
const LAG_FREE_MS = 50
/** every this much lag beyond LAG_FREE_MS adds one base deadline */
const LAG_UNIT_MS = 200
/** a deadline stretches at most this many times (memberlist's awareness maximum) */
export const MAX_STRETCH = 8

/** `baseMs` stretched by `lagMs` of event-loop lateness: x(1 + (lag - 50 ms) / 200 ms), 1x-8x. */
export function stretched(baseMs: number, lagMs: number): number {
  const factor = Math.min(MAX_STRETCH, 1 + Math.max(0, lagMs - LAG_FREE_MS) / LAG_UNIT_MS)
  return Math.round(baseMs * factor)
}

/**
 * The share of its busy time so far that this process spent waiting for a CPU: 0 on a healthy
 * machine (CPU time, which counts every thread, keeps up with the event loop's busy time), 0.75
 * when a start took 6.8 s of busy wall time for 1.7 s of CPU (measured: node loading the agent's
 * modules beside six spinning processes on one core). Too short a history says nothing.
 */
export function starvedShare(activeMs: number, cpuMs: number): number {
  if (activeMs < 500) return 0
  return Math.max(0, Math.min(1, 1 - cpuMs / activeMs))
}

/**
 * How late this process's timers run now: the largest lateness seen, decayed (fast up, ~20 s
 * down after an overload ends). Inert until started; `sample` is the pure part.
 */
export class LocalLag {
  private lagMs = 0
  private timer: NodeJS.Timeout | undefined
  private due = 0

  get ms(): number {
    return this.lagMs
  }

  /** `ms` stretched by the lag now */
  stretch(ms: number): number {
    return stretched(ms, this.lagMs)
  }

  /** A timer ran `lateMs` after it was due. */
  sample(lateMs: number): void {
    this.lagMs = Math.max(0, lateMs, this.lagMs * LAG_DECAY)
  }

  start(): void {
    if (this.timer !== undefined) return
    // the first sample is a second away, and a member's first handshakes (its join) are now: a
    // start on a starved machine counts as lateness already (share starved x one period)
    const cpu = process.cpuUsage()
    this.sample(
      starvedShare(performance.eventLoopUtilization().active, (cpu.user + cpu.system) / 1000) * LAG_SAMPLE_MS,
    )
    this.due = performance.now() + LAG_SAMPLE_MS
    this.timer = setInterval(() => {
      const now = performance.now()
      this.sample(now - this.due)
      this.due = now + LAG_SAMPLE_MS
    }, LAG_SAMPLE_MS)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }
}
