import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import type { TunnelComponent } from '../tunnel/component.js'
import { TunnelError } from '../tunnel/protocol.js'
import type { TunnelsReply } from './contract.js'
import { ApiError } from './errors.js'

export const TUNNEL_UPGRADE = 'mesh-tunnel'
const OPEN_TIMEOUT_MS = 30_000

/**
 * GET /v1/tunnel?member=M&port=P with `Connection: Upgrade`, `Upgrade: mesh-tunnel`: the
 * agent opens a tunnel to port P on member M and, after `101`, the socket carries its bytes
 * (protocols/tunnel.md). Errors before the upgrade are HTTP errors with {error, code}.
 * GET /v1/tunnels lists open tunnels.
 */
export function tunnelRoutes(deps: { tunnel: TunnelComponent }) {
  return (app: FastifyInstance) => {
    const upgraded = new Set<Duplex>()

    app.get('/v1/tunnel', async () => {
      throw new ApiError(
        426,
        `GET /v1/tunnel needs 'Connection: Upgrade' and 'Upgrade: ${TUNNEL_UPGRADE}' (use mesh proxy)`,
      )
    })
    app.get('/v1/tunnels', async (): Promise<TunnelsReply> => ({ tunnels: deps.tunnel.list() }))

    app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? '/', 'http://mesh')
      if (url.pathname !== '/v1/tunnel' || (req.headers.upgrade ?? '').toLowerCase() !== TUNNEL_UPGRADE) {
        reply(socket, 404, {
          error: `no upgrade to '${req.headers.upgrade}' at ${url.pathname}`,
          code: 'bad-request',
        })
        return
      }
      upgraded.add(socket)
      socket.once('close', () => upgraded.delete(socket))
      void handle(socket as Socket, url, head)
    })

    // upgraded sockets are not the HTTP server's any more: close would wait for them forever
    app.addHook('preClose', (done) => {
      for (const s of upgraded) s.destroy()
      upgraded.clear()
      done()
    })

    async function handle(socket: Socket, url: URL, head: Buffer): Promise<void> {
      socket.pause()
      socket.on('error', () => {}) // the client went away; the bridge reports what matters
      const member = url.searchParams.get('member') ?? ''
      const portText = url.searchParams.get('port') ?? ''
      const port = Number(portText)
      const ac = new AbortController()
      // the client giving up while we dial must not leave a stream behind
      const onGone = () => ac.abort(new Error('the client closed the connection'))
      socket.once('close', onGone)
      const timer = setTimeout(() => ac.abort(new Error('timed out')), OPEN_TIMEOUT_MS)
      try {
        if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
          throw new TunnelError('bad-request', `invalid port '${portText}': expected 1-65535`)
        }
        const target = deps.tunnel.resolve(member)
        const opened = await deps.tunnel.open(target, port, ac.signal)
        clearTimeout(timer)
        socket.off('close', onGone)
        if (socket.destroyed) {
          opened.stream?.abort(new Error('the client closed the connection'))
          opened.socket?.destroy()
          return
        }
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\n' +
            'Connection: Upgrade\r\n' +
            `Upgrade: ${TUNNEL_UPGRADE}\r\n` +
            `X-Mesh-Peer: ${target.peerId}\r\n` +
            `X-Mesh-Name: ${target.name}\r\n` +
            `X-Mesh-Path: ${opened.path}\r\n` +
            `X-Mesh-Open-Ms: ${Math.round(opened.openMs)}\r\n\r\n`,
        )
        socket.setNoDelay?.(true)
        // raw: no frames towards the client (`mesh proxy --fdpass` hands this socket to ssh,
        // whose packets detect a cut by themselves)
        deps.tunnel
          .pipe(socket, opened, head.byteLength > 0 ? new Uint8Array(head) : undefined, {
            framed: url.searchParams.get('raw') !== '1',
          })
          .catch(() => socket.destroy())
      } catch (err) {
        clearTimeout(timer)
        socket.off('close', onGone)
        const e =
          err instanceof TunnelError
            ? err
            : new TunnelError(
                'unreachable',
                ac.signal.aborted ? String((ac.signal.reason as Error)?.message) : (err as Error).message,
              )
        reply(socket, e.status, {
          error: e.message,
          code: e.code,
          allowed: e.allowed.length > 0 ? e.allowed : undefined,
        })
      }
    }
  }
}

function reply(socket: Duplex, status: number, body: Record<string, unknown>): void {
  if (socket.destroyed) return
  const text = JSON.stringify(body)
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(text)}\r\n` +
      'Connection: close\r\n\r\n' +
      text,
  )
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}
