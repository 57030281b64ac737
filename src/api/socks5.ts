import { createServer, type Server, type Socket } from 'node:net'
import { formatIPv6, isOverlayAddress } from '../membership/overlay.js'
import { splice, type TunnelSocket } from './tunnel-client.js'

/** SOCKS5 reply codes (RFC 1928 section 6). */
export const REP = {
  ok: 0,
  failure: 1,
  notAllowed: 2,
  networkUnreachable: 3,
  hostUnreachable: 4,
  refused: 5,
  commandNotSupported: 7,
  addressNotSupported: 8,
} as const

const HANDSHAKE_TIMEOUT_MS = 10_000

export interface SocksTarget {
  host: string
  port: number
}

/** The member query for a SOCKS host, or undefined when the host is not in the mesh. */
export function meshHost(host: string, clusterId?: string): string | undefined {
  const h = host.toLowerCase().replace(/\.$/, '')
  if (h.endsWith('.mesh') && h.length > 5) return h
  if (isOverlayAddress(h, clusterId)) return h
  return undefined
}

export interface SocksOptions {
  clusterId?: string
  /** open a tunnel; throw with `rep` set (a REP code) to choose the reply */
  open: (query: string, port: number) => Promise<TunnelSocket>
  /** for people: one line per refusal or failure */
  log: (line: string) => void
}

/** Reads exactly n bytes from a paused socket (bounded by the handshake timeout). */
export class Reader {
  private buf: Buffer = Buffer.alloc(0)
  private waiting: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined
  private ended: Error | undefined

  constructor(private readonly socket: Socket) {
    socket.on('data', this.onData)
    socket.once('end', () => this.fail(new Error('the client closed the connection')))
    socket.once('error', (err) => this.fail(err))
  }

  private readonly onData = (d: Buffer) => {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d])
    this.pump()
  }

  private pump(): void {
    const w = this.waiting
    if (w === undefined || this.buf.length < w.n) return
    this.waiting = undefined
    const out = this.buf.subarray(0, w.n)
    this.buf = this.buf.subarray(w.n)
    w.resolve(out)
  }

  private fail(err: Error): void {
    this.ended ??= err
    this.waiting?.reject(err)
    this.waiting = undefined
  }

  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.buf.length >= n) {
        const out = this.buf.subarray(0, n)
        this.buf = this.buf.subarray(n)
        resolve(out)
        return
      }
      if (this.ended !== undefined) return reject(this.ended)
      this.waiting = { n, resolve, reject }
    })
  }

  /** Stop reading; returns whatever came after the request (sent before the reply) and pauses the socket. */
  detach(): Buffer {
    this.socket.off('data', this.onData)
    this.socket.pause()
    return this.buf
  }
}

function reply(socket: Socket, rep: number): void {
  // BND.ADDR 0.0.0.0:0: clients do not use it for CONNECT
  if (!socket.destroyed) socket.write(Buffer.from([5, rep, 0, 1, 0, 0, 0, 0, 0, 0]))
}

/** Parse the greeting and the CONNECT request. Answers and throws on anything it does not support. */
export async function readRequest(socket: Socket, reader: Reader): Promise<SocksTarget> {
  const [ver, nmethods] = await reader.read(2)
  if (ver !== 5) throw new Error(`not a SOCKS5 client (version ${ver})`)
  const methods = await reader.read(nmethods)
  if (!methods.includes(0)) {
    socket.end(Buffer.from([5, 0xff]))
    throw new Error(
      'the client wants authentication; mesh socks only offers none (it listens on 127.0.0.1 only)',
    )
  }
  socket.write(Buffer.from([5, 0]))
  const [v, cmd, , atyp] = await reader.read(4)
  if (v !== 5) throw new Error(`bad request version ${v}`)
  let host: string
  if (atyp === 1) host = [...(await reader.read(4))].join('.')
  else if (atyp === 3) {
    const [len] = await reader.read(1)
    host = (await reader.read(len)).toString('latin1')
  } else if (atyp === 4) host = formatIPv6(new Uint8Array(await reader.read(16)))
  else {
    reply(socket, REP.addressNotSupported)
    throw new Error(`address type ${atyp} is not supported`)
  }
  const port = (await reader.read(2)).readUInt16BE(0)
  if (cmd !== 1) {
    reply(socket, REP.commandNotSupported)
    throw new Error(`command ${cmd} is not supported (only CONNECT)`)
  }
  return { host, port }
}

/** A SOCKS5 server (CONNECT, no authentication) that reaches only mesh members. */
export function socksServer(opts: SocksOptions): Server {
  return createServer({ allowHalfOpen: true }, (socket) => void handle(socket))

  async function handle(socket: Socket): Promise<void> {
    socket.on('error', () => {})
    const reader = new Reader(socket)
    const timer = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS)
    let target: SocksTarget
    try {
      target = await readRequest(socket, reader)
    } catch (err) {
      clearTimeout(timer)
      opts.log(`socks: ${(err as Error).message}`)
      socket.end()
      return
    }
    const where = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`
    const query = meshHost(target.host, opts.clusterId)
    if (query === undefined) {
      clearTimeout(timer)
      opts.log(`socks: refused ${where}: only *.mesh names and overlay addresses go through the mesh`)
      reply(socket, REP.notAllowed)
      socket.end()
      return
    }
    let tunnel: TunnelSocket
    try {
      tunnel = await opts.open(query, target.port)
    } catch (err) {
      clearTimeout(timer)
      const rep = (err as { rep?: number }).rep ?? REP.failure
      opts.log(`socks: ${where}: ${(err as Error).message}`)
      reply(socket, rep)
      socket.end()
      return
    }
    clearTimeout(timer)
    const early = reader.detach()
    if (socket.destroyed) {
      tunnel.socket.destroy()
      return
    }
    reply(socket, REP.ok)
    if (early.length > 0) tunnel.socket.write(early)
    socket.resume()
    await splice(socket, tunnel)
  }
}
