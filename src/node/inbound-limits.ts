import type { Connection, MultiaddrConnection } from '@libp2p/interface'
import { getNetConfig, isNetworkAddress, RateLimiter } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * What a peer that has not been admitted may hold, chosen on purpose. libp2p's defaults allow
 * 10 pending (not yet upgraded) inbound connections in all, each for up to 10 s: a stranger
 * with a dozen idle TCP sockets kept every new member from joining.
 */
export const INBOUND_LIMITS = {
  /** a socket that has not finished Noise and muxer negotiation by then is closed (libp2p: 10 s) */
  upgradeTimeoutMs: 4_000,
  /** pending inbound connections from all addresses together (libp2p: 10) */
  maxPending: 64,
  /** pending inbound connections from one IP address: one address cannot take the pool */
  maxPendingPerHost: 16,
  /** new inbound connections per IP address per second (libp2p's own rate limiter; its default) */
  newPerHostPerSecond: 5,
  /** a joiner (holds the key, no certificate) must redeem its invite by then, or is closed */
  joinDeadlineMs: 15_000,
  /** joiner connections admitted per IP address per minute (a busy spawner stays well below) */
  joinsPerHostPerMinute: 60,
} as const

/** The IP address of a connection's remote end (undefined for relayed and other paths). */
export function remoteHost(addr: Multiaddr): string | undefined {
  try {
    if (!isNetworkAddress(addr)) return undefined
    const cfg = getNetConfig(addr) as { host?: string }
    return cfg.host
  } catch {
    return undefined
  }
}

/**
 * Counts pending inbound connections per remote IP address, for the connection gater's
 * denyInboundConnection (called before the upgrade). An entry leaves when its connection is
 * upgraded (connection:open; the Connection shares its timeline object with the raw connection)
 * or closes.
 */
export class PendingInbound {
  private readonly byHost = new Map<string, Set<MultiaddrConnection>>()

  constructor(private readonly maxPerHost: number) {}

  /** true: refuse this connection, its address already has the most pending connections allowed */
  deny(maConn: MultiaddrConnection): boolean {
    const host = remoteHost(maConn.remoteAddr)
    if (host === undefined) return false
    const set = this.byHost.get(host) ?? new Set<MultiaddrConnection>()
    for (const c of set) if (c.status !== 'open') set.delete(c)
    if (set.size >= this.maxPerHost) return true
    set.add(maConn)
    this.byHost.set(host, set)
    maConn.addEventListener('close', () => this.remove(host, (c) => c === maConn), { once: true })
    return false
  }

  /** A connection finished its upgrade: it is no longer pending. */
  upgraded(connection: Connection): void {
    if (connection.direction !== 'inbound') return
    const host = remoteHost(connection.remoteAddr)
    if (host !== undefined) this.remove(host, (c) => c.timeline === connection.timeline)
  }

  pending(host: string): number {
    return this.byHost.get(host)?.size ?? 0
  }

  private remove(host: string, match: (c: MultiaddrConnection) => boolean): void {
    const set = this.byHost.get(host)
    if (set === undefined) return
    for (const c of set) if (match(c)) set.delete(c)
    if (set.size === 0) this.byHost.delete(host)
  }
}

/** Joiner connections admitted per IP address, over a sliding minute. */
export class JoinRate {
  private readonly limiter = new RateLimiter({ points: INBOUND_LIMITS.joinsPerHostPerMinute, duration: 60 })

  /** Take one join slot for this address; false when it has used them all this minute. */
  take(addr: Multiaddr): boolean {
    const key = remoteHost(addr) ?? addr.toString()
    try {
      this.limiter.consume(key, 1)
      return true
    } catch {
      return false
    }
  }
}
