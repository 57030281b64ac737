/**
 * The direct UDP carrier (protocols/overlay.md, "Direct UDP carrier"): to a member we have a
 * direct connection to, IP packets go in UDP datagrams sealed with ChaCha20-Poly1305
 * (udp-crypto.ts), one socket for all members, no DTLS/SCTP/ICE in between: a datagram is one
 * seal + one sendto, and one recv + one open. What WireGuard and Tailscale do.
 *
 * A session starts unconfirmed: both ends send probes until each knows the other hears it
 * (a probe says whether its sender has heard us yet); only then do packets go on it. A session
 * that hears nothing for LOST_MS, or is not confirmed within CONFIRM_MS, closes, and the
 * packets go back on the WebRTC datagram channel or the stream.
 *
 * Keys rotate within a session (protocols/overlay.md, "Key rotation"): the offerer runs a new
 * exchange every rekeyAfterMs, and each end opens the member's datagrams under the old key for
 * GRACE_MS after it saw the member use the new one. The session (its confirmation, packet size,
 * totals) is kept across a rotation.
 */

import { randomBytes } from 'node:crypto'
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { lookup } from 'node:dns'
import { isIPv4, isIPv6 } from 'node:net'
import { DatagramSizer, fragmentsOf, type IpVersion } from './datagram-size.js'
import { packMessages, splitIPv6 } from './frames.js'
import { noIPv6, plainAddress, reachable, type SocketFamily, socketAddress } from './udp-address.js'
import {
  deriveKeys,
  type Ephemeral,
  KEY_BYTES,
  keyIdOf,
  newEphemeral,
  newKey,
  Opener,
  Sealer,
} from './udp-crypto.js'

// a confirmed session that hears nothing (not even a keepalive) this long has lost its path
export const LOST_MS = 15_000
// how long a new session may take to hear the member confirm it
export const CONFIRM_MS = 5_000
// a confirmed session that sent nothing this long sends a keepalive (so the member's LOST_MS holds)
const KEEPALIVE_MS = 5_000
// what may wait in the socket's send queue before packets are dropped (no bufferbloat)
const MAX_QUEUED = 1 << 20

export const REPLACED = 'replaced by a new key exchange'

// a new exchange after this long with one key (WireGuard's REKEY_AFTER_TIME; overlay.rekeyAfterMs)
export const REKEY_AFTER_MS = 120_000
// ... or after this many datagrams sealed with one key, either way. Not for the cipher (a 64-bit
// nonce counter; ChaCha20-Poly1305's limits are beyond 2^60 messages): it bounds what one key
// protects on a fast link, ~21 GB of 1280-byte packets, about 2 minutes at 1.4 Gbit/s
export const REKEY_AFTER_DATAGRAMS = 2 ** 24
// a key the member stopped using still opens its datagrams this long (in flight, reordered):
// longer than any queue on a path that works, short enough that a retired key soon opens nothing
export const GRACE_MS = 2_000
// an exchange that failed is tried again this much later; keys not rotated this long after
// they were due close the session (WireGuard's REJECT_AFTER_TIME is REKEY_AFTER_TIME + 60 s)
const REKEY_RETRY_MS = 5_000
export const REJECT_AFTER_DUE_MS = 60_000
// the longest overlay.rekeyAfterMs: the answerer, which never starts an exchange, closes a session
// whose keys are older than this + REJECT_AFTER_DUE_MS (an offerer that stopped rotating)
export const MAX_REKEY_AFTER_MS = 3_600_000
// key ids retired per session that are still told apart from strangers' (udp-retired-key)
const RETIRED_KEPT = 4

// a control datagram's plaintext is shorter than an IPv6 packet (40 bytes) and starts with its kind
const PROBE = 0
const PROBE_HEARD = 1
// | 2 | expected (u32 BE) | received (u32 BE) |: since the session began, how many of the member's
// datagrams we should have got (its highest counter + 1) and how many we got, both mod 2^32;
// totals, so that a datagram that comes late or a report that is lost is counted in the next one
const LOSS_REPORT = 2
const MIN_IPV6 = 40
// a report once a second, when at least this many datagrams were expected since the last one
const REPORT_MIN_EXPECTED = 16

export type UdpDropReason =
  | 'udp-malformed'
  | 'udp-unknown-key'
  | 'udp-bad-tag'
  | 'udp-replayed'
  | 'udp-retired-key'
  | 'udp-congested'
  | 'udp-send-failed'

export interface Endpoint {
  address: string
  port: number
}

