import { readFileSync } from 'node:fs'
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { pbStream } from '@libp2p/utils'
import { UdpKey } from '../../protocols/overlay.js'
import type { Component } from '../kernel/component.js'
import { Lifecycle } from '../kernel/component.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import { displayNames } from '../membership/names.js'
import { OVERLAY_PREFIX, overlayAddress, parseIPv6 } from '../membership/overlay.js'
import type { MembershipComponent } from '../membership/service.js'
import { type Cluster, protocolPrefix } from '../node/cluster.js'
import type { NodeComponent } from '../node/node-component.js'
import { type PathKind, pathKind } from '../node/paths.js'
import { StreamCarrier, widenReceiveWindow } from './carrier.js'
import type { OverlayConfig } from './config.js'
import { DatagramLink } from './datagram.js'
import {
  addrKey,
  type DropReason,
  dstKey,
  type FilterMember,
  PacketFilter,
  sameDestination,
} from './filter.js'
import { PacketDecoder } from './frames.js'
import { type HostsEntry, writeHostsBlock } from './hosts.js'
import { packetTooBig } from './icmp.js'
import { ToldPathMtus } from './path-mtu.js'
import { TunDevice, TunError } from './tun.js'
import { formatEndpoint, reachable, udpEndpointOf } from './udp-address.js'
import { type LocalKey, REPLACED, UdpCarrier } from './udp-carrier.js'

const NONE = new Uint8Array(0)

/** A key exchange message: what is not given is empty (protobuf's defaults). */
function udpKey(kind: UdpKey.Kind, m: Partial<UdpKey>): UdpKey {
  return {
    kind,
    key: NONE,
    keyId: 0,
    port: 0,
    error: '',
    lossReports: false,
    publicKey: NONE,
    rekey: false,
    ...m,
  }
}

export const overlayProtocol = (c: Cluster) => `${protocolPrefix(c)}/overlay/1.0.0`
export const datagramProtocol = (c: Cluster) => `${protocolPrefix(c)}/overlay-datagram/1.0.0`
export const udpProtocol = (c: Cluster) => `${protocolPrefix(c)}/overlay-udp/1.0.0`

/** Which carrier takes a member's packets now. */
export type CarrierKind = 'udp' | 'datagram' | 'stream'

interface Peer extends FilterMember {
  up: boolean
}

/** What `mesh status` shows of the interface. */
export interface OverlayStatus {
  interface: string | null
  /** why there is no interface */
  reason?: string
  address: string
  prefix: string
  mtu: number
  peers: Array<{
    name: string
    /** the direct UDP carrier when confirmed, else the datagram channel when open, else the stream */
    carrier: CarrierKind
    /** the libp2p connection the stream carrier uses */
    path?: PathKind
    /** the ICE candidate types of the datagram channel, e.g. 'srflx->host' */
    datagramRoute?: string
    sentPackets: number
    /** packets and the channel messages they went in (fewer messages: small packets batched) */
    datagram: { sent: number; received: number; sentMessages: number; receivedMessages: number }
    /** the direct UDP carrier: packets and the datagrams they went in, where the member is */
    udp?: {
      confirmed: boolean
      endpoint: string
      sent: number
      received: number
      sentDatagrams: number
      receivedDatagrams: number
      /** how the keys were made: 'x25519' (derived, rotated) or 'random' (a member on the previous version) */
      keys: 'x25519' | 'random'
      /** completed key rotations in this session */
      rekeys: number
      /** the largest packet sent to the member now (it follows the member's loss reports) */
      packetSize: number
      /** the loss per IP fragment the member reports (undefined: it sends no reports) */
      fragmentLoss?: number
      /** the last changes of packetSize, and the fragment loss each was made on */
      sizeChanges?: Array<{ at: string; size: number; fragmentLoss: number }>
    }
  }>
  /** the port the direct UDP carrier receives on */
  udpPort?: number
  drops: Record<string, number>
  rules: Array<{ rule: string; packets: number }>
}

// how often carriers look for a better path, and the member table is refreshed
const FOLLOW_MS = 2_000
const REFRESH_MS = 1_000
// after a datagram negotiation fails (no UDP path: relayed only), the next try waits this long,
// doubling up to DATAGRAM_RETRY_MAX
const DATAGRAM_RETRY_MS = 5_000
const DATAGRAM_RETRY_MAX = 60_000
const UDP_EXCHANGE_MS = 10_000
const CONNECTION_CLOSED = 'the connection its keys were exchanged on closed'

/**
 * The mesh0 interface (issue 15, protocols/overlay.md): a TUN device holding our overlay address
 * and a route for the cluster's /48; packets to a member's address go on a carrier to it,
 * packets from members pass the filter (nobody spoofs, overlay.allow) onto the device.
 */
