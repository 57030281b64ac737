import { chmodSync, unlinkSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Component } from '../kernel/component.js'
import type { EventBus } from '../kernel/events.js'
import type { ComponentReporter, Reporter } from '../kernel/reporter.js'

import type { MetricsView } from './contract.js'
import { httpStatus } from './errors.js'

export { ApiError } from './errors.js'

export type RouteRegistrar = (app: FastifyInstance) => void

/**
 * The control API: HTTP+JSON on a unix socket (mode 0600, in the 0700 data dir), so
 * only the local admin can reach it and nothing on the overlay can. Also serves
 * /metrics, /health and the SSE event stream.
 */
export class ApiComponent implements Component {
  readonly name = 'api'
  private app: FastifyInstance | undefined
  private readonly streams = new Set<ServerResponse>()

  constructor(
    private readonly deps: {
      socketPath: string
      reporter: ComponentReporter
      root: Reporter
      events: EventBus
      routes: RouteRegistrar[]
    },
  ) {}

  async start(): Promise<void> {
    // forceCloseConnections: a stop does not wait for idle keep-alive clients
    const app = Fastify({ logger: false, bodyLimit: 1 << 20, forceCloseConnections: true })
    const requests = this.deps.reporter.counter('requests_total', 'control API requests', ['route', 'status'])
    app.addHook('onResponse', async (req, reply) => {
      requests.inc({ route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) })
    })
    app.setErrorHandler((err, _req, reply) => {
      const status = httpStatus(err)
      const message = (err as Error).message
      if (status >= 500) this.deps.reporter.log.error({ err: message }, 'control API error')
      void reply.status(status).send({ error: message })
    })
    app.get('/health', async (_req, reply) => {
      const h = await this.deps.root.health()
      return reply.status(h.ok ? 200 : 503).send(h)
    })
    app.get('/metrics', async (_req, reply) =>
      reply.type('text/plain; version=0.0.4').send(await this.deps.root.metrics()),
    )
    app.get(
      '/v1/metrics',
      async (): Promise<MetricsView> => ({
        samples: [...(await this.deps.root.snapshot()).samples],
      }),
    )
    app.get('/v1/events', (req, reply) => {
      reply.hijack()
      const res = reply.raw
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      })
      res.write(': connected\n\n')
      const off = this.deps.events.subscribe((e) =>
        res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`),
      )
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), 15_000)
      this.streams.add(res)
      req.raw.on('close', () => {
        off()
        clearInterval(keepalive)
        this.streams.delete(res)
      })
    })
    for (const r of this.deps.routes) r(app)
    try {
      unlinkSync(this.deps.socketPath) // left by a killed agent; the data dir lock says it is ours
    } catch {}
    await app.listen({ path: this.deps.socketPath })
    chmodSync(this.deps.socketPath, 0o600)
    this.app = app
  }

  async stop(): Promise<void> {
    // event streams never end by themselves: end them, or close() would wait for the watchers
    for (const res of this.streams) res.end()
    this.streams.clear()
    await this.app?.close()
    try {
      unlinkSync(this.deps.socketPath)
    } catch {}
  }
}
