import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

/**
 * Window updates when half the receive window is used, as Go's and Rust's yamux send them.
 *
 * @chainsafe/libp2p-yamux 8 answers every data frame it receives with a 12-byte window update,
 * so each small message (a probe, a gossip record) costs both agents a second encrypted frame,
 * socket write and wakeup; in an idle pair that was half of all traffic (issue 20). Deferring
 * the update until half the window is consumed keeps the sender at least half a window of
 * credit, so nothing stalls, and the window auto-tuning still sees one update per half window.
 * Streams that are opening (the update carries SYN/ACK flags), paused or finished keep the
 * library's behaviour. If the library's internals change shape, nothing is patched.
 *
 * The library opens an outbound stream by sending its SYN from a queued microtask; when the
 * connection starts closing in between, that send throws where nobody can catch it and the
 * process dies. A window update that cannot be written any more is dropped instead: the
 * closing connection ends the stream anyway.
 */
interface WindowFields {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
  sendWindowUpdate(): void
}

let patched = false

export function deferYamuxWindowUpdates(): boolean {
  if (patched) return true
  const proto = YamuxStream.prototype as unknown as WindowFields
  const original = proto.sendWindowUpdate
  if (typeof original !== 'function' || StreamState?.Established === undefined) return false
  proto.sendWindowUpdate = function (this: WindowFields) {
    if (
      this.state === StreamState.Established &&
      typeof this.recvWindow === 'number' &&
      typeof this.recvWindowCapacity === 'number' &&
      this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2
    )
      return
    try {
      original.call(this)
    } catch (err) {
      if ((err as Error)?.name !== 'StreamStateError') throw err
    }
  }
  patched = true
  return true
}