export class OverlayComponent implements Component {
  readonly name = 'overlay'
  readonly protocol: string
  readonly lifecycle = new Lifecycle()
  private tun: TunDevice | undefined
  private reason: string | undefined
  // known once the node has started (our peer ID)
  private address = ''
  private readonly prefix: string
  /** the cluster's /48 (its first 6 bytes): no UDP endpoint inside it */
  private readonly prefixBytes: Uint8Array
  private filter: PacketFilter
  private readonly carriers = new Map<string, StreamCarrier>()
  /** overlay address key (latin1 of 16 bytes) -> member */
  private byAddr = new Map<string, Peer>()
  private byPeer = new Map<string, Peer>()
  private readonly inbound = new Set<Stream>()
  readonly datagramProtocol: string
  readonly udpProtocol: string
  /** the direct UDP carrier (overlay.udp), once its socket is bound */
  private udp: UdpCarrier | undefined
  /** members with a UDP key exchange in flight */
  private readonly exchanging = new Set<string>()
  private readonly udpRetry = new Map<string, { at: number; failures: number }>()
  /** the connection each member's UDP keys were exchanged on: the session lives as long as it */
  private readonly udpConn = new Map<string, Connection>()
  /** open datagram channels, by member */
  private readonly links = new Map<string, DatagramLink>()
  /** members with a negotiation in flight */
  private readonly negotiating = new Set<string>()
  /** when the next datagram negotiation with a member may start, and how many failed in a row */
  private readonly datagramRetry = new Map<string, { at: number; failures: number }>()
  private readonly noRoute = { packets: 0 }
  /** when packets last went to or came from each member: the NAT component keeps a used WebRTC path */
  private readonly lastPacket = new Map<string, number>()
  private readonly toldMtu = new ToldPathMtus()
  private readonly metrics

  constructor(
    private readonly deps: {
      node: NodeComponent
      membership: MembershipComponent
      cluster: Cluster
      config: OverlayConfig
      reporter: ComponentReporter
      /** the cluster's STUN servers, for the datagram carrier's ICE */
      iceServers?: () => Array<{ urls: string }>
    },
  ) {
    this.protocol = overlayProtocol(deps.cluster)
    this.datagramProtocol = datagramProtocol(deps.cluster)
    this.udpProtocol = udpProtocol(deps.cluster)
    this.prefix = OVERLAY_PREFIX(deps.cluster.id)
    this.prefixBytes = parseIPv6(this.prefix.replace(/\/48$/, ''))!
    this.filter = new PacketFilter({ self: new Uint8Array(16), rules: deps.config.allow })
    const r = deps.reporter
    this.metrics = {
      // totals kept as plain numbers on the packet path, put into the counters at scrape time
      packets: r.counter(
        'packets_total',
        'packets through the interface, by direction',
        ['direction'],
        () => {
          const c = this.metrics.packets
          c.reset()
          c.inc({ direction: 'in' }, this.counts.packetsIn)
          c.inc({ direction: 'out' }, this.counts.packetsOut)
        },
      ),
      bytes: r.counter(
        'bytes_total',
        'packet bytes through the interface, by direction',
        ['direction'],
        () => {
          const c = this.metrics.bytes
          c.reset()
          c.inc({ direction: 'in' }, this.counts.bytesIn)
          c.inc({ direction: 'out' }, this.counts.bytesOut)
        },
      ),
      drops: r.gauge('dropped_packets', 'packets dropped, by reason', ['reason'], () => {
        const g = this.metrics.drops
        for (const [reason, n] of Object.entries(this.drops())) g.set({ reason }, n)
      }),
      rules: r.gauge('allow_rule_packets', 'packets let in by each overlay.allow rule', ['rule'], () => {
        const g = this.metrics.rules
        const texts = this.filter.ruleTexts()
        for (let i = 0; i < texts.length; i++) g.set({ rule: `${i}: ${texts[i]}` }, this.filter.ruleHits[i])
      }),
      up: r.gauge('interface_up', '1 when the overlay interface exists'),
      carrier: r.counter(
        'carrier_packets_total',
        'packets sent and received, by carrier and direction',
        ['carrier', 'direction'],
        () => {
          const c = this.metrics.carrier
          c.reset()
          const n = this.counts
          c.inc({ carrier: 'stream', direction: 'in' }, n.streamIn)
          c.inc({ carrier: 'stream', direction: 'out' }, n.streamOut)
          c.inc({ carrier: 'datagram', direction: 'in' }, n.datagramIn)
          c.inc({ carrier: 'datagram', direction: 'out' }, n.datagramOut)
          c.inc({ carrier: 'udp', direction: 'in' }, n.udpIn)
          c.inc({ carrier: 'udp', direction: 'out' }, n.udpOut)
        },
      ),
    }
  }

  private readonly counts = {
    packetsIn: 0,
    packetsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    streamIn: 0,
    streamOut: 0,
    datagramIn: 0,
    datagramOut: 0,
    udpIn: 0,
    udpOut: 0,
  }

  private readonly carrierDrops = { congested: 0, 'no-path': 0, 'datagram-congested': 0, 'too-big': 0 }

  drops(): Record<string, number> {
    return {
      ...this.filter.drops,
      ...this.carrierDrops,
      ...this.udp?.drops,
      'no-route': this.noRoute.packets,
    }
  }

