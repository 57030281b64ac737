/**
 * The elections adapter: binds the sans-IO ElectionCore to libp2p and the agent. Gossip on
 * `/mesh/<prefix>/elections/1`, a push-pull sync on `/mesh/<prefix>/elections/sync/1.0.0` when a
 * member connects (so one that joins or comes back gets the open requests), death claims from the
 * membership table, a single timer armed at the core's next wakeup (no polling), the messages of
 * open and recent requests persisted in `<dataDir>/elections.json` so a restart resumes them.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import type { Message as GossipMessage } from '@libp2p/gossipsub'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { ElectionSet } from '../../protocols/election.js'
import { Statement } from '../../protocols/trust.js'
import type { Component } from '../kernel/component.js'
import { dataPaths } from '../kernel/datadir.js'
import type { EventBus } from '../kernel/events.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import { closeOrAbort } from '../kernel/streams.js'
import type { Claim } from '../membership/record.js'
import { ed25519Signer, ed25519Verifier, type Signer, signClaim } from '../membership/record.js'
import type { MembershipComponent } from '../membership/service.js'
import { type Cluster, protocolPrefix } from '../node/cluster.js'
import { onEveryConnection } from '../node/connections.js'
import type { NodeComponent } from '../node/node-component.js'
import type { ElectionsConfig } from './config.js'
import { type Effect, ElectionCore, type ElectionView, explainRefusals, OUTCOMES } from './core.js'
import type { Executor } from './executor.js'
import type { Message, Request } from './messages.js'
import { fromWire, toWire, WireError } from './wire.js'

const MAX_GOSSIP = 512 << 10
const MAX_SYNC = 16 << 20
const PERSIST_DEBOUNCE_MS = 200

export interface RequestSummary {
  id: string
  status: string
  round: number
  computeType: string
  requester: string
  winner?: string
  winnerName?: string
  instance?: string
  created: number
  ageMs: number
  voters: number
  /** the winner's last report: ELECTED, ALLOCATED, DEALLOCATED, ERROR */
  report?: string
  note?: string
  /** ended no-candidate and was placed again as this request (see placeAgain) */
  placedAgainAs?: string
  /** places again this no-candidate request */
  supersedes?: string
}

/** how long a member our table holds dead has to answer our ping before we sign its death too */
const CONFIRM_DEATH_MS = 3000

export class ElectionsComponent implements Component {
  readonly name = 'elections'
  core!: ElectionCore
  private signer!: Signer
  private readonly topic: string
  private readonly syncProto: string
  private timer: NodeJS.Timeout | undefined
  private persistTimer: NodeJS.Timeout | undefined
  private unsubscribe: (() => void) | undefined
  private stopped = false
  /** undefined until first read: maintenance.json is read then, not in the constructor */
  private maintenanceOn: boolean | undefined
  private readonly file: string
  private readonly metrics: {
    inputs: ReturnType<ComponentReporter['gauge']>
    dropped: ReturnType<ComponentReporter['counter']>
    requests: ReturnType<ComponentReporter['gauge']>
  }
  /** request id -> the executor call in progress or last queued for it (see serially) */
  private readonly executing = new Map<string, Promise<void>>()
  /** request id -> when it was decided / allocated here, for the CLI's timings */
  private readonly times = new Map<string, { decided?: number; allocated?: number }>()

  constructor(
    private readonly deps: {
      node: NodeComponent
      membership: MembershipComponent
      cluster: Cluster
      config: ElectionsConfig
      /** this member's name and tags, which a vote weighs */
      name: string
      tags: Record<string, string>
      dataDir: string
      events: EventBus
      executor: Executor
      reporter: ComponentReporter
    },
  ) {
    const prefix = protocolPrefix(deps.cluster)
    this.topic = `${prefix}/elections/1`
    this.syncProto = `${prefix}/elections/sync/1.0.0`
    this.file = dataPaths(deps.dataDir).elections
    const r = deps.reporter
    this.metrics = {
      inputs: r.gauge('inputs', 'election messages received, by outcome', ['outcome'], () => {
        if (this.core === undefined) return
        for (const k of OUTCOMES) this.metrics.inputs.set({ outcome: k }, this.core.counters[k])
      }),
      dropped: r.counter('dropped_total', 'election messages dropped before the core', ['reason']),
      requests: r.gauge('requests', 'requests held', [], () =>
        this.metrics.requests.set(this.core?.size ?? 0),
      ),
    }
    r.health(() => ({
      ok: this.core !== undefined && !this.stopped,
      detail: `${this.core?.size ?? 0} requests${this.maintenance ? '; in maintenance' : ''}`,
    }))
  }

