import type { Socket } from 'node:net'
import type { ConnectionEncrypter, MessageStream } from '@libp2p/interface'
import type { TCPOptions } from '@libp2p/tcp'
import { wrapEncrypter } from './wrap-encrypter.js'

/**
 * One socket write per message, not one per buffer.
 *
 * Noise hands the TCP connection every encrypted message as two buffers (a 2-byte length and
 * the ciphertext) and @libp2p/tcp writes each buffer on its own, with Nagle off: every message
 * becomes two write syscalls and two TCP segments, and the receiver wakes twice. In an idle pair
 * of agents those writes were the largest single cost (issue 20); in bulk they double the
 * segments (issue 14). Corking the socket around each send lets Node hand the buffers to the
 * kernel in one writev. Nothing else changes: the same bytes, in the same order, and the same
 * backpressure answer (write() still says when the socket's buffer is full).
 *
 * The sockets need a high-water mark above a bulk send (tcpBulkOptions): a corked socket answers
 * false to every write past the mark (Node's default, 16 KiB) although uncork() then hands it
 * all to the kernel at once, and @libp2p/tcp stops at the first false. With the default, a bulk
 * yamux frame went out one Noise message per writev, each after a 'drain' relayed through
 * Noise, yamux and every stream on the connection (issue 14).
 */
export function coalescedWrites<C, E>(
  factory: (components: C) => ConnectionEncrypter<E>,
): (components: C) => ConnectionEncrypter<E> {
  return wrapEncrypter(factory, { before: corked })
}

/**
 * Node's buffer per TCP connection before write() says to wait: a bulk send of up to 1 MiB
 * (16 Noise messages; the tunnel sends what one event-loop turn read, up to 2 MiB) goes to the
 * kernel in one writev. It holds no more than before: past the old mark the rest of a send
 * waited in the connection's own write buffer instead.
 */
export const TCP_WRITE_HIGH_WATER = 1 << 20

/** @libp2p/tcp's options for that mark (Node's net options; `highWaterMark` sets the inbound sockets'). */
export const tcpBulkOptions = {
  dialOpts: { writableHighWaterMark: TCP_WRITE_HIGH_WATER },
  listenOpts: { highWaterMark: TCP_WRITE_HIGH_WATER },
} as TCPOptions // @libp2p/tcp types a subset of net's options and passes them all on

interface SocketConnection {
  socket?: Socket
  sendData?: (data: unknown) => { sentBytes: number; canSendMore: boolean }
}

/** Wrap a TCP connection's sendData in cork/uncork; any other connection is left as it is. */
export function corked(connection: MessageStream): MessageStream {
  const c = connection as unknown as SocketConnection
  const socket = c.socket
  const send = c.sendData
  if (typeof socket?.cork !== 'function' || typeof send !== 'function') return connection
  c.sendData = (data) => {
    socket.cork()
    try {
      return send.call(connection, data)
    } finally {
      socket.uncork()
    }
  }
  return connection
}
