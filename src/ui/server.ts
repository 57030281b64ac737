import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import {
  type ClientRequest,
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http'
import { extname, join } from 'node:path'
import type { Component } from '../kernel/component.js'
import { writePrivateFile } from '../kernel/datadir.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import type { UiConfig } from './config.js'
import { splitListen } from './listen.js'

/** Where the build puts the page and its libraries (src/ui/copy-assets.ts). */
export const WEB_ROOT = join(import.meta.dirname, 'web')

const COOKIE = 'mesh_ui'

/**
 * The control API's GET routes the dashboard may read. Nothing that changes state, nothing
 * that returns block contents: the UI is a window on the cluster, not a second API.
 */
const READABLE = [
  /^\/v1\/status$/,
  /^\/v1\/members$/,
  /^\/v1\/traffic$/,
  /^\/v1\/peers$/,
  /^\/v1\/datasets$/,
  /^\/v1\/pins$/,
  /^\/v1\/requests$/,
  /^\/v1\/requests\/[A-Za-z0-9_-]{1,128}$/,
  /^\/v1\/instances$/,
  // who holds a block (dataset holders and replica health): metadata, not contents
  /^\/v1\/blocks\/[A-Za-z0-9]{1,128}\/stat$/,
  /^\/v1\/tunnels$/,
  /^\/v1\/maintenance$/,
  /^\/metrics$/,
  /^\/health$/,
]

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
}

interface Asset {
  body: Buffer
  type: string
}

/**
 * The web dashboard (`mesh ui`): a small HTTP server on `ui.listen` (loopback by default)
 * that serves the page and reads the control API over its unix socket, so it sees exactly
 * what `mesh` commands see and nothing more. Every route needs the token from the data
 * dir's ui-token file, given once as ?token= (which sets an HttpOnly SameSite=Strict
 * cookie) or as that cookie; anything else is 401. Not listening until `mesh ui` asks
 * (POST /v1/ui) unless ui.autostart is set.
 */
export class UiComponent implements Component {
  readonly name = 'ui'
  private server: Server | undefined
  private opening: Promise<string> | undefined
  private token = ''
  private csp = ''
  private assets = new Map<string, Asset>()
  private readonly upstreams = new Set<ClientRequest>()
  private readonly metrics

  constructor(
    private readonly deps: {
      config: UiConfig
      /** the control API's unix socket */
      socketPath: string
      /** <dataDir>/ui-token */
      tokenFile: string
      reporter: ComponentReporter
      webRoot?: string
    },
  ) {
    this.metrics = {
      requests: deps.reporter.counter('requests_total', 'dashboard requests, by outcome', ['outcome']),
    }
  }

  async start(): Promise<void> {
    if (this.deps.config.autostart) await this.open()
  }

  /** Serve the dashboard (once; later calls return the same URL) and say where, token included. */
  open(): Promise<string> {
    this.opening ??= this.listen().catch((err) => {
      this.opening = undefined
      throw err
    })
    return this.opening
  }

  get running(): boolean {
    return this.server !== undefined
  }

  async stop(): Promise<void> {
    for (const u of this.upstreams) u.destroy()
    this.upstreams.clear()
    const server = this.server
    this.server = undefined
    this.opening = undefined
    if (server === undefined) return
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  }

