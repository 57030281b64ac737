/**
 * One transfer: fetch a set of blocks from every provider that has them at once. Providers
 * are found by asking candidates (hints, connected members, DHT provider records) whether they
 * have the transfer's key block; each provider then gets a window of outstanding wants
 * (bytes and count), refilled as blocks arrive, so a fast provider serves more. A dont-have
 * sends the block to another provider; a provider whose stream dies or stalls is dropped and
 * its wants go to the others; a provider that sends a corrupt block is banned for the rest of
 * the transfer. Blocks already in the local store are never fetched.
 */
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { Blockstore } from './blockstore.js'
import type { CID } from './cid.js'
import { BlocksError } from './errors.js'
import { CorruptBlockError, type Session } from './exchange.js'

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

export interface TransferProgress {
  /** bytes and blocks fetched over the network in this transfer */
  bytes: number
  blocks: number
  /** what the current fetch() needs in all (local ones included) */
  totalBytes: number
  totalBlocks: number
  /** bytes found in the local store instead of fetched */
  localBytes: number
  /** bytes per second over the last few seconds */
  rate: number
  providers: number
}

export interface TransferDeps {
  self: string
  store: Blockstore
  /** open an exchange session to a peer */
  open(peer: PeerId, signal: AbortSignal): Promise<Session>
  /** peers that may have `key`, best first; may run long (the DHT), is aborted when not needed */
  candidates(key: CID, signal: AbortSignal): AsyncIterable<PeerId>
  windowBytes: number
  maxWants: number
  providerTimeoutMs: number
  stallTimeoutMs: number
  onCorrupt?(peer: string): void
  /** how to name a peer in errors (default: the end of its ID) */
  nameOf?(peer: string): string
  onBlock?(cid: CID, size: number, peer: string): void
  log?: Logger
}

interface Prov {
  id: PeerId
  key: string
  state: ProviderState
  session?: Session
  inflight: Map<string, Need>
  inflightBytes: number
  dontHave: Set<string>
  bytes: number
  blocks: number
  dontHaveCount: number
  corrupt: number
  error?: string
  checkedAt: number
  /** it said have at some point (so it belongs in the report even once gone) */
  wasActive: boolean
}

const TICK_MS = 250
const REDISCOVER_MS = 2_000

export class Transfer {
  private readonly providers = new Map<string, Prov>()
  private readonly abort = new AbortController()
  private discovering: Promise<void> | undefined
  private lastDiscovery = 0
  private discoveryRounds = 0
  private found = false
  private changed: (() => void) | undefined
  private fatal: Error | undefined
  // the current fetch
  private queue: Need[] = []
  private head = 0
  private requeued: Need[] = []
  private readonly done = new Set<string>()
  private remaining = 0
  private lastProgress = 0
  readonly progress: TransferProgress = {
    bytes: 0,
    blocks: 0,
    totalBytes: 0,
    totalBlocks: 0,
    localBytes: 0,
    rate: 0,
    providers: 0,
  }
  private readonly samples: Array<[number, number]> = []
  /** called for every block stored by this transfer (after the store has it) */
  readonly blockListeners: Array<(cid: CID, bytes: Uint8Array, peer: string) => void> = []

  constructor(
    readonly key: CID,
    private readonly deps: TransferDeps,
    private readonly signal?: AbortSignal,
  ) {
    signal?.addEventListener('abort', () => this.wake(), { once: true })
  }

  /** some provider had the key block at some point */
  get everActive(): boolean {
    return this.found
  }

