/**
 * Addresses of the direct UDP carrier (protocols/overlay.md, "Direct UDP carrier"), sans-IO.
 * The carrier has one dual-stack socket (udp6 on '::', IPv6-only off) where the host has IPv6:
 * it reaches an IPv4 member at ::ffff:a.b.c.d and hears one from there, so an endpoint is kept
 * in one plain form (dotted IPv4, RFC 5952 IPv6) and mapped only at the socket. Without IPv6
 * (the kernel refuses the family) it falls back to a udp4 socket that reaches IPv4 members only.
 */
import { isIPv4 } from 'node:net'
import { formatIPv6, parseIPv6 } from '../membership/overlay.js'

/** What the socket speaks: 'dual' (udp6 with IPv4-mapped addresses) or 'ipv4' (udp4). */
export type SocketFamily = 'dual' | 'ipv4'

// bind errors that say "no IPv6 here", not "this port": a udp4 socket is tried instead
const NO_IPV6 = new Set(['EAFNOSUPPORT', 'EPROTONOSUPPORT', 'EADDRNOTAVAIL'])

/** Does this error of binding a udp6 socket mean the host has no IPv6 (so udp4 is tried)? */
export function noIPv6(err: unknown): boolean {
  return NO_IPV6.has((err as NodeJS.ErrnoException | undefined)?.code ?? '')
}

const MAPPED = '::ffff:'

/**
 * An address as the carrier keeps it: IPv4 dotted (also from ::ffff:a.b.c.d, what a dual-stack
 * socket reports for an IPv4 member), IPv6 in RFC 5952 text, a scoped link-local one with its
 * %zone; undefined when it is neither.
 */
export function plainAddress(address: string): string | undefined {
  if (isIPv4(address)) return address
  const lower = address.toLowerCase()
  if (lower.startsWith(MAPPED) && isIPv4(lower.slice(MAPPED.length))) return lower.slice(MAPPED.length)
  const pct = address.indexOf('%')
  const zone = pct < 0 ? '' : address.slice(pct)
  const b = parseIPv6(pct < 0 ? address : address.slice(0, pct))
  if (b === undefined || zone === '%') return undefined
  // ::ffff:a.b.c.d written in hex groups is IPv4 all the same
  if (isMapped(b)) return dotted(b)
  return `${formatIPv6(b)}${zone}`
}

const dotted = (b: Uint8Array): string => `${b[12]}.${b[13]}.${b[14]}.${b[15]}`

function isMapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false
  return b[10] === 0xff && b[11] === 0xff
}

/** The address to hand the socket for a plain one: IPv4-mapped on a dual-stack socket. */
export function socketAddress(plain: string, family: SocketFamily): string {
  return family === 'dual' && isIPv4(plain) ? `${MAPPED}${plain}` : plain
}

/** Can a socket of this family send to this plain address? (udp4 reaches IPv4 only.) */
export function reachable(plain: string, family: SocketFamily): boolean {
  return family === 'dual' || isIPv4(plain)
}

/** 'a.b.c.d:port' or '[v6]:port', for status and logs. */
export function formatEndpoint(e: { address: string; port: number }): string {
  return isIPv4(e.address) ? `${e.address}:${e.port}` : `[${e.address}]:${e.port}`
}

/** A multiaddr component as getComponents() gives it (no libp2p import: this stays pure). */
export interface AddrPart {
  name: string
  value?: string
}

/**
 * Where to send a member's datagrams, from the remote address of a direct connection to it: its
 * IP, IPv4 or IPv6, or undefined when that is no underlay endpoint: an address inside the
 * cluster's own /48 (a connection through mesh0: the carrier would carry itself), a link-local
 * one without a zone (which link?), unspecified or multicast.
 */
export function udpEndpointOf(parts: readonly AddrPart[], clusterPrefix: Uint8Array): string | undefined {
  let zone: string | undefined
  let i = 0
  if (parts[0]?.name === 'ip6zone') {
    zone = parts[0].value
    i = 1
  }
  const first = parts[i]
  if (first?.value === undefined) return undefined
  if (first.name === 'ip4') return first.value === '0.0.0.0' ? undefined : first.value
  if (first.name !== 'ip6') return undefined
  const pct = first.value.indexOf('%')
  if (pct >= 0) zone ??= first.value.slice(pct + 1)
  const b = parseIPv6(pct < 0 ? first.value : first.value.slice(0, pct))
  if (b === undefined) return undefined
  if (isMapped(b)) return dotted(b)
  if (b.every((x) => x === 0) || b[0] === 0xff) return undefined
  let inCluster = true
  for (let j = 0; j < 6; j++) if (b[j] !== clusterPrefix[j]) inCluster = false
  if (inCluster) return undefined
  const linkLocal = b[0] === 0xfe && (b[1] & 0xc0) === 0x80
  if (!linkLocal) return formatIPv6(b)
  return zone === undefined || zone === '' ? undefined : `${formatIPv6(b)}%${zone}`
}
