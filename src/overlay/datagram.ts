/**
 * The datagram carrier (protocols/overlay.md, "Datagram carrier"): one WebRTC data channel per
 * member, unordered and unreliable (`unordered: true, maxRetransmits: 0`), one IP packet per
 * message, or several small ones back to back where the member splits them (one UDP datagram). A lost datagram is a lost IP packet, which the TCP inside recovers from on its own:
 * no head-of-line blocking, no second layer of retransmission (TCP over TCP).
 *
 * Signalled over the member's admitted libp2p connection (one offer, one answer, each a complete
 * SDP with its ICE candidates): the DTLS fingerprint in the SDP came from that member over its
 * authenticated connection, and libdatachannel checks it, so the channel is that member's.
 * ICE uses the cluster's own STUN and gathers IPv4 only (an IPv6 candidate on mesh0 would carry
 * the overlay over itself).
 */
import type { Stream } from '@libp2p/interface'
import { pbStream } from '@libp2p/utils'
import type { DataChannel, PeerConnection } from 'node-datachannel'
import { DatagramSignal } from '../../protocols/overlay.js'
import { packMessages, splitIPv6 } from './frames.js'

// the default largest IP packet a datagram carries (overlay.datagramMtu): one packet per UDP
// datagram (see PEER_MTU), the minimum every IPv6 link has; larger packets get a Packet Too Big
export const DATAGRAM_MTU = 1280
// the UDP path MTU we tell libdatachannel: with its DTLS/SCTP overhead a 1280-byte message
// needs 1500 to go in one datagram (measured: at 1400 every message took two)
const PEER_MTU = 1500
// what may wait in the channel's send buffer before packets are dropped (no bufferbloat)
export const MAX_DATAGRAM_BUFFERED = 1 << 20
const NEGOTIATE_MS = 20_000
const MAX_SIGNAL = 64 << 10

export interface DatagramLinkOptions {
  /** 'stun:HOST:PORT' URLs: the cluster's STUN servers */
  iceServers: string[]
  /** the packets of one message: one, or several where the member batches */
  onPackets(packets: Uint8Array[]): void
  /** the channel closed or the path failed: packets go back to the stream carrier */
  onClosed(why: string): void
}

let ndc: typeof import('node-datachannel') | undefined

async function native(): Promise<typeof import('node-datachannel')> {
  // loaded on first use: an agent without the interface never loads it
  ndc ??= await import('node-datachannel')
  return ndc
}

/** An open datagram channel to one member. */
export class DatagramLink {
  sentPackets = 0
  sentMessages = 0
  receivedPackets = 0
  receivedMessages = 0
  private closed = false
  // where several packets are put together into one message (reused: the native send copies)
  private scratch: Uint8Array = new Uint8Array(0)
  private readonly emit = (m: Uint8Array, packets: number): boolean => {
    try {
      if (!this.dc.sendMessageBinary(m)) return false
    } catch {
      return false
    }
    this.sentMessages++
    this.sentPackets += packets
    return true
  }

  private constructor(
    private readonly pc: PeerConnection,
    private readonly dc: DataChannel,
    private readonly opts: DatagramLinkOptions,
    /** the member splits a message into the packets in it (it said so: DatagramSignal.batches) */
    readonly batches: boolean,
  ) {
    dc.onMessage((m) => {
      if (this.closed || typeof m === 'string') return
      // every message is split, also from a member that does not batch: one packet is one packet
      const packets = splitIPv6(m instanceof ArrayBuffer ? new Uint8Array(m) : m)
      this.receivedMessages++
      this.receivedPackets += packets.length
      opts.onPackets(packets)
    })
    dc.onClosed(() => this.close('the data channel closed'))
    pc.onStateChange((s) => {
      if (s === 'failed' || s === 'closed' || s === 'disconnected') this.close(`the WebRTC path is ${s}`)
    })
  }

  get open(): boolean {
    return !this.closed && this.dc.isOpen()
  }

  /**
   * Send packets (each at most `maxMessage` bytes), consecutive small ones together in one message
   * of at most `maxMessage` bytes where the member splits them. Returns how many went; the rest
   * are dropped (the channel is congested or closed): IP has no business queueing them.
   */
  send(packets: readonly Uint8Array[], maxMessage: number): number {
    // one look at the send buffer per burst (a native call), not one per packet
    if (packets.length === 0 || !this.open || this.dc.bufferedAmount() > MAX_DATAGRAM_BUFFERED) return 0
    if (!this.batches || packets.length === 1) {
      let sent = 0
      for (const p of packets) {
        if (!this.emit(p, 1)) break
        sent++
      }
      return sent
    }
    if (this.scratch.length < maxMessage) this.scratch = new Uint8Array(maxMessage)
    return packMessages(packets, maxMessage, this.scratch, this.emit)
  }

