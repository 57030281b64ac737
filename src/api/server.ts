import { chmodSync, unlinkSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import type { Component } from '../kernel/component.js'
import type { EventBus } from '../kernel/events.js'
import type { ComponentReporter, Reporter } from '../kernel/reporter.js'

import type { MetricsView } from './contract.js'
import { httpStatus } from './errors.js'

export { ApiError } from './errors.js'

export type RouteRegistrar = (app: FastifyInstance) => void | Promise<void>

/**
 * A registrar whose module is imported only when the API loads (its first request), not at the
 * agent's start: what a route module imports (zod for request bodies) stays out of the heap of an
 * agent nobody asks anything.
 */
export function lazyRoutes<M>(load: () => Promise<M>, make: (m: M) => RouteRegistrar): RouteRegistrar {
  return async (app) => make(await load())(app)
}

/**
 * The control API: HTTP+JSON on a unix socket (mode 0600, in the 0700 data dir), so
 * only the local admin can reach it and nothing on the overlay can. Also serves
 * /metrics, /health and the SSE event stream.
 */
export class ApiComponent implements Component {
  readonly name = 'api'
  private server: Server | undefined
  /** fastify, loaded and built on the first request (dispatch) */
  private app: Promise<FastifyInstance> | undefined
  /** fastify's request handler once it is ready */
  private handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined
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
    const server = createServer((req, res) => this.dispatch(req, res))
    server.on('upgrade', this.onUpgrade)
    this.server = server
    try {
      unlinkSync(this.deps.socketPath) // left by a killed agent; the data dir lock says it is ours
    } catch {}
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.deps.socketPath, () => {
        server.off('error', reject)
        resolve()
      })
    })
    chmodSync(this.deps.socketPath, 0o600)
  }

  /**
   * Fastify and its routes are loaded on the first request, not at start: an agent nobody asks
   * anything never needs them, and what is loaded stays in the heap for good (fastify, ajv,
   * find-my-way, fast-json-stringify: about 2 MiB of an idle agent's 36; sim/PROFILE.md,
   * 'What an idle agent's heap holds'). The first request waits for it (tens of ms).
   */
  private dispatch(req: IncomingMessage, res: ServerResponse): void {
    if (this.handler !== undefined) {
      this.handler(req, res)
      return
    }
    this.load().then(
      () => this.handler?.(req, res),
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: `control API failed to load: ${(err as Error).message}` }))
      },
    )
  }

  /**
   * An HTTP upgrade (`GET /v1/tunnel`, mesh proxy/ssh/forward/socks) before fastify is loaded:
   * load it, which adds the tunnel routes' own upgrade listener (routes-tunnel.ts), and hand the
   * request to that. Once loaded this listener does nothing and the routes' one answers.
   */
  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (this.handler !== undefined) return
    const server = this.server
    this.load().then(
      () => {
        for (const l of server?.listeners('upgrade') ?? [])
          if (l !== this.onUpgrade) (l as typeof this.onUpgrade).call(server, req, socket, head)
      },
      (err: unknown) => {
        socket.end(
          `HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ error: `control API failed to load: ${(err as Error).message}` })}`,
        )
      },
    )
  }

  /** fastify with every route, built once (the next call after a failure tries again) */
  private load(): Promise<FastifyInstance> {
    this.app ??= this.build().catch((err: unknown) => {
      this.app = undefined
      this.deps.reporter.log.error({ err: (err as Error).message }, 'control API failed to load')
      throw err
    })
    return this.app
  }

  private async build(): Promise<FastifyInstance> {
    const server = this.server
    if (server === undefined) throw new Error('the control API is not listening')
    const { default: Fastify } = await import('fastify')
    let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined
    // the server listens already: fastify routes its requests (handler) and never listens itself
    const app = Fastify({
      logger: false,
      bodyLimit: 1 << 20,
      serverFactory: (h) => {
        handler = h
        return server
      },
    })
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
    for (const r of this.deps.routes) await r(app)
    await app.ready()
    if (handler === undefined) throw new Error('fastify did not take the server')
    this.handler = handler
    return app
  }

  async stop(): Promise<void> {
    // event streams never end by themselves: end them, or close() would wait for the watchers
    for (const res of this.streams) res.end()
    this.streams.clear()
    // fastify's close runs the routes' preClose hooks (routes-tunnel destroys its upgraded
    // sockets, which the server's close would wait for); it does not close a server it did not
    // listen on: that is ours
    await (await this.app?.catch(() => undefined))?.close()
    const server = this.server
    this.server = undefined
    if (server !== undefined) {
      // a stop does not wait for idle keep-alive clients
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await closed
    }
    try {
      unlinkSync(this.deps.socketPath)
    } catch {}
  }
}
