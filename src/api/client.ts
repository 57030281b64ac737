import { request } from 'node:http'

export class AgentNotRunningError extends Error {
  override name = 'AgentNotRunningError'
}

export class ApiCallError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/** An error body's message: `{error}` when it is JSON, else the text. */
function errorText(text: string): string {
  try {
    return JSON.parse(text).error ?? text
  } catch {
    return text
  }
}

/**
 * The one client of the local agent's control API, over its unix socket: JSON calls, NDJSON
 * streams (long operations with progress), downloads (raw bytes), server-sent events and the
 * tunnel upgrade. The request and response shapes are in api/contract.ts.
 */
export class ApiClient {
  constructor(
    readonly socketPath: string,
    readonly dataDir: string,
  ) {}

  /** What a caller sees when no agent listens on the socket. */
  notRunning(): AgentNotRunningError {
    return new AgentNotRunningError(
      `no mesh agent is running on data dir ${this.dataDir}. Start one with 'mesh agent' ` +
        `(or point --data-dir / MESH_DATA_DIR at the agent's data dir).`,
    )
  }

  /** The socket is missing or nobody listens: the agent is not running. */
  private connectError(err: NodeJS.ErrnoException): Error {
    return err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? this.notRunning() : err
  }

  async call<T = unknown>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    timeoutMs = 30_000,
  ): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    return new Promise<T>((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers: payload === undefined ? {} : { 'content-type': 'application/json' },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            let json: { error?: string }
            try {
              json = text.length > 0 ? JSON.parse(text) : {}
            } catch {
              json = { error: text }
            }
            if ((res.statusCode ?? 500) >= 400)
              reject(new ApiCallError(res.statusCode ?? 500, json.error ?? text))
            else resolve(json as T)
          })
        },
      )
      req.on('timeout', () => req.destroy(new Error(`the agent did not answer within ${timeoutMs / 1000} s`)))
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectError(err)))
      if (payload !== undefined) req.write(payload)
      req.end()
    })
  }

  /**
   * POST a body and read NDJSON lines: each `progress` line goes to onProgress; `done` resolves
   * with its result, `error` throws an ApiCallError. Aborting closes the connection, and the
   * agent stops the operation when its client goes.
   */
  stream<T, P = unknown>(
    path: string,
    body: unknown,
    onProgress: (p: P) => void,
    signal?: AbortSignal,
  ): Promise<T> {
    const payload = JSON.stringify(body)
    return new Promise<T>((resolvePromise, rejectPromise) => {
      // once aborted, whatever the connection says next, the reason is the abort's
      const reject = (err: unknown) => rejectPromise(signal?.aborted ? signal.reason : err)
      const req = request(
        {
          socketPath: this.socketPath,
          method: 'POST',
          path,
          headers: { 'content-type': 'application/json' },
          signal,
        },
        (res) => {
          let buf = ''
          let settled = false
          res.setEncoding('utf8')
          if ((res.statusCode ?? 500) >= 400) {
            res.on('data', (d: string) => (buf += d))
            res.on('end', () => reject(new ApiCallError(res.statusCode ?? 500, errorText(buf))))
            return
          }
          res.on('data', (d: string) => {
            buf += d
            let i = buf.indexOf('\n')
            while (i >= 0) {
              const line = buf.slice(0, i)
              buf = buf.slice(i + 1)
              i = buf.indexOf('\n')
              if (line.trim() === '') continue
              const m = JSON.parse(line) as { type: string; result?: T; status?: number; error?: string }
              if (m.type === 'progress') onProgress(m as P)
              else if (m.type === 'done') {
                settled = true
                resolvePromise(m.result as T)
              } else if (m.type === 'error') {
                settled = true
                reject(new ApiCallError(m.status ?? 500, m.error ?? 'the agent reported an error'))
              }
            }
          })
          res.on('end', () => {
            if (!settled) reject(new Error('the agent closed the connection before finishing (did it stop?)'))
          })
          res.on('error', (err) => {
            if (!settled) reject(err)
          })
        },
      )
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectError(err)))
      req.end(payload)
    })
  }

  /** GET a binary body into `sink` (a file or stdout); resolves with the byte count. */
  download(path: string, sink: NodeJS.WritableStream): Promise<number> {
    return new Promise<number>((resolvePromise, reject) => {
      const req = request({ socketPath: this.socketPath, method: 'GET', path }, (res) => {
        if ((res.statusCode ?? 500) >= 400) {
          let buf = ''
          res.setEncoding('utf8')
          res.on('data', (d: string) => (buf += d))
          res.on('end', () => reject(new ApiCallError(res.statusCode ?? 500, errorText(buf))))
          return
        }
        let n = 0
        res.on('data', (d: Buffer) => {
          n += d.length
          if (!sink.write(d)) {
            res.pause()
            sink.once('drain', () => res.resume())
          }
        })
        res.on('end', () => {
          if (!res.complete)
            reject(new Error('the transfer was cut short (the agent reported an error or stopped)'))
          else resolvePromise(n)
        })
        res.on('error', reject)
        res.on('aborted', () =>
          reject(new Error('the transfer was cut short (the agent reported an error or stopped)')),
        )
      })
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectError(err)))
      req.end()
    })
  }

  /** A tunnel to `port` on `member` (HTTP Upgrade on the socket, api/tunnel-client.ts). */
  async tunnel(member: string, port: number, timeoutMs?: number) {
    const { openTunnel } = await import('./tunnel-client.js')
    return openTunnel(this, member, port, timeoutMs)
  }

  /** Server-sent events from /v1/events, until the signal aborts. */
  async events(onEvent: (e: { type: string; data: unknown }) => void, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request(
        { socketPath: this.socketPath, path: '/v1/events', method: 'GET', signal },
        (res) => {
          let buf = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => {
            buf += chunk
            let i = buf.indexOf('\n\n')
            while (i >= 0) {
              const block = buf.slice(0, i)
              buf = buf.slice(i + 2)
              const data = block
                .split('\n')
                .filter((l) => l.startsWith('data: '))
                .map((l) => l.slice(6))
                .join('\n')
              if (data.length > 0) onEvent(JSON.parse(data))
              i = buf.indexOf('\n\n')
            }
          })
          res.on('end', () => resolve())
        },
      )
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError') resolve()
        else if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
          reject(new AgentNotRunningError(`no mesh agent is running on data dir ${this.dataDir}`))
        else reject(err)
      })
      req.end()
    })
  }
}