  providerViews(): ProviderView[] {
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

  /**
   * Fetch every block of `needs` that the store lacks. Resolves when all are stored; rejects
   * with a BlocksError when no provider can supply some for `stallTimeoutMs`, or on abort.
   */
  async fetch(needs: readonly Need[], onProgress?: (p: TransferProgress) => void): Promise<void> {
    const seen = new Set<string>()
    this.queue = []
    this.head = 0
    this.requeued = []
    let total = 0
    let local = 0
    for (const n of needs) {
      const k = n.cid.toString()
      if (seen.has(k)) continue
      seen.add(k)
      total += n.size
      if (this.deps.store.has(n.cid)) local += n.size
      else this.queue.push(n)
    }
    this.remaining = this.queue.length
    this.progress.totalBytes += total
    this.progress.totalBlocks += seen.size
    this.progress.localBytes += local
    this.progress.blocks += 0
    this.lastProgress = performance.now()
    onProgress?.(this.snapshot())
    if (this.remaining === 0) return
    this.discover()
    for (const p of this.providers.values()) this.pump(p)
    let lastReport = 0
    // ends: every pass either makes progress or counts towards stallTimeoutMs
    while (this.remaining > 0) {
      if (this.signal?.aborted) throw new BlocksError('interrupted', 'the transfer was interrupted')
      if (this.fatal !== undefined) throw this.fatal
      await new Promise<void>((r) => {
        const t = setTimeout(r, TICK_MS)
        this.changed = () => {
          clearTimeout(t)
          r()
        }
      })
      this.changed = undefined
      const now = performance.now()
      this.checkStalls(now)
      if (this.remaining > 0 && this.stuck()) {
        // everyone asked and nobody has the key block: no point waiting
        if (!this.found && this.discoveryRounds >= 1 && this.discovering === undefined)
          throw this.unavailable()
        if (now - this.lastDiscovery > REDISCOVER_MS) {
          // partial holders may have fetched more since they said dont-have
          for (const p of this.providers.values()) p.dontHave.clear()
          for (const p of this.providers.values()) if (p.state === 'lacks') p.state = 'gone'
          this.discover(true)
          for (const p of this.providers.values()) this.pump(p)
        }
        if (now - this.lastProgress > this.deps.stallTimeoutMs) throw this.unavailable()
      }
      if (now - lastReport >= 200 || this.remaining === 0) {
        lastReport = now
        onProgress?.(this.snapshot())
      }
    }
    if (this.fatal !== undefined) throw this.fatal
    onProgress?.(this.snapshot())
  }

  private unavailable(): BlocksError {
    const name = this.deps.nameOf ?? ((p: string) => p.slice(-8))
    const asked = [...this.providers.values()].map((p) => `${name(p.key)} (${p.state})`)
    return new BlocksError(
      'unavailable',
      `could not fetch ${this.remaining} block${this.remaining === 1 ? '' : 's'} of ${this.key}: no reachable member ` +
        `has ${this.remaining === 1 ? 'it' : 'them'} (asked ${asked.length === 0 ? 'nobody: no member answered' : asked.join(', ')})`,
    )
  }

  private snapshot(): TransferProgress {
    const now = performance.now()
    this.samples.push([now, this.progress.bytes])
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift()
    const [t0, b0] = this.samples[0]
    this.progress.rate = now - t0 > 100 ? ((this.progress.bytes - b0) / (now - t0)) * 1000 : 0
    this.progress.providers = [...this.providers.values()].filter((p) => p.state === 'active').length
    return { ...this.progress }
  }

  private wake(): void {
    this.changed?.()
  }

  /** Nothing in flight anywhere and no active provider can take what is left. */
  private stuck(): boolean {
    for (const p of this.providers.values()) {
      if (p.inflight.size > 0) return false
      if (p.state === 'active' && this.peekFor(p)) return false
    }
    return true
  }

  private checkStalls(now: number): void {
    for (const p of this.providers.values()) {
      if (p.state !== 'active' || p.session === undefined) continue
      const oldest = p.session.oldestWant()
      if (oldest !== undefined && now - oldest > this.deps.providerTimeoutMs) {
        this.drop(p, 'gone', `no answer for ${Math.round((now - oldest) / 1000)} s`)
      }
    }
  }

  // ---- providers ----------------------------------------------------------------------------

  /** Ask candidates (in the background) whether they have the key block. */
  private discover(again = false): void {
    if (this.discovering !== undefined) return
    this.lastDiscovery = performance.now()
    const signal = this.abort.signal
    this.discovering = (async () => {
      const tries: Promise<void>[] = []
      // providers we lost are tried again first, whether or not discovery names them now
      // (membership may call a busy member suspect; the DHT may not know it)
      if (again) {
        for (const p of this.providers.values()) {
          if (p.wasActive && p.state === 'gone') tries.push(this.connect(p.id, p))
        }
      }
      try {
        for await (const id of this.deps.candidates(this.key, signal)) {
          if (signal.aborted) break
          const key = id.toString()
          if (key === this.deps.self) continue
          const known = this.providers.get(key)
          if (
            known !== undefined &&
            (known.state === 'active' || known.state === 'connecting' || known.state === 'banned')
          ) {
            continue
          }
          if (known !== undefined && !again) continue
          tries.push(this.connect(id, known))
          if (tries.length >= 64) break
        }
      } catch (err) {
        this.deps.log?.debug({ err: (err as Error).message }, 'provider discovery failed')
      }
      await Promise.allSettled(tries)
    })().finally(() => {
      this.discovering = undefined
      this.discoveryRounds++
      this.wake()
    })
  }

  private async connect(id: PeerId, known?: Prov): Promise<void> {
    const p: Prov = known ?? {
      id,
      key: id.toString(),
      state: 'connecting',
      inflight: new Map(),
      inflightBytes: 0,
      dontHave: new Set(),
      bytes: 0,
      blocks: 0,
      dontHaveCount: 0,
      corrupt: 0,
      checkedAt: 0,
      wasActive: false,
    }
    p.state = 'connecting'
    p.error = undefined
    p.checkedAt = performance.now()
    this.providers.set(p.key, p)
    // our own timer: kept referenced until the attempt ends
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(new Error('timed out')), this.deps.providerTimeoutMs)
    const onAbort = () => ac.abort(new Error('transfer closed'))
    this.abort.signal.addEventListener('abort', onAbort, { once: true })
    try {
      const signal = ac.signal
      const session = await this.deps.open(id, signal)
      p.session = session
      const have = await Promise.race([
        session.wantHave(this.key),
        new Promise<never>((_, reject) =>
          signal.addEventListener('abort', () => reject(new Error('timed out')), { once: true }),
        ),
      ])
      if (this.abort.signal.aborted) {
        await session.close()
        return
      }
      if (!have) {
        p.state = 'lacks'
        p.session = undefined
        await session.close()
        return
      }
      p.state = 'active'
      p.wasActive = true
      this.found = true
      // a provider that dies while idle is noticed too, not only through its wants
      session.onFailure = (err) => {
        if (p.session === session && p.state === 'active') this.drop(p, 'gone', err.message)
      }
      this.deps.log?.debug({ peer: p.key }, 'provider found')
      this.pump(p)
    } catch (err) {
      if (p.state === 'connecting') {
        p.state = 'gone'
        p.error = (err as Error).message
      }
      p.session?.abort(err as Error)
      p.session = undefined
    } finally {
      clearTimeout(timer)
      this.abort.signal.removeEventListener('abort', onAbort)
      this.wake()
    }
  }

