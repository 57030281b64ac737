import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'

/**
 * Varint length-prefixed messages on a libp2p stream, read straight from its 'message' events.
 * A message that arrived in one piece is returned as a view of that piece (no copy); one split
 * over several pieces is copied once by read(), and not at all by readPieces(). @libp2p/utils'
 * lpStream reads the length a byte at a time through a Uint8ArrayList and joins the message
 * with a further copy: on the fetcher that was a copy and a garbage collection per block.
 * Writes wait for the stream's 'drain', as lpStream's do.
 */
export class LpMessages {
  private chunks: Uint8Array[] = []
  private buffered = 0
  private failure: Error | undefined
  private eof = false
  private wake: (() => void) | undefined

  constructor(
    private readonly stream: Stream,
    private readonly opts: { maxDataLength: number; maxBufferSize: number },
  ) {
    stream.addEventListener('message', (evt) => {
      if (this.failure !== undefined) return
      const data = (evt as Event & { data: Uint8Array | Uint8ArrayList }).data
      if (data instanceof Uint8Array) this.chunks.push(data)
      else for (const c of data) this.chunks.push(c)
      this.buffered += data.byteLength
      if (this.buffered > opts.maxBufferSize) {
        // the peer sent more than it was asked for: the same limit lpStream enforced
        const err = new Error(`read buffer overflow: ${this.buffered} > ${opts.maxBufferSize} bytes`)
        this.failure = err
        this.chunks = []
        this.buffered = 0
        queueMicrotask(() => stream.abort(err))
      }
      this.notify()
    })
    stream.addEventListener('close', (evt) => {
      const error = (evt as Event & { error?: Error }).error
      if (error !== undefined && this.failure === undefined) this.failure = error
      this.eof = true
      this.notify()
    })
    stream.addEventListener('remoteCloseWrite', () => {
      this.eof = true
      this.notify()
    })
  }

  private notify(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  /** The next message; rejects when the stream fails or ends (mid-message or between messages). */
  async read(): Promise<Uint8Array> {
    const pieces = await this.readPieces()
    if (pieces.length === 1) return pieces[0]
    return pieces.length === 0 ? new Uint8Array(0) : Buffer.concat(pieces)
  }

  /**
   * The next message as views of the pieces it arrived in, not joined: a reader that can take
   * it piece by piece (a block: hashed and written as it came) saves a copy per message.
   */
  async readPieces(): Promise<Uint8Array[]> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      const msg = this.take()
      if (msg !== undefined) return msg
      if (this.eof || this.stream.remoteWriteStatus !== 'writable')
        throw new Error(`the stream ended${this.buffered > 0 ? ' in the middle of a message' : ''}`)
      await new Promise<void>((resolve) => {
        this.wake = resolve
      })
    }
  }

  /** A whole message from the buffered pieces (views of them), or undefined while it is incomplete. */
  private take(): Uint8Array[] | undefined {
    // the varint length, possibly spread over pieces
    let length = 0
    let lengthBytes = 0
    let complete = false
    outer: for (const c of this.chunks) {
      for (let i = 0; i < c.byteLength; i++) {
        const b = c[i]
        length += (b & 0x7f) * 2 ** (7 * lengthBytes)
        lengthBytes++
        if ((b & 0x80) === 0) {
          complete = true
          break outer
        }
        if (lengthBytes >= 8) throw this.fail(new Error('message length prefix too long'))
      }
    }
    if (!complete) return undefined
    if (length > this.opts.maxDataLength)
      throw this.fail(new Error(`message of ${length} bytes; the limit is ${this.opts.maxDataLength}`))
    if (this.buffered < lengthBytes + length) return undefined
    this.consume(lengthBytes)
    const out: Uint8Array[] = []
    let taken = 0
    while (taken < length) {
      const c = this.chunks[0]
      const n = Math.min(c.byteLength, length - taken)
      out.push(n === c.byteLength ? c : c.subarray(0, n))
      taken += n
      this.consume(n)
    }
    return out
  }

  /** Drop n bytes from the front. */
  private consume(n: number): void {
    this.buffered -= n
    while (n > 0) {
      const c = this.chunks[0]
      if (c.byteLength <= n) {
        n -= c.byteLength
        this.chunks.shift()
      } else {
        this.chunks[0] = c.subarray(n)
        n = 0
      }
    }
  }

  private fail(err: Error): Error {
    this.failure = err
    this.stream.abort(err)
    return err
  }

  /**
   * Send one message, given whole or as pieces sent as they are (not joined); resolves when the
   * stream can take more.
   */
  async write(...pieces: Uint8Array[]): Promise<void> {
    if (this.failure !== undefined) throw this.failure
    let length = 0
    for (const p of pieces) length += p.byteLength
    // one send: the length on its own would be a yamux frame (and a Noise message) of its own
    if (!this.stream.send(new Uint8ArrayList(varint(length), ...pieces))) await drained(this.stream)
  }
}

function varint(n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Uint8Array.from(out)
}

function drained(stream: Stream): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      stream.removeEventListener('close', onClose)
      resolve()
    }
    const onClose = (evt: Event) => {
      stream.removeEventListener('drain', onDrain)
      reject(
        (evt as Event & { error?: Error }).error ?? new Error('the stream closed while waiting for drain'),
      )
    }
    stream.addEventListener('drain', onDrain, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}
