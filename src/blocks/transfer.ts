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
import { type BlockBytes, sizeOf } from './block-bytes.js'
import type { Blockstore } from './blockstore.js'
import type { CID } from './cid.js'
import { BlocksError } from './errors.js'
import { CorruptBlockError, type Session } from './exchange.js'
import { type Need, type ProviderView, type WantEffect, WantScheduler } from './want-scheduler.js'

export type { Need, ProviderState, ProviderView } from './want-scheduler.js'

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

const TICK_MS = 250

/** The I/O of a transfer: sessions, discovery, the store and the clock; want-scheduler.ts decides. */
export class Transfer {
  private readonly sched: WantScheduler
  /** peer IDs and open sessions of the providers the scheduler knows */
  private readonly ids = new Map<string, PeerId>()
  private readonly sessions = new Map<string, Session>()
  private readonly abort = new AbortController()
  private discovering: Promise<void> | undefined
  private changed: (() => void) | undefined
  private fatal: Error | undefined
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
  readonly blockListeners: Array<(cid: CID, bytes: BlockBytes, peer: string) => void> = []

  constructor(
    readonly key: CID,
    private readonly deps: TransferDeps,
    private readonly signal?: AbortSignal,
  ) {
    this.sched = new WantScheduler(deps)
    signal?.addEventListener('abort', () => this.wake(), { once: true })
  }

  /** some provider had the key block at some point */
  get everActive(): boolean {
    return this.sched.found
  }

  providerViews(): ProviderView[] {
    return this.sched.views()
  }

  /**
   * Fetch every block of `needs` that the store lacks. Resolves when all are stored; rejects
   * with a BlocksError when no provider can supply some for `stallTimeoutMs`, or on abort.
   */
  async fetch(needs: readonly Need[], onProgress?: (p: TransferProgress) => void): Promise<void> {
    const seen = new Set<string>()
    const queue: Need[] = []
    let total = 0
    let local = 0
    for (const n of needs) {
      const k = n.cid.toString()
      if (seen.has(k)) continue
      seen.add(k)
      total += n.size
      if (this.deps.store.has(n.cid)) local += n.size
      else queue.push(n)
    }
    this.sched.load(queue, performance.now())
    this.progress.totalBytes += total
    this.progress.totalBlocks += seen.size
    this.progress.localBytes += local
    onProgress?.(this.snapshot())
    if (this.sched.remaining === 0) return
    this.discover()
    for (const p of this.sessions.keys()) this.pump(p)
    let lastReport = 0
    // ends: every pass either makes progress or counts towards stallTimeoutMs
    while (this.sched.remaining > 0) {
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
      this.run(this.sched.tick(now, (peer) => this.sessions.get(peer)?.oldestWant()))
      if (now - lastReport >= 200 || this.sched.remaining === 0) {
        lastReport = now
        onProgress?.(this.snapshot())
      }
    }
    if (this.fatal !== undefined) throw this.fatal
    onProgress?.(this.snapshot())
  }

  /** Carry out the scheduler's effects (throws on 'unavailable'). */
  private run(effects: WantEffect[]): void {
    for (const e of effects) {
      switch (e.type) {
        case 'want':
          this.want(e.peer, e.need)
          break
        case 'drop': {
          const s = this.sessions.get(e.peer)
          this.sessions.delete(e.peer)
          if (s !== undefined) {
            if (e.state === 'banned') s.abort(new Error(e.why))
            else void s.close()
          }
          this.deps.log?.info({ peer: e.peer, state: e.state, why: e.why }, 'provider dropped from transfer')
          this.wake()
          break
        }
        case 'rediscover':
          this.discover(true)
          break
        case 'unavailable':
          throw this.unavailable()
      }
    }
  }

  private unavailable(): BlocksError {
    const name = this.deps.nameOf ?? ((p: string) => p.slice(-8))
    const asked = this.sched.asked().map((p) => `${name(p.peer)} (${p.state})`)
    const remaining = this.sched.remaining
    return new BlocksError(
      'unavailable',
      `could not fetch ${remaining} block${remaining === 1 ? '' : 's'} of ${this.key}: no reachable member ` +
        `has ${remaining === 1 ? 'it' : 'them'} (asked ${asked.length === 0 ? 'nobody: no member answered' : asked.join(', ')})`,
    )
  }

  private snapshot(): TransferProgress {
    const now = performance.now()
    this.samples.push([now, this.progress.bytes])
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift()
    const [t0, b0] = this.samples[0]
    this.progress.rate = now - t0 > 100 ? ((this.progress.bytes - b0) / (now - t0)) * 1000 : 0
    this.progress.providers = this.sched.activeCount()
    return { ...this.progress }
  }

