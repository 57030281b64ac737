/**
 * The block exchange protocol (protocols/blocks.md): a requester opens one stream to a
 * provider and pipelines wants on it; the provider answers each want with the block, or with
 * a presence (have / dont-have). Messages are varint length-prefixed `Exchange` protobufs of at
 * most 2 MiB + 64 KiB, so one block travels per message.
 *
 * The requester hashes every block before handing it on: a wrong one rejects the want with
 * CorruptBlockError, and the caller stops asking that provider.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { Exchange, Want } from '../../protocols/blocks.js'
import { blockMessage, blockMessageHead } from './block-message.js'
import { type Blockstore, MAX_BLOCK } from './blockstore.js'
import { type CID, decodeCid, matches } from './cid.js'
import { LpMessages } from './lp-messages.js'

type Bytes = Uint8Array<ArrayBuffer>

export const MAX_MESSAGE = MAX_BLOCK + (64 << 10)
/** Wants one message may carry, and a provider queues per stream at most. */
const MAX_WANTS_PER_MESSAGE = 1024
const MAX_QUEUED_WANTS = 4096
/** A provider closes an exchange stream on which nothing was asked or sent for this long (blocks.idleStreamMs). */
export const EXCHANGE_IDLE_MS = 30_000
/** Reads from disk a provider keeps in flight per stream, ahead of the network. */
const READ_AHEAD = 4

export class CorruptBlockError extends Error {
  override name = 'CorruptBlockError'
}

export class ProviderGoneError extends Error {
  override name = 'ProviderGoneError'
}

/** A token bucket shared by every stream an agent serves (`blocks.serveBytesPerSec`). */
export class RateLimiter {
  private tokens: number
  private last = performance.now()

  constructor(private readonly perSec: number) {
    this.tokens = perSec
  }

  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.perSec <= 0) return
    for (let i = 0; i < 100_000; i++) {
      const now = performance.now()
      // a burst of at most one second's worth
      this.tokens = Math.min(this.perSec, this.tokens + ((now - this.last) / 1000) * this.perSec)
      this.last = now
      if (this.tokens >= Math.min(n, this.perSec)) {
        this.tokens -= n
        return
      }
      signal?.throwIfAborted()
      const wait = ((Math.min(n, this.perSec) - this.tokens) / this.perSec) * 1000
      await new Promise((r) => setTimeout(r, Math.max(1, Math.min(wait, 1000))))
    }
  }
}

export interface ServeStats {
  onServed(bytes: number, peer: string): void
  onMessage(kind: 'want-block' | 'want-have' | 'cancel' | 'bad', n?: number): void
}

type Queued = { cid: CID; key: string; kind: Want.Kind }

/**
 * The provider side of one exchange stream: answers wants in order, reading a few blocks
 * ahead, paced by the shared rate limiter and by the stream's backpressure.
 */
