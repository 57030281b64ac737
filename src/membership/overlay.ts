/**
 * Overlay addresses: RFC 4193 unique local IPv6 addresses derived from the cluster id and the
 * peer ID alone, so every member computes the same address for a peer without asking, and a
 * peer keeps it across restarts and moves.
 *
 *   fd | 40-bit global id = sha256('mesh-cluster' + cluster id)[0..5] | subnet 0000 | 64-bit
 *   interface id = sha256('mesh-iface' + peer ID)[0..8]
 */
import { createHash } from 'node:crypto'
import { isIPv6 } from 'node:net'

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest()

/** The 6 bytes fd + global id: the /48 prefix of every overlay address in the cluster. */
function prefixBytes(clusterIdHex: string): Uint8Array {
  const b = new Uint8Array(16)
  b[0] = 0xfd
  b.set(sha256(`mesh-cluster${clusterIdHex.toLowerCase()}`).subarray(0, 5), 1)
  return b
}

/** The member's overlay address, in canonical RFC 5952 text. */
export function overlayAddress(clusterIdHex: string, peerId: string): string {
  const b = prefixBytes(clusterIdHex)
  // bytes 6-7 are the subnet, 0
  b.set(sha256(`mesh-iface${peerId}`).subarray(0, 8), 8)
  return formatIPv6(b)
}

/** The cluster's /48, e.g. 'fd3c:9a1:77e2::/48'. */
export function OVERLAY_PREFIX(clusterIdHex: string): string {
  return `${formatIPv6(prefixBytes(clusterIdHex))}/48`
}

/**
 * Is `text` (any textual IPv6 form, brackets allowed) an overlay address: a ULA with subnet 0,
 * and inside this cluster's /48 when a cluster id is given?
 */
export function isOverlayAddress(text: string, clusterIdHex?: string): boolean {
  const b = parseIPv6(text)
  if (b === undefined || b[0] !== 0xfd || b[6] !== 0 || b[7] !== 0) return false
  if (clusterIdHex === undefined) return true
  const p = prefixBytes(clusterIdHex)
  for (let i = 1; i < 6; i++) if (b[i] !== p[i]) return false
  return true
}

/** RFC 5952 text: lowercase, no leading zeros, the first longest run of 2+ zero groups as '::'. */
export function formatIPv6(b: Uint8Array): string {
  const g: number[] = []
  for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1])
  let best = -1
  let bestLen = 1 // a single zero group is never shortened
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':')
  if (best < 0) return hex(g)
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`
}

/** 16 bytes from any textual IPv6 form (with or without brackets), or undefined. No zone ids. */
export function parseIPv6(text: string): Uint8Array | undefined {
  let t = text.trim()
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1)
  if (t.includes('%') || !isIPv6(t)) return undefined
  const out = new Uint8Array(16)
  // an embedded dotted IPv4 tail becomes two groups
  const dot = t.lastIndexOf(':')
  if (t.includes('.', dot)) {
    const v4 = t
      .slice(dot + 1)
      .split('.')
      .map(Number)
    const hi = ((v4[0] << 8) | v4[1]).toString(16)
    const lo = ((v4[2] << 8) | v4[3]).toString(16)
    t = `${t.slice(0, dot + 1)}${hi}:${lo}`
  }
  const [head, tail] = t.includes('::') ? t.split('::') : [t, undefined]
  const hs = head === '' ? [] : head.split(':')
  const ts = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups =
    tail === undefined ? hs : [...hs, ...new Array<string>(8 - hs.length - ts.length).fill('0'), ...ts]
  if (groups.length !== 8) return undefined
  for (let i = 0; i < 8; i++) {
    const v = Number.parseInt(groups[i], 16)
    out[2 * i] = v >> 8
    out[2 * i + 1] = v & 0xff
  }
  return out
}

/** The canonical text of any textual IPv6 form, or undefined when it is not IPv6. */
export function canonicalIPv6(text: string): string | undefined {
  const b = parseIPv6(text)
  return b === undefined ? undefined : formatIPv6(b)
}