  async start(): Promise<void> {
    const cfg = this.deps.config
    this.address = overlayAddress(this.deps.cluster.id, this.deps.node.node.peerId.toString())
    this.filter = new PacketFilter({ self: parseIPv6(this.address)!, rules: cfg.allow })
    if (!cfg.interface) {
      this.reason = 'disabled by overlay.interface: false'
      return
    }
    this.refresh()
    try {
      this.tun = await TunDevice.open({
        name: cfg.name,
        mtu: cfg.mtu,
        address: this.address,
        routes: [this.prefix],
        onPackets: (ps) => this.fromDevice(ps),
        onError: (err) => this.deps.reporter.log.warn({ err: err.message }, 'overlay device reader failed'),
      })
    } catch (err) {
      this.reason =
        err instanceof TunError ? err.message : `could not create ${cfg.name}: ${(err as Error).message}`
      this.deps.reporter.log.warn(
        { reason: this.reason },
        'no overlay interface; proxy, socks and forward still work',
      )
      return
    }
    this.metrics.up.set(1)
    this.refresh()
    await this.deps.node.node.handle(this.protocol, (s, c) => this.onStream(s, c), {
      runOnLimitedConnection: true,
      maxInboundStreams: 8,
      maxOutboundStreams: 8,
    })
    this.lifecycle.every(REFRESH_MS, () => this.refresh())
    if (cfg.datagram)
      await this.deps.node.node.handle(this.datagramProtocol, (s, c) => void this.onDatagramOffer(s, c), {
        runOnLimitedConnection: true,
        maxInboundStreams: 2,
        maxOutboundStreams: 2,
      })
    if (cfg.udp) await this.startUdp()
    this.lifecycle.every(FOLLOW_MS, () => {
      for (const c of this.carriers.values()) void c.followPath()
      this.dropStaleUdp()
      for (const peer of this.talkingTo()) {
        this.maybeUdp(peer)
        if (cfg.datagram) this.maybeDatagram(peer)
      }
    })
    this.deps.reporter.log.info(
      {
        interface: cfg.name,
        address: this.address,
        prefix: this.prefix,
        mtu: cfg.mtu,
        reader: this.tun.reader,
        udpPort: this.udp?.port,
      },
      'overlay interface up',
    )
  }

  async stop(): Promise<void> {
    if (this.tun === undefined) return
    // no periodic refresh from here on: one that ran after the names were removed (the device
    // closes in up to 2 s) would write them back, and the agent would exit leaving them behind
    this.lifecycle.dispose()
    const tun = this.tun
    this.tun = undefined
    try {
      if (this.deps.config.names) this.writeNames([], true)
      await this.deps.node.node.unhandle(this.protocol).catch(() => {})
      await this.deps.node.node.unhandle(this.datagramProtocol).catch(() => {})
      await this.deps.node.node.unhandle(this.udpProtocol).catch(() => {})
      this.udp?.closeAll()
      this.udp = undefined
      for (const l of [...this.links.values()]) l.close('the agent is stopping')
      this.links.clear()
      for (const c of this.carriers.values()) c.close()
      this.carriers.clear()
      for (const s of this.inbound) s.abort(new Error('the agent is stopping'))
      this.inbound.clear()
    } finally {
      await tun.close()
      this.metrics.up.set(0)
    }
  }

  private namesWarned = false

  /** NAME.mesh lines in the hosts file, for every member that has not left (ourselves included). */
  private writeNames(entries: HostsEntry[], final = false): void {
    try {
      const file = this.deps.config.hostsFile
      const wrote = writeHostsBlock(file, entries)
      this.namesWarned = false
      if (final) {
        // read back: a stop that left the names behind was seen once and never explained
        const left = readFileSync(file, 'utf8').includes(`mesh agent pid=${process.pid}`)
        if (left) {
          this.deps.reporter.log.warn(
            { file, wrote },
            'NAME.mesh names still there after removal; writing again',
          )
          writeHostsBlock(file, entries)
        } else this.deps.reporter.log.info({ file, wrote }, 'NAME.mesh names removed')
      }
    } catch (err) {
      // the last write (names removed at stop) always says when it failed
      if (!this.namesWarned || final)
        this.deps.reporter.log.warn(
          { file: this.deps.config.hostsFile, err: (err as Error).message },
          'cannot write NAME.mesh names; set overlay.names: false to stop trying',
        )
      this.namesWarned = true
    }
  }

