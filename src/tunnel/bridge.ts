import type { Socket } from 'node:net'
import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { writeData, writeEnd, writeError } from './frames.js'

// yamux may have granted up to 16 MiB of window when we pause the stream; what is in
// flight must fit in the read buffer or the stream is reset
const READ_BUFFER_WHILE_PAUSED = 24 << 20

export interface BridgeResult {
  /** bytes from the socket into the stream */
  sent: number
  /** bytes from the stream into the socket */
  received: number
  /** set when either side failed instead of ending */
  error?: Error
}

/**
 * Waits for the stream's 'drain' event, rejecting on 'close'. Not stream.onDrain(): in
 * @libp2p/utils 7.4.1 it keeps its first resolved promise, so after the first drain it never
 * waits again (see sim/bench/stream-peer.ts).
 */
export function drained(stream: Stream): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      stream.removeEventListener('close', onClose)
      resolve()
    }
    const onClose = (evt: Event) => {
      stream.removeEventListener('drain', onDrain)
      reject((evt as Event & { error?: Error }).error ?? new Error('stream closed while waiting for drain'))
    }
    stream.addEventListener('drain', onDrain, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}

/**
 * Pipes a TCP (or unix) socket and a libp2p stream into each other until both directions
 * have ended, with backpressure both ways and half-close: a FIN on either side becomes a
 * close of the other side's write end, and the other direction keeps flowing. An error or
 * reset on either side aborts the other. `head` is sent before anything read from the socket.
 * The socket must allow half-open connections (allowHalfOpen: true). `framed`: what goes to
 * the socket is framed (frames.ts), for the control socket, where a reset cannot be signalled.
 */
