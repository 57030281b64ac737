/**
 * Which addresses other members can reach. libp2p classes RFC 1918, CGNAT (100.64.0.0/10),
 * benchmarking (198.18.0.0/15), loopback and link-local ranges as private; a corporate WAN or
 * a lab that routes such ranges between its sites says so with `nat.reachableNetworks`.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net'
import type { Multiaddr } from '@multiformats/multiaddr'

const PRIVATE_V4 = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
] as const
const PRIVATE_V6 = [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
] as const

const privateRanges = new BlockList()
for (const [net, len] of PRIVATE_V4) privateRanges.addSubnet(net, len, 'ipv4')
for (const [net, len] of PRIVATE_V6) privateRanges.addSubnet(net, len, 'ipv6')

/** Parses 'A.B.C.D/N' or 'X::/N'; throws a message fit for a config error. */
export function parseCidr(text: string): { net: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim())
  const family = m === null ? undefined : isIPv4(m[1]) ? 'ipv4' : isIPv6(m[1]) ? 'ipv6' : undefined
  const prefix = Number(m?.[2])
  if (m === null || family === undefined || prefix > (family === 'ipv4' ? 32 : 128)) {
    throw new Error(`expected a network such as 198.18.0.0/15 or 2001:db8::/32, got '${text}'`)
  }
  return { net: m[1], prefix, family }
}

export class Reachability {
  private readonly extra = new BlockList()

  constructor(readonly networks: readonly string[] = []) {
    for (const n of networks) {
      const c = parseCidr(n)
      this.extra.addSubnet(c.net, c.prefix, c.family)
    }
  }

  /** Whether other members can be expected to reach this IP: public, or in a configured network. */
  ip(ip: string): boolean {
    const family = isIPv4(ip) ? 'ipv4' : isIPv6(ip) ? 'ipv6' : undefined
    if (family === undefined) return false
    if (this.extra.check(ip, family)) return true
    return !privateRanges.check(ip, family)
  }

  /** The same for the IP of a multiaddr (DNS names count as reachable: someone published them). */
  addr(ma: Multiaddr): boolean {
    const first = ma.getComponents()[0]
    if (first === undefined) return false
    if (first.name === 'dns' || first.name === 'dns4' || first.name === 'dns6') return true
    if (first.name !== 'ip4' && first.name !== 'ip6') return false
    return this.ip(first.value ?? '')
  }
}