  /** Stop using a provider: its outstanding wants go back in the queue. */
  private drop(p: Prov, state: ProviderState, why: string): void {
    if (p.state === 'banned') return
    p.state = state
    p.error = why
    for (const n of p.inflight.values()) this.requeue(n)
    p.inflight.clear()
    p.inflightBytes = 0
    const s = p.session
    p.session = undefined
    if (s !== undefined) {
      if (state === 'banned') s.abort(new Error(why))
      else void s.close()
    }
    this.deps.log?.info({ peer: p.key, state, why }, 'provider dropped from transfer')
    this.wake()
  }

  // ---- scheduling ---------------------------------------------------------------------------

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

  private pump(p: Prov): void {
    const window = this.deps.windowBytes
    while (
      p.state === 'active' &&
      p.session !== undefined &&
      p.inflight.size < this.deps.maxWants &&
      (p.inflightBytes < window || p.inflight.size === 0)
    ) {
      const n = this.nextFor(p)
      if (n === undefined) return
      this.want(p, p.session, n)
    }
  }

  private want(p: Prov, session: Session, n: Need): void {
    const k = n.cid.toString()
    const size = n.size > 0 ? n.size : 256 << 10
    p.inflight.set(k, n)
    p.inflightBytes += size
    session.wantBlock(n.cid).then(
      async (bytes) => {
        if (!p.inflight.delete(k)) return // dropped meanwhile; already requeued
        p.inflightBytes -= size
        if (bytes === null) {
          p.dontHave.add(k)
          p.dontHaveCount++
          this.requeue(n)
        } else if (!this.done.has(k)) {
          try {
            await this.deps.store.put(n.cid, bytes, { verified: true })
          } catch (err) {
            this.fatal = err as Error
            this.wake()
            return
          }
          if (!this.done.has(k)) {
            this.done.add(k)
            this.remaining--
            p.bytes += bytes.byteLength
            p.blocks++
            this.progress.bytes += bytes.byteLength
            this.progress.blocks++
            this.lastProgress = performance.now()
            this.deps.onBlock?.(n.cid, bytes.byteLength, p.key)
            for (const l of this.blockListeners) l(n.cid, bytes, p.key)
          }
        }
        this.pump(p)
        this.wake()
      },
      (err: Error) => {
        if (!p.inflight.delete(k)) return
        p.inflightBytes -= size
        this.requeue(n)
        if (err instanceof CorruptBlockError) {
          p.corrupt++
          this.deps.onCorrupt?.(p.key)
          this.drop(p, 'banned', err.message)
        } else if (p.state === 'active') {
          this.drop(p, 'gone', err.message)
        }
        this.wake()
      },
    )
  }

  /** End every session; discovery stops. */
  async close(): Promise<void> {
    this.abort.abort()
    await Promise.allSettled([...this.providers.values()].map((p) => p.session?.close()))
  }
}
