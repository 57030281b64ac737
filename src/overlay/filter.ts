/**
 * The overlay's packet filter, sans-IO: it sees raw IPv6 packets and member facts and returns
 * verdicts, so it is tested without a device (test/unit/overlay-filter.test.ts).
 *
 * Inbound (from member P onto our interface): the source must be P's overlay address and the
 * destination ours (nobody spoofs), then `overlay.allow` applies. With no rules every member
 * reaches every port. With rules, a packet is let in when a rule matches it or when it answers
 * a flow we opened (a small flow table, like a stateful firewall), so rules restrict who may
 * start a conversation with us, not the replies to ours.
 */
import type { AllowRuleConfig } from './config.js'

export const PROTO_TCP = 6
export const PROTO_UDP = 17
export const PROTO_ICMP6 = 58

export type DropReason =
  | 'not-ipv6'
  | 'truncated'
  | 'spoofed-source'
  | 'wrong-destination'
  | 'not-allowed'
  | 'unknown-member'
  | 'member-down'

/** What the filter needs to know of the member a packet came from. */
export interface FilterMember {
  peerId: string
  name: string
  /** 16 bytes */
  overlay: Uint8Array
  tags: Readonly<Record<string, string>>
}

/** The transport facts of a packet: upper protocol and ports (0 when none). */
export interface PacketInfo {
  proto: number
  srcPort: number
  dstPort: number
  /** ICMPv6 type, or -1 */
  icmpType: number
}

interface Rule {
  text: string
  matchFrom: (m: FilterMember) => boolean
  proto: number | 'any'
  ports?: Array<[number, number]>
}

export type Verdict =
  | { ok: true; rule: number | 'default' | 'established' }
  | { ok: false; reason: DropReason }

const EXT_HEADERS = new Set([0, 43, 60]) // hop-by-hop, routing, destination options
const FRAGMENT = 44

/** Parse an IPv6 packet's upper protocol and ports, walking simple extension headers. */
export function packetInfo(p: Uint8Array): PacketInfo | undefined {
  if (p.length < 40 || p[0] >> 4 !== 6) return undefined
  let next = p[6]
  let off = 40
  for (let i = 0; i < 8; i++) {
    if (EXT_HEADERS.has(next)) {
      if (p.length < off + 8) return undefined
      const len = (p[off + 1] + 1) * 8
      next = p[off]
      off += len
    } else if (next === FRAGMENT) {
      if (p.length < off + 8) return undefined
      const fragOffset = ((p[off + 2] << 8) | p[off + 3]) >> 3
      next = p[off]
      off += 8
      // a later fragment carries no ports: judged by protocol alone
      if (fragOffset !== 0) return { proto: next, srcPort: 0, dstPort: 0, icmpType: -1 }
    } else break
  }
  if (next === PROTO_TCP || next === PROTO_UDP) {
    if (p.length < off + 4) return undefined
    return {
      proto: next,
      srcPort: (p[off] << 8) | p[off + 1],
      dstPort: (p[off + 2] << 8) | p[off + 3],
      icmpType: -1,
    }
  }
  if (next === PROTO_ICMP6) {
    if (p.length < off + 1) return undefined
    // echo request/reply: the identifier stands in for the ports, so a reply matches its request
    const type = p[off]
    const id = (type === 128 || type === 129) && p.length >= off + 6 ? (p[off + 4] << 8) | p[off + 5] : 0
    return { proto: next, srcPort: id, dstPort: id, icmpType: type }
  }
  return { proto: next, srcPort: 0, dstPort: 0, icmpType: -1 }
}

/** The 16-byte key of an address inside a packet (latin1: one char per byte, cheap to build). */
export const srcKey = (p: Uint8Array): string =>
  Buffer.from(p.buffer, p.byteOffset + 8, 16).toString('latin1')
export const dstKey = (p: Uint8Array): string =>
  Buffer.from(p.buffer, p.byteOffset + 24, 16).toString('latin1')
/** Do two packets have the same destination address (bytes 24-39)? */
export function sameDestination(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 24; i < 40; i++) if (a[i] !== b[i]) return false
  return true
}
export const addrKey = (a: Uint8Array): string => Buffer.from(a.buffer, a.byteOffset, 16).toString('latin1')

function compileRule(r: AllowRuleConfig): Rule {
  const from = r.from.trim()
  let matchFrom: Rule['matchFrom']
  if (from === '*') matchFrom = () => true
  else if (from.startsWith('tag:')) {
    const [k, v] = from.slice(4).split('=', 2)
    matchFrom = v === undefined ? (m) => Object.hasOwn(m.tags, k) : (m) => m.tags[k] === v
  } else matchFrom = (m) => m.name === from
  const proto =
    r.proto === 'tcp' ? PROTO_TCP : r.proto === 'udp' ? PROTO_UDP : r.proto === 'icmp' ? PROTO_ICMP6 : 'any'
  const ports = r.ports?.map((p): [number, number] => {
    if (typeof p === 'number') return [p, p]
    const [lo, hi = lo] = p.split('-').map(Number)
    return [lo, hi]
  })
  const text = `from ${from} ${r.proto}${ports === undefined ? '' : ` ${r.ports?.join(',')}`}`
  return { text, matchFrom, proto, ports }
}

