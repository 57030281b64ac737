import type { Socket } from 'node:net'
import type { ConnectionEncrypter, MessageStream } from '@libp2p/interface'
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
 */
export function coalescedWrites<C, E>(
  factory: (components: C) => ConnectionEncrypter<E>,
): (components: C) => ConnectionEncrypter<E> {
  return wrapEncrypter(factory, { before: corked })
}

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