  private get libp2p() {
    return this.deps.node.node
  }

  get selfPeerId(): string {
    return this.core.self
  }

  async start(): Promise<void> {
    const c = this.deps.config
    this.signer = ed25519Signer(this.deps.node.privateKey)
    this.core = new ElectionCore({
      signer: this.signer,
      verifier: ed25519Verifier(),
      rng: Math.random,
      roundTimeoutMs: c.roundTimeoutMs,
      keepMs: c.keepMs,
    })
    const node = this.libp2p
    await node.handle(this.syncProto, (s, conn) => this.onSyncStream(s, conn), {
      maxInboundStreams: 8,
      runOnLimitedConnection: true,
    })
    node.services.pubsub.subscribe(this.topic)
    node.services.pubsub.addEventListener('message', this.onGossip)
    // a restarted member syncs over the connections made while it started, too
    this.stopConnections = onEveryConnection(node, this.onConnection)
    // a voter dying is what moves a stuck round on: take death claims as the table accepts them
    this.unsubscribe = this.deps.events.subscribe((e) => {
      if (e.type !== 'cluster_change') return
      if (e.data.after === 'dead') this.onDeath(String(e.data.peerId))
      // back from the dead (a healed partition, a starved process): it missed what we hold, we
      // what it holds, and the connection may never have dropped, so no sync on connect
      else if (e.data.before === 'dead' && e.data.after === 'alive') this.syncWith(String(e.data.peerId))
      // someone our no-candidate requests could not ask may be back
      if (e.data.after === 'alive') this.placeAgain()
    })
    // resume what was open before a restart; claims already in the table too
    const saved = this.load()
    const claims: Claim[] = []
    for (const row of this.deps.membership.rows())
      if (row.status === 'dead' && row.entry.claim !== undefined) claims.push(row.entry.claim)
    this.run(this.core.ingestAll([...saved, ...claims], Date.now()))
    for (const c of claims) void this.confirm(c)
    // a revoked member leaves every vote at once (it will never vote, report or be declared dead)
    const trust = this.deps.node.trust
    for (const r of trust.revokedList()) this.run(this.core.revoke(r.peerId, Date.now()))
    trust.onStatement((st) => {
      if (st.kind === Statement.Kind.REVOKE && !this.stopped)
        this.run(this.core.revoke(st.peerId, Date.now()))
    })
    if (saved.length > 0) this.deps.reporter.log.info({ requests: this.core.size }, 'resumed elections')
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    if (this.persistTimer !== undefined) {
      clearTimeout(this.persistTimer)
      this.persist()
    }
    this.unsubscribe?.()
    const node = this.libp2p
    this.stopConnections?.()
    node.services.pubsub.removeEventListener('message', this.onGossip)
    await node.unhandle(this.syncProto).catch(() => {})
  }

  // ---- the user's side ----------------------------------------------------------------------

  /** Make a request with every alive member as a voter; returns its id. */
  create(spec: {
    computeType: string
    serverType?: string
    tags?: Record<string, string>
    names?: string[]
  }): Request {
    const voters = this.alive()
    const { request, effects } = this.core.create(
      {
        computeType: spec.computeType,
        serverType: spec.serverType ?? '',
        filter: { tags: spec.tags ?? {}, names: spec.names ?? [] },
        voters,
      },
      Date.now(),
    )
    this.times.set(request.id, {})
    this.run(effects)
    return request
  }

  /** The members alive in our table now, at their incarnations now: a request's voters. */
  private alive(): { peerId: string; incarnation: number }[] {
    return this.deps.membership
      .rows()
      .filter((r) => r.status === 'alive' && !this.deps.node.trust.isRevoked(r.peerId))
      .map((r) => ({ peerId: r.peerId, incarnation: r.entry.signed.info.incarnation }))
  }

