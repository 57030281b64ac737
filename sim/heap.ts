// The simulator's event queue: a binary min-heap on (time, insertion order), so events at the
// same instant run in the order they were scheduled and every run is repeatable.

export interface Timed {
  at: number
  seq: number
}

export class EventHeap<T extends Timed> {
  private readonly a: T[] = []
  private n = 0

  get size(): number {
    return this.a.length
  }

  /** Events pushed so far: also the tie-breaker. */
  get pushed(): number {
    return this.n
  }

  push(e: T): void {
    e.seq = this.n++
    const a = this.a
    let i = a.length
    a.push(e)
    while (i > 0) {
      const p = (i - 1) >> 1
      const q = a[p]
      if (q.at < e.at || (q.at === e.at && q.seq < e.seq)) break
      a[i] = q
      i = p
    }
    a[i] = e
  }

  peek(): T | undefined {
    return this.a[0]
  }

  pop(): T | undefined {
    const a = this.a
    const top = a[0]
    const last = a.pop()
    if (a.length > 0 && last !== undefined) {
      const n = a.length
      let i = 0
      for (;;) {
        let c = 2 * i + 1
        if (c >= n) break
        const r = c + 1
        if (r < n && (a[r].at < a[c].at || (a[r].at === a[c].at && a[r].seq < a[c].seq))) c = r
        const x = a[c]
        if (last.at < x.at || (last.at === x.at && last.seq < x.seq)) break
        a[i] = x
        i = c
      }
      a[i] = last
    }
    return top
  }
}
