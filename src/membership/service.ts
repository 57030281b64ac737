import { statfsSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import type { Message } from '@libp2p/gossipsub'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream, pbStream } from '@libp2p/utils'
import { Circuit } from '@multiformats/multiaddr-matcher'
import { MemberSet, Probe, ProbeReply, SyncDigest, SyncReply } from '../../protocols/membership.js'
import { Statement } from '../../protocols/trust.js'
import type { Component } from '../kernel/component.js'
import type { EventBus } from '../kernel/events.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import { closeOrAbort } from '../kernel/streams.js'
import { BackoffMap } from '../node/backoff.js'
import { type Cluster, protocolPrefix } from '../node/cluster.js'
import { onEveryConnection } from '../node/connections.js'
import { dialRefused } from '../node/dial-refused.js'
import { dialable, notThroughSelf } from '../node/dialable.js'
import type { NodeComponent } from '../node/node-component.js'
import { pathKind } from '../node/paths.js'
import { VERSION } from '../version.js'
import { fanoutWidth, PIGGYBACK } from './broadcasts.js'
import { type ClockSample, ClockSkew } from './clock-skew.js'
import type { MembershipConfig } from './config.js'
import { MembershipCore, type MembershipEffect } from './core.js'
import { Digest } from './digest.js'
import { type Change, type Entry, effectiveStatus, MemberTable, type Row } from './merge.js'
import { overlayAddress } from './overlay.js'
import { MAX_PROBE, type Piggyback, ProbeLinks, serveProbeLink } from './probe-links.js'
import {
  type Claim,
  ed25519Signer,
  ed25519Verifier,
  type MemberInfo,
  type SignedInfo,
  type Signer,
} from './record.js'
import { shuffle } from './swim.js'
import { syncOnConnect } from './sync-on-connect.js'
import { fromWireClaim, fromWireInfo, toWireClaim, toWireInfo, WireError } from './wire.js'

const MAX_SYNC = 8 << 20
const MAX_GOSSIP = 256 << 10
/** fan-out messages are probes with seqs from here up, apart from the detector's */
const FANOUT_SEQ_BASE = 0x80000000
// the SWIM core says when it next needs time (nextWakeup); sleep until then, but at most this
// long, so idle probe links are swept and a quiet member does not wake 10 times a second
const MAX_SLEEP_MS = 1_000
const MIN_SLEEP_MS = 10
const CONNECT_EVERY_MS = 5_000
/** how often probe links on a relay look for a better connection to move to */
const REHOME_EVERY_MS = 10_000
const CONNECT_BATCH = 8
const SYNC_ON_CONNECT_MIN_GAP_MS = 5_000
const CONNECT_RETRY_MS = 2_000
/** a leave is pushed straight to this many members at most (gossip carries it further), each within LEAVE_SYNC_MS */
const LEAVE_FANOUT = 32
const LEAVE_SYNC_MS = 2_500

/**
 * The membership adapter: binds the sans-IO table and failure detector to libp2p. Gossip on a
 * gossipsub topic, push-pull sync streams, probe streams; keeps our own signed record current,
 * keeps connections to alive members, and raises `cluster_change` for every change.
 */
export class MembershipComponent implements Component {
  readonly name = 'membership'
  readonly table: MemberTable
  /** the table, detector and piggyback queue with their glue (sans-IO); from start() on */
  private core: MembershipCore | undefined
  private signer!: Signer
  private readonly verifier = ed25519Verifier()
  private selfId = ''
  /** the last gossipsub publish of our own news, for leave() to wait on */
  private lastPublish: Promise<void> = Promise.resolve()
  private readonly topic: string
  /** digest sync: only what the other side lacks */
  private readonly syncProto: string
  /** whole-table sync, still answered and used with agents that predate sync/2.0.0 */
  private readonly syncProtoV1: string
  private readonly probeProto: string
  private readonly probeLinkProto: string
  private readonly probeGossipProto: string
  private fanoutTimer: NodeJS.Timeout | undefined
  private fanoutSeq = 0
  /** members seen speaking only older probe protocols (identify, or the link they took) */
  private readonly olderPeers = new Set<string>()
  private readonly piggyback: Piggyback = {
    take: (peer) => this.takeGossip(peer),
    receive: (peer, set) => {
      this.metrics.bytes.inc({ direction: 'in', channel: 'piggyback' }, MemberSet.encode(set).length)
      this.ingest(set.records, set.claims, set.statements, true, peer)
    },
  }
  private readonly links: ProbeLinks
  private readonly timers: NodeJS.Timeout[] = []
  private wakeTimer: NodeJS.Timeout | undefined
  private wakeAt = Number.POSITIVE_INFINITY
  private stopped = false
  private readonly relayWaiters = new Map<string, (ack: boolean) => void>()
  private readonly clocks = new ClockSkew()
  private readonly lastSync = new Map<string, number>()
  /** when a sync we started last completed (sync-on-connect.ts) */
  private lastSyncOk = Number.NEGATIVE_INFINITY
  private catchUpTimer: NodeJS.Timeout | undefined
  private readonly knownAddrs = new Map<string, string>()
  /** alive members that did not answer a dial: tried again after 5 s, 10 s, ... at most every 5 min */
  private readonly connectBackoff = new BackoffMap({ minMs: CONNECT_EVERY_MS, maxMs: 300_000 })
  private left = false
  private computeTypes: string[] = []
  private readonly metrics