  status(): OverlayStatus {
    const names = displayNames(this.deps.membership.rows().map((r) => r.entry.signed.info))
    return {
      interface: this.tun?.name ?? null,
      reason: this.reason,
      address: this.address,
      prefix: this.prefix,
      mtu: this.deps.config.mtu,
      udpPort: this.udp?.port,
      peers: [...new Set([...this.carriers.keys(), ...this.links.keys(), ...this.udpPeers()])].map((peer) => {
        const c = this.carriers.get(peer)
        const l = this.links.get(peer)
        const u = this.udp?.session(peer)
        return {
          name: names.get(peer) ?? peer,
          carrier: u?.confirmed === true ? 'udp' : l?.open === true ? 'datagram' : 'stream',
          path: c?.path,
          datagramRoute: l?.route(),
          sentPackets: (c?.sentPackets ?? 0) + (l?.sentPackets ?? 0) + (u?.sentPackets ?? 0),
          udp:
            u === undefined
              ? undefined
              : {
                  confirmed: u.confirmed,
                  endpoint: formatEndpoint(u.endpoint),
                  sent: u.sentPackets,
                  received: u.receivedPackets,
                  sentDatagrams: u.sentDatagrams,
                  receivedDatagrams: u.receivedDatagrams,
                  keys: u.rotates ? 'x25519' : 'random',
                  rekeys: u.rekeys,
                  packetSize: u.packetSize(this.deps.config.datagramMtu),
                  fragmentLoss: u.sizer?.fragmentLoss,
                  sizeChanges: u.sizer?.changes.map((c) => ({
                    at: new Date(c.at).toISOString(),
                    size: c.size,
                    fragmentLoss: Number(c.fragmentLoss.toPrecision(3)),
                  })),
                },
          datagram: {
            sent: l?.sentPackets ?? 0,
            received: l?.receivedPackets ?? 0,
            sentMessages: l?.sentMessages ?? 0,
            receivedMessages: l?.receivedMessages ?? 0,
          },
        }
      }),
      drops: this.drops(),
      rules: this.filter.ruleTexts().map((rule, i) => ({ rule, packets: this.filter.ruleHits[i] })),
    }
  }

  /** Rebuild the address -> member table from membership and trust. */
  private refresh(): void {
    const byAddr = new Map<string, Peer>()
    const byPeer = new Map<string, Peer>()
    const self = this.deps.membership.selfPeerId
    const names = displayNames(this.deps.membership.rows().map((r) => r.entry.signed.info))
    for (const row of this.deps.membership.rows()) {
      if (row.peerId === self) continue
      const info = row.entry.signed.info
      const overlay = parseIPv6(info.overlay)
      if (overlay === undefined) continue
      const up =
        (row.status === 'alive' || row.status === 'suspect') && !this.deps.node.trust.isRevoked(row.peerId)
      const p: Peer = {
        peerId: row.peerId,
        name: names.get(row.peerId) ?? info.name,
        overlay,
        tags: info.tags,
        up,
      }
      byAddr.set(addrKey(overlay), p)
      byPeer.set(row.peerId, p)
    }
    this.byAddr = byAddr
    this.byPeer = byPeer
    if (this.tun !== undefined && this.deps.config.names) {
      const entries: HostsEntry[] = []
      for (const row of this.deps.membership.rows()) {
        const info = row.entry.signed.info
        if (row.status === 'left' || info.status === 'left') continue
        const name = names.get(row.peerId) ?? info.name
        if (/^[a-z0-9-]{1,63}$/i.test(name)) entries.push({ name, address: info.overlay })
      }
      entries.sort((a, b) => a.name.localeCompare(b.name))
      this.writeNames(entries)
    }
    // carriers to members that are gone or cut off close now
    for (const [peer, c] of this.carriers)
      if (byPeer.get(peer)?.up !== true) {
        c.close()
        this.carriers.delete(peer)
      }
    for (const [peer, l] of this.links)
      if (byPeer.get(peer)?.up !== true) l.close('member is no longer alive')
    for (const peer of this.udpPeers())
      if (byPeer.get(peer)?.up !== true) this.udp?.close(peer, 'member is no longer alive')
    for (const peer of this.lastPacket.keys()) if (byPeer.get(peer)?.up !== true) this.lastPacket.delete(peer)
    for (const s of this.inbound) {
      const peer = this.inboundPeer.get(s)
      if (peer !== undefined && byPeer.get(peer)?.up !== true) s.abort(new Error('member is no longer alive'))
    }
  }

  private readonly inboundPeer = new WeakMap<Stream, string>()

  /** Is this member one we exchange packets with right now (alive, not revoked)? */
  private live(peer: string): Peer | undefined {
    const p = this.byPeer.get(peer)
    // revocation is checked on every burst: a revoked member is cut off at once, not at the next refresh
    if (p === undefined || !p.up || this.deps.node.trust.isRevoked(peer)) return undefined
    return p
  }

  /** When mesh0 last carried packets to or from the member. */
  lastPacketAt(peer: string): number | undefined {
    return this.lastPacket.get(peer)
  }

  /** A datagram channel (a libdatachannel connection of its own) is open or being made. */
  holdsNativeWebrtc(): boolean {
    return this.links.size > 0 || this.negotiating.size > 0
  }