  private async listen(): Promise<string> {
    this.token = readOrMakeToken(this.deps.tokenFile)
    this.loadAssets(this.deps.webRoot ?? WEB_ROOT)
    const { host, port, loopback } = splitListen(this.deps.config.listen)
    if (!loopback)
      this.deps.reporter.log.warn(
        { listen: this.deps.config.listen },
        'the dashboard listens on a non-loopback address: anyone with the token can read the cluster',
      )
    const server = createServer((req, res) => this.handle(req, res))
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new Error(
            `cannot serve the dashboard on ${this.deps.config.listen}: ${err.message}; set ui.listen to a free HOST:PORT`,
          ),
        ),
      )
      server.listen(port, host, () => resolve())
    })
    this.server = server
    const bound = (server.address() as { port: number }).port
    const shown = host.includes(':') ? `[${host}]` : host
    const url = `http://${shown}:${bound}/?token=${this.token}`
    this.deps.reporter.log.info({ listen: `${shown}:${bound}` }, 'dashboard serving')
    return url
  }

  /** The page, its scripts and the vendored libraries, read once: the server never touches disk per request. */
  private loadAssets(root: string): void {
    if (!existsSync(join(root, 'index.html')))
      throw new Error(`the dashboard's files are missing from ${root}: run npm run build`)
    const assets = new Map<string, Asset>()
    const walk = (dir: string, prefix: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(dir, e.name), `${prefix}${e.name}/`)
        else if (TYPES[extname(e.name)] !== undefined)
          assets.set(`/${prefix}${e.name}`, {
            body: readFileSync(join(dir, e.name)),
            type: TYPES[extname(e.name)],
          })
      }
    }
    walk(root, '')
    this.assets = assets
    // the import map has to be inline: allow exactly it, by hash, and no other inline script
    const html = assets.get('/index.html')!.body.toString('utf8')
    const hashes = [...html.matchAll(/<script type="importmap">([\s\S]*?)<\/script>/g)].map(
      (m) => `'sha256-${createHash('sha256').update(m[1]).digest('base64')}'`,
    )
    this.csp = [
      "default-src 'none'",
      `script-src 'self' ${hashes.join(' ')}`,
      "style-src 'self' 'unsafe-inline'",
      "connect-src 'self'",
      "img-src 'self' data:",
      "frame-ancestors 'none'",
      "base-uri 'none'",
      "form-action 'none'",
    ].join('; ')
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://ui.invalid')
    res.setHeader('x-content-type-options', 'nosniff')
    res.setHeader('referrer-policy', 'no-referrer')
    res.setHeader('cache-control', 'no-store')
    const given = url.searchParams.get('token')
    if (given !== null) {
      if (!this.tokenMatches(given)) {
        this.deny(res)
        return
      }
      // trade the token for a cookie and drop it from the address bar (and from history)
      url.searchParams.delete('token')
      res.writeHead(303, {
        'set-cookie': `${COOKIE}=${this.token}; HttpOnly; SameSite=Strict; Path=/`,
        location: url.pathname + url.search,
      })
      this.metrics.requests.inc({ outcome: 'login' })
      res.end()
      return
    }
    if (!this.tokenMatches(cookieOf(req.headers.cookie, COOKIE))) {
      this.deny(res)
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET', 'content-type': 'text/plain' })
      res.end('the dashboard is read-only: use the mesh command to change anything\n')
      return
    }
    this.metrics.requests.inc({ outcome: 'ok' })
    if (url.pathname === '/api/events') {
      this.proxy('/v1/events', req, res, true)
      return
    }
    if (url.pathname.startsWith('/api/')) {
      const path = url.pathname.slice(4)
      if (READABLE.some((r) => r.test(path))) {
        this.proxy(path + url.search, req, res, false)
        return
      }
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: `the dashboard does not serve ${path}` }))
      return
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end()
      return
    }
    // client-side routes (#/member/...) all load the one page
    const asset = this.assets.get(url.pathname === '/' ? '/index.html' : url.pathname)
    if (asset === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' })
      res.end('not found\n')
      return
    }
    res.writeHead(200, {
      'content-type': asset.type,
      'content-length': asset.body.length,
      ...(asset.type.startsWith('text/html')
        ? { 'content-security-policy': this.csp, 'x-frame-options': 'DENY' }
        : {}),
    })
    res.end(req.method === 'HEAD' ? undefined : asset.body)
  }

  private deny(res: ServerResponse): void {
    this.metrics.requests.inc({ outcome: 'denied' })
    res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8' })
    res.end(
      "401: this dashboard needs its token. Run `mesh ui` on the agent's machine and open the URL it prints.\n",
    )
  }

  private tokenMatches(given: string | undefined): boolean {
    if (given === undefined || this.token === '') return false
    const a = Buffer.from(given)
    const b = Buffer.from(this.token)
    return a.length === b.length && timingSafeEqual(a, b)
  }

  /** One GET to the control API's socket, answered as is (the event stream stays open). */
  private proxy(path: string, req: IncomingMessage, res: ServerResponse, stream: boolean): void {
    const up = request(
      { socketPath: this.deps.socketPath, method: 'GET', path, timeout: stream ? 0 : 30_000 },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, {
          'content-type': answer.headers['content-type'] ?? 'application/json',
          ...(stream ? { 'x-accel-buffering': 'no' } : {}),
        })
        answer.pipe(res)
        answer.on('end', () => this.upstreams.delete(up))
      },
    )
    this.upstreams.add(up)
    up.on('timeout', () => up.destroy(new Error('the agent did not answer within 30 s')))
    up.on('error', (err) => {
      this.upstreams.delete(up)
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: `the agent's control API did not answer: ${err.message}` }))
      } else res.destroy()
    })
    // a closed tab ends its event stream upstream too
    res.on('close', () => {
      this.upstreams.delete(up)
      up.destroy()
    })
    req.on('error', () => up.destroy())
    up.end()
  }
}

/** The dashboard's secret: made once (32 random bytes), kept 0600 in the data dir. */
export function readOrMakeToken(file: string): string {
  try {
    const t = readFileSync(file, 'utf8').trim()
    if (/^[A-Za-z0-9_-]{32,}$/.test(t)) return t
  } catch {}
  const t = randomBytes(32).toString('base64url')
  writePrivateFile(file, `${t}\n`)
  return t
}

function cookieOf(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim()
  }
  return undefined
}
