import type { AbortOptions, Connection, Stream, StreamMuxer } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'
import * as mss from '@libp2p/multistream-select'
import type { Standing } from './trust.js'

/**
 * Keeps a connection silent until admission has spoken: nothing but the auth protocol is
 * negotiated (multistream-select) on a connection whose peer has not been admitted, in either
 * direction, and no stream of an unadmitted peer reaches libp2p's own stream handling (which
 * records every negotiated protocol in the peer store).
 *
 * libp2p has no public hook before protocol negotiation: stream middleware runs after it, and
 * the connection gater only sees whole connections. So this reaches two internals of libp2p
 * 3.3's Connection class: `muxer` (whose 'stream' events carry inbound streams) and
 * `onIncomingStream` (libp2p's listener for them, which negotiates against every registered
 * protocol). It replaces that listener with one that waits for the verdict, and wraps the
 * connection's `newStream` the same way. If a libp2p upgrade renames these fields, guard()
 * returns false and the caller closes the connection: the node then fails closed (it admits
 * nobody, loudly) rather than open.
 */

/** The libp2p 3.3 Connection fields the guard relies on (not part of @libp2p/interface). */
interface ConnectionInternals {
  muxer?: StreamMuxer
  onIncomingStream?: (evt: CustomEvent<Stream>) => Promise<void>
}

export interface GuardHooks {
  /** the auth protocol: the only one an unadmitted peer may negotiate */
  authProtocol: string
  /** protocols a joiner (proved the key, holds no certificate) may use */
  joinProtocols: ReadonlySet<string>
  /** the verdict once known (undefined while the handshake runs) */
  settled(connection: Connection): Standing | undefined
  /** resolves with the verdict (bounded by the auth timeout) */
  standing(connection: Connection): Promise<Standing>
  /** listener side: an inbound auth stream was negotiated; run the handshake on it */
  onAuthStream(stream: Stream, connection: Connection): void
  /** a stream was refused to an unadmitted peer */
  refused(connection: Connection, protocol: string): void
  registrar: Registrar
  negotiationTimeoutMs: number
}

export class AdmissionRefusedError extends Error {
  override name = 'AdmissionRefusedError'
}

/**
 * A protocol a joiner may not use. Named like multistream-select's own error on purpose: libp2p's
 * connection monitor aborts a connection whose heartbeat ping fails with any other error, which
 * would cut a joiner off in the middle of redeeming its invite.
 */
export class NotForJoinersError extends Error {
  override name = 'UnsupportedProtocolError'
}

/** Install the guard on a new connection; false when libp2p's internals are not as expected. */
export function guard(connection: Connection, hooks: GuardHooks): boolean {
  const internals = connection as unknown as ConnectionInternals
  const muxer = internals.muxer
  const libp2pHandler = internals.onIncomingStream
  if (
    typeof muxer?.addEventListener !== 'function' ||
    typeof muxer.createStream !== 'function' ||
    typeof libp2pHandler !== 'function'
  ) {
    return false
  }
  muxer.removeEventListener('stream', libp2pHandler)
  let authStreamSeen = false
  muxer.addEventListener('stream', (evt) => {
    const stream = evt.detail
    void inbound(stream, evt).catch((err: Error) => stream.abort(err))
  })

  async function inbound(stream: Stream, evt: CustomEvent<Stream>): Promise<void> {
    // until an auth stream has been negotiated on an inbound connection, a stream may negotiate
    // the auth protocol and nothing else (the dialer opens nothing else before its verdict)
    if (hooks.settled(connection) === undefined && connection.direction === 'inbound' && !authStreamSeen) {
      const signal = AbortSignal.timeout(hooks.negotiationTimeoutMs)
      stream.protocol = await mss.handle(stream, [hooks.authProtocol], { signal })
      if (authStreamSeen) throw new AdmissionRefusedError('one auth handshake per connection')
      authStreamSeen = true
      hooks.onAuthStream(stream, connection)
      return
    }
    // anything else waits, unread, for the verdict (the auth timeout bounds the wait)
    const standing = await hooks.standing(connection)
    if (standing.kind === 'member') {
      await libp2pHandler?.(evt)
      return
    }
    if (standing.kind === 'joiner' && hooks.joinProtocols.size > 0) {
      await joinStream(stream)
      return
    }
    hooks.refused(connection, 'unnegotiated')
    throw new AdmissionRefusedError(`peer ${connection.remotePeer} is not an admitted cluster member`)
  }

  /** A joiner's stream: only the join protocols, straight to their handler (no peer store). */
  async function joinStream(stream: Stream): Promise<void> {
    const signal = AbortSignal.timeout(hooks.negotiationTimeoutMs)
    const protocol = await mss.handle(stream, [...hooks.joinProtocols], { signal })
    stream.protocol = protocol
    const { handler, options } = hooks.registrar.getHandler(protocol)
    const open = connection.streams.filter((s) => s.direction === 'inbound' && s.protocol === protocol)
    if (open.length > (options.maxInboundStreams ?? 1)) {
      throw new AdmissionRefusedError(`too many ${protocol} streams`)
    }
    await handler(stream, connection)
  }

  // outbound: our own protocols wait for the verdict too, so that we never ask an unadmitted
  // peer for anything (and our other streams never race ahead of the handshake)
  const newStream = connection.newStream.bind(connection)
  connection.newStream = async (protocols: string | string[], options: AbortOptions & object = {}) => {
    const list = Array.isArray(protocols) ? protocols : [protocols]
    const standing =
      hooks.settled(connection) ?? (await raceAbort(hooks.standing(connection), options.signal))
    const allowed =
      standing.kind === 'member' ||
      (standing.kind === 'joiner' && list.every((p) => hooks.joinProtocols.has(p)))
    if (!allowed) {
      hooks.refused(connection, list[0] ?? 'unknown')
      if (standing.kind === 'joiner') throw new NotForJoinersError(`a joiner may not use ${list.join(', ')}`)
      throw new AdmissionRefusedError(
        `peer ${connection.remotePeer} is not an admitted cluster member (${standing.kind === 'refused' ? standing.why : 'joining'})`,
      )
    }
    return newStream(protocols, options)
  }
  return true
}

/**
 * Dialer side: open the auth stream straight on the muxer (libp2p's newStream would record
 * the protocol in the peer store of a peer not yet admitted).
 */
export async function openAuthStream(
  connection: Connection,
  protocol: string,
  signal: AbortSignal,
): Promise<Stream> {
  const muxer = (connection as unknown as ConnectionInternals).muxer
  if (muxer === undefined) throw new AdmissionRefusedError('connection has no stream muxer')
  const stream = await muxer.createStream({ signal })
  try {
    stream.protocol = await mss.select(stream, [protocol], { signal })
    return stream
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p
  signal.throwIfAborted()
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