/**
 * Our half of a key exchange: an ephemeral X25519 key pair, and the id the member will put on
 * the datagrams it seals to us; `key`, 32 random bytes, only for a member on the previous
 * version, which sends and takes keys rather than public keys.
 */
export interface LocalKey {
  keyId: number
  ephemeral: Ephemeral
  key: Uint8Array<ArrayBuffer>
}

/** The member's half: its public key (or, on the previous version, its random key). */
export interface RemoteKey {
  keyId: number
  publicKey?: Uint8Array
  key?: Uint8Array
}

/** One key we open the member's datagrams with, under the id we gave it. */
interface RxKey {
  id: number
  opener: Opener
  session: UdpSession
  /** set once the member uses a newer key: from then on this one opens nothing */
  retireAt?: number
}

export interface UdpCarrierDeps {
  /** 0: an ephemeral port */
  port: number
  /** a member's packets, opened; false when the member is no longer live (its session closes) */
  onPackets(peer: string, packets: Uint8Array[]): boolean
  onConfirmed(peer: string, endpoint: Endpoint): void
  onClosed(peer: string, why: string): void
  onError(err: Error): void
  /** the offerer's keys for the member are due for rotation: run a new exchange (then rekey()) */
  onRekeyDue?(peer: string): void
  /** overlay.rekeyAfterMs (default REKEY_AFTER_MS) */
  rekeyAfterMs?: number
  /** default REKEY_AFTER_DATAGRAMS (tests rotate sooner) */
  rekeyAfterDatagrams?: number
  /** default GRACE_MS (a test on a loaded machine gives a longer one) */
  graceMs?: number
}

/**
 * The socket's name lookup: every address the carrier sends to is an IP literal (a connection's
 * remote IP, where a datagram came from), answered at once; dgram's default (dns.lookup) defers
 * even a literal to the next tick, one more hop per datagram sent (sim/PROFILE.md, issue 15).
 */
export function literalLookup(
  address: string,
  family: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  if (isIPv4(address)) callback(null, address, 4)
  else if (isIPv6(address)) callback(null, address, 6)
  else lookup(address, family as number, callback)
}

const ipOf = (plain: string): IpVersion => (isIPv4(plain) ? 4 : 6)

export class UdpSession {
  confirmed = false
  /** an authentic datagram came from the member */
  heard = false
  sentPackets = 0
  sentDatagrams = 0
  receivedPackets = 0
  receivedDatagrams = 0
  /** every authentic datagram, control ones included (what loss reports count) */
  receivedAll = 0
  lastSent = 0
  lastReceived = 0
  readonly since = Date.now()
  closed = false
  /** how large our packets to the member may be; undefined: the member sends no loss reports */
  readonly sizer: DatagramSizer | undefined
  /** the member's datagrams our last loss report counted as expected */
  rxReported = 0
  /** what the member sent under keys retired from this session: their highest counters + 1 */
  expectedRetired = 0
  /** loss reports heard from the member */
  lossReports = 0
  /** datagrams of more than one fragment sent since the last tick (see UdpCarrier.tick) */
  sentLarge = 0
  /** the endpoint's address as the socket takes it (IPv4-mapped on a dual-stack socket) */
  sendTo = ''
  /** the address the socket last reported the member's datagrams from, as it reported it */
  heardFrom: string | undefined

  /** the key the member seals with now; the one it used before (for GRACE_MS); a new one it may
   * take up any moment (the exchange is done on our side, the member has not used it yet) */
  rx: RxKey
  rxPrevious: RxKey | undefined
  rxNext: RxKey | undefined
  /** what we seal with; the answerer's new key waits here until the member is seen on its new one */
  sealer: Sealer
  sealerNext: Sealer | undefined
  /** when the sealer's key was made */
  keysAt = Date.now()
  /** completed rotations (both ends use the new keys) */
  rekeys = 0
  /** when we last asked for a rotation (the offerer) */
  rekeyAskedAt: number | undefined
  /** key ids retired from this session, newest last */
  readonly retired: number[] = []

  constructor(
    readonly peer: string,
    localKeyId: number,
    opener: Opener,
    sealer: Sealer,
    /** we offered (we start rotations) */
    readonly offerer: boolean,
    /** the keys came from X25519 (both ends on this version): they can be rotated */
    readonly rotates: boolean,
    /** where the member's datagrams come from (it follows the last authentic one, e.g. through a NAT);
     * its address plain (udp-address.ts): dotted IPv4 or RFC 5952 IPv6 */
    public endpoint: Endpoint,
    sizes?: { min: number; max: number },
  ) {
    this.sizer =
      sizes === undefined || sizes.max <= sizes.min
        ? undefined
        : new DatagramSizer({ ...sizes, ip: ipOf(endpoint.address) })
    this.rx = { id: localKeyId, opener, session: this }
    this.sealer = sealer
  }

