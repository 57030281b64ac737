import { request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { destroySocket } from '../tunnel/bridge.js'
import { FrameDecoder } from '../tunnel/frames.js'
import { ApiCallError, type ApiClient } from './client.js'

export interface TunnelSocket {
  /** write the tunnel's bytes here (end() is a FIN to the member's service) */
  socket: Socket
  /** read them here: the agent's framing removed; 'error' when the tunnel was reset */
  output: FrameDecoder
  peerId: string
  name: string
  path: string
}

/** The refusal the agent sent, with its code (port-not-allowed, unknown-member, ...). */
export class TunnelCallError extends ApiCallError {
  constructor(
    status: number,
    message: string,
    readonly code: string,
  ) {
    super(status, message)
  }
}

/**
 * Ask the local agent for a tunnel to `port` on `member` (HTTP Upgrade on the control
 * socket, protocols/tunnel.md). Resolves with the socket once the target accepted; throws
 * TunnelCallError with the agent's message otherwise, AgentNotRunningError without an agent.
 */
export function openTunnel(
  api: ApiClient,
  member: string,
  port: number,
  timeoutMs = 45_000,
): Promise<TunnelSocket> {
  const socketPath = api.socketPath
  return new Promise((resolve, reject) => {
    const path = `/v1/tunnel?member=${encodeURIComponent(member)}&port=${encodeURIComponent(String(port))}`
    const req = request({
      // half-open: our end of the tunnel may finish before the remote's
      createConnection: () => connect({ path: socketPath, allowHalfOpen: true }),
      method: 'GET',
      path,
      headers: { Connection: 'Upgrade', Upgrade: 'mesh-tunnel' },
    })
    const timer = setTimeout(
      () => req.destroy(new Error(`the agent did not open the tunnel within ${timeoutMs / 1000} s`)),
      timeoutMs,
    )
    req.on('upgrade', (res, socket, head) => {
      clearTimeout(timer)
      socket.setNoDelay(true)
      const output = new FrameDecoder()
      if (head.length > 0) output.write(head)
      socket.pipe(output)
      // a reset: nothing more goes either way
      output.on('error', () => socket.destroy())
      resolve({
        socket,
        output,
        peerId: String(res.headers['x-mesh-peer'] ?? ''),
        name: String(res.headers['x-mesh-name'] ?? member),
        path: String(res.headers['x-mesh-path'] ?? ''),
      })
    })
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        clearTimeout(timer)
        const text = Buffer.concat(chunks).toString('utf8')
        let body: { error?: string; code?: string } = {}
        try {
          body = JSON.parse(text)
        } catch {
          body = { error: text }
        }
        const status = res.statusCode ?? 500
        reject(
          new TunnelCallError(status, body.error ?? `the agent answered ${status}`, body.code ?? 'error'),
        )
      })
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(api.notRunning())
      else reject(err)
    })
    req.end()
  })
}

/**
 * Pipe a local TCP connection (of `mesh forward` / `mesh socks`) and a tunnel both ways, with
 * backpressure (pipe) and half-close (end follows end). A reset of the tunnel resets the TCP
 * connection (RST), so its client never takes a cut-off transfer for a complete one. Resolves
 * when both are closed.
 */
export function splice(conn: Socket, t: TunnelSocket): Promise<void> {
  return new Promise((resolve) => {
    let closed = 0
    const onClose = () => {
      if (++closed === 2) resolve()
    }
    conn.on('close', () => {
      // gone without a clean end: the member's service must not wait for one
      if (!conn.readableEnded) t.socket.destroy()
      onClose()
    })
    t.socket.on('close', onClose)
    conn.on('error', () => t.socket.destroy())
    t.socket.on('error', () => destroySocket(conn, true))
    t.output.on('error', () => destroySocket(conn, true))
    conn.pipe(t.socket)
    t.output.pipe(conn)
  })
}