  /**
   * Our requests that ended no-candidate are placed again among the members alive now, as soon
   * as one of them is a member the old request could not ask (back at a new incarnation, or new):
   * a request's voters only ever leave it (protocols/election.md, "Placed again").
   */
  private placeAgain(ids: Iterable<string> = this.core.ids()): void {
    if (this.stopped) return
    for (const id of ids) {
      const v = this.core.view(id)
      if (v === undefined || v.status !== 'no-candidate' || v.request.requester !== this.core.self) continue
      if (v.placedAgainAs !== undefined) continue
      const r = this.core.supersede(id, this.alive(), Date.now())
      if ('why' in r) continue
      this.times.set(r.request.id, {})
      this.deps.reporter.log.info({ id, as: r.request.id }, 'request placed again')
      this.deps.events.publish('request_placed_again', { id, as: r.request.id })
      this.run(r.effects)
    }
  }

  /**
   * `mesh maintenance on|off`: vote no on everything while on. Kept in maintenance.json across
   * restarts (read at the first ask: membership's first record, before this component starts).
   */
  get maintenance(): boolean {
    if (this.maintenanceOn === undefined) {
      this.maintenanceOn = this.deps.config.maintenance
      try {
        const m = JSON.parse(readFileSync(dataPaths(this.deps.dataDir).maintenance, 'utf8')) as {
          on?: unknown
        }
        if (typeof m.on === 'boolean') this.maintenanceOn = m.on
      } catch {}
    }
    return this.maintenanceOn
  }

  /** Turn maintenance on or off (kept in `<data dir>/maintenance.json` across restarts). */
  setMaintenance(on: boolean): void {
    this.maintenanceOn = on
    writeFileSync(dataPaths(this.deps.dataDir).maintenance, JSON.stringify({ on }))
    this.deps.membership.republish()
  }

  cancel(id: string): boolean {
    const v = this.core.view(id)
    if (v === undefined) return false
    if (v.request.requester !== this.core.self)
      throw new Error(
        `only the member that made request ${id} (${this.nameOf(v.request.requester)}) can cancel it: run mesh request cancel there`,
      )
    this.run(this.core.cancel(id, Date.now()))
    return true
  }

  /** Full or unique-prefix id -> the id, or undefined. */
  resolve(prefix: string): string | undefined {
    const hits = this.core.ids().filter((id) => id.startsWith(prefix))
    return hits.length === 1 ? hits[0] : undefined
  }

  list(): RequestSummary[] {
    const now = Date.now()
    return this.core
      .ids()
      .map((id) => this.summary(id, now))
      .filter((s): s is RequestSummary => s !== undefined)
      .sort((a, b) => b.created - a.created)
  }

  summary(id: string, now = Date.now()): RequestSummary | undefined {
    const v = this.core.view(id)
    if (v === undefined) return undefined
    const s: RequestSummary = {
      id,
      status: v.status,
      round: v.round,
      computeType: v.request.computeType,
      requester: v.request.requester,
      created: v.request.created,
      ageMs: Math.max(0, now - v.request.created),
      voters: v.request.voters.length,
    }
    if (v.winner !== undefined) {
      s.winner = v.winner
      s.winnerName = this.nameOf(v.winner)
    }
    if (v.instance !== undefined) s.instance = v.instance
    if (v.report !== undefined) s.report = v.report.state
    if (v.placedAgainAs !== undefined) s.placedAgainAs = v.placedAgainAs
    if (v.supersedes !== undefined) s.supersedes = v.supersedes
    if (v.outranked !== undefined) s.note = `void: placed again as ${v.outranked} instead`
    else if (v.reasons !== undefined)
      s.note =
        (v.placedAgainAs === undefined ? '' : `placed again as ${v.placedAgainAs}; `) +
        explainRefusals(v.reasons, (p) => this.nameOf(p))
    else if (v.report?.state === 'ERROR' && v.report.note) s.note = v.report.note
    return s
  }

  view(id: string): ElectionView | undefined {
    return this.core.view(id)
  }

  nameOf(peer: string): string {
    const row = this.deps.membership.rows().find((r) => r.peerId === peer)
    return row?.entry.signed.info.name ?? peer
  }

  // ---- inputs -------------------------------------------------------------------------------

  private onDeath(peer: string): void {
    const row = this.deps.membership.rows().find((r) => r.peerId === peer)
    if (row?.entry.claim === undefined) return
    this.take([row.entry.claim])
    void this.confirm(row.entry.claim)
  }

  private take(claims: Claim[]): void {
    const accepted = this.core.counters.accepted
    this.run(this.core.ingestAll(claims, Date.now()))
    // a claim that moved an election is one of its messages: pass it on, since a member whose
    // table saw the refutation first never takes the claim from its table, and the state of a
    // request is a function of the messages held (without this two members allocated one request)
    if (this.core.counters.accepted > accepted) void this.publish(claims)
  }