  /** A burst the kernel sent into the device: group by member, hand to carriers. */
  private fromDevice(packets: Uint8Array[]): void {
    // most bursts go to one member: its packets are handed on as they came, with no grouping
    let first: Peer | undefined
    let firstList: Uint8Array[] | undefined
    let others: Map<Peer, Uint8Array[]> | undefined
    let bytes = 0
    let prev: Uint8Array | undefined
    let prevPeer: Peer | undefined
    for (const p of packets) {
      if (this.filter.outbound(p) === undefined) continue
      // the member of the previous packet when the destination is the same (no key string to build)
      const peer = prev !== undefined && sameDestination(p, prev) ? prevPeer : this.byAddr.get(dstKey(p))
      prev = p
      prevPeer = peer
      if (peer === undefined) {
        this.noRoute.packets++
        continue
      }
      bytes += p.byteLength
      if (first === undefined || first === peer) {
        first = peer
        if (firstList === undefined) firstList = [p]
        else firstList.push(p)
        continue
      }
      others ??= new Map()
      const list = others.get(peer)
      if (list === undefined) others.set(peer, [p])
      else list.push(p)
    }
    if (first === undefined) return
    this.counts.packetsOut += packets.length
    this.counts.bytesOut += bytes
    this.toMember(first, firstList!)
    if (others !== undefined) for (const [peer, list] of others) this.toMember(peer, list)
  }

  /** A member's packets from the device, once per burst: only to a live member. */
  private toMember(peer: Peer, packets: Uint8Array[]): void {
    if (this.live(peer.peerId) === undefined) {
      this.noRoute.packets += packets.length
      return
    }
    this.send(peer.peerId, packets)
  }

  /**
   * Packets for one member: on the direct UDP carrier when its session is confirmed, else on its
   * datagram channel when one is open, else on the stream.
   */
  private send(peer: string, packets: Uint8Array[]): void {
    this.lastPacket.set(peer, Date.now())
    const udp = this.udp?.session(peer)?.confirmed === true ? this.udp : undefined
    const link = udp === undefined ? this.links.get(peer) : undefined
    if (udp === undefined && (link === undefined || !link.open)) {
      if (this.toldMtu.raised(peer, this.deps.config.mtu)) this.forgetPathMtu(peer)
      this.carrier(peer).send(packets)
      this.counts.streamOut += packets.length
      return
    }
    const batch = this.deps.config.datagramMtu
    const mtu = udp !== undefined ? udp.session(peer)!.packetSize(batch) : batch
    if (this.toldMtu.raised(peer, mtu)) this.forgetPathMtu(peer)
    let fit = packets
    for (let i = 0; i < packets.length; i++) {
      if (packets[i].byteLength <= mtu) continue
      // rare (once per flow until the kernel lowers its path MTU): keep only the packets that fit
      fit = packets.filter((p) => p.byteLength <= mtu)
      for (const p of packets) {
        if (p.byteLength <= mtu) continue
        // what a router on a smaller link does: the sender's kernel lowers its path MTU to this
        // member and TCP sends smaller segments (protocols/overlay.md, Datagram carrier)
        const ptb = packetTooBig(p, mtu)
        if (ptb !== undefined && this.tun?.write(ptb) === true) this.toldMtu.lowered(peer, mtu)
        this.carrierDrops['too-big']++
      }
      break
    }
    if (udp !== undefined) {
      // a short count is already counted by the carrier (udp-congested)
      this.counts.udpOut += udp.send(peer, fit, batch)
      return
    }
    const sent = link!.send(fit, mtu)
    this.carrierDrops['datagram-congested'] += fit.length - sent
    this.counts.datagramOut += sent
  }

  /** The kernel forgets the path MTU our Packet Too Big gave it for this member (path-mtu.ts). */
  private forgetPathMtu(peer: string): void {
    const tun = this.tun
    if (tun === undefined) return
    const address = overlayAddress(this.deps.cluster.id, peer)
    tun.forgetPathMtu(address).catch((err: Error) =>
      // TCP inside keeps the smaller segments until the kernel's entry expires (10 min)
      this.deps.reporter.log.warn({ err: err.message, address }, 'could not reset the path MTU to a member'),
    )
  }

  /** Members we exchange packets with (an outbound carrier or an inbound stream). */
  private talkingTo(): Set<string> {
    const peers = new Set(this.carriers.keys())
    for (const s of this.inbound) {
      const peer = this.inboundPeer.get(s)
      if (peer !== undefined) peers.add(peer)
    }
    return peers
  }

  /**
   * Open a datagram channel to a member we exchange packets with, unless one is open or being
   * made. The member with the smaller peer ID offers (no glare); the other answers.
   */
  private maybeDatagram(peer: string): void {
    if (!this.deps.config.datagram || this.tun === undefined) return
    if (this.links.has(peer) || this.negotiating.has(peer)) return
    // the direct UDP carrier is tried first; WebRTC only where it has no session
    if (this.udp?.session(peer) !== undefined || this.exchanging.has(peer)) return
    if (this.deps.membership.selfPeerId >= peer || this.live(peer) === undefined) return
    const retry = this.datagramRetry.get(peer)
    if (retry !== undefined && Date.now() < retry.at) return
    const conn = this.carriers.get(peer)?.connection() ?? this.admittedConnections(peer)[0]
    if (conn === undefined) return
    this.negotiating.add(peer)
    void (async () => {
      try {
        const stream = await conn.newStream(this.datagramProtocol, {
          signal: AbortSignal.timeout(10_000),
          runOnLimitedConnection: true,
        })
        this.adopt(peer, await DatagramLink.offer(stream, this.linkOptions(peer)))
      } catch (err) {
        this.datagramFailed(peer, err as Error)
      } finally {
        this.negotiating.delete(peer)
      }
    })()
  }

