/**
 * The decisions of one transfer, sans-IO (the model is election/core.ts): which block to want
 * from which provider, when a provider is dropped (stream died, stalled, corrupt block), when to
 * ask the candidates again and when to give up. It owns no socket and no clock: feed it what
 * happened with the time it happened (`now`, in ms on any monotonic clock), carry out the
 * effects it returns. blocks/transfer.ts drives it with real sessions and performance.now();
 * a test or the simulator can drive it with a fake clock.
 *
 * Scheduling: each provider gets a window of outstanding wants (bytes and count), refilled as
 * blocks arrive (in batches, once a quarter of it is free), so a fast provider serves more.
 * Wants that come back (dont-have, dropped provider) are tried first, by a provider that has
 * not said dont-have for them.
 */
import type { CID } from './cid.js'

export interface Need {
  cid: CID
  /** expected size (0 when unknown, e.g. a root block) */
  size: number
}

export type ProviderState = 'connecting' | 'active' | 'lacks' | 'gone' | 'banned'

export interface ProviderView {
  peerId: string
  state: ProviderState
  bytes: number
  blocks: number
  dontHave: number
  corrupt: number
  error?: string
}

export interface WantSchedulerConfig {
  windowBytes: number
  maxWants: number
  /** a provider whose oldest want is this old is dropped */
  providerTimeoutMs: number
  /** no block stored for this long while nothing can be asked: unavailable */
  stallTimeoutMs: number
}

export type WantEffect =
  /** send a want for `need` to `peer` */
  | { type: 'want'; peer: string; need: Need }
  /** stop using `peer` (its wants are already back in the queue): close its session, abort it if banned */
  | { type: 'drop'; peer: string; state: 'gone' | 'banned'; why: string }
  /** ask the candidates again, lost providers first (dont-haves were forgotten) */
  | { type: 'rediscover' }
  /** give up: no reachable provider has what is left */
  | { type: 'unavailable' }

/** how often to ask the candidates again while stuck */
export const REDISCOVER_MS = 2_000
/** the window a want of unknown size takes */
const UNKNOWN_SIZE = 256 << 10

interface Prov {
  key: string
  state: ProviderState
  inflight: Map<string, Need>
  inflightBytes: number
  dontHave: Set<string>
  bytes: number
  blocks: number
  dontHaveCount: number
  corrupt: number
  error?: string
  /** it said have at some point (so it belongs in the report even once gone) */
  wasActive: boolean
}

export class WantScheduler {
  private readonly providers = new Map<string, Prov>()
  private queue: Need[] = []
  private head = 0
  private requeued: Need[] = []
  private readonly done = new Set<string>()
  private lastProgress = 0
  private lastDiscovery = 0
  private discovering = false
  private discoveryRounds = 0
  /** blocks of the current fetch not yet stored */
  remaining = 0
  /** some provider had the key block at some point */
  found = false

  constructor(private readonly cfg: WantSchedulerConfig) {}

  // ---- the fetch ----------------------------------------------------------------------------

  /** Start a fetch of `needs` (blocks the store lacks, no duplicates). */
  load(needs: Need[], now: number): void {
    this.queue = needs
    this.head = 0
    this.requeued = []
    this.remaining = needs.length
    this.lastProgress = now
  }

  isDone(cid: CID): boolean {
    return this.done.has(cid.toString())
  }

  // ---- discovery ----------------------------------------------------------------------------

  discoveryStarted(now: number): void {
    this.discovering = true
    this.lastDiscovery = now
  }

  discoveryEnded(): void {
    this.discovering = false
    this.discoveryRounds++
  }

  stateOf(peer: string): ProviderState | undefined {
    return this.providers.get(peer)?.state
  }

  /** providers that once had the key block and are gone: tried again first on rediscovery */
  lost(): string[] {
    return [...this.providers.values()].filter((p) => p.wasActive && p.state === 'gone').map((p) => p.key)
  }

  // ---- providers ----------------------------------------------------------------------------

