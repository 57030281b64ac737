import { createServer, type Server } from 'node:http'
import type { Component } from './component.js'
import type { Reporter } from './reporter.js'

/** Optional Prometheus endpoint on a loopback TCP port (`metrics.listen`): /metrics and /health. */
export class MetricsServer implements Component {
  readonly name = 'metrics'
  private server: Server | undefined

  constructor(private readonly deps: { listen: string; reporter: Reporter }) {}

  async start(): Promise<void> {
    const i = this.deps.listen.lastIndexOf(':')
    const host = this.deps.listen.slice(0, i).replace(/^\[|\]$/g, '')
    const port = Number(this.deps.listen.slice(i + 1))
    const server = createServer((req, res) => {
      void (async () => {
        if (req.url === '/metrics') {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
          res.end(await this.deps.reporter.metrics())
        } else if (req.url === '/health') {
          const h = await this.deps.reporter.health()
          res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' })
          res.end(JSON.stringify(h))
        } else {
          res.writeHead(404).end()
        }
      })().catch(() => res.writeHead(500).end())
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(new Error(`cannot serve metrics on ${this.deps.listen}: ${err.message}`)),
      )
      server.listen(port, host, () => resolve())
    })
    this.server = server
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server === undefined ? r() : this.server.close(() => r())))
  }
}
