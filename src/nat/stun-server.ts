/**
 * A small STUN responder for the cluster's own ICE: members behind NAT ask a reachable member
 * which address their UDP packets come from, and WebRTC then connects them directly. Only
 * addresses that a member is connected from get an answer (STUN over UDP carries no identity,
 * so the source address is what can be checked), and each source is rate-limited, so the
 * responder is neither a public service nor a reflector.
 */
import { randomBytes } from 'node:crypto'
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { bindingRequest, bindingSuccess, parseBindingRequest, parseBindingSuccess } from './stun.js'

export type StunOutcome = 'answered' | 'not-member' | 'rate-limited' | 'malformed'

export interface StunServerOptions {
  port: number
  /** bind address; '::' also takes IPv4 where the system allows dual-stack sockets */
  host?: string
  /** whether a request from this IP may be answered (it is a connected member's address) */
  allow: (ip: string) => boolean
  /** answers per second per source IP (and twice that as a burst) */
  perSourceRate?: number
  /** answers per second in all */
  totalRate?: number
  onRequest?: (outcome: StunOutcome, ip: string, reason?: string) => void
}

/** A token bucket refilled continuously. */
class Bucket {
  private tokens: number
  private at: number
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst
    this.at = now
  }
  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate)
    this.at = now
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}

const MAX_SOURCES = 4096

export class StunServer {
  private socket: Socket | undefined
  private readonly buckets = new Map<string, Bucket>()
  private total: Bucket | undefined

  constructor(private readonly opts: StunServerOptions) {}

  /** The UDP port it answers on (after start). */
  get port(): number {
    return this.socket?.address().port ?? 0
  }

  async start(): Promise<void> {
    const host = this.opts.host ?? '0.0.0.0'
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' })
    this.total = new Bucket(this.opts.totalRate ?? 500, (this.opts.totalRate ?? 500) * 2, Date.now())
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind({ port: this.opts.port, address: host, exclusive: true }, () => {
        socket.off('error', reject)
        resolve()
      })
    })
    socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo))
    // an ICMP error surfacing as a socket error must not end the agent
    socket.on('error', () => {})
    this.socket = socket
  }

  async stop(): Promise<void> {
    const s = this.socket
    this.socket = undefined
    this.buckets.clear()
    if (s !== undefined) await new Promise<void>((r) => s.close(() => r()))
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    const ip = rinfo.address.startsWith('::ffff:') ? rinfo.address.slice(7) : rinfo.address
    // handled first: an optional call would skip evaluating its arguments
    const outcome = this.handle(msg, rinfo, ip)
    this.opts.onRequest?.(...outcome)
  }

  private handle(msg: Buffer, rinfo: RemoteInfo, ip: string): [StunOutcome, string, string?] {
    const report = (o: StunOutcome, at: string, reason?: string): [StunOutcome, string, string?] => [
      o,
      at,
      reason,
    ]
    // cheap checks first: strangers cost one lookup
    if (!this.opts.allow(ip)) return report('not-member', ip)
    const now = Date.now()
    let bucket = this.buckets.get(ip)
    if (bucket === undefined) {
      if (this.buckets.size >= MAX_SOURCES) this.buckets.clear()
      const rate = this.opts.perSourceRate ?? 20
      bucket = new Bucket(rate, rate * 2, now)
      this.buckets.set(ip, bucket)
    }
    if (!bucket.take(now) || !(this.total?.take(now) ?? false)) return report('rate-limited', ip)
    const req = parseBindingRequest(msg)
    if (!req.ok) return report('malformed', ip, req.reason)
    this.socket?.send(bindingSuccess(req.transactionId, ip, rinfo.port), rinfo.port, rinfo.address)
    return report('answered', ip)
  }
}

/**
 * Asks a STUN server which address our packets come from. Resolves undefined when no answer
 * came within `timeoutMs` (retransmitting a few times, as UDP may lose the first).
 */
export async function stunQuery(
  host: string,
  port: number,
  timeoutMs = 2000,
): Promise<{ ip: string; port: number } | undefined> {
  const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' })
  const id = randomBytes(12)
  const req = bindingRequest(id)
  try {
    return await new Promise((resolve) => {
      const timers: NodeJS.Timeout[] = []
      const done = (v: { ip: string; port: number } | undefined) => {
        for (const t of timers) clearTimeout(t)
        resolve(v)
      }
      socket.on('message', (msg) => {
        const r = parseBindingSuccess(msg, id)
        if (r !== undefined) done(r)
      })
      socket.on('error', () => done(undefined))
      socket.bind(0, () => {
        for (const at of [0, timeoutMs / 4, timeoutMs / 2]) {
          timers.push(setTimeout(() => socket.send(req, port, host, () => {}), at))
        }
        timers.push(setTimeout(() => done(undefined), timeoutMs))
      })
    })
  } finally {
    socket.close()
  }
}
