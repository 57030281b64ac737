import { dataPaths } from '../kernel/datadir.js'
import type { EventBus } from '../kernel/events.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import { displayNames } from '../membership/names.js'
import type { MembershipComponent } from '../membership/service.js'
import { type Cluster, protocolPrefix } from '../node/cluster.js'
import { routingTableSize } from '../node/libp2p.js'
import type { NodeComponent } from '../node/node-component.js'
import { Blockstore } from './blockstore.js'
import { type CID, parseCid } from './cid.js'
import type { BlocksConfig } from './config.js'
import { BlocksError } from './errors.js'
import { PinStore } from './pins.js'
import type { Ref } from './tags.js'
import { TagStore } from './tags.js'

/** What the blocks component is built from (the agent hands these in). */
export interface BlocksDeps {
  node: NodeComponent
  membership: MembershipComponent
  cluster: Cluster
  config: BlocksConfig
  /** providers are announced and found on the DHT too (dht.enabled) */
  dhtEnabled: boolean
  dataDir: string
  reporter: ComponentReporter
  events?: EventBus
}

export type BlocksMetrics = ReturnType<typeof blocksMetrics>

function blocksMetrics(ctx: BlocksContext) {
  const r = ctx.deps.reporter
  const m = {
    blocks: r.gauge('store_blocks', 'blocks in the local store', [], () => {
      m.blocks.set(ctx.store.count)
    }),
    bytes: r.gauge('store_bytes', 'bytes in the local store', [], () => {
      m.bytes.set(ctx.store.totalBytes)
    }),
    corrupt: r.counter(
      'corrupt_blocks_total',
      'blocks dropped because they did not hash to their CID, by where',
      ['source'],
    ),
    received: r.counter('received_bytes_total', 'block bytes fetched from other members'),
    receivedBlocks: r.counter('received_blocks_total', 'blocks fetched from other members'),
    served: r.counter('served_bytes_total', 'block bytes served to other members'),
    servedBlocks: r.counter('served_blocks_total', 'blocks served to other members'),
    wants: r.counter('wants_received_total', 'exchange messages received, by kind', ['kind']),
    transfers: r.counter('transfers_total', 'gets, puts and replications, by kind and result', [
      'kind',
      'result',
    ]),
    tags: r.counter('tags_total', 'tag records received, by outcome', ['outcome']),
    evicted: r.counter('evicted_bytes_total', 'cached block bytes evicted under the size budget'),
    repairs: r.counter('repairs_total', 'replica repairs started, by result', ['result']),
    provides: r.counter('dht_provides_total', 'DHT provider records announced, by result', ['result']),
    dhtPeers: r.gauge('dht_peers', "peers in the DHT's routing table", [], () => {
      let size = 0
      try {
        size = routingTableSize(ctx.node.services.dht)
      } catch {} // the node is not started
      m.dhtPeers.set(size)
    }),
  }
  return m
}

/**
 * The state every part of the blocks component shares: the three stores, the protocol ids,
 * the metrics, member names and whether the component runs. The parts (exchange service,
 * cache, tag sync, replicas, datasets) each take this and the parts below them.
 */
export class BlocksContext {
  readonly store: Blockstore
  readonly tags: TagStore
  readonly pins: PinStore
  readonly exchangeProtocol: string
  readonly controlProtocol: string
  readonly topic: string
  readonly metrics: BlocksMetrics
  /** set between start() and stop(): background work (provide retries, repair) checks it */
  started = false

  constructor(readonly deps: BlocksDeps) {
    const prefix = protocolPrefix(deps.cluster)
    this.exchangeProtocol = `${prefix}/blocks/1.0.0`
    this.controlProtocol = `${prefix}/datasets/1.0.0`
    this.topic = `${prefix}/blocks/tags/1`
    this.metrics = blocksMetrics(this)
    const paths = dataPaths(deps.dataDir)
    this.store = new Blockstore(paths.blocks, {
      onCorrupt: () => this.metrics.corrupt.inc({ source: 'disk' }),
    })
    this.tags = new TagStore(deps.cluster.id, paths.blockTags, (p) => deps.node.trust?.isRevoked(p) ?? false)
    this.pins = new PinStore(paths.blockPins)
  }

  get config(): BlocksConfig {
    return this.deps.config
  }

  get node() {
    return this.deps.node.node
  }

  get self(): string {
    return this.node.peerId.toString()
  }

  get log() {
    return this.deps.reporter.log
  }

  names(): Map<string, string> {
    return displayNames(this.deps.membership.rows().map((r) => r.entry.signed.info))
  }

  nameOf(peerId: string, names = this.names()): string {
    return names.get(peerId) ?? `${peerId.slice(0, 8)}…${peerId.slice(-6)}`
  }

  /** A reference's root CID: a CID as is, DATASET:TAG through the tags. */
  resolve(ref: Ref): CID {
    if (ref.kind === 'cid') return ref.cid
    const t = this.tags.get(ref.dataset, ref.tag)
    if (t === undefined) {
      const known = this.tags
        .all()
        .filter((x) => x.dataset === ref.dataset)
        .map((x) => `${x.dataset}:${x.tag}`)
      throw new BlocksError(
        'not-found',
        `unknown tag ${ref.dataset}:${ref.tag}` +
          (known.length > 0
            ? `; dataset ${ref.dataset} has ${known.slice(0, 8).join(', ')}`
            : "; 'mesh datasets' lists the tags"),
      )
    }
    return parseCid(t.root)
  }
}