export function bridge(
  stream: Stream,
  socket: Socket,
  head?: Uint8Array,
  counters: { sent: number; received: number } = { sent: 0, received: 0 },
  opts: { framed?: boolean } = {},
): Promise<BridgeResult> {
  const framed = opts.framed === true
  const result = counters
  const done = (error?: Error): BridgeResult => ({ sent: result.sent, received: result.received, error })
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, READ_BUFFER_WHILE_PAUSED)
  // a tunnel may sit idle for hours (an ssh session); keepalives are the muxer's business
  stream.inactivityTimeout = 0

  return new Promise<BridgeResult>((resolve) => {
    let socketDone = false // socket -> stream finished (FIN sent on the stream)
    let streamDone = false // stream -> socket finished (socket ended)
    let settled = false

    const finish = (err?: Error) => {
      if (settled) return
      if (err !== undefined) {
        settled = true
        cleanup()
        if (stream.status === 'open') stream.abort(err)
        if (framed && !socket.destroyed) {
          // the CLI's end of a unix socket: say why, then close (there is no RST to send)
          writeError(socket, err.message)
          socket.end()
          setTimeout(() => socket.destroy(), 5_000).unref()
        } else destroySocket(socket, true)
        resolve(done(err))
        return
      }
      if (socketDone && streamDone) {
        settled = true
        cleanup()
        // both ends are closed for writing; the socket may still hold unsent bytes: end() keeps them
        if (!socket.destroyed) socket.destroySoon()
        resolve(done())
      }
    }

    // ---- stream -> socket ----------------------------------------------------------------
    // What arrives in one event-loop turn (often many yamux messages from one TCP read) goes to
    // the socket in one writev: the chunks are collected and written on setImmediate, corked and
    // uncorked in the same synchronous call, so no cork outlives the flush (a cork left for a
    // later tick can be stranded by an end or a close). 'end' flushes first; an error drops them.
    let socketWaiting = false
    let pending: Uint8Array[] = []
    let flushScheduled = false
    const flush = () => {
      flushScheduled = false
      if (pending.length === 0 || settled || socket.destroyed || socket.writableEnded) {
        pending = []
        return
      }
      const chunks = pending
      pending = []
      let ok = true
      socket.cork()
      for (const c of chunks) ok = (framed ? writeData(socket, c) : socket.write(c)) && ok
      socket.uncork()
      // corked, every write past 16 KiB answers false, though uncork() may then have handed
      // all of it to the kernel: only bytes still waiting in Node mean the reader is slow
      if (!ok && socket.writableLength > 0 && !socketWaiting && stream.readStatus === 'readable') {
        // the TCP side is slow: stop granting yamux window until it drains. Outside any
        // dispatch (setImmediate): resume() dispatches buffered data and then re-opens the
        // yamux window, which would undo a pause made inside a dispatch (@libp2p/utils 7.4.1)
        socketWaiting = true
        stream.pause()
        socket.once('drain', () => {
          socketWaiting = false
          if (stream.readStatus === 'paused') stream.resume()
        })
      }
    }
    const onMessage = (evt: Event) => {
      const data = (evt as Event & { data: Uint8Array | Uint8ArrayList }).data
      result.received += data.byteLength
      if (data instanceof Uint8Array) pending.push(data)
      else for (const chunk of data) pending.push(chunk)
      if (!flushScheduled) {
        flushScheduled = true
        setImmediate(flush)
      }
    }
    const onEnd = () => {
      if (stream.status === 'aborted' || stream.status === 'reset') return // 'close' with an error follows
      flush()
      if (!socket.destroyed && !socket.writableEnded) {
        if (framed) writeEnd(socket)
        socket.end()
      }
      streamDone = true
      finish()
    }
    const onClose = (evt: Event) => {
      const error = (evt as Event & { error?: Error }).error
      if (error !== undefined) return finish(error)
      // closed both ways without an error; 'end' may be deferred by unread (paused) data
      if (stream.readableEnded) onEnd()
      if (!socketDone) {
        // the stream can take no more data: whatever the socket still sends is lost
        socketDone = true
        socket.pause()
        finish()
      }
    }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('end', onEnd)
    stream.addEventListener('close', onClose)

    // ---- socket -> stream ----------------------------------------------------------------
    const send = (buf: Uint8Array | Uint8ArrayList): void => {
      if (stream.writeStatus !== 'writable') return
      result.sent += buf.byteLength
      try {
        if (!stream.send(buf)) {
          socket.pause()
          drained(stream).then(
            () => socket.resume(),
            (err: Error) => finish(err),
          )
        }
      } catch (err) {
        finish(err as Error)
      }
    }
    // What the socket delivers in one event-loop turn (libuv reads a busy socket up to 32 times
    // per poll) goes to the stream as one message: one yamux frame, Noise messages filled to
    // their 65,519-byte maximum and one writev, where a send per 64 KiB read made a frame of
    // 65,548 bytes, so two Noise messages (one of 29 bytes) and a syscall for every read.
    let outgoing: Uint8Array[] = []
    let sendScheduled = false
    const flushOut = () => {
      sendScheduled = false
      const chunks = outgoing
      outgoing = []
      if (chunks.length === 0 || settled) return
      send(chunks.length === 1 ? chunks[0] : new Uint8ArrayList(...chunks))
    }
    const onData = (buf: Buffer) => {
      outgoing.push(buf)
      if (!sendScheduled) {
        sendScheduled = true
        setImmediate(flushOut)
      }
    }
    const onSocketEnd = () => {
      flushOut()
      socketDone = true
      // half-close: the stream keeps delivering the other direction
      stream.close().then(
        () => finish(),
        (err: Error) => finish(err),
      )
    }
    const onSocketError = (err: Error) => finish(err)
    const onSocketClose = (hadError: boolean) => {
      if (hadError) return // 'error' came first
      // closed without an error: if it did not end cleanly both ways, the other side must know
      if (!socketDone || !streamDone) finish(new Error('the local connection closed'))
    }
    if (head !== undefined && head.byteLength > 0) send(head)
    socket.on('data', onData)
    socket.on('end', onSocketEnd)
    socket.on('error', onSocketError)
    socket.on('close', onSocketClose)
    socket.resume()

    function cleanup(): void {
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('end', onEnd)
      stream.removeEventListener('close', onClose)
      socket.off('data', onData)
      socket.off('end', onSocketEnd)
      socket.off('close', onSocketClose)
      // keep an error listener: a late EPIPE must not crash the process
      socket.off('error', onSocketError)
      socket.on('error', () => {})
    }
  })
}

/** Reset a TCP socket (RST, so the peer sees an error, not a clean end); destroy anything else. */
export function destroySocket(socket: Socket, reset: boolean): void {
  if (socket.destroyed) return
  if (reset && typeof socket.resetAndDestroy === 'function' && socket.remoteAddress !== undefined) {
    try {
      socket.resetAndDestroy()
      return
    } catch {}
  }
  socket.destroy()
}