export async function serveExchange(
  stream: Stream,
  conn: Connection,
  store: Blockstore,
  limiter: RateLimiter,
  stats: ServeStats,
  idleMs = EXCHANGE_IDLE_MS,
): Promise<void> {
  const peer = conn.remotePeer.toString()
  const lp = new LpMessages(stream, { maxDataLength: MAX_MESSAGE, maxBufferSize: 8 << 20 })
  const queue: Queued[] = []
  const cancelled = new Set<string>()
  let ended = false
  let wake: (() => void) | undefined
  const notify = () => {
    wake?.()
    wake = undefined
  }
  // every read has a deadline: a stream that asks for nothing and waits for nothing is closed
  // (a requester opens a new one when it wants more); refreshed by every message either way
  const idle = setTimeout(function onIdle() {
    if (wake === undefined || queue.length > 0) return idle.refresh() // still working
    void stream
      .close({ signal: AbortSignal.timeout(2_000) })
      .catch(() => stream.abort(new Error('idle exchange stream')))
  }, idleMs)
  idle.unref()

  const reader = (async () => {
    try {
      for (;;) {
        const raw = await lp.read()
        idle.refresh()
        const msg = Exchange.decode(raw, {
          limits: { wants: MAX_WANTS_PER_MESSAGE, cancels: MAX_WANTS_PER_MESSAGE, blocks: 0, presences: 0 },
        })
        for (const c of msg.cancels) cancelled.add(decodeCid(c).toString())
        if (msg.cancels.length > 0) stats.onMessage('cancel', msg.cancels.length)
        for (const w of msg.wants) {
          const cid = decodeCid(w.cid)
          const key = cid.toString()
          cancelled.delete(key)
          queue.push({ cid, key, kind: w.kind })
          stats.onMessage(w.kind === Want.Kind.HAVE ? 'want-have' : 'want-block')
        }
        if (queue.length > MAX_QUEUED_WANTS) throw new Error(`more than ${MAX_QUEUED_WANTS} wants queued`)
        notify()
      }
    } catch (err) {
      // the requester closing its write end is the normal end
      if (stream.remoteWriteStatus !== 'writable' && stream.status !== 'reset' && stream.status !== 'aborted')
        return
      stats.onMessage('bad')
      throw err
    } finally {
      ended = true
      notify()
    }
  })()
  reader.catch(() => {})

  try {
    // blocks read ahead of the network, in want order
    const reads: Array<{ q: Queued; bytes: Promise<Uint8Array | undefined> }> = []
    for (;;) {
      while (reads.length < READ_AHEAD && queue.length > 0) {
        const q = queue.shift()!
        if (cancelled.delete(q.key)) continue
        reads.push({ q, bytes: q.kind === Want.Kind.BLOCK ? store.get(q.cid) : Promise.resolve(undefined) })
      }
      if (reads.length === 0) {
        if (ended) break
        await new Promise<void>((r) => {
          wake = r
        })
        continue
      }
      const { q, bytes } = reads.shift()!
      const data = await bytes
      idle.refresh()
      if (cancelled.delete(q.key)) continue
      if (q.kind === Want.Kind.HAVE) {
        await lp.write(
          Exchange.encode({
            wants: [],
            presences: [{ cid: q.cid.bytes as Bytes, have: store.has(q.cid) }],
            blocks: [],
            cancels: [],
          }),
        )
      } else if (data === undefined) {
        await lp.write(
          Exchange.encode({
            wants: [],
            presences: [{ cid: q.cid.bytes as Bytes, have: false }],
            blocks: [],
            cancels: [],
          }),
        )
      } else {
        await limiter.take(data.byteLength)
        if (data.byteLength > 0) {
          // the head and the block as read (and hashed): no encoded copy of the block
          await lp.write(blockMessageHead(q.cid.bytes, data.byteLength), data)
        } else {
          await lp.write(
            Exchange.encode({
              wants: [],
              presences: [],
              blocks: [{ cid: q.cid.bytes as Bytes, data: data as Bytes }],
              cancels: [],
            }),
          )
        }
        stats.onServed(data.byteLength, peer)
      }
    }
    await reader
    await stream.close().catch(() => {})
  } catch (err) {
    stream.abort(err as Error)
  } finally {
    clearTimeout(idle)
  }
}

interface Pending {
  kind: Want.Kind
  cid: CID
  sentAt: number
  resolve: (v: Uint8Array[] | boolean | null) => void
  reject: (err: Error) => void
}

/**
 * The requester side of one exchange stream to one provider. wantBlock() resolves with the
 * verified bytes (the pieces they arrived in), or null for dont-have; wantHave() with true or false. Both reject with
 * CorruptBlockError for a block that does not hash to its CID, and ProviderGoneError when the
 * stream fails.
 */
export class Session {
  private readonly pending = new Map<string, Pending>()
  private readonly lp: LpMessages
  private outWants: Array<{ cid: Bytes; kind: Want.Kind }> = []
  private outCancels: Bytes[] = []
  private flushing: Promise<void> | undefined
  private failure: Error | undefined
  /** bytes received in blocks */
  received = 0
  /** called once when the stream fails (not on close()) */
  onFailure: ((err: Error) => void) | undefined

  constructor(
    readonly peer: PeerId,
    private readonly stream: Stream,
    opts: { maxBufferBytes?: number; onUnwanted?: () => void } = {},
  ) {
    this.lp = new LpMessages(stream, {
      maxDataLength: MAX_MESSAGE,
      maxBufferSize: opts.maxBufferBytes ?? 64 << 20,
    })
    void this.readLoop(opts.onUnwanted)
  }

  get closed(): boolean {
    return this.failure !== undefined
  }

  get inflight(): number {
    return this.pending.size
  }

  /** The oldest unanswered want's send time, for stall detection. */
  oldestWant(): number | undefined {
    let min: number | undefined
    for (const p of this.pending.values()) if (min === undefined || p.sentAt < min) min = p.sentAt
    return min
  }

  wantBlock(cid: CID): Promise<Uint8Array[] | null> {
    return this.want(cid, Want.Kind.BLOCK) as Promise<Uint8Array[] | null>
  }

  wantHave(cid: CID): Promise<boolean> {
    return this.want(cid, Want.Kind.HAVE) as Promise<boolean>
  }