  /** we are asking `peer` whether it has the key block */
  connecting(peer: string): void {
    let p = this.providers.get(peer)
    if (p === undefined) {
      p = {
        key: peer,
        state: 'connecting',
        inflight: new Map(),
        inflightBytes: 0,
        dontHave: new Set(),
        bytes: 0,
        blocks: 0,
        dontHaveCount: 0,
        corrupt: 0,
        wasActive: false,
      }
      this.providers.set(peer, p)
    }
    p.state = 'connecting'
    p.error = undefined
  }

  /** it has the key block: wants for it follow */
  have(peer: string): WantEffect[] {
    const p = this.get(peer)
    p.state = 'active'
    p.wasActive = true
    this.found = true
    return this.pump(peer)
  }

  lacks(peer: string): void {
    this.get(peer).state = 'lacks'
  }

  /** the attempt to reach it failed (only counts while it is still connecting) */
  unreachable(peer: string, why: string): void {
    const p = this.get(peer)
    if (p.state !== 'connecting') return
    p.state = 'gone'
    p.error = why
  }

  /** its session failed (not through a want) */
  failed(peer: string, why: string): WantEffect[] {
    const p = this.get(peer)
    return p.state === 'active' ? this.drop(p, 'gone', why) : []
  }

  activeCount(): number {
    let n = 0
    for (const p of this.providers.values()) if (p.state === 'active') n++
    return n
  }

  views(): ProviderView[] {
    return [...this.providers.values()]
      .filter((p) => p.wasActive || p.blocks > 0 || p.state === 'banned')
      .map((p) => ({
        peerId: p.key,
        state: p.state,
        bytes: p.bytes,
        blocks: p.blocks,
        dontHave: p.dontHaveCount,
        corrupt: p.corrupt,
        error: p.error,
      }))
  }

  /** every provider asked, with its state (for the error that ends a transfer) */
  asked(): Array<{ peer: string; state: ProviderState }> {
    return [...this.providers.values()].map((p) => ({ peer: p.key, state: p.state }))
  }

  // ---- wants --------------------------------------------------------------------------------

  /**
   * Wants to send to `peer` now, up to its window. A window with less than a quarter free (by
   * count or by bytes) waits: wants go out in batches, one message for several blocks,
   * instead of one message (a yamux frame, a Noise message, a socket write on each side) per
   * block that arrives.
   */
  pump(peer: string): WantEffect[] {
    const p = this.providers.get(peer)
    const out: WantEffect[] = []
    if (p === undefined) return out
    if (
      p.inflight.size > 0 &&
      (this.cfg.maxWants - p.inflight.size < Math.ceil(this.cfg.maxWants / 4) ||
        this.cfg.windowBytes - p.inflightBytes < this.cfg.windowBytes / 4)
    )
      return out
    while (
      p.state === 'active' &&
      p.inflight.size < this.cfg.maxWants &&
      (p.inflightBytes < this.cfg.windowBytes || p.inflight.size === 0)
    ) {
      const n = this.nextFor(p)
      if (n === undefined) break
      p.inflight.set(n.cid.toString(), n)
      p.inflightBytes += sizeOf(n)
      out.push({ type: 'want', peer, need: n })
    }
    return out
  }

  /**
   * An answer to a want came back. Returns the need if the want still counts, undefined if
   * the provider was dropped meanwhile (its wants were requeued then): ignore the answer.
   */
  settle(peer: string, cid: CID): Need | undefined {
    const p = this.providers.get(peer)
    const k = cid.toString()
    const n = p?.inflight.get(k)
    if (p === undefined || n === undefined) return undefined
    p.inflight.delete(k)
    p.inflightBytes -= sizeOf(n)
    return n
  }

  dontHave(peer: string, n: Need): void {
    const p = this.get(peer)
    p.dontHave.add(n.cid.toString())
    p.dontHaveCount++
    this.requeue(n)
  }