  /** The id the member puts on the datagrams it seals to us now. */
  get localKeyId(): number {
    return this.rx.id
  }

  /** The member's datagrams we should have got since the session began (over all its keys). */
  expected(): number {
    let n = this.expectedRetired
    for (const k of [this.rxPrevious, this.rx, this.rxNext]) if (k !== undefined) n += k.opener.window.top + 1
    return n
  }

  /** The largest packet to send the member now (`floor` when it sends no loss reports). */
  packetSize(floor: number): number {
    return this.sizer?.size ?? floor
  }
}

export class UdpCarrier {
  readonly drops: Record<UdpDropReason, number> = {
    'udp-malformed': 0,
    'udp-unknown-key': 0,
    'udp-bad-tag': 0,
    'udp-replayed': 0,
    'udp-retired-key': 0,
    'udp-congested': 0,
    'udp-send-failed': 0,
  }
  private readonly byKeyId = new Map<number, RxKey>()
  /** recently retired key ids -> their session (a datagram under one is a retired key's, not a stranger's) */
  private readonly retiredIds = new Map<number, UdpSession>()
  private readonly rekeyAfterMs: number
  private readonly rekeyAfterDatagrams: number
  private readonly graceMs: number
  private readonly byPeer = new Map<string, UdpSession>()
  /** key ids handed out in an exchange that has not finished */
  private readonly reserved = new Set<number>()
  private scratch = new Uint8Array(0)

  private constructor(
    private readonly socket: Socket,
    /** 'dual': udp6 reaching IPv4 members at ::ffff:a.b.c.d; 'ipv4': udp4 (a host without IPv6) */
    readonly family: SocketFamily,
    private readonly deps: UdpCarrierDeps,
  ) {
    socket.on('message', (m, r) => this.receive(m, r))
    // a failed send (no route, a full buffer) comes here: the packet is lost, as on any link
    socket.on('error', (err) => deps.onError(err))
    this.rekeyAfterMs = deps.rekeyAfterMs ?? REKEY_AFTER_MS
    this.rekeyAfterDatagrams = deps.rekeyAfterDatagrams ?? REKEY_AFTER_DATAGRAMS
    this.graceMs = deps.graceMs ?? GRACE_MS
  }

  /**
   * Bind the carrier's socket on every address (members reach us at a connection's remote IP):
   * one dual-stack udp6 socket for IPv6 and IPv4 members, or udp4 where the host has no IPv6
   * (or `family: 'ipv4'` is asked for).
   */
  static async open(deps: UdpCarrierDeps & { family?: SocketFamily }): Promise<UdpCarrier> {
    if (deps.family !== 'ipv4')
      try {
        return new UdpCarrier(await bind('udp6', deps.port), 'dual', deps)
      } catch (err) {
        if (!noIPv6(err)) throw err
      }
    return new UdpCarrier(await bind('udp4', deps.port), 'ipv4', deps)
  }

  get port(): number {
    return this.socket.address().port
  }

  session(peer: string): UdpSession | undefined {
    return this.byPeer.get(peer)
  }

  /** The members with a session, confirmed or not. */
  peers(): string[] {
    return [...this.byPeer.keys()]
  }

  /** A fresh key pair and an id no session of ours uses, for one exchange. */
  newLocalKey(): LocalKey {
    let keyId: number
    do keyId = randomBytes(4).readUInt32BE(0)
    while (this.byKeyId.has(keyId) || this.reserved.has(keyId) || this.retiredIds.has(keyId))
    this.reserved.add(keyId)
    return { keyId, ephemeral: newEphemeral(), key: newKey() }
  }

  /** The exchange failed: its key id is free again. */
  release(local: LocalKey): void {
    this.reserved.delete(local.keyId)
  }

