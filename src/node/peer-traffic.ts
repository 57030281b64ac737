import type { Connection } from '@libp2p/interface'

/** Bytes exchanged with one member since this agent started, over all its connections. */
export interface Tally {
  in: number
  out: number
}

/** The two methods every libp2p v3 message stream moves its bytes through. */
interface Tappable {
  onData?: (data: { byteLength: number }) => void
  sendData?: (data: unknown) => { sentBytes: number; canSendMore: boolean }
}

interface Muxed {
  maConn?: Tappable
  muxer?: {
    streams?: Tappable[]
    createStream?: (...args: unknown[]) => Promise<Tappable>
    addEventListener?: (type: 'stream', fn: (evt: CustomEvent<Tappable>) => void) => void
  }
}

/** Members with a series of their own in mesh_node_peer_bytes_total (bounded cardinality). */
export const LABELLED_PEERS = 32

/** The stream muxer WebRTC connections use: their bytes flow in data channels, not the maConn. */
const WEBRTC_MUXER = '/webrtc'

/**
 * Per-member byte counts, taken where libp2p moves bytes: each admitted connection's
 * `onData` (what arrived) and `sendData` (what was handed to the transport) get one addition
 * each per chunk, into a tally object looked up once per connection; no allocation, no event
 * on the hot path. TCP and relayed connections count their encrypted bytes at the connection
 * (so a relayed connection's bytes also count toward the relay, which carries them); WebRTC
 * connections count each data channel, since their connection object carries no data.
 */
export class PeerTraffic {
  private readonly tallies = new Map<string, Tally>()
  /** the members with their own metric series: the first ones counted, for good */
  private readonly labelled = new Set<string>()

  /** Count this connection's bytes from now on toward its remote peer. */
  count(conn: Connection): void {
    const peer = conn.remotePeer.toString()
    let tally = this.tallies.get(peer)
    if (tally === undefined) {
      tally = { in: 0, out: 0 }
      this.tallies.set(peer, tally)
      if (this.labelled.size < LABELLED_PEERS) this.labelled.add(peer)
    }
    const c = conn as unknown as Muxed
    if (conn.multiplexer !== WEBRTC_MUXER) {
      if (c.maConn !== undefined) tap(c.maConn, tally)
      return
    }
    const muxer = c.muxer
    if (muxer === undefined) return
    const t = tally
    for (const s of muxer.streams ?? []) tap(s, t)
    muxer.addEventListener?.('stream', (evt) => tap(evt.detail, t))
    const create = muxer.createStream
    if (typeof create === 'function')
      muxer.createStream = async (...args) => {
        const s = await create.apply(muxer, args)
        tap(s, t)
        return s
      }
  }

  /** Bytes with this peer so far, if it ever had a counted connection. */
  of(peer: string): Tally | undefined {
    const t = this.tallies.get(peer)
    return t === undefined ? undefined : { in: t.in, out: t.out }
  }

  /** Every counted peer's bytes so far (copies). */
  snapshot(): Map<string, Tally> {
    const out = new Map<string, Tally>()
    for (const [peer, t] of this.tallies) out.set(peer, { in: t.in, out: t.out })
    return out
  }

  /** The metric's series: one per labelled member (by name), all the others summed in 'others'. */
  series(nameOf: (peerId: string) => string | undefined): Map<string, Tally> {
    const out = new Map<string, Tally>()
    for (const [peer, t] of this.tallies) {
      const key = this.labelled.has(peer) ? (nameOf(peer) ?? peer) : 'others'
      const prev = out.get(key)
      out.set(
        key,
        prev === undefined ? { in: t.in, out: t.out } : { in: prev.in + t.in, out: prev.out + t.out },
      )
    }
    return out
  }

  /** Drop a peer that will not come back (revoked): the map stays the size of the cluster. */
  forget(peer: string): void {
    this.tallies.delete(peer)
  }
}

const tapped = new WeakSet<object>()

/** Wrap one stream's onData and sendData (once) so each chunk adds its size to `tally`. */
function tap(s: Tappable, tally: Tally): void {
  if (tapped.has(s)) return
  const onData = s.onData
  const sendData = s.sendData
  if (typeof onData !== 'function' || typeof sendData !== 'function') return
  tapped.add(s)
  s.onData = function (this: unknown, data) {
    tally.in += data.byteLength
    return onData.call(this, data)
  }
  s.sendData = function (this: unknown, data) {
    const r = sendData.call(this, data)
    tally.out += r.sentBytes
    return r
  }
}