  /** A member offers a datagram channel. */
  private async onDatagramOffer(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    if (this.live(peer) === undefined || this.tun === undefined) {
      await DatagramLink.refuse(stream, 'not a live member').catch(() => stream.abort(new Error('refused')))
      return
    }
    // an offer replaces the channel we had (the member restarted, or lost it before we noticed)
    this.links.get(peer)?.close('the member offered a new channel')
    this.negotiating.add(peer)
    try {
      this.adopt(peer, await DatagramLink.answer(stream, this.linkOptions(peer)))
    } catch (err) {
      stream.abort(err as Error)
      this.deps.reporter.log.debug({ peer, err: (err as Error).message }, 'no datagram channel')
    } finally {
      this.negotiating.delete(peer)
    }
  }

  private linkOptions(peer: string) {
    return {
      iceServers: (this.deps.iceServers?.() ?? []).map((s) => s.urls),
      onPackets: (ps: Uint8Array[]) => this.fromMember(peer, ps, 'datagram'),
      onClosed: (why: string) => {
        const l = this.links.get(peer)
        if (l !== undefined && !l.open) this.links.delete(peer)
        this.deps.reporter.log.info(
          { peer, why },
          'overlay datagram channel closed; packets go on the stream',
        )
      },
    }
  }

  private adopt(peer: string, link: DatagramLink): void {
    if (this.tun === undefined || this.live(peer) === undefined) {
      link.close('no longer wanted')
      return
    }
    this.links.get(peer)?.close('replaced')
    this.links.set(peer, link)
    this.datagramRetry.delete(peer)
    this.deps.reporter.log.info({ peer, route: link.route() }, 'overlay datagram channel open')
  }

  private datagramFailed(peer: string, err: Error): void {
    const failures = (this.datagramRetry.get(peer)?.failures ?? 0) + 1
    const wait = Math.min(DATAGRAM_RETRY_MS * 2 ** (failures - 1), DATAGRAM_RETRY_MAX)
    this.datagramRetry.set(peer, { at: Date.now() + wait, failures })
    this.deps.reporter.log.debug({ peer, err: err.message, retryInMs: wait }, 'no datagram channel')
  }

  /** Bind the direct UDP carrier's socket and offer its key exchange; without it the others carry. */
  private async startUdp(): Promise<void> {
    const log = this.deps.reporter.log
    let errors = 0
    try {
      this.udp = await UdpCarrier.open({
        port: this.deps.config.udpPort,
        onPackets: (peer, ps) => this.fromMember(peer, ps, 'udp'),
        onConfirmed: (peer, at) => {
          this.udpRetry.delete(peer)
          log.info({ peer, endpoint: formatEndpoint(at) }, 'overlay direct UDP carrier confirmed')
        },
        onClosed: (peer, why) => {
          if (this.udp?.session(peer) === undefined) this.udpConn.delete(peer)
          if (why === REPLACED || why === CONNECTION_CLOSED) return
          log.info({ peer, why }, 'overlay direct UDP carrier closed; packets go on WebRTC or the stream')
          if (this.tun !== undefined) this.udpFailed(peer, new Error(why))
        },
        // a send that failed (no route, buffer full): the packet is lost, as on any link
        onError: (err) => {
          this.udp !== undefined && this.udp.drops['udp-send-failed']++
          if (errors++ % 1000 === 0) log.debug({ err: err.message }, 'overlay UDP send failed')
        },
        onRekeyDue: (peer) => this.rekeyUdp(peer),
        rekeyAfterMs: this.deps.config.rekeyAfterMs,
      })
    } catch (err) {
      log.warn(
        { port: this.deps.config.udpPort, err: (err as Error).message },
        'no direct UDP carrier (cannot bind its port); packets go on WebRTC or the stream',
      )
      return
    }
    await this.deps.node.node.handle(this.udpProtocol, (s, c) => void this.onUdpOffer(s, c), {
      maxInboundStreams: 2,
      maxOutboundStreams: 2,
    })
    this.lifecycle.every(1_000, () => this.udp?.tick())
  }

  /** Members with a UDP session, also ones no longer in the member table (refresh closes those). */
  private udpPeers(): string[] {
    return this.udp?.peers() ?? []
  }

  /**
   * Where the member's datagrams go, from a direct (not relayed, not WebRTC) connection: its
   * remote IP, IPv4 or IPv6 (never one inside the cluster's /48, never link-local without a
   * zone: udp-address.ts), when our socket reaches that family.
   */
  private udpEndpoint(conn: Connection): string | undefined {
    if (pathKind(conn.remoteAddr) !== 'direct') return undefined
    const address = udpEndpointOf(conn.remoteAddr.getComponents(), this.prefixBytes)
    return address !== undefined && this.udp !== undefined && reachable(address, this.udp.family)
      ? address
      : undefined
  }

  /** The member's first admitted direct connection with a UDP endpoint. */
  private directEndpoint(peer: string): { conn: Connection; address: string } | undefined {
    for (const conn of this.admittedConnections(peer)) {
      const address = this.udpEndpoint(conn)
      if (address !== undefined) return { conn, address }
    }
    return undefined
  }