  /** The local and remote ICE candidates in use ('host', 'srflx', ...), for status. */
  route(): string | undefined {
    try {
      const pair = this.pc.getSelectedCandidatePair()
      return pair === null ? undefined : `${pair.local.type}->${pair.remote.type}`
    } catch {
      return undefined
    }
  }

  close(why = 'closed'): void {
    if (this.closed) return
    this.closed = true
    try {
      this.dc.close()
    } catch {}
    try {
      this.pc.close()
    } catch {}
    this.opts.onClosed(why)
  }

  /** Offer a channel on `stream` (opened to the member) and wait until it is open. */
  static async offer(stream: Stream, opts: DatagramLinkOptions): Promise<DatagramLink> {
    const { PeerConnection } = await native()
    const pc = new PeerConnection('mesh-overlay', peerConfig(opts))
    try {
      const signal = AbortSignal.timeout(NEGOTIATE_MS)
      const dc = pc.createDataChannel('mesh-ip', { unordered: true, maxRetransmits: 0 })
      const opened = channelOpen(dc, signal)
      const pb = pbStream(stream, { maxDataLength: MAX_SIGNAL }).pb(DatagramSignal)
      await pb.write(
        { kind: DatagramSignal.Kind.OFFER, sdp: await description(pc, signal), error: '', batches: true },
        { signal },
      )
      const answer = await pb.read({ signal })
      if (answer.kind === DatagramSignal.Kind.REFUSE) throw new Error(`refused: ${answer.error}`)
      if (answer.kind !== DatagramSignal.Kind.ANSWER) throw new Error('expected an answer')
      pc.setRemoteDescription(answer.sdp, 'answer')
      await opened
      await stream.close().catch(() => {})
      return new DatagramLink(pc, dc, opts, answer.batches)
    } catch (err) {
      pc.close()
      throw err
    }
  }

  /** Answer the offer on `stream` (opened by the member) and wait until the channel is open. */
  static async answer(stream: Stream, opts: DatagramLinkOptions): Promise<DatagramLink> {
    const { PeerConnection } = await native()
    const pc = new PeerConnection('mesh-overlay', peerConfig(opts))
    try {
      const signal = AbortSignal.timeout(NEGOTIATE_MS)
      const channel = new Promise<DataChannel>((resolve) => pc.onDataChannel(resolve))
      const pb = pbStream(stream, { maxDataLength: MAX_SIGNAL }).pb(DatagramSignal)
      const offer = await pb.read({ signal })
      if (offer.kind !== DatagramSignal.Kind.OFFER) throw new Error('expected an offer')
      pc.setRemoteDescription(offer.sdp, 'offer')
      await pb.write(
        { kind: DatagramSignal.Kind.ANSWER, sdp: await description(pc, signal), error: '', batches: true },
        { signal },
      )
      const dc = await abortable(channel, signal)
      await channelOpen(dc, signal)
      await stream.close().catch(() => {})
      return new DatagramLink(pc, dc, opts, offer.batches)
    } catch (err) {
      pc.close()
      throw err
    }
  }

  /** Say no to an offer (packets stay on the stream carrier). */
  static async refuse(stream: Stream, why: string): Promise<void> {
    const pb = pbStream(stream, { maxDataLength: MAX_SIGNAL }).pb(DatagramSignal)
    const signal = AbortSignal.timeout(5_000)
    await pb.read({ signal })
    await pb.write({ kind: DatagramSignal.Kind.REFUSE, sdp: '', error: why, batches: false }, { signal })
    await stream.close()
  }
}

function peerConfig(opts: DatagramLinkOptions) {
  // IPv4 only: bindAddress restricts libjuice's host candidates (see src/node/libp2p.ts)
  return { iceServers: opts.iceServers, bindAddress: '0.0.0.0', mtu: PEER_MTU }
}

/** The local SDP once ICE gathering is complete (every candidate in it: no trickle). */
async function description(pc: PeerConnection, signal: AbortSignal): Promise<string> {
  if (pc.gatheringState() !== 'complete')
    await abortable(
      new Promise<void>((resolve) => pc.onGatheringStateChange((s) => s === 'complete' && resolve())),
      signal,
    )
  const d = pc.localDescription()
  if (d === null) throw new Error('no local description')
  return d.sdp
}

function channelOpen(dc: DataChannel, signal: AbortSignal): Promise<void> {
  if (dc.isOpen()) return Promise.resolve()
  return abortable(
    new Promise<void>((resolve, reject) => {
      dc.onOpen(resolve)
      dc.onError((e) => reject(new Error(e)))
      dc.onClosed(() => reject(new Error('the data channel closed before it opened')))
    }),
    signal,
  )
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(new Error('datagram negotiation timed out'))
    const onAbort = () => reject(new Error('datagram negotiation timed out'))
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}