  constructor(
    private readonly deps: {
      node: NodeComponent
      cluster: Cluster
      config: MembershipConfig
      /** this member's name and tags (the agent's name and tags keys), for its record */
      name: string
      tags: Record<string, string>
      /** the budget of a dial to a member (the agent's dialTimeoutMs) */
      dialTimeoutMs: number
      dataDir: string
      events: EventBus
      reporter: ComponentReporter
      /** what this member can run (the elections executor), for its record; none when absent */
      computeTypes?: () => string[]
      /** whether this member is in maintenance (votes no everywhere) */
      maintenance: () => boolean
      /** tags the agent sets itself ('mesh.*', e.g. the STUN port), merged over tags */
      agentTags?: () => Record<string, string>
    },
  ) {
    const prefix = protocolPrefix(deps.cluster)
    this.topic = `${prefix}/members/1`
    this.syncProto = `${prefix}/members/sync/2.0.0`
    this.syncProtoV1 = `${prefix}/members/sync/1.0.0`
    this.probeProto = `${prefix}/members/probe/1.0.0`
    this.probeLinkProto = `${prefix}/members/probe/2.0.0`
    this.probeGossipProto = `${prefix}/members/probe/3.0.0`
    this.links = new ProbeLinks({
      persistentProtocol: this.probeLinkProto,
      gossipProtocol: this.probeGossipProto,
      opened: (peer, protocol) => this.noteProtocols(peer, [protocol]),
      piggyback: this.piggyback,
      count: (d, n) => this.countProbe(d, n),
      clock: (peer, sentAt, receivedAt, remoteNow) => this.clocks.add(peer, sentAt, receivedAt, remoteNow),
      openTimeoutMs: deps.dialTimeoutMs,
      open: (peer, signal) =>
        this.libp2p.dialProtocol(
          peerIdFromString(peer),
          [this.probeGossipProto, this.probeLinkProto, this.probeProto],
          {
            signal,
            runOnLimitedConnection: true,
          },
        ),
    })
    // nothing about a revoked member, or claimed by one, enters the table
    this.table = new MemberTable({
      clusterId: deps.cluster.id,
      refuse: (p) => deps.node.trust?.isRevoked(p) ?? false,
    })
    const r = deps.reporter
    this.metrics = {
      members: r.gauge('members', 'members by status', ['status'], () => {
        const g = this.metrics.members
        for (const [k, v] of Object.entries(this.table.counts())) g.set({ status: k }, v)
      }),
      inputs: r.gauge('inputs', 'records and claims received, by outcome', ['outcome'], () => {
        for (const [k, v] of Object.entries(this.table.outcomes)) this.metrics.inputs.set({ outcome: k }, v)
      }),
      dropped: r.counter('dropped_total', 'membership messages dropped before the table', ['reason']),
      bytes: r.counter('bytes_total', 'membership bytes sent and received', ['direction', 'channel']),
      probes: r.counter('probes_total', 'probes sent, by kind and result', ['kind', 'result']),
      syncs: r.counter('syncs_total', 'push-pull syncs, by role and result', ['role', 'result']),
      changes: r.counter('changes_total', 'status changes seen', ['to']),
    }
    // Lifeguard's awareness says our own event loop was late (a busy machine): probes are
    // stretched, which is the agent coping, not failing. It is a figure to watch, not a reason
    // for /health to fail (a supervisor restarting a starved agent only adds load).
    const awarenessNow = () => this.core?.swim.health ?? 0
    r.gauge(
      'local_health',
      'Lifeguard awareness: 0 is healthy; probe timing is stretched by (1 + this)',
      [],
      function () {
        this.set(awarenessNow())
      },
    )
    // a gauge read at scrape time (a count since start): the core counts, the service only shows it
    const skipped = () => this.core?.swim.skippedProbes ?? 0
    r.gauge(
      'probes_skipped',
      'probes not sent since start: the target had just proved itself alive (its own probe or a sync)',
      [],
      function () {
        this.set(skipped())
      },
    )
    r.health(() => {
      const awareness = awarenessNow()
      return {
        ok: this.core !== undefined,
        detail:
          awareness === 0
            ? 'awareness 0'
            : `awareness ${awareness}: our event loop ran late, probes stretched x${awareness + 1}`,
      }
    })
  }

  private get libp2p() {
    return this.deps.node.node
  }