  /**
   * Exchange keys for the direct UDP carrier with a member we exchange packets with and have a
   * direct connection to: the member with the smaller peer ID offers (no glare).
   */
  private maybeUdp(peer: string): void {
    const udp = this.udp
    if (udp === undefined || this.tun === undefined) return
    if (udp.session(peer) !== undefined || this.exchanging.has(peer)) return
    if (this.deps.membership.selfPeerId >= peer || this.live(peer) === undefined) return
    const retry = this.udpRetry.get(peer)
    if (retry !== undefined && Date.now() < retry.at) return
    const direct = this.directEndpoint(peer)
    if (direct === undefined) return
    void this.offerUdp(udp, peer, direct.conn, direct.address)
  }

  /**
   * The session's keys are due for rotation (we offered): a new exchange on the connection the
   * session's keys were exchanged on. A failure leaves the session on its keys; the carrier asks
   * again, and closes it when the keys stay unrotated too long.
   */
  private rekeyUdp(peer: string): void {
    const udp = this.udp
    const conn = this.udpConn.get(peer)
    if (udp === undefined || conn === undefined || conn.status !== 'open' || this.exchanging.has(peer)) return
    void this.offerUdp(udp, peer, conn, undefined)
  }

  /** One exchange as the offerer: a new session at `address`, or (without one) new keys for ours. */
  private async offerUdp(udp: UdpCarrier, peer: string, conn: Connection, address: string | undefined) {
    const rekey = address === undefined
    this.exchanging.add(peer)
    const local = udp.newLocalKey()
    try {
      const signal = AbortSignal.timeout(UDP_EXCHANGE_MS)
      const stream = await conn.newStream(this.udpProtocol, { signal })
      const pb = pbStream(stream, { maxDataLength: 1024 }).pb(UdpKey)
      const offer = udpKey(UdpKey.Kind.OFFER, {
        // what a member on the previous version seals to us with (it sends no public key)
        key: rekey ? NONE : local.key,
        keyId: local.keyId,
        port: udp.port,
        lossReports: true,
        publicKey: local.ephemeral.publicKey,
        rekey,
      })
      await pb.write(offer, { signal })
      const answer = await pb.read({ signal })
      await stream.close().catch(() => {})
      if (answer.kind === UdpKey.Kind.REFUSE) throw new Error(`refused: ${answer.error}`)
      if (answer.kind !== UdpKey.Kind.ANSWER) throw new Error('expected an answer')
      if (rekey && answer.rekey) {
        if (udp.session(peer)?.rotates === true && this.udpConn.get(peer) === conn)
          udp.rekey(peer, local, answer)
        else udp.release(local)
      }
      // the answerer had no session to rotate (it closed it): it started a new one, so do we
      else
        this.startSession(
          peer,
          conn,
          local,
          answer,
          { address: address ?? this.udpEndpoint(conn), port: answer.port },
          true,
        )
    } catch (err) {
      udp.release(local)
      if (rekey)
        this.deps.reporter.log.debug({ peer, err: (err as Error).message }, 'overlay UDP key rotation failed')
      else this.udpFailed(peer, err as Error)
    } finally {
      this.exchanging.delete(peer)
    }
  }

  /** A member offers its key for the direct UDP carrier (a new session, or new keys): we answer. */
  private async onUdpOffer(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const udp = this.udp
    const pb = pbStream(stream, { maxDataLength: 1024 }).pb(UdpKey)
    const signal = AbortSignal.timeout(UDP_EXCHANGE_MS)
    const address = this.udpEndpoint(connection)
    const refuse = async (error: string) => {
      await pb.write(udpKey(UdpKey.Kind.REFUSE, { error }), { signal })
      await stream.close()
    }
    let local: LocalKey | undefined
    let offer: UdpKey | undefined
    try {
      offer = await pb.read({ signal })
      if (offer.kind !== UdpKey.Kind.OFFER) throw new Error('expected an offer')
      if (udp === undefined || this.tun === undefined || this.live(peer) === undefined)
        return await refuse('not a live member')
      if (address === undefined) return await refuse('not a direct connection with a UDP endpoint')
      local = udp.newLocalKey()
      // the new keys open before the member hears our answer, so its first datagram under them
      // (a probe of a new session, or the first one sealed after a rotation) finds them
      const rekey = offer.rekey && offer.publicKey.length > 0 && udp.session(peer)?.rotates === true
      if (rekey) {
        udp.rekey(peer, local, offer)
        this.udpConn.set(peer, connection)
      } else this.startSession(peer, connection, local, offer, { address, port: offer.port }, false)
      const derived = offer.publicKey.length > 0
      const answer = udpKey(UdpKey.Kind.ANSWER, {
        // to a member on the previous version (no public key): the key it seals to us with
        key: derived ? NONE : local.key,
        keyId: local.keyId,
        port: udp.port,
        lossReports: true,
        publicKey: derived ? local.ephemeral.publicKey : NONE,
        rekey,
      })
      await pb.write(answer, { signal })
      await stream.close().catch(() => {})
    } catch (err) {
      if (local !== undefined) {
        udp?.release(local)
        // a failed rotation keeps the session on its old keys (the member's offer timed out)
        if (!offer?.rekey) udp?.close(peer, 'the key exchange failed')
      }
      stream.abort(err as Error)
      this.deps.reporter.log.debug({ peer, err: (err as Error).message }, 'no direct UDP carrier')
    }
  }