export interface FilterOptions {
  /** our own overlay address, 16 bytes */
  self: Uint8Array
  rules: AllowRuleConfig[]
  now?: () => number
  /** flows remembered for replies; the oldest go first beyond this */
  maxFlows?: number
}

// how long a flow we opened lets replies in after its last outbound packet
const FLOW_IDLE_MS: Record<number, number> = {
  [PROTO_TCP]: 600_000,
  [PROTO_UDP]: 120_000,
  [PROTO_ICMP6]: 30_000,
}
const OTHER_IDLE_MS = 60_000

export class PacketFilter {
  private readonly self: string
  private readonly rules: Rule[]
  private readonly now: () => number
  private readonly maxFlows: number
  /** flow key -> expiry; only kept when there are rules */
  private readonly flows = new Map<string, number>()
  /** packets let in by each rule (index as in the config) */
  readonly ruleHits: number[]
  readonly drops: Record<DropReason, number> = {
    'not-ipv6': 0,
    truncated: 0,
    'spoofed-source': 0,
    'wrong-destination': 0,
    'not-allowed': 0,
    'unknown-member': 0,
    'member-down': 0,
  }
  established = 0
  accepted = 0

  constructor(opts: FilterOptions) {
    this.self = addrKey(opts.self)
    this.rules = opts.rules.map(compileRule)
    this.ruleHits = this.rules.map(() => 0)
    this.now = opts.now ?? Date.now
    this.maxFlows = opts.maxFlows ?? 65_536
  }

  /** The rules as text, for status and metrics labels. */
  ruleTexts(): string[] {
    return this.rules.map((r) => r.text)
  }

  /** Count a drop decided outside the filter (a member that is not alive, a revoked one). */
  drop(reason: DropReason): Verdict {
    this.drops[reason]++
    return { ok: false, reason }
  }

  /**
   * A packet we are about to send: valid IPv6 from our address (undefined otherwise). With rules,
   * it opens a flow so the replies come back in.
   */
  outbound(p: Uint8Array): PacketInfo | undefined {
    if (p.length < 40 || p[0] >> 4 !== 6) return undefined
    if (this.rules.length === 0) return { proto: 0, srcPort: 0, dstPort: 0, icmpType: -1 }
    const info = packetInfo(p)
    if (info === undefined) return undefined
    // the reply comes from dst to our src: key it as the inbound packet will be keyed
    const key = flowKey(info.proto, dstKey(p), info.dstPort, info.srcPort)
    const idle = FLOW_IDLE_MS[info.proto] ?? OTHER_IDLE_MS
    this.flows.delete(key) // re-inserted last: the Map stays in least-recently-used order
    this.flows.set(key, this.now() + idle)
    if (this.flows.size > this.maxFlows) {
      const oldest = this.flows.keys().next().value
      if (oldest !== undefined) this.flows.delete(oldest)
    }
    return info
  }

  /** A packet member `from` sent us: deliver it or not. */
  inbound(p: Uint8Array, from: FilterMember): Verdict {
    if (p.length < 40 || p[0] >> 4 !== 6) return this.drop('not-ipv6')
    const declared = ((p[4] << 8) | p[5]) + 40
    if (declared > p.length) return this.drop('truncated')
    if (srcKey(p) !== addrKey(from.overlay)) return this.drop('spoofed-source')
    if (dstKey(p) !== this.self) return this.drop('wrong-destination')
    if (this.rules.length === 0) {
      this.accepted++
      return { ok: true, rule: 'default' }
    }
    const info = packetInfo(p)
    if (info === undefined) return this.drop('truncated')
    // ICMPv6 errors (unreachable, packet too big, time exceeded, parameter problem) keep paths working
    if (info.proto === PROTO_ICMP6 && info.icmpType >= 1 && info.icmpType <= 4) {
      this.established++
      this.accepted++
      return { ok: true, rule: 'established' }
    }
    const key = flowKey(info.proto, srcKey(p), info.srcPort, info.dstPort)
    const until = this.flows.get(key)
    if (until !== undefined) {
      if (until >= this.now()) {
        this.established++
        this.accepted++
        return { ok: true, rule: 'established' }
      }
      this.flows.delete(key)
    }
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i]
      if (r.proto !== 'any' && r.proto !== info.proto) continue
      // an echo reply is only ever let in as a reply
      if (info.proto === PROTO_ICMP6 && info.icmpType === 129) continue
      if (r.ports !== undefined && !r.ports.some(([lo, hi]) => info.dstPort >= lo && info.dstPort <= hi))
        continue
      if (!r.matchFrom(from)) continue
      this.ruleHits[i]++
      this.accepted++
      return { ok: true, rule: i }
    }
    return this.drop('not-allowed')
  }
}

const flowKey = (proto: number, remote: string, remotePort: number, localPort: number): string =>
  `${proto}|${remote}|${remotePort}|${localPort}`