  private want(cid: CID, kind: Want.Kind): Promise<Uint8Array[] | boolean | null> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    const key = `${kind}:${cid}`
    const existing = this.pending.get(key)
    if (existing !== undefined) {
      return new Promise((resolve, reject) => {
        const prev = { resolve: existing.resolve, reject: existing.reject }
        existing.resolve = (v) => {
          prev.resolve(v)
          resolve(v)
        }
        existing.reject = (e) => {
          prev.reject(e)
          reject(e)
        }
      })
    }
    return new Promise((resolve, reject) => {
      this.pending.set(key, { kind, cid, sentAt: performance.now(), resolve, reject })
      this.outWants.push({ cid: cid.bytes as Bytes, kind })
      this.flush()
    })
  }

  /** Withdraw a want (its promise rejects with the reason given). */
  cancel(cid: CID, reason = new Error('cancelled')): void {
    for (const kind of [Want.Kind.BLOCK, Want.Kind.HAVE]) {
      const p = this.pending.get(`${kind}:${cid}`)
      if (p === undefined) continue
      this.pending.delete(`${kind}:${cid}`)
      p.reject(reason)
    }
    if (this.failure === undefined) {
      this.outCancels.push(cid.bytes as Bytes)
      this.flush()
    }
  }

  /** Wants go out together: everything asked in the same tick is one message. */
  private flush(): void {
    if (this.flushing !== undefined) return
    this.flushing = (async () => {
      await Promise.resolve()
      try {
        while (this.failure === undefined && (this.outWants.length > 0 || this.outCancels.length > 0)) {
          const wants = this.outWants.splice(0, MAX_WANTS_PER_MESSAGE)
          const cancels = this.outCancels.splice(0, MAX_WANTS_PER_MESSAGE)
          await this.lp.write(Exchange.encode({ wants, cancels, presences: [], blocks: [] }))
        }
      } catch (err) {
        this.fail(new ProviderGoneError(`sending to ${this.peer} failed: ${(err as Error).message}`))
      } finally {
        this.flushing = undefined
      }
    })()
  }

  private async readLoop(onUnwanted?: () => void): Promise<void> {
    try {
      for (;;) {
        const pieces = await this.lp.readPieces()
        // the usual answer, one block, is taken as the frames brought it (no joined copy)
        const one = blockMessage(pieces)
        if (one !== undefined) {
          this.block(one.cid, one.data, one.size, onUnwanted)
          continue
        }
        const raw = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces)
        const msg = Exchange.decode(raw, {
          limits: { wants: 0, cancels: 0, presences: MAX_WANTS_PER_MESSAGE, blocks: 16 },
        })
        for (const b of msg.blocks) this.block(b.cid, [b.data], b.data.byteLength, onUnwanted)
        for (const pr of msg.presences) {
          const cid = decodeCid(pr.cid)
          const have = this.pending.get(`${Want.Kind.HAVE}:${cid}`)
          if (have !== undefined) {
            this.pending.delete(`${Want.Kind.HAVE}:${cid}`)
            have.resolve(pr.have)
            continue
          }
          const block = this.pending.get(`${Want.Kind.BLOCK}:${cid}`)
          if (block !== undefined && !pr.have) {
            this.pending.delete(`${Want.Kind.BLOCK}:${cid}`)
            block.resolve(null)
          }
        }
      }
    } catch (err) {
      this.fail(new ProviderGoneError(`the stream to ${this.peer} failed: ${(err as Error).message}`))
    }
  }

  private block(cidBytes: Uint8Array, data: Uint8Array[], size: number, onUnwanted?: () => void): void {
    const cid = decodeCid(cidBytes)
    const key = `${Want.Kind.BLOCK}:${cid}`
    const p = this.pending.get(key)
    if (p === undefined) {
      onUnwanted?.()
      return
    }
    this.pending.delete(key)
    this.received += size
    // hashed here, before anyone can store or pass it on
    if (!matches(cid, data))
      p.reject(new CorruptBlockError(`${this.peer} sent a block that does not hash to ${cid}`))
    else p.resolve(data)
  }

  private fail(err: Error): void {
    if (this.failure !== undefined) return
    this.failure = err
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
    if (this.stream.status === 'open') this.stream.abort(err)
    this.onFailure?.(err)
  }

  /** Done with this provider: close our write end (the provider then ends too). */
  async close(): Promise<void> {
    if (this.failure !== undefined) return
    this.failure = new ProviderGoneError('session closed')
    for (const p of this.pending.values()) p.reject(this.failure)
    this.pending.clear()
    await this.stream
      .close({ signal: AbortSignal.timeout(2000) })
      .catch(() => this.stream.abort(new Error('close timed out')))
  }

  /** Abort now (a corrupt or stalled provider). */
  abort(reason: Error): void {
    this.fail(reason)
  }
}
