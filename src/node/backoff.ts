/**
 * Exponential back-off with jitter, capped: the pause before the next attempt after `n` failures
 * in a row is min(max, min * 2^(n-1)), spread by +-20% so that members that failed together do
 * not retry together. Pure: the caller owns the clock and the timers.
 */
export class Backoff {
  private failures = 0

  constructor(private readonly opts: { minMs: number; maxMs: number; random?: () => number }) {}

  /** How long to wait before the next attempt (0 when nothing has failed). */
  due(): number {
    if (this.failures === 0) return 0
    const base = Math.min(this.opts.maxMs, this.opts.minMs * 2 ** Math.min(30, this.failures - 1))
    const r = this.opts.random?.() ?? Math.random()
    return Math.round(base * (0.8 + 0.4 * r))
  }

  failed(): void {
    this.failures++
  }

  reset(): void {
    this.failures = 0
  }

  get attempts(): number {
    return this.failures
  }
}

/** One back-off per key (peer, address), with the time each key may next be tried. */
export class BackoffMap {
  private readonly entries = new Map<string, { backoff: Backoff; next: number; failedAt: number }>()

  constructor(private readonly opts: { minMs: number; maxMs: number; random?: () => number }) {}

  /**
   * Whether `key` may be tried at `now`: its back-off has run out, or, with `maxWaitMs`, its last
   * failure is at least that long ago (a caller that needs the key more than usual caps the wait).
   */
  ready(key: string, now: number, maxWaitMs?: number): boolean {
    const e = this.entries.get(key)
    if (e === undefined || e.next <= now) return true
    return maxWaitMs !== undefined && now - e.failedAt >= maxWaitMs
  }

  failed(key: string, now: number): number {
    let e = this.entries.get(key)
    if (e === undefined) {
      e = { backoff: new Backoff(this.opts), next: 0, failedAt: now }
      this.entries.set(key, e)
    }
    e.backoff.failed()
    const wait = e.backoff.due()
    e.next = now + wait
    e.failedAt = now
    return wait
  }

  succeeded(key: string): void {
    this.entries.delete(key)
  }

  /** The earliest time any key may be tried again (undefined when no key is backing off). */
  earliest(): number | undefined {
    let at: number | undefined
    for (const e of this.entries.values()) if (at === undefined || e.next < at) at = e.next
    return at
  }

  /** Forget keys no longer wanted, so the map stays as small as the set of targets. */
  retain(keys: Set<string>): void {
    for (const k of this.entries.keys()) if (!keys.has(k)) this.entries.delete(k)
  }
}