  /**
   * Start the session the exchange agreed on (replacing the member's old one); it probes now.
   * With `sizes` (both ends send loss reports), packet sizes follow the member's reports. The
   * keys come from the member's public key; from its random key when it sent no public key (a
   * member on the previous version: those keys are never rotated).
   */
  start(
    peer: string,
    local: LocalKey,
    remote: RemoteKey & { endpoint: Endpoint },
    opts: { offerer: boolean; sizes?: { min: number; max: number } },
  ): UdpSession {
    const keys = this.keysOf(local, remote, opts.offerer)
    this.close(peer, REPLACED)
    this.reserved.delete(local.keyId)
    const address = plainAddress(remote.endpoint.address)
    if (address === undefined || !reachable(address, this.family))
      throw new Error(`no UDP to ${remote.endpoint.address} from a ${this.family} socket`)
    const s = new UdpSession(
      peer,
      local.keyId,
      new Opener(keys.open),
      new Sealer(keys.seal, remote.keyId),
      opts.offerer,
      keys.rotates,
      { address, port: remote.endpoint.port },
      opts.sizes,
    )
    s.sendTo = socketAddress(address, this.family)
    this.byKeyId.set(local.keyId, s.rx)
    this.byPeer.set(peer, s)
    this.control(s, PROBE)
    return s
  }

  private keysOf(
    local: LocalKey,
    remote: RemoteKey,
    offerer: boolean,
  ): { seal: Uint8Array<ArrayBuffer>; open: Uint8Array<ArrayBuffer>; rotates: boolean } {
    if (remote.publicKey !== undefined && remote.publicKey.length > 0)
      return {
        ...deriveKeys(local.ephemeral, remote.publicKey, offerer ? 'offerer' : 'answerer'),
        rotates: true,
      }
    const key = remote.key ?? new Uint8Array(0)
    if (key.length !== KEY_BYTES)
      throw new Error(`the member's key has ${key.length} bytes, not ${KEY_BYTES}`)
    return { seal: Uint8Array.from(key), open: local.key, rotates: false }
  }

  /**
   * A new exchange on a session finished on our side: the new key opens the member's datagrams
   * from now on (the old one too, until GRACE_MS after the member is seen on the new one). The
   * offerer seals with its new key at once (the answerer took its new key before answering) and
   * says so in a probe under it; the answerer keeps sealing with the old key until it sees the
   * member's first datagram under the new one (the member has our answer, so opens the new key).
   */
  rekey(peer: string, local: LocalKey, remote: RemoteKey): UdpSession {
    const s = this.byPeer.get(peer)
    if (s === undefined || !s.rotates) throw new Error('no session whose keys rotate')
    const keys = deriveKeys(
      local.ephemeral,
      remote.publicKey ?? new Uint8Array(0),
      s.offerer ? 'offerer' : 'answerer',
    )
    this.reserved.delete(local.keyId)
    // an exchange the member never took up (its answer lost): that key opens nothing now
    if (s.rxNext !== undefined) this.retire(s, s.rxNext)
    s.rxNext = { id: local.keyId, opener: new Opener(keys.open), session: s }
    this.byKeyId.set(local.keyId, s.rxNext)
    const sealer = new Sealer(keys.seal, remote.keyId)
    s.rekeyAskedAt = undefined
    if (s.offerer) {
      s.sealer.wipe()
      s.sealer = sealer
      s.keysAt = Date.now()
      this.control(s, PROBE_HEARD)
    } else {
      s.sealerNext?.wipe()
      s.sealerNext = sealer
    }
    return s
  }

  close(peer: string, why: string): void {
    const s = this.byPeer.get(peer)
    if (s === undefined) return
    s.closed = true
    this.byPeer.delete(peer)
    for (const k of [s.rxPrevious, s.rx, s.rxNext]) {
      if (k === undefined) continue
      this.byKeyId.delete(k.id)
      k.opener.wipe()
    }
    for (const id of s.retired) this.retiredIds.delete(id)
    s.sealer.wipe()
    s.sealerNext?.wipe()
    this.deps.onClosed(peer, why)
  }

  /** The member uses the new key: the old one opens for GRACE_MS more; the answerer seals anew. */
  private promote(s: UdpSession, now: number): void {
    const next = s.rxNext
    if (next === undefined) return
    if (s.rxPrevious !== undefined) this.retire(s, s.rxPrevious)
    s.rxPrevious = s.rx
    s.rxPrevious.retireAt = now + this.graceMs
    s.rx = next
    s.rxNext = undefined
    s.rekeys++
    if (s.sealerNext !== undefined) {
      s.sealer.wipe()
      s.sealer = s.sealerNext
      s.sealerNext = undefined
      s.keysAt = now
      // tell the offerer now (not at the next packet or keepalive), so its old key retires soon
      this.control(s, PROBE_HEARD)
    }
  }