  async start(): Promise<void> {
    const m = this.deps.config
    this.signer = ed25519Signer(this.deps.node.privateKey)
    this.selfId = this.signer.peerId
    // incarnations start at the wall clock, so a restarted member always outranks its old record
    const incarnation = Date.now()
    this.core = new MembershipCore({
      signer: this.signer,
      verifier: this.verifier,
      table: this.table,
      swim: {
        rng: Math.random,
        incarnation,
        probeIntervalMs: m.probeIntervalMs,
        probeTimeoutMs: m.probeTimeoutMs,
        indirectK: m.indirectProbes,
        suspicionMult: m.suspicionMult,
      },
      describe: (inc, status) => this.buildSelf(inc, status),
      emit: this.onEffect,
      piggyback: {},
    })
    this.core.start(Date.now())

    const node = this.libp2p
    await node.handle(this.syncProto, (s, c) => this.onDigestSyncStream(s, c), {
      maxInboundStreams: 8,
      runOnLimitedConnection: true,
    })
    await node.handle(this.syncProtoV1, (s, c) => this.onSyncStream(s, c), {
      maxInboundStreams: 8,
      runOnLimitedConnection: true,
    })
    await node.handle(this.probeProto, (s, c) => this.onProbeStream(s, c), {
      maxInboundStreams: 64,
      runOnLimitedConnection: true,
    })
    await node.handle(
      this.probeLinkProto,
      (s, c) =>
        serveProbeLink(
          s,
          (req) => this.answerProbe(c.remotePeer.toString(), req, this.deps.config.probeIntervalMs * 3),
          (d, n) => this.countProbe(d, n),
        ),
      { maxInboundStreams: 4, runOnLimitedConnection: true },
    )
    await node.handle(
      this.probeGossipProto,
      (s, c) => {
        const peer = c.remotePeer.toString()
        return serveProbeLink(
          s,
          (req) => this.answerProbe(peer, req, this.deps.config.probeIntervalMs * 3),
          (d, n) => this.countProbe(d, n),
          undefined,
          { peer, piggyback: this.piggyback },
        )
      },
      { maxInboundStreams: 4, runOnLimitedConnection: true },
    )
    node.services.pubsub.subscribe(this.topic)
    node.services.pubsub.addEventListener('message', this.onGossip)
    // a restarted member syncs over the connections made while it started, too
    this.stopConnections = onEveryConnection(node, this.onConnection)
    node.addEventListener('self:peer:update', this.onSelfUpdate)
    node.addEventListener('peer:identify', this.onIdentify)
    node.addEventListener('peer:disconnect', this.onDisconnect)
    this.deps.node.trust.onStatement((st) => {
      if (st.kind === Statement.Kind.REVOKE) {
        this.core?.forget(st.peerId)
        this.wake()
      }
    })

    // our first record rides the piggyback queue, so members we never sync with learn it from
    // others; the first incarnation (above) already outranks any record or claim from before
    this.core.announce()
    this.wake()
    this.every(m.syncIntervalMs, () => void this.syncRandom())
    this.every(CONNECT_EVERY_MS, () => void this.connectMembers())
    this.every(60_000, () => this.table.reap(Date.now(), m.tombstoneHours * 3_600_000))
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.wakeTimer)
    clearTimeout(this.fanoutTimer)
    clearTimeout(this.catchUpTimer)
    for (const t of this.timers) clearInterval(t)
    const node = this.libp2p
    this.stopConnections?.()
    node.removeEventListener('self:peer:update', this.onSelfUpdate)
    node.removeEventListener('peer:identify', this.onIdentify)
    node.removeEventListener('peer:disconnect', this.onDisconnect)
    node.services.pubsub.removeEventListener('message', this.onGossip)
    this.links.closeAll()
    await node
      .unhandle([
        this.syncProto,
        this.syncProtoV1,
        this.probeProto,
        this.probeLinkProto,
        this.probeGossipProto,
      ])
      .catch(() => {})
  }

  /** Announce that we leave (status `left`, everywhere at once), before the node stops. */
  async leave(): Promise<void> {
    if (this.left) return
    this.left = true
    // queued, published on gossip (where needed), and pushed straight to every connected
    // member so nobody waits for a suspicion
    this.core?.leave(Date.now())
    await this.lastPublish
    await Promise.allSettled(this.leaveTargets().map((p) => this.sync(p, 'leave', LEAVE_SYNC_MS)))
  }

  /**
   * Who hears of our leave straight from us: every connected member, then alive members we are
   * not connected to (a member that joined a moment ago may not be in everyone's gossip mesh yet,
   * and a sync dials), up to LEAVE_FANOUT in all; gossip carries it to the rest.
   */
  private leaveTargets(): PeerId[] {
    const connected = this.libp2p.getPeers().filter((p) => this.isMember(p.toString()))
    const seen = new Set(connected.map((p) => p.toString()))
    const others = this.otherLivePeers().filter((p) => !seen.has(p))
    const room = Math.max(0, LEAVE_FANOUT - connected.length)
    shuffle(others, room, Math.random)
    return [...connected.slice(0, LEAVE_FANOUT), ...others.slice(0, room).map((p) => peerIdFromString(p))]
  }

  /** The compute types this member offers (the plugins component sets them): re-signed and spread. */
  setComputeTypes(types: string[]): void {
    const next = [...new Set(types)].sort().slice(0, 32)
    if (next.join(' ') === this.computeTypes.join(' ')) return
    this.computeTypes = next
    if (this.core !== undefined) this.refresh()
  }

  get selfPeerId(): string {
    return this.selfId
  }

  rows(): Row[] {
    return [...this.table.rows()]
  }

  rttOf(peer: string): number | undefined {
    return this.core?.swim.rttOf(peer)
  }

  /** How far `peer`'s clock is from ours, from its probe replies (undefined before the first). */
  clockOf(peer: string): ClockSample | undefined {
    return this.clocks.of(peer)
  }

  // ---- our own record -----------------------------------------------------------------------

  private buildSelf(incarnation: number, status: 'alive' | 'left'): MemberInfo {
    const { cluster, dataDir } = this.deps
    let diskFree = 0
    try {
      const st = statfsSync(dataDir)
      diskFree = st.bavail * st.bsize
    } catch {}
    // direct addresses first: a relay circuit is the fallback
    const addrs = this.libp2p
      .getMultiaddrs()
      .filter(dialable)
      .sort((a, b) => Number(Circuit.matches(a)) - Number(Circuit.matches(b)))
      .map(String)
      .slice(0, 32)
    return {
      peerId: this.selfId,
      name: this.deps.name,
      overlay: overlayAddress(cluster.id, this.selfId),
      addrs,
      incarnation,
      status,
      version: VERSION,
      tags: { ...this.deps.tags, ...(this.deps.agentTags?.() ?? {}) },
      // plugin compute types available here, and those of the election executor
      computeTypes: [...new Set([...this.computeTypes, ...(this.deps.computeTypes?.() ?? [])])].slice(0, 32),
      resources: { cpus: cpus().length, memoryBytes: totalmem(), diskFreeBytes: diskFree },
      maintenance: this.deps.maintenance(),
    }
  }

  /** Re-sign our record with a higher incarnation (new addresses, tags) and spread it. */
  private refresh(): void {
    this.core?.refresh(Date.now())
    this.wake()
  }

  private readonly onSelfUpdate = (): void => {
    try {
      const addrs = this.libp2p.getMultiaddrs().filter(dialable).map(String)
      const mine = this.core?.signed.info.addrs ?? []
      if (addrs.length !== mine.length || addrs.some((a) => !mine.includes(a))) this.refresh()
    } catch (err) {
      this.deps.reporter.log.warn({ err: (err as Error).message }, 'could not refresh our record')
    }
  }

  // ---- the table ----------------------------------------------------------------------------

  /** Apply what arrived; `spread`: it came by gossip, so what changed our table is passed on (not back to `from`). */
  private ingest(
    records: MemberSet['records'],
    claims: MemberSet['claims'],
    statements: Uint8Array[] = [],
    spread = false,
    from?: string,
  ): number {
    let changed = 0
    for (const raw of statements) {
      try {
        if (this.deps.node.trust.add(Statement.decode(raw))) changed++
      } catch {
        this.metrics.dropped.inc({ reason: 'malformed_statement' })
      }
    }
    const core = this.core
    if (core === undefined) return changed
    const infos: SignedInfo[] = []
    for (const r of records) {
      try {
        infos.push(fromWireInfo(r))
      } catch (err) {
        this.metrics.dropped.inc({ reason: err instanceof WireError ? 'malformed_record' : 'error' })
      }
    }
    const said: Claim[] = []
    for (const c of claims) {
      try {
        said.push(fromWireClaim(c))
      } catch (err) {
        this.metrics.dropped.inc({ reason: err instanceof WireError ? 'malformed_claim' : 'error' })
      }
    }
    try {
      changed += core.ingest(infos, said, Date.now(), spread, from)
    } catch (err) {
      this.metrics.dropped.inc({ reason: 'error' })
      this.deps.reporter.log.warn({ err: (err as Error).message }, 'membership input failed')
    }
    this.wake()
    return changed
  }

  /** The core's effects: messages to send, changes to announce, news to spread. */
  private readonly onEffect = (e: MembershipEffect): void => {
    switch (e.type) {
      case 'probe':
        void this.probe(e.to, e.seq)
        break
      case 'probe-req':
        void this.probeReq(e.via, e.target, e.seq)
        break
      case 'ack':
      case 'nack':
        this.relayWaiters.get(`${e.to}/${e.seq}`)?.(e.type === 'ack')
        this.relayWaiters.delete(`${e.to}/${e.seq}`)
        break
      case 'change':
        if (!e.quiet) this.onChange(e.change)
        break
      case 'publish':
        this.lastPublish = this.publish(
          MemberSet.encode({
            records: e.record === undefined ? [] : [toWireInfo(e.record)],
            claims: e.claim === undefined ? [] : [toWireClaim(e.claim)],
            statements: [],
          }),
        )
        break
      case 'queued':
        this.armFanout()
        break
      case 'refuted':
        this.deps.reporter.log.info({ incarnation: e.incarnation }, 'refuting a claim against us')
        break
      case 'dropped':
        this.metrics.dropped.inc({ reason: e.reason })
        break
    }
  }

  private isMember(peer: string): boolean {
    const s = this.table.status(peer)
    return s === 'alive' || s === 'suspect'
  }

  private onChange(change: Change): void {
    const { peerId, before, after, entry } = change
    const info = entry.signed.info
    if (peerId !== this.selfId && (after === 'alive' || after === 'suspect')) void this.learnAddrs(info)
    if (before !== after) {
      this.metrics.changes.inc({ to: after })
      this.deps.reporter.log.info({ peer: peerId, name: info.name, before, after }, 'member status changed')
    }
    this.deps.events.publish('cluster_change', {
      peerId,
      name: info.name,
      overlay: info.overlay,
      before: before ?? null,
      after,
      incarnation: info.incarnation,
    })
  }

  private async learnAddrs(info: MemberInfo): Promise<void> {
    // peer store writes hit LevelDB: only when a member's addresses really changed
    const key = info.addrs.join(' ')
    if (this.knownAddrs.get(info.peerId) === key) return
    this.knownAddrs.set(info.peerId, key)
    try {
      const { multiaddr } = await import('@multiformats/multiaddr')
      await this.libp2p.peerStore.merge(peerIdFromString(info.peerId), {
        multiaddrs: info.addrs
          .map((a) => multiaddr(a))
          .filter((ma) => dialable(ma) && notThroughSelf(ma, this.selfId)),
        tags: { 'mesh-member': { value: 50 } },
      })
    } catch {}
  }

  // ---- gossip -------------------------------------------------------------------------------

  /** Publish on gossipsub: only while older members need it, unless `always` (admin statements). */
  private async publish(bytes: Uint8Array, always = false): Promise<void> {
    if (!always && !this.needsGossipsub()) return
    this.metrics.bytes.inc({ direction: 'out', channel: 'gossip' }, bytes.length)
    try {
      await this.libp2p.services.pubsub.publish(this.topic, bytes)
    } catch (err) {
      this.deps.reporter.log.debug({ err: (err as Error).message }, 'gossip publish failed')
    }
  }

  private readonly onGossip = (evt: CustomEvent<Message>): void => {
    const msg = evt.detail
    if (msg.topic !== this.topic) return
    this.metrics.bytes.inc({ direction: 'in', channel: 'gossip' }, msg.data.length)
    if (msg.data.length > MAX_GOSSIP) {
      this.metrics.dropped.inc({ reason: 'oversized' })
      return
    }
    let set: MemberSet
    try {
      set = MemberSet.decode(msg.data, { limits: { records: 1024, claims: 1024 } })
    } catch {
      this.metrics.dropped.inc({ reason: 'undecodable' })
      return
    }
    this.ingest(set.records, set.claims, set.statements, true)
  }

  // ---- piggybacked dissemination ------------------------------------------------------------

  private takeGossip(peer: string): MemberSet | undefined {
    const items = this.core?.take(PIGGYBACK.budget, peer) ?? []
    if (items.length === 0) return undefined
    const set: MemberSet = { records: [], claims: [], statements: [] }
    for (const x of items) {
      if ('info' in x) set.records.push(toWireInfo(x))
      else set.claims.push(toWireClaim(x))
    }
    this.metrics.bytes.inc({ direction: 'out', channel: 'piggyback' }, MemberSet.encode(set).length)
    return set
  }

  /** While something is queued, every PIGGYBACK.intervalMs send it to a few random members (more while a burst is queued). */
  private armFanout(): void {
    if (this.fanoutTimer !== undefined || this.stopped) return
    this.fanoutTimer = setTimeout(() => {
      this.fanoutTimer = undefined
      // again only while some member still has news due (an item never goes back to whoever has
      // it: a pair's news from the other member is due to nobody, and probing for it every 200 ms
      // kept a pair at 2.5% of a core)
      if (this.fanout() > 0) this.armFanout()
    }, PIGGYBACK.intervalMs)
    this.fanoutTimer.unref()
  }

  /**
   * Returns how many members had news due (0: the fan-out may rest until news is queued).
   * Only members we hold an admitted connection to: memberlist gossips to random members over
   * UDP, where a send costs nothing, but here a member we are not connected to costs a dial and
   * its handshakes, which in a join storm is what starves everyone (news reaches the others on
   * the probes, which go to every member in turn, and on syncs).
   */
  private fanout(): number {
    const peers: string[] = []
    const connected = this.admittedPeers()
    // suspects too: that is how a suspect hears of its suspicion, and refutes it
    for (const r of this.table.rows())
      if (
        r.peerId !== this.selfId &&
        connected.has(r.peerId) &&
        this.isMember(r.peerId) &&
        !this.olderPeers.has(r.peerId) &&
        this.core?.hasNewsFor(r.peerId) === true
      )
        peers.push(r.peerId)
    const due = peers.length
    const width = fanoutWidth(this.core?.queuedBytes ?? 0)
    for (let i = 0; i < width && peers.length > 0 && (this.core?.queued ?? 0) > 0; i++) {
      const peer = peers.splice(Math.floor(Math.random() * peers.length), 1)[0]
      const seq = FANOUT_SEQ_BASE + (this.fanoutSeq++ % FANOUT_SEQ_BASE)
      // a probe with its own seq: the ack is not the detector's, only the gossip both ways counts
      void this.links.ask(peer, { seq, target: '' }, this.deps.config.probeTimeoutMs * 2)
    }
    return due
  }

  /** peers with an open connection that passed admission */
  private admittedPeers(): Set<string> {
    const admission = this.libp2p.services.admission
    const out = new Set<string>()
    for (const c of this.libp2p.getConnections())
      if (c.status === 'open' && admission.connectionAdmitted(c)) out.add(c.remotePeer.toString())
    return out
  }

  /** Members that do not speak probe/3.0.0 (older agents) hear news only through gossipsub. */
  private needsGossipsub(): boolean {
    for (const p of this.olderPeers) {
      if (this.isMember(p)) return true
      if (!this.table.has(p)) continue
      this.olderPeers.delete(p) // dead or left: an upgraded agent comes back with a new identify
    }
    return false
  }

  private readonly onIdentify = (evt: CustomEvent<{ peerId: PeerId; protocols: string[] }>): void => {
    this.noteProtocols(evt.detail.peerId.toString(), evt.detail.protocols)
  }

  /**
   * The last connection to a member closed: redial it (connectMembers would within seconds), and
   * if an address refuses the dial, as a killed process's does at once, it may be probed out of
   * turn (Swim.closed). A member that closed its connections while alive answers the dial
   * instead: probing it early then, over a connection still being made, raised suspicions of
   * members just out of a join storm (bench:fleet, 20 agents, 2026-12-06). A dial that only timed
   * out says nothing: on a loaded machine the early probes of a live member then failed together
   * and counted as Lifeguard's confirmations at once (bench:fleet, 20 agents at load 30-57).
   */
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail
    const id = peer.toString()
    if (this.stopped || !this.deps.config.probeOnClose || !this.isMember(id)) return
    this.libp2p.dial(peer).then(
      () => {},
      (err: unknown) => {
        if (!this.stopped && dialRefused(err)) this.core?.closed(id, Date.now())
      },
    )
  }

  /** An older agent answers probe/2.0.0 or 1.0.0 but not 3.0.0. */
  private noteProtocols(peer: string, protocols: readonly string[]): void {
    if (protocols.includes(this.probeGossipProto)) this.olderPeers.delete(peer)
    else if (protocols.includes(this.probeLinkProto) || protocols.includes(this.probeProto))
      this.olderPeers.add(peer)
  }

  // ---- push-pull sync -----------------------------------------------------------------------

  private fullSet(): Uint8Array {
    const records = []
    const claims = []
    for (const row of this.table.rows()) {
      records.push(toWireInfo(row.entry.signed))
      if (row.entry.claim !== undefined) claims.push(toWireClaim(row.entry.claim))
    }
    const statements = this.deps.node.trust.allStatements().map((st) => Statement.encode(st))
    return MemberSet.encode({ records, claims, statements })
  }

  /** Spread a grant or revocation we just made. */
  async spreadStatement(st: Statement): Promise<void> {
    await this.publish(
      MemberSet.encode({ records: [], claims: [], statements: [Statement.encode(st)] }),
      true,
    )
    // and straight to every connected member, so a revocation does not wait on gossip rounds
    const peers = this.libp2p
      .getPeers()
      .filter((p) => this.isMember(p.toString()) && p.toString() !== st.peerId)
    await Promise.race([
      Promise.allSettled(peers.map((p) => this.sync(p, 'statement'))),
      new Promise((r) => setTimeout(r, 3000)),
    ])
    if (st.kind === Statement.Kind.REVOKE) {
      this.core?.forget(st.peerId)
      this.wake()
    }
  }

  private stopConnections: (() => void) | undefined

  private readonly onConnection = (conn: Connection): void => {
    void (async () => {
      if (!(await this.libp2p.services.admission.admitted(conn))) return
      // the fan-out rests while no connected member has news due (a starting agent's own
      // record, queued before its first connection): a new member may be one that has
      if ((this.core?.queued ?? 0) > 0) this.armFanout()
      const peer = conn.remotePeer.toString()
      const now = Date.now()
      const last = this.lastSync.get(peer) ?? 0
      if (now - last < SYNC_ON_CONNECT_MIN_GAP_MS) return
      const due = syncOnConnect({
        outbound: conn.direction === 'outbound',
        peerStatus: this.table.status(peer),
        lastSyncOkAt: this.lastSyncOk,
        now,
        gapMs: SYNC_ON_CONNECT_MIN_GAP_MS,
      })
      if (!due) return
      // one retry: a member that just restarted may not answer its first sync
      if (!(await this.sync(conn.remotePeer, 'connect')) && conn.status === 'open')
        setTimeout(() => void this.sync(conn.remotePeer, 'connect_retry'), CONNECT_RETRY_MS).unref()
    })()
  }

  /** The other members we hold alive or suspect, by peer ID. */
  private otherLivePeers(): string[] {
    const out: string[] = []
    for (const r of this.table.rows())
      if (r.peerId !== this.selfId && (r.status === 'alive' || r.status === 'suspect')) out.push(r.peerId)
    return out
  }

  private async syncRandom(): Promise<void> {
    const peers = new Set(this.otherLivePeers())
    // admitted members we are connected to but whose record we lack (or hold as dead) count
    // too: otherwise a member whose first sync failed could wait forever for a table to pick from
    for (const p of this.admittedPeers()) peers.add(p)
    // the periodic sync runs every syncScale(N) intervals (sync-scale.ts); the one that lets a
    // healed partition refute (below) still runs every interval
    const due = this.core?.syncRound() ?? true
    if (peers.size === 0) return
    // a member we hold as dead (or lack) while still connected to it is the one to sync with
    // first: after a partition heals on connections that survived it, each side holds the other
    // dead and probes no dead member, so only this sync lets them refute (memberlist gossips to
    // the dead for the same reason). A random pick left that to chance: 100+ s after a heal
    const unsure = [...peers].filter((p) => {
      const st = this.table.status(p)
      return st !== 'alive' && st !== 'suspect'
    })
    if (unsure.length === 0 && !due) return
    const list = unsure.length > 0 ? unsure : [...peers]
    const pick = list[Math.floor(Math.random() * list.length)]
    await this.sync(peerIdFromString(pick), unsure.length > 0 ? 'periodic_dead' : 'periodic')
  }

  /**
   * A sync that taught us something is followed, SYNC_ON_CONNECT_MIN_GAP_MS later, by one with a
   * random member, and so on while syncs keep teaching: while the cluster changes fast (a join
   * storm) news also spreads sync to sync, where the piggyback queue falls behind, and a
   * member's syncs on connect are held to one per gap (sync-on-connect.ts). A quiet cluster's
   * syncs teach nothing, so this stops by itself.
   */
  private catchUpSoon(): void {
    if (this.catchUpTimer !== undefined || this.stopped) return
    this.catchUpTimer = setTimeout(() => {
      this.catchUpTimer = undefined
      if (this.stopped || this.left) return
      const peers = this.otherLivePeers()
      if (peers.length === 0) return
      const pick = peers[Math.floor(Math.random() * peers.length)]
      void this.sync(peerIdFromString(pick), 'catchup')
    }, SYNC_ON_CONNECT_MIN_GAP_MS)
    this.catchUpTimer.unref()
  }

  /** probe payloads with their length prefix (stream set-up and framing are not counted) */
  private countProbe(direction: 'in' | 'out', bytes: number): void {
    this.metrics.bytes.inc({ direction, channel: 'probe' }, bytes + 1)
  }

  private countSync(direction: 'in' | 'out', bytes: number): void {
    this.metrics.bytes.inc({ direction, channel: 'sync' }, bytes)
  }

  /** Our table and statements as a sync digest. */
  private digest(): Digest {
    return new Digest(
      this.table.entries(),
      this.deps.node.trust.allStatements().map((st) => Statement.encode(st)),
    )
  }

  /**
   * Anti-entropy with one peer: exchange digests, then only what each side lacks (sync/2.0.0);
   * with an agent that only speaks sync/1.0.0, push our whole table and pull theirs.
   */
  async sync(peer: PeerId, why: string, timeoutMs = 10_000): Promise<boolean> {
    this.lastSync.set(peer.toString(), Date.now())
    const signal = AbortSignal.timeout(timeoutMs)
    let stream: Stream | undefined
    try {
      stream = await this.libp2p.dialProtocol(peer, [this.syncProto, this.syncProtoV1], {
        signal,
        runOnLimitedConnection: true,
      })
      const lp = lpStream(stream, { maxDataLength: MAX_SYNC })
      let learnt: number
      if (stream.protocol === this.syncProtoV1) {
        const mine = this.fullSet()
        this.countSync('out', mine.length)
        await lp.write(mine, { signal })
        const raw = await lp.read({ signal })
        this.countSync('in', raw.byteLength)
        const theirs = MemberSet.decode(raw)
        learnt = this.ingest(theirs.records, theirs.claims, theirs.statements)
      } else {
        const ask = SyncDigest.encode({ fingerprints: this.digest().bytes })
        this.countSync('out', ask.length)
        await lp.write(ask, { signal })
        const raw = await lp.read({ signal })
        this.countSync('in', raw.byteLength)
        const reply = SyncReply.decode(raw)
        const got = reply.missing ?? { records: [], claims: [], statements: [] }
        learnt = this.ingest(got.records, got.claims, got.statements)
        // after the merge: what we hold that they lack (rows where ours won, rows they never had)
        const back = MemberSet.encode(this.digest().missingFrom(reply.fingerprints))
        this.countSync('out', back.length)
        await lp.write(back, { signal })
      }
      // their answer proves them alive: our next probe of them may wait (Swim.heard)
      this.core?.heard(peer.toString(), Date.now())
      await closeOrAbort(stream, signal)
      // a sync that taught us of members we are not connected to: dial them now, not at the next round
      if (learnt > 0) void this.connectMembers()
      this.metrics.syncs.inc({ role: why, result: 'ok' })
      this.lastSyncOk = Date.now()
      if (learnt > 0) this.catchUpSoon()
      return true
    } catch (err) {
      // a timed-out sync must not leave its stream open on both ends for good
      stream?.abort(err as Error)
      this.metrics.syncs.inc({ role: why, result: 'error' })
      this.deps.reporter.log.debug({ peer: peer.toString(), err: (err as Error).message }, 'sync failed')
      return false
    }
  }

  private async onDigestSyncStream(stream: Stream, conn: Connection): Promise<void> {
    const signal = AbortSignal.timeout(10_000)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_SYNC })
      const raw = await lp.read({ signal })
      this.countSync('in', raw.byteLength)
      const theirs = SyncDigest.decode(raw)
      this.core?.heard(conn.remotePeer.toString(), Date.now())
      const mine = this.digest()
      const reply = SyncReply.encode({
        missing: mine.missingFrom(theirs.fingerprints),
        fingerprints: mine.bytes,
      })
      this.countSync('out', reply.length)
      await lp.write(reply, { signal })
      const back = await lp.read({ signal })
      this.countSync('in', back.byteLength)
      const got = MemberSet.decode(back)
      this.ingest(got.records, got.claims, got.statements)
      await closeOrAbort(stream, signal)
      this.metrics.syncs.inc({ role: 'responder', result: 'ok' })
    } catch (err) {
      this.metrics.dropped.inc({ reason: 'bad_sync' })
      this.metrics.syncs.inc({ role: 'responder', result: 'error' })
      stream.abort(err as Error)
    }
  }

  private async onSyncStream(stream: Stream, _conn: Connection): Promise<void> {
    const signal = AbortSignal.timeout(10_000)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_SYNC })
      const raw = await lp.read({ signal })
      this.metrics.bytes.inc({ direction: 'in', channel: 'sync' }, raw.byteLength)
      const theirs = MemberSet.decode(raw)
      this.ingest(theirs.records, theirs.claims, theirs.statements)
      const mine = this.fullSet()
      this.metrics.bytes.inc({ direction: 'out', channel: 'sync' }, mine.length)
      await lp.write(mine, { signal })
      await closeOrAbort(stream, signal)
      this.metrics.syncs.inc({ role: 'responder', result: 'ok' })
    } catch (err) {
      this.metrics.dropped.inc({ reason: 'bad_sync' })
      this.metrics.syncs.inc({ role: 'responder', result: 'error' })
      stream.abort(err as Error)
    }
  }

  // ---- failure detection --------------------------------------------------------------------

  private tick(): void {
    if (this.left) return
    const now = Date.now()
    this.links.sweep(now)
    if (now - this.lastRehome >= REHOME_EVERY_MS) {
      this.lastRehome = now
      this.links.rehome((peer, stream) => this.onWorsePath(peer, stream))
    }
    this.core?.tick(now)
    this.wake()
  }

  private lastRehome = 0

  /** true when `stream` runs over a relay while the peer also has an admitted unrelayed connection */
  private onWorsePath(peer: string, stream: Stream): boolean {
    const conns = this.libp2p.getConnections(peerIdFromString(peer)).filter((c) => c.status === 'open')
    const mine = conns.find((c) => c.streams.includes(stream))
    if (mine === undefined || pathKind(mine.remoteAddr) !== 'relayed') return false
    return conns.some(
      (c) => pathKind(c.remoteAddr) !== 'relayed' && this.libp2p.services.admission.connectionAdmitted(c),
    )
  }

  /** (Re)arm the one timer that drives the SWIM core; called after every input to it. */
  private wake(): void {
    if (this.stopped || this.left || this.core === undefined) return
    const now = Date.now()
    const at = Math.max(now + MIN_SLEEP_MS, Math.min(this.core.nextWakeup(), now + MAX_SLEEP_MS))
    if (this.wakeTimer !== undefined && Math.abs(at - this.wakeAt) < MIN_SLEEP_MS) return
    clearTimeout(this.wakeTimer)
    this.wakeAt = at
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined
      this.tick()
    }, at - now)
    this.wakeTimer.unref()
  }

  /** One request/reply on the probe protocol; resolves with the reply or undefined. */
  private ask(peer: string, probe: Probe, timeoutMs: number): Promise<ProbeReply | undefined> {
    return this.links.ask(peer, probe, timeoutMs)
  }

  private async probe(peer: string, seq: number): Promise<void> {
    const reply = await this.ask(peer, { seq, target: '' }, this.deps.config.probeTimeoutMs * 2)
    this.metrics.probes.inc({ kind: 'direct', result: reply?.ack === true ? 'ack' : 'timeout' })
    if (reply?.ack !== true) return
    this.core?.onAck(peer, seq, Date.now())
    this.wake()
  }

  private async probeReq(via: string, target: string, seq: number): Promise<void> {
    const reply = await this.ask(via, { seq, target }, this.deps.config.probeIntervalMs * 2)
    this.metrics.probes.inc({
      kind: 'indirect',
      result: reply === undefined ? 'timeout' : reply.ack ? 'ack' : 'nack',
    })
    if (reply === undefined) return
    if (reply.ack) this.core?.onAck(via, seq, Date.now())
    else this.core?.onNack(via, seq)
    this.wake()
  }

  /** Whether to ack a probe from `origin`: at once for us, after our own probe for a target. */
  private async answerProbe(origin: string, req: Probe, timeoutMs: number): Promise<boolean> {
    // their probe (direct or a request to relay) proves them alive: our own probe of them may wait
    this.core?.heard(origin, Date.now())
    if (req.target === '' || req.target === this.selfId) return true
    // an indirect probe: ask the target ourselves, answer when the detector decides
    const key = `${origin}/${req.seq}`
    const verdict = new Promise<boolean>((resolve) => this.relayWaiters.set(key, resolve))
    this.core?.onProbeReq(origin, req.target, req.seq, Date.now())
    this.wake()
    let timer: NodeJS.Timeout | undefined
    const ack = await Promise.race([
      verdict,
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), timeoutMs)
      }),
    ])
    clearTimeout(timer)
    this.relayWaiters.delete(key)
    return ack
  }

  /** A peer on the one-probe-per-stream protocol (probe/1.0.0, before persistent links). */
  private async onProbeStream(stream: Stream, conn: Connection): Promise<void> {
    const timeoutMs = this.deps.config.probeIntervalMs * 3
    const signal = AbortSignal.timeout(timeoutMs)
    try {
      const pb = pbStream(stream, { maxDataLength: MAX_PROBE })
      const req = await pb.read(Probe, { signal })
      const ack = await this.answerProbe(conn.remotePeer.toString(), req, timeoutMs)
      this.countProbe('in', Probe.encode(req).length)
      const reply = { seq: req.seq, ack, nowMs: Date.now() }
      await pb.write(reply, ProbeReply, { signal })
      this.countProbe('out', ProbeReply.encode(reply).length)
      await closeOrAbort(stream, signal)
    } catch (err) {
      this.metrics.dropped.inc({ reason: 'bad_probe' })
      stream.abort(err as Error)
    }
  }

  // ---- connectivity -------------------------------------------------------------------------

  /** Keep connections to alive members (bounded per round): the overlay is a mesh of members. */
  /** Dial alive members we hold no connection to; each one that does not answer backs off. */
  private async connectMembers(): Promise<void> {
    const node = this.libp2p
    const now = Date.now()
    const connected = new Set(node.getConnections().map((c) => c.remotePeer.toString()))
    const alive = [...this.table.rows()].filter((r) => r.peerId !== this.selfId && r.status === 'alive')
    // room for all of them first: past libp2p's limit our dials would be pruned and theirs refused
    this.deps.node.fitConnectionLimit(alive.length)
    const wanted = alive.filter((r) => !connected.has(r.peerId))
    this.connectBackoff.retain(new Set(wanted.map((r) => r.peerId)))
    const todo = wanted.filter((r) => this.connectBackoff.ready(r.peerId, now)).slice(0, CONNECT_BATCH)
    const results = await Promise.allSettled(
      // the dial budget is the node's own (it stretches while the agent runs late: local-lag.ts)
      todo.map((r) => node.dial(peerIdFromString(r.peerId))),
    )
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') this.connectBackoff.succeeded(todo[i].peerId)
      else this.connectBackoff.failed(todo[i].peerId, Date.now())
    })
  }

  /** Re-sign and spread our record now (the maintenance flag or compute types changed). */
  republish(): void {
    this.refresh()
  }

  /** `mesh members --rejoin`: dial every known member now. */
  async rejoin(): Promise<{ tried: number; connected: number }> {
    const node = this.libp2p
    const rows = [...this.table.rows()].filter((r) => r.peerId !== this.selfId && r.status !== 'left')
    const res = await Promise.allSettled(rows.map((r) => node.dial(peerIdFromString(r.peerId))))
    const ok = res.filter((r) => r.status === 'fulfilled').length
    for (const r of rows) void this.sync(peerIdFromString(r.peerId), 'rejoin')
    return { tried: rows.length, connected: ok }
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms)
    t.unref()
    this.timers.push(t)
  }
}

export { dialable, type Entry, effectiveStatus }
