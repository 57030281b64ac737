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

/** Talks to the local agent's control API over its unix socket. */
export class ApiClient {
  constructor(
    readonly socketPath: string,
    private readonly dataDir: string,
  ) {}

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
            let json: any
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
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
          reject(
            new AgentNotRunningError(
              `no mesh agent is running on data dir ${this.dataDir}. Start one with 'mesh agent' ` +
                `(or point --data-dir / MESH_DATA_DIR at the agent's data dir).`,
            ),
          )
        } else reject(err)
      })
      if (payload !== undefined) req.write(payload)
      req.end()
    })
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