  /**
   * Our own claim beside the table's: a voter counts dead in an election only once a majority of
   * the other voters signed that it is (core.ts deadQuorum). We sign only once we could not reach
   * it ourselves (a ping over the member connection, or a dial): a table takes a death from
   * gossip, and after a partition heals the cut-off side's verdicts about members alive on our
   * side arrive with its refutations: co-signing whatever the table showed could give those
   * verdicts a majority. (The no-candidate requests of the 7-agent chaos runs had another cause:
   * see protocols/election.md.)
   */
  private async confirm(c: Claim): Promise<void> {
    if (c.by === this.core.self || c.peerId === this.core.self) return
    if (await this.answers(c.peerId)) {
      this.deps.reporter.log.info(
        { peer: c.peerId, name: this.nameOf(c.peerId), claimBy: c.by },
        'a member our table holds dead answers us: not co-signing its death',
      )
      return
    }
    // refuted meanwhile, or we are stopping: nothing to sign
    const row = this.deps.membership.rows().find((r) => r.peerId === c.peerId)
    if (this.stopped || row?.status !== 'dead') return
    this.take([signClaim({ peerId: c.peerId, incarnation: c.incarnation, status: 'dead' }, this.signer)])
  }

  private async answers(peer: string): Promise<boolean> {
    try {
      await this.libp2p.services.ping.ping(peerIdFromString(peer), {
        signal: AbortSignal.timeout(CONFIRM_DEATH_MS),
      })
      return true
    } catch {
      return false
    }
  }

  private syncWith(peer: string): void {
    let id: PeerId
    try {
      id = peerIdFromString(peer)
    } catch {
      return
    }
    void this.sync(id)
  }

  /** Decode a batch and feed it in; every bad item is counted and dropped, nothing throws. */
  ingestSet(raw: Uint8Array, from: string): number {
    let set: ElectionSet
    try {
      set = ElectionSet.decode(raw, { limits: { messages: 8192 } })
    } catch {
      this.metrics.dropped.inc({ reason: 'undecodable' })
      return 0
    }
    const items: Array<Message | Claim> = []
    for (const s of set.messages) {
      try {
        const m = fromWire(s)
        // a claim counts only from a member we know (its signature is checked by the core)
        if ('kind' in m) {
          const signer = m.kind === 'vote' ? m.voter : m.kind === 'report' ? m.member : m.requester
          if (this.deps.node.trust.isRevoked(signer)) {
            this.metrics.dropped.inc({ reason: 'revoked' })
            continue
          }
        }
        items.push(m)
      } catch (err) {
        this.metrics.dropped.inc({ reason: err instanceof WireError ? 'malformed' : 'error' })
        this.deps.reporter.log.debug({ from, err: (err as Error).message }, 'dropped an election message')
      }
    }
    const before = { ...this.core.counters }
    this.run(
      items.length === 1 ? this.core.ingest(items[0], Date.now()) : this.core.ingestAll(items, Date.now()),
    )
    for (const k of OUTCOMES) {
      const n = this.core.counters[k] - before[k]
      if (n > 0 && k !== 'accepted' && k !== 'duplicate' && k !== 'held')
        this.metrics.dropped.inc({ reason: k.replace(/-/g, '_') }, n)
    }
    return items.length
  }

  private readonly onGossip = (evt: CustomEvent<GossipMessage>): void => {
    const msg = evt.detail
    if (msg.topic !== this.topic) return
    if (msg.data.length > MAX_GOSSIP) {
      this.metrics.dropped.inc({ reason: 'oversized' })
      return
    }
    this.ingestSet(msg.data, msg.type === 'signed' ? msg.from.toString() : '?')
  }

  // ---- effects ------------------------------------------------------------------------------

