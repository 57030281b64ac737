import type {
  Libp2pEvents,
  Peer,
  PeerData,
  PeerId,
  PeerStore,
  Startable,
  TypedEventTarget,
} from '@libp2p/interface'

/**
 * libp2p records the protocol of every stream it negotiates in the peer store
 * (`peerStore.merge(peer, { protocols: [p] })`), and the persistent peer store writes the whole
 * peer record to LevelDB on every merge, changed or not (it stamps `updated`). A membership probe
 * opens a stream a second, so an idle two-member cluster wrote about 4 KB/s of peer records
 * and spent a good part of its idle CPU there, and every tunnel or block stream paid a disk write.
 *
 * This service makes those merges free when they add nothing: a merge that only names
 * protocols this connected peer is already known to speak is answered with its record as last
 * read or written, without touching LevelDB (libp2p ignores the answer of these merges).
 *
 * libp2p's dialer also stamps every dial, made or failed, into the peer's metadata
 * (`last-dial-success`, `last-dial-failure`), and nothing in libp2p 3 reads those keys back: a
 * LevelDB read and a whole-record write per dial, and in a join storm every agent dials dozens
 * of members, again and again while handshakes time out. Those stamps are dropped; the address
 * a successful dial records still is, unless the peer is known to have it already.
 *
 * Reads cost as much: every `peerStore.get` takes a lock, reads LevelDB and decodes the record,
 * and libp2p and the agent ask for a connected peer's record again and again (the dialer, the
 * reconnect queue, identify-push, the DHT, the node's 10 s tick): in a profile of 50 agents on
 * one machine, the peer store and LevelDB were a fifth of every agent's CPU. So the record of a
 * connected peer is read once and answered from memory until anything writes it (every write
 * goes through the four methods wrapped here) or the peer disconnects.
 */
export interface QuietPeerStoreComponents {
  peerStore: PeerStore
  events: TypedEventTarget<Libp2pEvents>
  /** which peers are connected: only their records are kept in memory */
  connectionManager?: { getConnections(peer?: PeerId): unknown[] }
}

export class QuietPeerStore implements Startable {
  readonly [Symbol.toStringTag] = 'mesh/quiet-peer-store'
  /** connected peers' records as last read or written: answers reads, and merges that add nothing */
  private readonly records = new Map<string, Peer>()
  /**
   * writes begun so far, per peer: a read or write of a peer that overlapped a later write of
   * the same peer is not kept. Per peer, because in a join storm some peer is always being
   * written, and one count for all would keep almost nothing (measured: 19,063 merges reached
   * LevelDB in a 20-agent storm with one count, 14,716 with one per peer).
   */
  private readonly writes = new Map<string, number>()
  /** bumped when `writes` is cleared, so a stamp taken before the clear never matches after it */
  private generation = 0
  private restore: (() => void) | undefined

  constructor(private readonly components: QuietPeerStoreComponents) {}

  start(): void {
    const store = this.components.peerStore
    const merge = store.merge.bind(store)
    const patch = store.patch.bind(store)
    const save = store.save.bind(store)
    const del = store.delete.bind(store)
    const get = store.get.bind(store)
    /** where this peer's writes stand: equal stamps mean no write of it began in between */
    const stamp = (key: string) => `${this.generation}.${this.writes.get(key) ?? 0}`
    const forget = (peer: PeerId) => {
      const key = peer.toString()
      if (this.writes.size >= MAX_COUNTED_PEERS && !this.writes.has(key)) {
        this.writes.clear()
        this.generation++
      }
      this.writes.set(key, (this.writes.get(key) ?? 0) + 1)
      this.records.delete(key)
    }
    /** keep a record read or written since this peer's writes stood at `since`, if it is connected */
    const keep = (peer: PeerId, record: Peer, since: string) => {
      const connected = (this.components.connectionManager?.getConnections(peer).length ?? 0) > 0
      if (connected && since === stamp(peer.toString())) this.records.set(peer.toString(), record)
    }
    // a peer we no longer talk to needs no entry (the map stays as small as the connected set)
    const onDisconnect = (evt: CustomEvent<PeerId>) => forget(evt.detail)
    this.components.events.addEventListener('peer:disconnect', onDisconnect)
    store.merge = async (peer, input, options) => {
      const key = peer.toString()
      const seen = this.records.get(key)
      const data = withoutDialStamps(input)
      if (data === undefined) return seen ?? emptyPeer(peer)
      if (
        seen !== undefined &&
        onlyKey(data) === 'multiaddrs' &&
        (data.multiaddrs ?? []).every((ma) => seen.addresses.some((a) => a.multiaddr.equals(ma)))
      )
        return seen
      const protocols = onlyProtocols(data)
      if (
        protocols !== undefined &&
        seen !== undefined &&
        protocols.every((p) => seen.protocols.includes(p))
      ) {
        return seen
      }
      forget(peer)
      const since = stamp(key)
      const result = await merge(peer, data, options)
      keep(peer, result, since)
      return result
    }
    store.get = async (peer, options) => {
      const key = peer.toString()
      const cached = this.records.get(key)
      if (cached !== undefined) return cached
      // a write that starts while this read is under way must not be undone by its answer
      const since = stamp(key)
      const result = await get(peer, options)
      keep(peer, result, since)
      return result
    }
    store.patch = async (peer, data, options) => {
      forget(peer)
      return patch(peer, data, options)
    }
    store.save = async (peer, data, options) => {
      forget(peer)
      return save(peer, data, options)
    }
    store.delete = async (peer, options) => {
      forget(peer)
      return del(peer, options)
    }
    this.restore = () => {
      this.components.events.removeEventListener('peer:disconnect', onDisconnect)
      store.merge = merge
      store.patch = patch
      store.save = save
      store.delete = del
      store.get = get
    }
  }

  stop(): void {
    this.restore?.()
    this.restore = undefined
    this.records.clear()
    this.writes.clear()
  }
}

/** Peers whose writes are counted at once; past it the counts start again (a new generation). */
const MAX_COUNTED_PEERS = 4096

/** The metadata keys libp2p's dialer writes and never reads (dial-queue.ts, libp2p 3.x). */
export const DIAL_STAMPS = ['last-dial-success', 'last-dial-failure']

/** A merge without the dialer's stamps; undefined when nothing else was in it. */
export function withoutDialStamps(data: PeerData): PeerData | undefined {
  const md = data.metadata
  if (md === undefined || md instanceof Map) return data
  const keys = Object.keys(md)
  if (keys.length === 0 || !keys.every((k) => DIAL_STAMPS.includes(k))) return data
  const { metadata: _, ...rest } = data
  return Object.values(rest).some((v) => v !== undefined) ? rest : undefined
}

/** The one key a merge sets, if it sets exactly one. */
function onlyKey(data: object): string | undefined {
  const keys = Object.keys(data).filter((k) => (data as Record<string, unknown>)[k] !== undefined)
  return keys.length === 1 ? keys[0] : undefined
}

/** The protocols of a merge that sets nothing else, else undefined. */
function onlyProtocols(data: object): string[] | undefined {
  if (onlyKey(data) !== 'protocols') return undefined
  const p = (data as { protocols?: unknown }).protocols
  return Array.isArray(p) ? (p as string[]) : undefined
}

/** What a merge answers for a peer the store lacks (libp2p ignores the answer of its merges). */
function emptyPeer(id: PeerId): Peer {
  return { id, addresses: [], protocols: [], metadata: new Map(), tags: new Map() }
}

export function quietPeerStore(): (components: QuietPeerStoreComponents) => QuietPeerStore {
  return (components) => new QuietPeerStore(components)
}
