import { connect, type Socket } from 'node:net'
import type { Stream } from '@libp2p/interface'
import { pbStream } from '@libp2p/utils'
import { TunnelOpen, TunnelReply } from '../../protocols/tunnel.js'
import { closeOrAbort } from '../kernel/streams.js'
import { type Cluster, protocolPrefix } from '../node/cluster.js'

const MAX_MESSAGE = 1024
const OPEN_TIMEOUT_MS = 10_000

export const tunnelProtocol = (c: Cluster) => `${protocolPrefix(c)}/tunnel/1.0.0`

export type TunnelErrorCode =
  | 'bad-request'
  | 'unknown-member'
  | 'port-not-allowed'
  | 'connect-failed'
  | 'refused'
  | 'unreachable'
  | 'busy'

const STATUS: Record<TunnelErrorCode, number> = {
  'bad-request': 400,
  'unknown-member': 404,
  'port-not-allowed': 403,
  refused: 403,
  'connect-failed': 502,
  unreachable: 504,
  busy: 503,
}

/** Why a tunnel could not be opened; `status` is what the control API answers. */
export class TunnelError extends Error {
  override name = 'TunnelError'
  readonly status: number
  constructor(
    readonly code: TunnelErrorCode,
    message: string,
    readonly allowed: number[] = [],
  ) {
    super(message)
    this.status = STATUS[code]
  }
}

/** Connect to 127.0.0.1:port, bounded by timeoutMs. Half-open, so a FIN from the client does not end our side. */
export function connectLocal(port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`timed out after ${timeoutMs} ms`))
    }, timeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.off('error', reject)
      socket.setNoDelay(true)
      socket.pause() // the bridge resumes it
      resolve(socket)
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

export interface ServeOptions {
  allowPorts: readonly number[]
  connectTimeoutMs: number
}

/**
 * The target's side of the handshake: read TunnelOpen, check the allow-list, connect to
 * 127.0.0.1:port, answer. Resolves with the raw stream and the socket, or with the refusal
 * code after a refusal (the stream is then closed).
 */
export async function acceptTunnel(
  stream: Stream,
  opts: ServeOptions,
): Promise<{ stream: Stream; socket: Socket; port: number } | { refused: TunnelErrorCode; port: number }> {
  const pb = pbStream(stream, { maxDataLength: MAX_MESSAGE })
  const signal = AbortSignal.timeout(OPEN_TIMEOUT_MS)
  const req = await pb.read(TunnelOpen, { signal })
  const port = req.port
  const refuse = async (code: TunnelErrorCode, error: string, allowed: number[] = []) => {
    await pb.write({ ok: false, code, error, allowed }, TunnelReply, { signal })
    await closeOrAbort(stream, signal)
    return { refused: code, port }
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    return refuse('bad-request', `invalid port ${port}`)
  if (!opts.allowPorts.includes(port)) {
    return refuse('port-not-allowed', `port ${port} is not in tunnel.allowPorts`, [...opts.allowPorts])
  }
  let socket: Socket
  try {
    socket = await connectLocal(port, opts.connectTimeoutMs)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    return refuse(
      'connect-failed',
      `nothing accepted a connection on 127.0.0.1:${port} (${e.code ?? e.message})`,
    )
  }
  try {
    await pb.write({ ok: true, code: '', error: '', allowed: [] }, TunnelReply, { signal })
  } catch (err) {
    socket.destroy()
    throw err
  }
  return { stream: pb.unwrap(), socket, port }
}

/** The client's side: send TunnelOpen, wait for the reply; throws TunnelError on a refusal. */
export async function requestTunnel(stream: Stream, port: number, signal: AbortSignal): Promise<Stream> {
  const pb = pbStream(stream, { maxDataLength: MAX_MESSAGE })
  await pb.write({ port }, TunnelOpen, { signal })
  const reply = await pb.read(TunnelReply, { signal })
  if (!reply.ok) {
    stream.abort(new Error('tunnel refused'))
    const code = (Object.hasOwn(STATUS, reply.code) ? reply.code : 'refused') as TunnelErrorCode
    throw new TunnelError(code, reply.error || `refused (${reply.code})`, reply.allowed)
  }
  return pb.unwrap()
}
