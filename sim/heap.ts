// The simulator's event queue: a binary min-heap on (time, insertion order), so events at the
// same instant run in the order they were scheduled and every run is repeatable.
//
// The keys live in typed arrays beside the events: sifting compares numbers in two flat arrays
// instead of loading every event object on the path (a 10,000-member run keeps ~10^5 events
// queued and pops ~10^8; the object loads were a tenth of its CPU).

export interface Timed {
  at: number
  seq: number
}

export class EventHeap<T extends Timed> {
  private a: T[] = []
  private at = new Float64Array(1024)
  private sq = new Float64Array(1024)
  private len = 0
  private n = 0

  get size(): number {
    return this.len
  }

  /** Events pushed so far: also the tie-breaker. */
  get pushed(): number {
    return this.n
  }

  push(e: T): void {
    const seq = this.n++
    e.seq = seq
    const t = e.at
    if (this.len === this.at.length) this.grow()
    const a = this.a
    const at = this.at
    const sq = this.sq
    let i = this.len++
    while (i > 0) {
      const p = (i - 1) >> 1
      // seq grows with every push: an equal time never moves the new event up
      if (at[p] <= t) break
      a[i] = a[p]
      at[i] = at[p]
      sq[i] = sq[p]
      i = p
    }
    a[i] = e
    at[i] = t
    sq[i] = seq
  }

  peek(): T | undefined {
    return this.len > 0 ? this.a[0] : undefined
  }

  pop(): T | undefined {
    if (this.len === 0) return undefined
    const a = this.a
    const at = this.at
    const sq = this.sq
    const top = a[0]
    const n = --this.len
    const last = a[n]
    a[n] = undefined as unknown as T
    if (n > 0) {
      const lt = at[n]
      const ls = sq[n]
      let i = 0
      for (;;) {
        let c = 2 * i + 1
        if (c >= n) break
        const r = c + 1
        if (r < n && (at[r] < at[c] || (at[r] === at[c] && sq[r] < sq[c]))) c = r
        if (lt < at[c] || (lt === at[c] && ls < sq[c])) break
        a[i] = a[c]
        at[i] = at[c]
        sq[i] = sq[c]
        i = c
      }
      a[i] = last
      at[i] = lt
      sq[i] = ls
    }
    return top
  }

  private grow(): void {
    const at = new Float64Array(this.at.length * 2)
    at.set(this.at)
    this.at = at
    const sq = new Float64Array(this.sq.length * 2)
    sq.set(this.sq)
    this.sq = sq
  }
}
