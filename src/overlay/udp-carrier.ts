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
 */

import { randomBytes } from 'node:crypto'
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { lookup } from 'node:dns'
import { isIPv4 } from 'node:net'
import { DatagramSizer, fragmentsOf } from './datagram-size.js'
import { packMessages, splitIPv6 } from './frames.js'
import { KEY_BYTES, keyIdOf, newKey, Opener, Sealer } from './udp-crypto.js'

// a confirmed session that hears nothing (not even a keepalive) this long has lost its path
export const LOST_MS = 15_000
// how long a new session may take to hear the member confirm it
export const CONFIRM_MS = 5_000
// a confirmed session that sent nothing this long sends a keepalive (so the member's LOST_MS holds)
const KEEPALIVE_MS = 5_000
// what may wait in the socket's send queue before packets are dropped (no bufferbloat)
const MAX_QUEUED = 1 << 20

export const REPLACED = 'replaced by a new key exchange'

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
  | 'udp-congested'
  | 'udp-send-failed'

export interface Endpoint {
  address: string
  port: number
}

/** Our half of a key exchange: the key the member will seal to us with, and its id. */
export interface LocalKey {
  key: Uint8Array<ArrayBuffer>
  keyId: number
}

export interface UdpCarrierDeps {
  /** 0: an ephemeral port */
  port: number
  /** a member's packets, opened; false when the member is no longer live (its session closes) */
  onPackets(peer: string, packets: Uint8Array[]): boolean
  onConfirmed(peer: string, endpoint: Endpoint): void
  onClosed(peer: string, why: string): void
  onError(err: Error): void
}

/**
 * The socket's name lookup: every address the carrier sends to is an IPv4 literal (a connection's
 * remote IP, where a datagram came from), answered at once; dgram's default (dns.lookup) defers
 * even a literal to the next tick, one more hop per datagram sent (sim/PROFILE.md, issue 15).
 */
export function literalLookup(
  address: string,
  family: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  if (isIPv4(address)) callback(null, address, 4)
  else lookup(address, family as number, callback)
}

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
  /** the highest counter we accepted from the member, and the one our last loss report went to */
  rxTop = -1
  rxReported = -1
  /** loss reports heard from the member */
  lossReports = 0
  /** datagrams of more than one fragment sent since the last tick (see UdpCarrier.tick) */
  sentLarge = 0

  constructor(
    readonly peer: string,
    readonly localKeyId: number,
    readonly opener: Opener,
    readonly sealer: Sealer,
    /** where the member's datagrams come from (it follows the last authentic one, e.g. through a NAT) */
    public endpoint: Endpoint,
    sizes?: { min: number; max: number },
  ) {
    this.sizer = sizes === undefined || sizes.max <= sizes.min ? undefined : new DatagramSizer(sizes)
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
    'udp-congested': 0,
    'udp-send-failed': 0,
  }
  private readonly byKeyId = new Map<number, UdpSession>()
  private readonly byPeer = new Map<string, UdpSession>()
  /** key ids handed out in an exchange that has not finished */
  private readonly reserved = new Set<number>()
  private scratch = new Uint8Array(0)

  private constructor(
    private readonly socket: Socket,
    private readonly deps: UdpCarrierDeps,
  ) {
    socket.on('message', (m, r) => this.receive(m, r))
  }

  /** Bind the carrier's socket (IPv4, every address: members reach us at a connection's remote IP). */
  static async open(deps: UdpCarrierDeps): Promise<UdpCarrier> {
    const socket = createSocket({
      type: 'udp4',
      recvBufferSize: 4 << 20,
      sendBufferSize: 4 << 20,
      lookup: literalLookup,
    })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(deps.port, '0.0.0.0', () => {
        socket.off('error', reject)
        resolve()
      })
    })
    // a failed send (no route, a full buffer) comes here: the packet is lost, as on any link
    socket.on('error', (err) => deps.onError(err))
    return new UdpCarrier(socket, deps)
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

  /** A fresh key and an id no session of ours uses, for one exchange. */
  newLocalKey(): LocalKey {
    let keyId: number
    do keyId = randomBytes(4).readUInt32BE(0)
    while (this.byKeyId.has(keyId) || this.reserved.has(keyId))
    this.reserved.add(keyId)
    return { key: newKey(), keyId }
  }

  /** The exchange failed: its key id is free again. */
  release(local: LocalKey): void {
    this.reserved.delete(local.keyId)
  }

  /**
   * Start the session the exchange agreed on (replacing the member's old one); it probes now.
   * With `sizes` (both ends send loss reports), packet sizes follow the member's reports.
   */
  start(
    peer: string,
    local: LocalKey,
    remote: { key: Uint8Array; keyId: number; endpoint: Endpoint },
    sizes?: { min: number; max: number },
  ): UdpSession {
    if (remote.key.length !== KEY_BYTES)
      throw new Error(`the member's key has ${remote.key.length} bytes, not ${KEY_BYTES}`)
    this.close(peer, REPLACED)
    this.reserved.delete(local.keyId)
    const s = new UdpSession(
      peer,
      local.keyId,
      new Opener(local.key),
      new Sealer(Uint8Array.from(remote.key), remote.keyId),
      remote.endpoint,
      sizes,
    )
    this.byKeyId.set(local.keyId, s)
    this.byPeer.set(peer, s)
    this.control(s, PROBE)
    return s
  }

  close(peer: string, why: string): void {
    const s = this.byPeer.get(peer)
    if (s === undefined) return
    s.closed = true
    this.byPeer.delete(peer)
    this.byKeyId.delete(s.localKeyId)
    this.deps.onClosed(peer, why)
  }

  /** Once a second: probes for unconfirmed sessions, keepalives, and sessions that lost their path. */
  tick(now = Date.now()): void {
    for (const s of [...this.byPeer.values()]) {
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
    if (s.rxTop - s.rxReported >= REPORT_MIN_EXPECTED) {
      const m = new Uint8Array(9)
      const v = new DataView(m.buffer)
      m[0] = LOSS_REPORT
      v.setUint32(1, (s.rxTop + 1) % 2 ** 32)
      v.setUint32(5, s.receivedAll % 2 ** 32)
      this.emit(s, m)
      s.rxReported = s.rxTop
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
      if (fragmentsOf(plaintext.byteLength) > 1) s.sentLarge++
    }
    this.socket.send(s.sealer.seal(plaintext), s.endpoint.port, s.endpoint.address)
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
    const s = this.byKeyId.get(keyId)
    if (s === undefined) {
      this.drops['udp-unknown-key']++
      return
    }
    const r = s.opener.open(d)
    if (!r.ok) {
      this.drops[r.reason]++
      return
    }
    s.lastReceived = Date.now()
    s.heard = true
    s.receivedAll++
    if (r.counter > s.rxTop) s.rxTop = r.counter
    // the member is where its last authentic datagram came from (a NAT's public port, a new address)
    if (from.address !== s.endpoint.address || from.port !== s.endpoint.port)
      s.endpoint = { address: from.address, port: from.port }
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

  private confirm(s: UdpSession): void {
    s.confirmed = true
    this.deps.onConfirmed(s.peer, s.endpoint)
  }
}
