import type { Message } from '@libp2p/gossipsub'
import type { Connection, PeerId } from '@libp2p/interface'
import { TagSet } from '../../protocols/blocks.js'
import type { Lifecycle } from '../kernel/component.js'
import { onEveryConnection } from '../node/connections.js'
import { parseCid } from './cid.js'
import type { BlocksContext } from './context.js'
import { callControl } from './control.js'
import { checkTagName, signTag, type Tag } from './tags.js'

/**
 * Tags (DATASET:TAG -> root) travel three ways: gossip when published, a push-pull sync with
 * the dialed member on every new connection, and a sync with a random member now and then.
 */
export class TagSync {
  constructor(private readonly ctx: BlocksContext) {}

  start(lifecycle: Lifecycle): void {
    const node = this.ctx.node
    node.services.pubsub.subscribe(this.ctx.topic)
    node.services.pubsub.addEventListener('message', this.onGossip)
    lifecycle.add(() => node.services.pubsub.removeEventListener('message', this.onGossip))
    // a restarted member syncs over the connections made while it started, too
    lifecycle.add(onEveryConnection(node, this.onConnection))
    lifecycle.every(this.ctx.config.tagSyncIntervalMs, () => void this.syncRandom())
  }

  async publish(dataset: string, tag: string, root: string, replicas: number): Promise<Tag> {
    const ctx = this.ctx
    checkTagName(dataset, tag)
    parseCid(root)
    const rec = signTag(ctx.deps.node.privateKey, ctx.deps.cluster.id, {
      dataset,
      tag,
      root,
      seq: ctx.tags.nextSeq(dataset, tag),
      time: BigInt(Date.now()),
      replicas,
    })
    ctx.tags.apply(rec)
    ctx.deps.events?.publish('dataset_tag', {
      dataset,
      tag,
      root,
      seq: rec.seq.toString(),
      publisher: rec.publisher,
    })
    try {
      await ctx.node.services.pubsub.publish(ctx.topic, TagSet.encode({ tags: [rec] }))
    } catch (err) {
      ctx.log.debug({ err: (err as Error).message }, 'tag gossip failed; push-pull sync will carry it')
    }
    // gossip may still be forming its mesh: push to connected members too
    void this.syncWithConnected()
    return rec
  }

  /** Apply tag records from a member; returns how many were new. */
  ingest(tags: readonly Tag[]): number {
    const ctx = this.ctx
    let n = 0
    for (const t of tags) {
      const outcome = ctx.tags.apply(t)
      ctx.metrics.tags.inc({ outcome })
      if (outcome === 'new') {
        n++
        ctx.deps.events?.publish('dataset_tag', {
          dataset: t.dataset,
          tag: t.tag,
          root: t.root,
          seq: t.seq.toString(),
          publisher: t.publisher,
        })
      }
    }
    return n
  }

  private readonly onGossip = (evt: CustomEvent<Message>): void => {
    const msg = evt.detail
    if (msg.topic !== this.ctx.topic) return
    try {
      this.ingest(TagSet.decode(msg.data, { limits: { tags: 1024 } }).tags)
    } catch {
      this.ctx.metrics.tags.inc({ outcome: 'undecodable' })
    }
  }

  private readonly onConnection = (conn: Connection): void => {
    void (async () => {
      if (!(await this.ctx.node.services.admission.admitted(conn))) return
      // the dialer syncs, so one connection costs one sync
      if (conn.direction === 'outbound') await this.sync(conn.remotePeer)
    })()
  }

  private admittedPeers(): PeerId[] {
    const node = this.ctx.node
    return node.getPeers().filter((p) => node.services.admission.isAdmitted(p))
  }

  private async syncRandom(): Promise<void> {
    const peers = this.admittedPeers()
    if (peers.length === 0) return
    await this.sync(peers[Math.floor(Math.random() * peers.length)])
  }

  private async syncWithConnected(): Promise<void> {
    await Promise.allSettled(
      this.admittedPeers()
        .slice(0, 32)
        .map((p) => this.sync(p)),
    )
  }

  /**
   * Push one new tag to these members and wait for their answers (bounded by the control
   * timeout); resolves with the names of those that did not take it.
   */
  async hand(rec: Tag, holders: Array<{ peerId: PeerId; name: string }>): Promise<string[]> {
    const results = await Promise.allSettled(
      holders.map(async (h) => {
        const r = await callControl(this.ctx, h.peerId, { tagSync: { tags: [rec] }, holds: [] })
        if (!r.ok) throw new Error(r.error || 'refused')
      }),
    )
    return holders.filter((_, i) => results[i].status === 'rejected').map((h) => h.name)
  }

  async sync(peer: PeerId): Promise<void> {
    try {
      const reply = await callControl(this.ctx, peer, { tagSync: { tags: this.ctx.tags.all() }, holds: [] })
      if (reply.tags !== undefined) this.ingest(reply.tags.tags)
    } catch (err) {
      this.ctx.log.debug({ peer: peer.toString(), err: (err as Error).message }, 'tag sync failed')
    }
  }
}
