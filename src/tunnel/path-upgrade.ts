import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { BackoffMap } from '../node/backoff.js'
import type { MeshLibp2p } from '../node/libp2p.js'
import { pathKind } from '../node/paths.js'
import { splitAddrs } from './dialer.js'

const PER_ROUND = 4
/** a member whose direct addresses keep failing is tried less and less often, at most every 5 min */
const RETRY_MAX_MS = 5 * 60_000

export interface UpgradeCandidate {
  peerId: string
  addrs: readonly string[]
}

/**
 * Relayed (or WebRTC) -> direct TCP. libp2p keeps using a relayed connection after the direct path comes back
 * (a firewall lifted, a NAT that changed), and DCUtR ignores the lab's and many WANs' private
 * ranges. So every `intervalMs`, for members reached only through a relay, try their direct
 * addresses; with a direct connection open, libp2p picks it for new streams (it prefers direct
 * connections) and `mesh members` shows the path as direct. Streams already on the relayed
 * connection stay there until they end: closing it would cut an ssh session, and gossipsub
 * does not move its stream to another connection of the same peer.
 */
export class PathUpgrader {
  private timer: NodeJS.Timeout | undefined
  private running = false
  /** keyed by peer and its direct addresses: new addresses are worth a try at once */
  private backoff: BackoffMap | undefined

  constructor(
    private readonly deps: {
      node: () => MeshLibp2p
      /** alive members other than us, with their record addresses */
      candidates: () => UpgradeCandidate[]
      intervalMs: number
      timeoutMs: number
      log: Logger
      onResult: (result: 'upgraded' | 'failed') => void
      onUpgraded?: (peer: string) => void
    },
  ) {}

  start(): void {
    if (this.deps.intervalMs <= 0) return
    this.backoff = new BackoffMap({ minMs: this.deps.intervalMs, maxMs: RETRY_MAX_MS })
    this.timer = setInterval(() => void this.round(), this.deps.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** One pass; returns the peers it upgraded. Bounded: at most PER_ROUND dials, each with a timeout. */
  async round(): Promise<string[]> {
    if (this.running) return []
    this.running = true
    try {
      const node = this.deps.node()
      if (node.status !== 'started') return []
      const self = node.peerId.toString()
      const now = Date.now()
      const todo: Array<{ peer: string; key: string; addrs: ReturnType<typeof splitAddrs>['direct'] }> = []
      const wanted = new Set<string>()
      for (const c of this.deps.candidates()) {
        if (c.peerId === self) continue
        const conns = node
          .getConnections(peerIdFromString(c.peerId))
          .filter((x) => x.status === 'open' && node.services.admission.connectionAdmitted(x))
        // relayed or WebRTC (which the NAT component may have set up meanwhile): TCP is cheaper
        if (conns.length === 0 || conns.some((x) => pathKind(x.remoteAddr) === 'direct')) continue
        const { direct } = splitAddrs(c.peerId, c.addrs, self)
        if (direct.length === 0) continue
        const key = `${c.peerId} ${direct.map(String).sort().join(' ')}`
        wanted.add(key)
        if (this.backoff?.ready(key, now) ?? true) todo.push({ peer: c.peerId, key, addrs: direct })
      }
      this.backoff?.retain(wanted)
      // a different few each round when many members are relayed
      todo.sort(() => Math.random() - 0.5)
      const batch = todo.slice(0, PER_ROUND)
      const results = await Promise.allSettled(
        batch.map(async ({ peer, addrs }) => {
          const conn = await node.dial(addrs, {
            signal: AbortSignal.timeout(this.deps.timeoutMs),
            force: true,
          })
          if (pathKind(conn.remoteAddr) !== 'direct') throw new Error('not direct')
          return peer
        }),
      )
      const upgraded: string[] = []
      results.forEach((r, i) => {
        this.deps.onResult(r.status === 'fulfilled' ? 'upgraded' : 'failed')
        if (r.status === 'fulfilled') this.backoff?.succeeded(batch[i].key)
        else this.backoff?.failed(batch[i].key, Date.now())
        if (r.status === 'fulfilled') {
          upgraded.push(r.value)
          this.deps.log.info({ peer: r.value }, 'path upgraded: relayed -> direct')
          this.deps.onUpgraded?.(r.value)
        } else {
          this.deps.log.debug(
            { peer: batch[i].peer, err: (r.reason as Error)?.message },
            'direct dial still fails',
          )
        }
      })
      return upgraded
    } catch (err) {
      this.deps.log.debug({ err: (err as Error).message }, 'path upgrade round failed')
      return []
    } finally {
      this.running = false
    }
  }
}
