/**
 * ICMPv6 Packet Too Big (RFC 4443 3.2), written back onto our own interface for a packet larger
 * than the carrier's MTU: what a router on a smaller link does. The kernel lowers the path MTU
 * to that member, and TCP sends smaller segments from then on (the datagram carrier carries one
 * packet per UDP datagram, so a lost datagram loses one small packet, not a 64 KB one).
 */
import { PROTO_ICMP6 } from './filter.js'

const PACKET_TOO_BIG = 2
// an ICMPv6 error must fit in the minimum IPv6 MTU
const MIN_MTU = 1280

/** The Packet Too Big that `packet`'s sender gets from its destination, or undefined for non-IPv6. */
export function packetTooBig(packet: Uint8Array, mtu: number): Uint8Array | undefined {
  if (packet.length < 40 || packet[0] >> 4 !== 6) return undefined
  // never an error about an ICMPv6 error (RFC 4443 2.4 e)
  if (packet[6] === PROTO_ICMP6 && packet.length > 40 && packet[40] < 128) return undefined
  const quoted = Math.min(packet.length, MIN_MTU - 40 - 8)
  const len = 8 + quoted
  const out = new Uint8Array(40 + len)
  out[0] = 0x60
  out[4] = len >> 8
  out[5] = len & 0xff
  out[6] = PROTO_ICMP6
  out[7] = 64
  out.set(packet.subarray(24, 40), 8) // from: the packet's destination
  out.set(packet.subarray(8, 24), 24) // to: its source
  out[40] = PACKET_TOO_BIG
  new DataView(out.buffer).setUint32(44, mtu)
  out.set(packet.subarray(0, quoted), 48)
  const sum = checksum(out)
  out[42] = sum >> 8
  out[43] = sum & 0xff
  return out
}

/** The ICMPv6 checksum of an IPv6 packet (pseudo-header: addresses, length, next header). */
export function checksum(p: Uint8Array): number {
  const len = p.length - 40
  let sum = len + PROTO_ICMP6
  for (let i = 8; i < 40; i += 2) sum += (p[i] << 8) | p[i + 1]
  for (let i = 40; i < p.length; i += 2) {
    if (i === 42) continue // the checksum field itself
    sum += (p[i] << 8) | (i + 1 < p.length ? p[i + 1] : 0)
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}