  private run(effects: readonly Effect[]): void {
    if (this.stopped) return
    const send: Message[] = []
    let changed = false
    for (const e of effects) {
      switch (e.type) {
        case 'send':
          send.push(e.msg)
          changed = true
          break
        case 'vote-needed': {
          const c = this.deps
          let a: ReturnType<Executor['canRun']>
          try {
            a = this.deps.executor.canRun(e.request, {
              name: c.name,
              tags: c.tags,
              maintenance: this.maintenance,
            })
          } catch (err) {
            a = { yes: false, reasons: ['other'], score: 0, note: (err as Error).message }
          }
          // our own vote's effects run after this batch (they may ask us to act)
          queueMicrotask(() => this.run(this.core.vote(e.requestId, e.round, a, Date.now())))
          break
        }
        case 'act':
          this.serially(e.requestId, () => this.act(e.request, e.resumed))
          break
        case 'stand-down':
          this.serially(e.requestId, () => this.standDown(e.requestId, e.reason))
          break
        case 'decided':
          this.mark(e.requestId, 'decided')
          this.deps.events.publish('request_decided', {
            id: e.requestId,
            round: e.round,
            winner: e.winner,
            winnerName: this.nameOf(e.winner),
          })
          break
        case 'no-candidate':
          if (!this.stopped) queueMicrotask(() => this.placeAgain([e.requestId]))
          this.deps.events.publish('request_no_candidate', {
            id: e.requestId,
            round: e.round,
            message: explainRefusals(e.reasons, (p) => this.nameOf(p)),
            reasons: e.reasons as unknown as Record<string, unknown>,
          })
          break
        case 'status': {
          changed = true
          if (e.status === 'allocated') this.mark(e.requestId, 'allocated')
          const s = this.summary(e.requestId)
          this.deps.events.publish('request_change', { ...(s ?? { id: e.requestId }), status: e.status })
          break
        }
        case 'new-round':
          this.deps.events.publish('request_new_round', {
            id: e.requestId,
            round: e.round,
            excluded: e.excluded,
            why: e.why,
          })
          break
        case 'stalled':
          this.deps.reporter.log.warn({ id: e.requestId, waitingFor: e.waitingFor }, 'election stalled')
          break
        case 'misbehaviour':
          this.deps.reporter.log.warn({ id: e.requestId, peer: e.peer }, 'member signed two votes')
          break
      }
    }
    if (send.length > 0) {
      // our own votes and requests reach the disk before anyone sees them: a voter killed right
      // after voting must resume with the vote it sent, not make another (equivocation)
      this.persistNow()
      void this.publish(send)
    } else if (changed) this.schedulePersist()
    this.arm()
  }

  private mark(id: string, what: 'decided' | 'allocated'): void {
    const t = this.times.get(id) ?? {}
    t[what] ??= Date.now()
    this.times.set(id, t)
  }

  /**
   * One executor call at a time per request, in the order the core asked for them: a
   * stand-down that came while the allocation was starting (gossip delivered in one batch after
   * a SIGSTOP does that) would otherwise find nothing to stop yet, and the instance started a
   * moment later would run on beside the real winner's.
   */
  private serially(id: string, job: () => Promise<void>): void {
    const next = (this.executing.get(id) ?? Promise.resolve())
      .then(job)
      .catch((err: Error) => this.deps.reporter.log.warn({ id, err: err.message }, 'executor call failed'))
      .finally(() => {
        if (this.executing.get(id) === next) this.executing.delete(id)
      })
    this.executing.set(id, next)
  }

  private async act(request: Request, resumed: boolean): Promise<void> {
    const log = this.deps.reporter.log
    log.info({ id: request.id, computeType: request.computeType, resumed }, 'elected: allocating')
    try {
      const { instance } = await this.deps.executor.allocate(request)
      this.run(this.core.report(request.id, 'ALLOCATED', { instance }, Date.now()))
    } catch (err) {
      log.warn({ id: request.id, err: (err as Error).message }, 'allocation failed')
      await this.deps.executor.deallocate(request.id).catch(() => {})
      this.run(this.core.report(request.id, 'ERROR', { note: (err as Error).message }, Date.now()))
    }
  }

  private async standDown(id: string, reason: string): Promise<void> {
    this.deps.reporter.log.info({ id, reason }, 'standing down')
    try {
      await this.deps.executor.deallocate(id)
      if (reason === 'cancelled') this.run(this.core.report(id, 'DEALLOCATED', {}, Date.now()))
    } catch (err) {
      this.run(this.core.report(id, 'ERROR', { note: (err as Error).message }, Date.now()))
    }
  }