  /** `bytes` of the block are stored; true if this completed it (not a duplicate) */
  stored(peer: string, n: Need, bytes: number, now: number): boolean {
    const k = n.cid.toString()
    if (this.done.has(k)) return false
    this.done.add(k)
    this.remaining--
    const p = this.get(peer)
    p.bytes += bytes
    p.blocks++
    this.lastProgress = now
    return true
  }

  /** a want failed: the block goes back; a corrupt block bans the provider, else it is gone */
  wantFailed(peer: string, n: Need, corrupt: boolean, why: string): WantEffect[] {
    const p = this.get(peer)
    this.requeue(n)
    if (corrupt) {
      p.corrupt++
      return this.drop(p, 'banned', why)
    }
    return p.state === 'active' ? this.drop(p, 'gone', why) : []
  }

  // ---- time ---------------------------------------------------------------------------------

  /**
   * Time passed: drop providers whose oldest want (`oldestWant`, on the same clock) is older
   * than providerTimeoutMs; while stuck, ask the candidates again every REDISCOVER_MS and give
   * up when nobody has the key block or nothing arrived for stallTimeoutMs.
   */
  tick(now: number, oldestWant: (peer: string) => number | undefined): WantEffect[] {
    const out: WantEffect[] = []
    for (const p of this.providers.values()) {
      if (p.state !== 'active') continue
      const oldest = oldestWant(p.key)
      if (oldest !== undefined && now - oldest > this.cfg.providerTimeoutMs) {
        out.push(...this.drop(p, 'gone', `no answer for ${Math.round((now - oldest) / 1000)} s`))
      }
    }
    if (this.remaining === 0 || !this.stuck()) return out
    // everyone asked and nobody has the key block: no point waiting
    if (!this.found && this.discoveryRounds >= 1 && !this.discovering) {
      out.push({ type: 'unavailable' })
      return out
    }
    if (now - this.lastDiscovery > REDISCOVER_MS) {
      // partial holders may have fetched more since they said dont-have
      for (const p of this.providers.values()) {
        p.dontHave.clear()
        if (p.state === 'lacks') p.state = 'gone'
      }
      out.push({ type: 'rediscover' })
      for (const p of this.providers.values()) out.push(...this.pump(p.key))
    }
    if (now - this.lastProgress > this.cfg.stallTimeoutMs) out.push({ type: 'unavailable' })
    return out
  }

  // ---- inside -------------------------------------------------------------------------------

  private get(peer: string): Prov {
    const p = this.providers.get(peer)
    if (p === undefined) throw new Error(`want scheduler: unknown provider ${peer}`)
    return p
  }

  private drop(p: Prov, state: 'gone' | 'banned', why: string): WantEffect[] {
    if (p.state === 'banned') return []
    p.state = state
    p.error = why
    for (const n of p.inflight.values()) this.requeue(n)
    p.inflight.clear()
    p.inflightBytes = 0
    return [{ type: 'drop', peer: p.key, state, why }]
  }

  /** Nothing in flight anywhere and no active provider can take what is left. */
  private stuck(): boolean {
    for (const p of this.providers.values()) {
      if (p.inflight.size > 0) return false
      if (p.state === 'active' && this.peekFor(p)) return false
    }
    return true
  }

  private requeue(n: Need): void {
    if (!this.done.has(n.cid.toString())) this.requeued.push(n)
  }

  private peekFor(p: Prov): boolean {
    for (const n of this.requeued) if (!p.dontHave.has(n.cid.toString())) return true
    return this.head < this.queue.length
  }

  private nextFor(p: Prov): Need | undefined {
    for (let i = 0; i < this.requeued.length; i++) {
      const n = this.requeued[i]
      const k = n.cid.toString()
      if (this.done.has(k)) {
        this.requeued.splice(i--, 1)
        continue
      }
      if (p.dontHave.has(k)) continue
      this.requeued.splice(i, 1)
      return n
    }
    while (this.head < this.queue.length) {
      const n = this.queue[this.head++]
      if (!this.done.has(n.cid.toString())) return n
    }
    return undefined
  }
}

function sizeOf(n: Need): number {
  return n.size > 0 ? n.size : UNKNOWN_SIZE
}