  private startSession(
    peer: string,
    conn: Connection,
    local: LocalKey,
    remote: UdpKey,
    endpoint: { address: string | undefined; port: number },
    offerer: boolean,
  ): void {
    const { address, port } = endpoint
    if (address === undefined || port < 1 || port > 65535)
      throw new Error(`bad UDP endpoint ${address}:${port}`)
    const { datagramMtu, udpMtuMax } = this.deps.config
    // both ends report loss (the member said so): packet sizes follow its reports
    const sizes = remote.lossReports ? { min: datagramMtu, max: udpMtuMax } : undefined
    this.udp?.start(peer, local, { ...remote, endpoint: { address, port } }, { offerer, sizes })
    this.udpConn.set(peer, conn)
  }

  /**
   * A session whose connection closed ends now, not after LOST_MS of silence: the member may
   * have restarted (its new process has none of our keys), and the next exchange runs on its
   * new connection at once (no back-off).
   */
  private dropStaleUdp(): void {
    for (const [peer, conn] of this.udpConn)
      if (conn.status !== 'open') this.udp?.close(peer, CONNECTION_CLOSED)
  }

  private udpFailed(peer: string, err: Error): void {
    const failures = (this.udpRetry.get(peer)?.failures ?? 0) + 1
    const wait = Math.min(DATAGRAM_RETRY_MS * 2 ** (failures - 1), DATAGRAM_RETRY_MAX)
    this.udpRetry.set(peer, { at: Date.now() + wait, failures })
    this.deps.reporter.log.debug({ peer, err: err.message, retryInMs: wait }, 'no direct UDP carrier')
  }

  private admittedConnections(peer: string): Connection[] {
    const libp2p = this.deps.node.node
    return libp2p
      .getConnections(peerIdFromString(peer))
      .filter((x) => x.status === 'open' && libp2p.services.admission.connectionAdmitted(x))
  }

  private carrier(peer: string): StreamCarrier {
    let c = this.carriers.get(peer)
    if (c === undefined) {
      const libp2p = this.deps.node.node
      const id = peerIdFromString(peer)
      c = new StreamCarrier({
        peer,
        protocol: this.protocol,
        connections: () => this.admittedConnections(peer),
        dial: (signal) => libp2p.dial(id, { signal }),
        onDrop: (reason, n) => {
          this.carrierDrops[reason] += n
        },
        onPath: (path) => this.deps.reporter.log.debug({ peer, path }, 'overlay carrier path'),
      })
      this.carriers.set(peer, c)
      this.maybeUdp(peer)
      this.maybeDatagram(peer)
    }
    return c
  }

  /** A member's packets for us. */
  private onStream(stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString()
    if (this.live(peer) === undefined) {
      stream.abort(new Error('not a live member'))
      return
    }
    stream.inactivityTimeout = 0
    widenReceiveWindow(stream)
    this.inbound.add(stream)
    this.inboundPeer.set(stream, peer)
    const decoder = new PacketDecoder()
    stream.addEventListener('message', (evt) => {
      if (!this.fromMember(peer, decoder.push(evt.data), 'stream'))
        stream.abort(new Error('member is no longer alive'))
    })
    stream.addEventListener('close', () => this.inbound.delete(stream))
    this.maybeUdp(peer)
    this.maybeDatagram(peer)
  }

  /**
   * Packets a member sent us, on either carrier: each passes the filter (its source is the
   * member's address, the destination ours, overlay.allow) onto the device. False when the
   * member is no longer live (revoked, dead): its packets are dropped and its carrier is cut.
   */
  private fromMember(peer: string, packets: Uint8Array[], carrier: CarrierKind): boolean {
    const member = this.live(peer)
    if (member === undefined) {
      this.countDrop('member-down', packets.length)
      if (carrier === 'datagram') this.links.get(peer)?.close('member is no longer alive')
      if (carrier === 'udp') this.udp?.close(peer, 'member is no longer alive')
      return false
    }
    this.lastPacket.set(peer, Date.now())
    let n = 0
    let bytes = 0
    for (const p of packets) {
      if (!this.filter.inbound(p, member).ok) continue
      if (this.tun?.write(p) === true) {
        n++
        bytes += p.byteLength
      }
    }
    this.counts.packetsIn += n
    this.counts.bytesIn += bytes
    if (carrier === 'datagram') this.counts.datagramIn += packets.length
    else if (carrier === 'udp') this.counts.udpIn += packets.length
    else this.counts.streamIn += packets.length
    return true
  }

  private countDrop(reason: DropReason, n: number): void {
    for (let i = 0; i < n; i++) this.filter.drop(reason)
  }
}