  /** One timer, at the core's next wakeup. */
  private arm(): void {
    if (this.stopped) return
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    const at = this.core.nextWakeup()
    if (!Number.isFinite(at)) return
    const delay = Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1)
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.run(this.core.tick(Date.now()))
    }, delay)
  }

  private async publish(msgs: Array<Message | Claim>): Promise<void> {
    const bytes = ElectionSet.encode({ messages: msgs.map(toWire) })
    try {
      await this.libp2p.services.pubsub.publish(this.topic, bytes)
    } catch (err) {
      // no subscribed peer yet (a one-member cluster): the sync on connect carries it later
      this.deps.reporter.log.debug({ err: (err as Error).message }, 'election publish failed')
    }
  }

  // ---- push-pull sync -----------------------------------------------------------------------

  private allHeld(): Uint8Array {
    const messages = []
    for (const id of this.core.ids()) for (const m of this.core.messages(id)) messages.push(toWire(m))
    return ElectionSet.encode({ messages })
  }

  private stopConnections: (() => void) | undefined

  private readonly onConnection = (conn: Connection): void => {
    if (conn.direction !== 'outbound') return
    void (async () => {
      if (!(await this.libp2p.services.admission.admitted(conn))) return
      await this.sync(conn.remotePeer)
    })()
  }

  async sync(peer: PeerId): Promise<void> {
    const signal = AbortSignal.timeout(10_000)
    let stream: Stream | undefined
    try {
      stream = await this.libp2p.dialProtocol(peer, this.syncProto, {
        signal,
        runOnLimitedConnection: true,
      })
      const lp = lpStream(stream, { maxDataLength: MAX_SYNC })
      await lp.write(this.allHeld(), { signal })
      const raw = await lp.read({ signal })
      this.ingestSet(raw.subarray(), peer.toString())
      await closeOrAbort(stream, signal)
    } catch (err) {
      // a sync that timed out must not leave its stream open on both ends (it held a second
      // connection to the member open for good: one-connection.ts waits for such streams)
      stream?.abort(err as Error)
      this.deps.reporter.log.debug(
        { peer: peer.toString(), err: (err as Error).message },
        'election sync failed',
      )
    }
  }

  private async onSyncStream(stream: Stream, conn: Connection): Promise<void> {
    const signal = AbortSignal.timeout(10_000)
    try {
      if (!(await this.libp2p.services.admission.admitted(conn))) throw new Error('not admitted')
      const lp = lpStream(stream, { maxDataLength: MAX_SYNC })
      const raw = await lp.read({ signal })
      const mine = this.allHeld()
      this.ingestSet(raw.subarray(), conn.remotePeer.toString())
      await lp.write(mine, { signal })
      await closeOrAbort(stream, signal)
    } catch (err) {
      this.metrics.dropped.inc({ reason: 'bad_sync' })
      stream.abort(err as Error)
    }
  }

  // ---- persistence --------------------------------------------------------------------------

  private schedulePersist(): void {
    if (this.persistTimer !== undefined) return
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined
      this.persist()
    }, PERSIST_DEBOUNCE_MS)
  }

  private persistNow(): void {
    if (this.persistTimer !== undefined) clearTimeout(this.persistTimer)
    this.persistTimer = undefined
    this.persist()
  }

  private persist(): void {
    try {
      const items = []
      for (const id of this.core.ids())
        for (const m of this.core.messages(id)) {
          const w = toWire(m)
          items.push([Buffer.from(w.body).toString('base64'), Buffer.from(w.sig).toString('base64')])
        }
      const tmp = `${this.file}.tmp`
      writeFileSync(tmp, JSON.stringify({ version: 1, messages: items }))
      renameSync(tmp, this.file)
    } catch (err) {
      this.deps.reporter.log.warn({ err: (err as Error).message }, 'could not save elections')
    }
  }

  private load(): Array<Message | Claim> {
    if (!existsSync(this.file)) return []
    const out: Array<Message | Claim> = []
    try {
      const j = JSON.parse(readFileSync(this.file, 'utf8')) as { messages?: Array<[string, string]> }
      for (const [b, s] of j.messages ?? []) {
        try {
          out.push(fromWire({ body: Buffer.from(b, 'base64'), sig: Buffer.from(s, 'base64') }))
        } catch {}
      }
    } catch (err) {
      this.deps.reporter.log.warn(
        { err: (err as Error).message, file: this.file },
        'ignoring unreadable elections file',
      )
    }
    return out
  }

  timing(id: string): { decidedMs?: number; allocatedMs?: number } {
    const v = this.core.view(id)
    const t = this.times.get(id)
    if (v === undefined || t === undefined) return {}
    const r: { decidedMs?: number; allocatedMs?: number } = {}
    if (t.decided !== undefined) r.decidedMs = t.decided - v.request.created
    if (t.allocated !== undefined) r.allocatedMs = t.allocated - v.request.created
    return r
  }
}
