/**
 * The part of STUN (RFC 8489, formerly 5389) that ICE needs from a server: a Binding request
 * in, a Binding success response out with the address the request came from. No
 * authentication attributes: that a request comes from a member is checked by its source
 * address (see stun-server.ts). Parsing is strict and never throws.
 */
import { isIPv4, isIPv6 } from 'node:net'

export const MAGIC_COOKIE = 0x2112a442
const HEADER = 20
const BINDING_REQUEST = 0x0001
const BINDING_SUCCESS = 0x0101
const ATTR_MAPPED_ADDRESS = 0x0001
const ATTR_XOR_MAPPED_ADDRESS = 0x0020
/** requests bigger than this are not something ICE sends; refusing them bounds our work */
export const MAX_REQUEST_BYTES = 548

export type ParsedRequest = { ok: true; transactionId: Uint8Array } | { ok: false; reason: string }

/** A Binding request, or why this datagram is not one. */
export function parseBindingRequest(buf: Uint8Array): ParsedRequest {
  if (buf.length < HEADER) return { ok: false, reason: 'shorter than a STUN header' }
  if (buf.length > MAX_REQUEST_BYTES) return { ok: false, reason: 'too long' }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const type = view.getUint16(0)
  const length = view.getUint16(2)
  if ((type & 0xc000) !== 0) return { ok: false, reason: 'not STUN (first two bits set)' }
  if (view.getUint32(4) !== MAGIC_COOKIE) return { ok: false, reason: 'no magic cookie (not RFC 5389 STUN)' }
  if (length !== buf.length - HEADER || length % 4 !== 0) return { ok: false, reason: 'bad message length' }
  if (type !== BINDING_REQUEST)
    return { ok: false, reason: `not a Binding request (type 0x${type.toString(16)})` }
  // attributes must at least be well formed: type, length, value padded to 4 bytes
  let at = HEADER
  while (at < buf.length) {
    if (at + 4 > buf.length) return { ok: false, reason: 'truncated attribute' }
    const len = view.getUint16(at + 2)
    at += 4 + Math.ceil(len / 4) * 4
    if (at > buf.length) return { ok: false, reason: 'truncated attribute' }
  }
  return { ok: true, transactionId: buf.slice(8, HEADER) }
}

function addressBytes(ip: string): Uint8Array {
  if (isIPv4(ip)) return Uint8Array.from(ip.split('.').map(Number))
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${ip}`)
  // expand '::' and an embedded IPv4 tail into eight 16-bit groups
  let text = ip
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4 !== null) {
    const b = v4[1].split('.').map(Number)
    text = `${text.slice(0, -v4[1].length)}${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`
  }
  const [head, tail] = text.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined ? [] : tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t]
  const out = new Uint8Array(16)
  groups.forEach((g, i) => {
    const n = Number.parseInt(g, 16)
    out[2 * i] = n >> 8
    out[2 * i + 1] = n & 0xff
  })
  return out
}

function addressAttr(type: number, family: number, port: number, addr: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 + addr.length)
  const v = new DataView(out.buffer)
  v.setUint16(0, type)
  v.setUint16(2, 4 + addr.length)
  v.setUint8(5, family)
  v.setUint16(6, port)
  out.set(addr, 8)
  return out
}

/** The Binding success response telling the requester `ip:port`, its address as we saw it. */
export function bindingSuccess(transactionId: Uint8Array, ip: string, port: number): Uint8Array {
  if (transactionId.length !== 12) throw new Error('a STUN transaction id has 12 bytes')
  const addr = addressBytes(ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip)
  const family = addr.length === 4 ? 0x01 : 0x02
  // XOR-MAPPED-ADDRESS: the port with the cookie's top half, the address with cookie || id
  const mask = new Uint8Array(16)
  new DataView(mask.buffer).setUint32(0, MAGIC_COOKIE)
  mask.set(transactionId, 4)
  const xored = addr.map((b, i) => b ^ mask[i])
  const xorAttr = addressAttr(ATTR_XOR_MAPPED_ADDRESS, family, port ^ (MAGIC_COOKIE >>> 16), xored)
  // MAPPED-ADDRESS too, for RFC 3489-era clients
  const plainAttr = addressAttr(ATTR_MAPPED_ADDRESS, family, port, addr)
  const out = new Uint8Array(HEADER + xorAttr.length + plainAttr.length)
  const v = new DataView(out.buffer)
  v.setUint16(0, BINDING_SUCCESS)
  v.setUint16(2, out.length - HEADER)
  v.setUint32(4, MAGIC_COOKIE)
  out.set(transactionId, 8)
  out.set(xorAttr, HEADER)
  out.set(plainAttr, HEADER + xorAttr.length)
  return out
}

/** A Binding request with a fresh random transaction id (for our own client). */
export function bindingRequest(transactionId: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER)
  const v = new DataView(out.buffer)
  v.setUint16(0, BINDING_REQUEST)
  v.setUint16(2, 0)
  v.setUint32(4, MAGIC_COOKIE)
  out.set(transactionId, 8)
  return out
}

/** The mapped address in a Binding success response to `transactionId`, or undefined. */
export function parseBindingSuccess(
  buf: Uint8Array,
  transactionId: Uint8Array,
): { ip: string; port: number } | undefined {
  if (buf.length < HEADER) return undefined
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  if (v.getUint16(0) !== BINDING_SUCCESS || v.getUint32(4) !== MAGIC_COOKIE) return undefined
  if (v.getUint16(2) !== buf.length - HEADER) return undefined
  for (let i = 0; i < 12; i++) if (buf[8 + i] !== transactionId[i]) return undefined
  let at = HEADER
  let plain: { ip: string; port: number } | undefined
  while (at + 4 <= buf.length) {
    const type = v.getUint16(at)
    const len = v.getUint16(at + 2)
    const body = at + 4
    if (body + len > buf.length) return undefined
    if ((type === ATTR_XOR_MAPPED_ADDRESS || type === ATTR_MAPPED_ADDRESS) && len >= 8) {
      const family = v.getUint8(body + 1)
      const size = family === 0x01 ? 4 : family === 0x02 ? 16 : 0
      if (size > 0 && len >= 4 + size) {
        const xor = type === ATTR_XOR_MAPPED_ADDRESS
        const mask = new Uint8Array(16)
        new DataView(mask.buffer).setUint32(0, MAGIC_COOKIE)
        mask.set(transactionId, 4)
        const port = v.getUint16(body + 2) ^ (xor ? MAGIC_COOKIE >>> 16 : 0)
        const addr = buf.slice(body + 4, body + 4 + size).map((b, i) => (xor ? b ^ mask[i] : b))
        const ip =
          size === 4
            ? [...addr].join('.')
            : [...Array(8).keys()].map((i) => ((addr[2 * i] << 8) | addr[2 * i + 1]).toString(16)).join(':')
        if (xor) return { ip, port }
        plain ??= { ip, port }
      }
    }
    at = body + Math.ceil(len / 4) * 4
  }
  return plain
}