  /** A key opens nothing from now on; what the member sent under it stays in the loss totals. */
  private retire(s: UdpSession, k: RxKey): void {
    this.byKeyId.delete(k.id)
    s.expectedRetired += k.opener.window.top + 1
    k.opener.wipe()
    if (s.rxPrevious === k) s.rxPrevious = undefined
    if (s.rxNext === k) s.rxNext = undefined
    s.retired.push(k.id)
    this.retiredIds.set(k.id, s)
    if (s.retired.length > RETIRED_KEPT) this.retiredIds.delete(s.retired.shift()!)
  }

  /**
   * The offerer's rotation: due after rekeyAfterMs or rekeyAfterDatagrams (either end's count),
   * asked for again every REKEY_RETRY_MS while it fails, and the session closed when it has
   * failed for REJECT_AFTER_DUE_MS. False when the session closed.
   */
  private rekeyTick(s: UdpSession, now: number): boolean {
    if (!s.rotates || !s.confirmed) return true
    const age = now - s.keysAt
    if (!s.offerer) {
      if (age < MAX_REKEY_AFTER_MS + REJECT_AFTER_DUE_MS) return true
      this.close(s.peer, `the member did not rotate the keys for ${Math.round(age / 1000)} s`)
      return false
    }
    // until the member is seen on our newest key, the count it seals under is the old key's
    const theirs = s.rxNext === undefined ? s.rx.opener.window.top + 1 : 0
    if (age < this.rekeyAfterMs && Math.max(s.sealer.sealed, theirs) < this.rekeyAfterDatagrams) return true
    if (age >= this.rekeyAfterMs + REJECT_AFTER_DUE_MS) {
      this.close(s.peer, `keys not rotated for ${Math.round(age / 1000)} s`)
      return false
    }
    if (s.rekeyAskedAt !== undefined && now - s.rekeyAskedAt < REKEY_RETRY_MS) return true
    s.rekeyAskedAt = now
    this.deps.onRekeyDue?.(s.peer)
    return true
  }

  /** Once a second: probes for unconfirmed sessions, keepalives, and sessions that lost their path. */
  tick(now = Date.now()): void {
    for (const s of [...this.byPeer.values()]) {
      if (s.rxPrevious?.retireAt !== undefined && now >= s.rxPrevious.retireAt) this.retire(s, s.rxPrevious)
      if (!this.rekeyTick(s, now)) continue
      if (!s.confirmed) {
        if (now - s.since > CONFIRM_MS) this.close(s.peer, `no UDP reply within ${CONFIRM_MS / 1000} s`)
        else this.control(s, s.heard ? PROBE_HEARD : PROBE)
        continue
      }
      if (now - s.lastReceived > LOST_MS) {
        this.close(s.peer, `nothing heard on UDP for ${LOST_MS / 1000} s`)
        continue
      }
      if (s.sizer !== undefined) this.lossTick(s)
      if (now - s.lastSent > KEEPALIVE_MS) this.control(s, PROBE_HEARD)
    }
  }

  /**
   * Loss reports both ways: tell the member what we got of its datagrams; and while we send it
   * datagrams of several fragments, send one small one a second, so that its counter shows the
   * member what it lost even when every large one is (a path that drops IP fragments).
   */
  private lossTick(s: UdpSession): void {
    const expected = s.expected()
    if (expected - s.rxReported >= REPORT_MIN_EXPECTED) {
      const m = new Uint8Array(9)
      const v = new DataView(m.buffer)
      m[0] = LOSS_REPORT
      v.setUint32(1, expected % 2 ** 32)
      v.setUint32(5, s.receivedAll % 2 ** 32)
      this.emit(s, m)
      s.rxReported = expected
    }
    if (s.sentLarge > 0) {
      s.sentLarge = 0
      this.control(s, PROBE_HEARD)
    }
  }

  /**
   * Send a member's packets (each at most the session's packetSize; consecutive small ones
   * together in one datagram of at most `max`, one fragment: a lost fragment would lose them
   * all). Returns how many went; 0 when there is no confirmed session.
   */
  send(peer: string, packets: readonly Uint8Array[], max: number): number {
    const s = this.byPeer.get(peer)
    if (s === undefined || !s.confirmed || packets.length === 0) return 0
    if (this.socket.getSendQueueSize() > MAX_QUEUED) {
      this.drops['udp-congested'] += packets.length
      return 0
    }
    if (this.scratch.length < max) this.scratch = new Uint8Array(max)
    const sent = packMessages(packets, max, this.scratch, (m, n) => {
      this.emit(s, m)
      s.sentPackets += n
      return true
    })
    return sent
  }