  private wake(): void {
    this.changed?.()
  }

  // ---- providers ----------------------------------------------------------------------------

  /** Ask candidates (in the background) whether they have the key block. */
  private discover(again = false): void {
    if (this.discovering !== undefined) return
    this.sched.discoveryStarted(performance.now())
    const signal = this.abort.signal
    this.discovering = (async () => {
      const tries: Promise<void>[] = []
      // providers we lost are tried again first, whether or not discovery names them now
      // (membership may call a busy member suspect; the DHT may not know it)
      if (again) {
        for (const key of this.sched.lost()) tries.push(this.connect(this.ids.get(key) as PeerId))
      }
      try {
        for await (const id of this.deps.candidates(this.key, signal)) {
          if (signal.aborted) break
          const key = id.toString()
          if (key === this.deps.self) continue
          const state = this.sched.stateOf(key)
          if (state === 'active' || state === 'connecting' || state === 'banned') continue
          if (state !== undefined && !again) continue
          tries.push(this.connect(id))
          if (tries.length >= 64) break
        }
      } catch (err) {
        this.deps.log?.debug({ err: (err as Error).message }, 'provider discovery failed')
      }
      await Promise.allSettled(tries)
    })().finally(() => {
      this.discovering = undefined
      this.sched.discoveryEnded()
      this.wake()
    })
  }

  private async connect(id: PeerId): Promise<void> {
    const key = id.toString()
    this.ids.set(key, id)
    this.sched.connecting(key)
    // our own timer: kept referenced until the attempt ends
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(new Error('timed out')), this.deps.providerTimeoutMs)
    const onAbort = () => ac.abort(new Error('transfer closed'))
    this.abort.signal.addEventListener('abort', onAbort, { once: true })
    try {
      const signal = ac.signal
      const session = await this.deps.open(id, signal)
      this.sessions.set(key, session)
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
        this.sched.lacks(key)
        this.sessions.delete(key)
        await session.close()
        return
      }
      // a provider that dies while idle is noticed too, not only through its wants
      session.onFailure = (err) => {
        if (this.sessions.get(key) === session) this.run(this.sched.failed(key, err.message))
      }
      this.deps.log?.debug({ peer: key }, 'provider found')
      this.run(this.sched.have(key))
    } catch (err) {
      this.sched.unreachable(key, (err as Error).message)
      this.sessions.get(key)?.abort(err as Error)
      this.sessions.delete(key)
    } finally {
      clearTimeout(timer)
      this.abort.signal.removeEventListener('abort', onAbort)
      this.wake()
    }
  }

  // ---- wants --------------------------------------------------------------------------------

  private pump(peer: string): void {
    if (this.sessions.has(peer)) this.run(this.sched.pump(peer))
  }

  private want(peer: string, n: Need): void {
    const session = this.sessions.get(peer)
    if (session === undefined) {
      // cannot happen (active implies a session); never leave a want that nobody sends
      this.run(this.sched.wantFailed(peer, n, false, 'no session'))
      return
    }
    session.wantBlock(n.cid).then(
      async (bytes: BlockBytes | null) => {
        if (this.sched.settle(peer, n.cid) === undefined) return // dropped meanwhile; already requeued
        if (bytes === null) {
          this.sched.dontHave(peer, n)
        } else if (!this.sched.isDone(n.cid)) {
          try {
            await this.deps.store.put(n.cid, bytes, { verified: true })
          } catch (err) {
            this.fatal = err as Error
            this.wake()
            return
          }
          const size = sizeOf(bytes)
          if (this.sched.stored(peer, n, size, performance.now())) {
            this.progress.bytes += size
            this.progress.blocks++
            this.deps.onBlock?.(n.cid, size, peer)
            for (const l of this.blockListeners) l(n.cid, bytes, peer)
          }
        }
        this.pump(peer)
        this.wake()
      },
      (err: Error) => {
        if (this.sched.settle(peer, n.cid) === undefined) return
        const corrupt = err instanceof CorruptBlockError
        if (corrupt) this.deps.onCorrupt?.(peer)
        this.run(this.sched.wantFailed(peer, n, corrupt, err.message))
        this.wake()
      },
    )
  }

  /** End every session; discovery stops. */
  async close(): Promise<void> {
    this.abort.abort()
    await Promise.allSettled([...this.sessions.values()].map((s) => s.close()))
  }
}
