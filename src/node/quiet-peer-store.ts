import type { Libp2pEvents, Peer, PeerId, PeerStore, Startable, TypedEventTarget } from '@libp2p/interface'

/**
 * libp2p records the protocol of every stream it negotiates in the peer store
 * (`peerStore.merge(peer, { protocols: [p] })`), and the persistent peer store writes the whole
 * peer record to LevelDB on every merge, changed or not (it stamps `updated`). A membership probe
 * opens a stream a second, so an idle two-member cluster wrote about 4 KB/s of peer records
 * and spent a good part of its idle CPU there, and every tunnel or block stream paid a disk write.
 *
 * This service makes those merges free when they add nothing: a merge that only names
 * protocols this peer is already known to speak is answered with the peer as last written,
 * without touching LevelDB (libp2p ignores the answer of these merges).
 * Any other write for the peer (identify replacing its protocols, tags, addresses, delete)
 * forgets what was known, so the next protocol merge writes again.
 */
export interface QuietPeerStoreComponents {
  peerStore: PeerStore
  events: TypedEventTarget<Libp2pEvents>
}

export class QuietPeerStore implements Startable {
  readonly [Symbol.toStringTag] = 'mesh/quiet-peer-store'
  private readonly known = new Map<string, Peer>()
  private restore: (() => void) | undefined

  constructor(private readonly components: QuietPeerStoreComponents) {}

  start(): void {
    const store = this.components.peerStore
    const merge = store.merge.bind(store)
    const patch = store.patch.bind(store)
    const save = store.save.bind(store)
    const del = store.delete.bind(store)
    const forget = (peer: PeerId) => this.known.delete(peer.toString())
    // a peer we no longer talk to needs no entry (the map stays as small as the connected set)
    const onDisconnect = (evt: CustomEvent<PeerId>) => forget(evt.detail)
    this.components.events.addEventListener('peer:disconnect', onDisconnect)
    store.merge = async (peer, data, options) => {
      const protocols = onlyProtocols(data)
      const key = peer.toString()
      const seen = this.known.get(key)
      if (
        protocols !== undefined &&
        seen !== undefined &&
        protocols.every((p) => seen.protocols.includes(p))
      ) {
        return seen
      }
      forget(peer)
      const result = await merge(peer, data, options)
      if (protocols !== undefined) this.known.set(key, result)
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
    }
  }

  stop(): void {
    this.restore?.()
    this.restore = undefined
    this.known.clear()
  }
}

/** The protocols of a merge that sets nothing else, else undefined. */
function onlyProtocols(data: object): string[] | undefined {
  const keys = Object.keys(data).filter((k) => (data as Record<string, unknown>)[k] !== undefined)
  if (keys.length !== 1 || keys[0] !== 'protocols') return undefined
  const p = (data as { protocols?: unknown }).protocols
  return Array.isArray(p) ? (p as string[]) : undefined
}

export function quietPeerStore(): (components: QuietPeerStoreComponents) => QuietPeerStore {
  return (components) => new QuietPeerStore(components)
}