  closeAll(): void {
    for (const peer of [...this.byPeer.keys()]) this.close(peer, 'the agent is stopping')
    try {
      this.socket.close()
    } catch {}
  }

  private emit(s: UdpSession, plaintext: Uint8Array): void {
    s.sentDatagrams++
    s.lastSent = Date.now()
    if (s.sizer !== undefined) {
      s.sizer.sent(plaintext.byteLength)
      if (fragmentsOf(plaintext.byteLength, s.sizer.ip) > 1) s.sentLarge++
    }
    this.socket.send(s.sealer.seal(plaintext), s.endpoint.port, s.sendTo)
  }

  private control(s: UdpSession, kind: number): void {
    this.emit(s, Uint8Array.of(kind))
  }

  private receive(d: Buffer, from: RemoteInfo): void {
    const keyId = keyIdOf(d)
    if (keyId === undefined) {
      this.drops['udp-malformed']++
      return
    }
    const k = this.byKeyId.get(keyId)
    if (k === undefined) {
      this.drops[this.retiredIds.has(keyId) ? 'udp-retired-key' : 'udp-unknown-key']++
      return
    }
    const s = k.session
    const now = Date.now()
    // past its grace a key opens nothing, whenever the next tick comes
    if (k.retireAt !== undefined && now >= k.retireAt) {
      this.retire(s, k)
      this.drops['udp-retired-key']++
      return
    }
    const r = k.opener.open(d)
    if (!r.ok) {
      this.drops[r.reason]++
      return
    }
    // the first authentic datagram under the new key: the member has switched
    if (k === s.rxNext) this.promote(s, now)
    s.lastReceived = now
    s.heard = true
    s.receivedAll++
    // the member is where its last authentic datagram came from (a NAT's public port, a new address)
    if (from.address !== s.heardFrom || from.port !== s.endpoint.port) this.roam(s, from)
    const pt = r.plaintext
    if (pt.length < MIN_IPV6) {
      // a probe from a member that has not heard us yet gets an answer at once (one round trip);
      // one saying it has heard us confirms the session, and we say we have heard it too
      if (pt[0] === PROBE) this.control(s, PROBE_HEARD)
      else if (pt[0] === PROBE_HEARD && !s.confirmed) {
        this.confirm(s)
        this.control(s, PROBE_HEARD)
      } else if (pt[0] === LOSS_REPORT && pt.length >= 9 && s.sizer !== undefined) {
        const v = new DataView(pt.buffer, pt.byteOffset, pt.byteLength)
        s.lossReports++
        s.sizer.report(v.getUint32(1), v.getUint32(5), Date.now())
      }
      return
    }
    // the member sends packets only on a session it knows we hear
    if (!s.confirmed) this.confirm(s)
    s.receivedDatagrams++
    const packets = splitIPv6(pt)
    s.receivedPackets += packets.length
    if (!this.deps.onPackets(s.peer, packets)) this.close(s.peer, 'member is no longer alive')
  }

  /**
   * The socket reports the member's datagrams from another address text or port: on a dual-stack
   * socket an IPv4 member's come from ::ffff:a.b.c.d, which is the endpoint it has (plain), not a
   * move; a real move changes the endpoint, and with its family the sizer's fragment count.
   */
  private roam(s: UdpSession, from: RemoteInfo): void {
    s.heardFrom = from.address
    const address = plainAddress(from.address) ?? from.address
    if (address === s.endpoint.address && from.port === s.endpoint.port) return
    s.endpoint = { address, port: from.port }
    s.sendTo = socketAddress(address, this.family)
    if (s.sizer !== undefined) s.sizer.ip = ipOf(address)
  }

  private confirm(s: UdpSession): void {
    s.confirmed = true
    this.deps.onConfirmed(s.peer, s.endpoint)
  }
}

/** A socket with the carrier's buffers, bound to every address of its family. */
async function bind(type: 'udp4' | 'udp6', port: number): Promise<Socket> {
  const socket = createSocket({
    type,
    // dual-stack: IPv4 members too, as ::ffff:a.b.c.d (whatever net.ipv6.bindv6only says)
    ipv6Only: false,
    recvBufferSize: 4 << 20,
    sendBufferSize: 4 << 20,
    lookup: literalLookup,
  })
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(port, type === 'udp6' ? '::' : '0.0.0.0', () => {
        socket.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    try {
      socket.close()
    } catch {}
    throw err
  }
  return socket
}
