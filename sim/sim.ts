// The discrete-event simulator: virtual time, a priority queue of events, no timers and no
// libp2p. Every node runs the agent's own membership core (MemberTable, Swim, signed records)
// and this file plays the part of src/membership/service.ts around it: gossip, push-pull
// sync, probes, connections. Where the adapter does something, the simulator does the same
// thing at the same moment; where it had to approximate, MODEL.md says how.

import { BROADCAST_DEFAULTS, fanoutWidth, PIGGYBACK } from '../src/membership/broadcasts.js'
import { MembershipCore, type MembershipEffect } from '../src/membership/core.js'
import { MEMBERSHIP_DEFAULTS } from '../src/membership/defaults.js'
import type { Change, Entry, Row } from '../src/membership/merge.js'
import { MemberTable } from '../src/membership/merge.js'
import { overlayAddress } from '../src/membership/overlay.js'
import {
  type Claim,
  type MemberInfo,
  nullCrypto,
  type SignedInfo,
  type Status,
  type Verifier,
} from '../src/membership/record.js'
import { SUSPICION_MAX_MULT, suspicionTimeoutMs } from '../src/membership/swim.js'
import { syncOnConnect } from '../src/membership/sync-on-connect.js'
import { syncScale } from '../src/membership/sync-scale.js'
import { COST, entryWire, field, ihaveTargets, memberSetBytes, varintLen } from './cost.js'
import { EventHeap } from './heap.js'
import { kadIdOf, kadStartDials } from './kad.js'
import { LightRelayFilter } from './light-relay.js'
import { Tracker } from './metrics.js'
import { Network, type NetworkOptions } from './network.js'
import { MSG, type Msg, SimNode, type SyncWhy } from './node.js'
import { exponential, mix3, mix4, mix32, mulberry32, type Rng, randInt } from './rng.js'

/** The agent's membership settings (defaults from src/membership/config.ts). */
export interface MembershipTiming {
  probeIntervalMs: number
  probeTimeoutMs: number
  indirectProbes: number
  suspicionMult: number
  syncIntervalMs: number
}

export const AGENT_TIMING: MembershipTiming = {
  probeIntervalMs: MEMBERSHIP_DEFAULTS.probeIntervalMs,
  probeTimeoutMs: MEMBERSHIP_DEFAULTS.probeTimeoutMs,
  indirectProbes: MEMBERSHIP_DEFAULTS.indirectProbes,
  suspicionMult: MEMBERSHIP_DEFAULTS.suspicionMult,
  syncIntervalMs: MEMBERSHIP_DEFAULTS.syncIntervalMs,
}

/** Constants of the adapter (src/membership/service.ts, src/node/node-component.ts, cmd-agent). */
export const AGENT = {
  tickMs: 100,
  connectEveryMs: 5_000,
  connectBatch: 8,
  reconnectEveryMs: 10_000,
  reconnectBatch: 8,
  syncOnConnectGapMs: 5_000,
  syncTimeoutMs: 10_000,
  maxSyncBytes: 8 << 20,
  leaveGraceMs: 3_000,
} as const

/** gossipsub's mesh degree: target, low and high water marks */
export const GOSSIP_MESH = { D: 6, Dlo: 4, Dhi: 12, heartbeatMs: 1000 } as const

export interface SimOptions {
  seed: number
  network: Partial<NetworkOptions>
  membership: MembershipTiming
  /** fraction of nodes with a busy event loop, and the mean extra delay of everything they do */
  slowFraction: number
  slowMs: number
  /** 'digest': the agent's sync 2.0.0 (8-byte fingerprints, then only what differs); 'full': sync 1.0.0 (whole tables) */
  sync: 'full' | 'digest'
  /** how records and claims spread: 'gossipsub' (the agent today) or 'piggyback' (BroadcastQueue on probes + fan-out) */
  dissemination: 'gossipsub' | 'piggyback'
  /** piggyback: lambda in lambda * ceil(log10(N + 1)) sends per update and member */
  retransmitMult: number
  /** piggyback: bytes of records and claims per message */
  piggybackBudget: number
  /** above this many nodes, only `observers` nodes are full (see MODEL.md) */
  fullMax: number
  observers: number | undefined
  /** members a light node probes and follows */
  sample: number
  /** a light node passes on news outside its sample that would have changed its row (light-relay.ts; MODEL.md, Light members that relay) */
  lightRelay: boolean
  /** the most items a relaying light member's queue holds (LIGHT_QUEUE_MAX) */
  lightQueue: number
  /** a joiner or restarted member queues its first record to piggyback, as the agent does (service.ts start()) */
  announceOnStart: boolean
  /** a crash's reset connections make some of their other ends probe it out of turn (Swim.closed), as the agent */
  probeOnClose: boolean
  /** libp2p's connection manager limit: gossip fan-out (flood publish, IHAVE) reaches at most this many peers */
  maxConnections: number
  /** TCP gives up on a connection that is cut for this long (Linux tcp_retries2 = 15) */
  linkTimeoutMs: number
  /** virtual wall clock at t = 0: incarnations start at the wall clock */
  wallStartMs: number
  /** for sizing: the most nodes this run will hold */
  expectedNodes: number
  clusterId: string
}

/**
 * The most items a light member's queue holds when it relays news outside its sample (a full
 * member's holds BROADCAST_DEFAULTS.maxItems): 9,500 queues of 256 items ran out of 1.6 GB in a
 * crash at 10,000; the most-sent items are the ones dropped (MODEL.md, Light members that relay).
 */
const LIGHT_QUEUE_MAX = 32

export const SIM_DEFAULTS: SimOptions = {
  seed: 1,
  network: {},
  membership: AGENT_TIMING,
  slowFraction: 0,
  slowMs: 250,
  sync: 'digest',
  dissemination: 'piggyback',
  retransmitMult: BROADCAST_DEFAULTS.retransmitMult,
  piggybackBudget: PIGGYBACK.budget,
  fullMax: 2000,
  observers: undefined,
  sample: 300,
  lightRelay: false,
  lightQueue: LIGHT_QUEUE_MAX,
  announceOnStart: true,
  probeOnClose: MEMBERSHIP_DEFAULTS.probeOnClose,
  maxConnections: 300,
  linkTimeoutMs: 924_000,
  wallStartMs: 1_767_225_600_000,
  expectedNodes: 0,
  clusterId: '5eed0c1a55e7c0de',
}

export type Channel = 'probe' | 'gossip' | 'ihave' | 'sync' | 'dial' | 'ext'
export const CHANNELS: readonly Channel[] = ['probe', 'gossip', 'ihave', 'sync', 'dial', 'ext']

/** A component riding on the simulator, such as an election core (see scenarios.ts). */
export interface Extension {
  readonly name: string
  attach?(sim: Sim): void
  onStart?(node: SimNode): void
  onStop?(node: SimNode): void
  onChange?(node: SimNode, change: Change): void
  /** a direct message or a gossip message for this extension */
  onMessage?(node: SimNode, from: SimNode, body: unknown): void
  report?(): Record<string, unknown>
}

const K_WAKE = 0
const K_MSG = 1
const K_CURSOR = 2
const K_FN = 3
const K_SYNC = 4
const K_CONNECT = 5
const K_RECONNECT = 6
const K_FANOUT = 7
const K_CATCHUP = 8

interface Ev {
  at: number
  seq: number
  k: number
  /** node and its epoch when scheduled */
  n: number
  e: number
  /** nominal time of a wake-up */
  x: number
  m: Msg | undefined
  b: Broadcast | undefined
  f: (() => void) | undefined
}

/** One gossip message on its way to everyone, delivered in order of arrival. */
interface Broadcast {
  from: number
  records: SignedInfo[]
  claims: Claim[]
  ext: string | undefined
  body: unknown
  order: number[]
  times: number[]
  epochs: number[]
  i: number
}

interface Held {
  b: Broadcast
  nodes: number[]
}

interface PartitionSpan {
  start: number
  end: number
  side: number[]
}

/** Verification is a pure function of (peer, bytes, sig): remember the ones that passed. */
function cachingVerifier(inner: Verifier): Verifier {
  const passed = new WeakMap<Uint8Array, Uint8Array>()
  return {
    verify(peerId, bytes, sig) {
      if (passed.get(sig) === bytes) return true
      const ok = inner.verify(peerId, bytes, sig)
      if (ok) passed.set(sig, bytes)
      return ok
    },
  }
}

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

const NO_HASH = new Int32Array(0)
const NO_RECORDS: readonly SignedInfo[] = Object.freeze([])
const NO_CLAIMS: readonly Claim[] = Object.freeze([])

/** A proto3 uint32/uint64 field: left out when 0. */
const uintField = (v: number): number => (v === 0 ? 0 : 1 + varintLen(v))
/** A proto3 bytes field: left out when empty. */
const bytesField = (len: number): number => (len === 0 ? 0 : field(len))
/** ProbeReply.now_ms, a double: tag + 8 bytes, always set by the agent */
const NOW_MS_FIELD = 9
/** the seq of a fan-out probe (service.ts FANOUT_SEQ_BASE = 2^31 and up): tag + 5-byte varint */
const FANOUT_SEQ_FIELD = 6

export class Sim {
  now = 0
  readonly opts: SimOptions
  readonly nodes: SimNode[] = []
  readonly net: Network
  readonly tracker: Tracker
  readonly rng: Rng
  readonly bytes: Record<Channel, number> = { probe: 0, gossip: 0, ihave: 0, sync: 0, dial: 0, ext: 0 }
  /**
   * Membership payload bytes sent, counted as the agent's mesh_membership_bytes_total
   * {direction="out"} counts them (service.ts) on its probe, gossip and sync channels: probe
   * messages (fan-out probes too) with their 1-byte length prefix and the records and claims
   * piggybacked on them, sync messages, and a gossipsub MemberSet once per publish (not per
   * copy, not when forwarded); no framing, streams, envelopes, IHAVE or dialling. (The agent's
   * 'piggyback' channel counts the piggybacked part of its probe channel again.) For comparing
   * with agents.
   */
  readonly payload: Record<Channel, number> = { probe: 0, gossip: 0, ihave: 0, sync: 0, dial: 0, ext: 0 }
  readonly syncs = {
    periodic: 0,
    connect: 0,
    leave: 0,
    catchup: 0,
    failed: 0,
    unsent: 0,
    tooLarge: 0,
    rowsMoved: 0,
  }
  readonly counters = {
    events: 0,
    broadcasts: 0,
    deliveries: 0,
    refutations: 0,
    dials: 0,
    heldDelivered: 0,
    meshRepairs: 0,
  }
  readonly extensions: Extension[] = []
  readonly partitions: PartitionSpan[] = []
  private readonly q = new EventHeap<Ev>()
  private readonly byId = new Map<string, number>()
  private readonly verifier = cachingVerifier(nullCrypto.verifier)
  private readonly buckets: number
  private readonly objIds = new WeakMap<object, number>()
  private nextObjId = 1
  private held: Held[] = []
  private liveCount = 0
  private lastLiveAt = 0
  nodeMs = 0
  private readonly lightSuspicion: { min: number; max: number } | undefined
  private lightFrac = 1
  /** what light members heard about members outside their sample (lightRelay) */
  private readonly relayFilter: LightRelayFilter
  private readonly observerTarget: number
  private observerCount = 0
  private readonly swimRngSeed: number
  // reusable scratch for broadcasts
  private dist = new Float64Array(0)
  private stamp = new Int32Array(0)
  private pred = new Int32Array(0)
  private jit = new Float64Array(0)
  private seen = new Int32Array(0)
  private curStamp = 0

  constructor(opts: Partial<SimOptions> = {}) {
    this.opts = { ...SIM_DEFAULTS, ...opts, membership: { ...AGENT_TIMING, ...opts.membership } }
    const o = this.opts
    this.rng = mulberry32(mix32(o.seed, 0x51a))
    this.swimRngSeed = mix32(o.seed, 0x5e1f)
    this.net = new Network(o.network, mulberry32(mix32(o.seed, 0x7e7)))
    this.net.up = (i) => this.nodes[i]?.up === true
    this.tracker = new Tracker(
      (ob, m) => this.rowOf(this.nodes[ob], m)?.status,
      () => this.now,
    )
    const expected = Math.max(o.expectedNodes, 1)
    this.relayFilter = new LightRelayFilter(expected, this.indexOf)
    this.observerTarget =
      expected <= o.fullMax ? Number.POSITIVE_INFINITY : (o.observers ?? Math.min(expected, 500))
    if (o.observers !== undefined) this.observerTarget = o.observers
    // ~8 members per anti-entropy bucket, a power of two
    this.buckets = Math.min(4096, Math.max(16, 2 ** Math.ceil(Math.log2(expected / 8))))
    if (this.observerTarget < expected) {
      this.lightFrac = Math.min(1, o.sample / expected)
      const m = this.opts.membership
      const min = suspicionTimeoutMs(m.suspicionMult, expected, m.probeIntervalMs)
      this.lightSuspicion = { min, max: SUSPICION_MAX_MULT * min }
    }
  }

  get size(): number {
    return this.nodes.length
  }

  get live(): number {
    return this.liveCount
  }

  idxOf(peerId: string): number {
    return this.byId.get(peerId) ?? -1
  }

  private readonly indexOf = (peerId: string): number => this.idxOf(peerId)

  // ---- the event loop -------------------------------------------------------------------------

  private push(at: number, k: number, n: number, e: number): Ev {
    const ev: Ev = { at, seq: 0, k, n, e, x: 0, m: undefined, b: undefined, f: undefined }
    this.q.push(ev)
    return ev
  }

  /** Run `fn` at virtual time `t` (ms). */
  at(t: number, fn: () => void): void {
    this.push(Math.max(t, this.now), K_FN, -1, 0).f = fn
  }

  /** Run `fn` every `everyMs` from `start` until the run ends. */
  every(everyMs: number, fn: () => void, start = this.now + everyMs): void {
    const tick = (): void => {
      fn()
      this.at(this.now + everyMs, tick)
    }
    this.at(start, tick)
  }

  private runUntil = 0

  run(untilMs: number): void {
    this.runUntil = untilMs
    const q = this.q
    for (let ev = q.peek(); ev !== undefined && ev.at <= untilMs; ev = q.peek()) {
      q.pop()
      this.now = ev.at
      this.counters.events++
      switch (ev.k) {
        case K_WAKE:
          this.onWake(ev)
          break
        case K_MSG:
          this.onMsg(ev)
          break
        case K_CURSOR:
          this.onCursor(ev)
          break
        case K_FN:
          ev.f!()
          break
        case K_SYNC:
        case K_CONNECT:
        case K_RECONNECT:
          this.onPeriodic(ev)
          break
        case K_FANOUT:
          this.onFanout(ev)
          break
        case K_CATCHUP:
          this.onCatchUp(ev)
          break
      }
    }
    this.now = Math.max(this.now, untilMs)
    this.accountLive()
  }

  // ---- nodes ----------------------------------------------------------------------------------

  private makePeerId(): string {
    let s = '12D3KooW'
    for (let i = 0; i < 44; i++) s += B58[randInt(this.rng, 58)]
    return s
  }

  /** Create a node (not started). Full unless the run is above fullMax and observers are taken. */
  addNode(opts: { nat?: boolean; kind?: 'full' | 'light' } = {}): SimNode {
    const idx = this.nodes.length
    const peerId = this.makePeerId()
    this.net.addNode(idx, opts.nat)
    const nat = this.net.nat[idx]
    const ip = `10.${(idx >> 16) & 255}.${(idx >> 8) & 255}.${idx & 255}`
    const addrs = nat
      ? [
          `/ip4/198.51.100.7/tcp/4001/p2p/12D3KooWRelayRelayRelayRelayRelayRelayRelayRelay/p2p-circuit/p2p/${peerId}`,
          `/ip4/192.168.1.20/tcp/4001/p2p/${peerId}`,
        ]
      : [`/ip4/${ip}/tcp/4001/p2p/${peerId}`, `/ip6/fd00::${idx.toString(16)}/tcp/4001/p2p/${peerId}`]
    const kind = opts.kind ?? (this.observerCount < this.observerTarget ? 'full' : 'light')
    if (kind === 'full') this.observerCount++
    const node = new SimNode(
      idx,
      peerId,
      nullCrypto.signer(peerId),
      overlayAddress(this.opts.clusterId, peerId),
      addrs,
      kind,
    )
    if (this.opts.slowFraction > 0 && this.rng() < this.opts.slowFraction) node.slowMs = this.opts.slowMs
    this.nodes.push(node)
    this.byId.set(peerId, idx)
    if (this.dist.length < this.nodes.length) this.grow()
    // light nodes follow a hash-chosen sample, so that joiners land in samples too
    if (kind === 'light') {
      node.interest = [idx]
      node.sampleSeed = this.opts.seed
      node.sampleFrac = this.lightFrac
      for (let j = 0; j < idx; j++) this.maybeFollow(node, j)
    }
    for (let j = 0; j < idx; j++) {
      const other = this.nodes[j]
      if (other.interest !== undefined) this.maybeFollow(other, idx)
    }
    return node
  }

  private maybeFollow(node: SimNode, j: number): void {
    const a = node.idx < j ? node.idx : j
    const b = node.idx < j ? j : node.idx
    // the same test as SimNode.follows()
    if (mix3(this.opts.seed, a, b) / 4294967296 < this.lightFrac) node.interest!.push(j)
  }

  private grow(): void {
    const n = Math.max(16, this.nodes.length * 2)
    const d = new Float64Array(n)
    d.set(this.dist)
    this.dist = d
    const s = new Int32Array(n)
    s.set(this.stamp)
    this.stamp = s
    this.pred = new Int32Array(n)
    this.jit = new Float64Array(n)
    const seen = new Int32Array(n)
    seen.set(this.seen)
    this.seen = seen
  }

  private buildInfo(node: SimNode, incarnation: number, status: 'alive' | 'left'): MemberInfo {
    return {
      peerId: node.peerId,
      name: `node-${node.idx}`,
      overlay: node.overlay,
      addrs: node.addrs as string[],
      incarnation,
      status,
      version: '0.1.0',
      tags: {},
      computeTypes: [],
      resources: { cpus: 4, memoryBytes: 8 * 2 ** 30, diskFreeBytes: 100 * 2 ** 30 },
      maintenance: false,
    }
  }

  /**
   * Bring a node up with a fresh table and detector, as the agent's start() does. `formed`: a
   * member of a cluster that has run for a while (its periodic syncs at a random point of their
   * scaled period, as the agents' start times would spread them).
   */
  private boot(node: SimNode, formed = false): void {
    node.epoch++
    node.up = true
    node.left = false
    node.stopAt = Number.POSITIVE_INFINITY
    node.upSince = this.now
    this.accountLive()
    this.liveCount++
    // only full members compare fingerprints (a light one diffs its sample): 16 kB each at 10,000
    node.hash = node.kind === 'full' ? new Int32Array(2 * this.buckets) : NO_HASH
    node.tableBytes = 0
    node.lastSync.clear()
    node.lastSyncOk = Number.NEGATIVE_INFINITY
    node.catchUpArmed = false
    node.waiters.clear()
    node.wakeAt = Number.POSITIVE_INFINITY
    node.fanoutArmed = false
    // incarnations start at the wall clock, so a restarted member outranks its old record
    const incarnation = Math.floor(this.opts.wallStartMs + this.now)
    const m = this.opts.membership
    const light = node.kind === 'light' ? this.lightSuspicion : undefined
    // rows and detector slots are found in arrays, not in hash maps of peer IDs (~90 B a row):
    // by member number on a full member, by position in its sample on a light one (an array by
    // member number would cost it 10,000 slots for ~300 rows)
    const index = node.full ? this.indexOf : (p: string) => node.slotOf(this.idxOf(p))
    node.core = new MembershipCore({
      signer: node.signer,
      verifier: this.verifier,
      table: new MemberTable({ index }),
      swim: {
        index,
        rng: mulberry32(mix32(this.swimRngSeed, node.idx, node.epoch)),
        incarnation,
        probeIntervalMs: m.probeIntervalMs,
        probeTimeoutMs: m.probeTimeoutMs,
        indirectK: m.indirectProbes,
        suspicionMult: m.suspicionMult,
        ...(light !== undefined ? { suspicionMinMs: light.min, suspicionMaxMs: light.max } : {}),
      },
      describe: (inc, status) => this.buildInfo(node, inc, status),
      emit: (e) => this.onEffect(node, e),
      // skip lists of member numbers, for light members too (a list, not an array by number)
      piggyback: this.opts.dissemination === 'piggyback' && {
        retransmitMult: this.opts.retransmitMult,
        ...(node.full || !this.opts.lightRelay ? {} : { maxItems: this.opts.lightQueue }),
        index: this.indexOf,
      },
      follows: node.full ? undefined : (p) => node.follows(this.idxOf(p)),
      clusterSize: node.full ? undefined : () => this.clusterSize(node),
      syncRounds: formed
        ? Math.floor((mix3(this.opts.seed, node.idx, 0x5c) / 4294967296) * syncScale(this.opts.expectedNodes))
        : 0,
    })
    node.table = node.core.table
    // a light table's array is by sample position, not member number
    node.rowAt = node.full ? node.table.rowsByIndex() : undefined
    node.core.start(this.now)
    node.tickPhase = this.rng() * AGENT.tickMs
    node.meshDirty = true
  }

  /** Start the timers of a running node; `formed` nodes have run for a while (random phases). */
  private startTimers(node: SimNode, formed: boolean): void {
    const m = this.opts.membership
    const phase = (every: number) => (formed ? this.rng() * every : every)
    this.push(this.now + phase(m.syncIntervalMs), K_SYNC, node.idx, node.epoch)
    this.push(this.now + phase(AGENT.connectEveryMs), K_CONNECT, node.idx, node.epoch)
    // the node component dials seeds and known members at once on start, then every 10 s
    this.push(
      this.now + (formed ? this.rng() * AGENT.reconnectEveryMs : 0),
      K_RECONNECT,
      node.idx,
      node.epoch,
    )
    this.arm(node)
    for (const x of this.extensions) x.onStart?.(node)
  }

  /**
   * A formed cluster of `n` members at t = 0: every table holds every record, every member is
   * connected to every other, detectors are running with random phases.
   */
  form(n: number): SimNode[] {
    const made: SimNode[] = []
    for (let i = 0; i < n; i++) made.push(this.addNode())
    for (const node of made) {
      this.boot(node, true)
      node.baseLinked = true
    }
    // in index order; a light node walks its sample instead of asking about all N
    const first = made.length > 0 ? made[0].idx : 0
    const last = first + made.length - 1
    const join = this.formedJoiner(made)
    for (const node of made) {
      if (node.interest === undefined) {
        for (const other of made) if (other !== node) join(node, other.idx)
      } else {
        const js = node.interest.filter((j) => j !== node.idx && j >= first && j <= last)
        js.sort((x, y) => x - y)
        for (const j of js) join(node, j)
      }
      node.connCount = made.length - 1
      // all its members are in: no room for growth (~30 B a member across 10,000 detectors)
      node.swim.compact()
    }
    this.buildMesh(made)
    for (const node of made) this.tracker.addMember(node.idx)
    for (const node of made) if (node.full) this.tracker.observerUp(node.idx)
    for (const node of made) this.startTimers(node, true)
    this.startGlobalTimers()
    return made
  }

  /**
   * How form() gives a member the record of member j. Through apply() that is ~8 M applies at
   * 10,000 members (checks, a Change, the effect, fingerprints by object), most of forming's
   * time; every record here already passed apply() on its own member and every row is a plain
   * 'alive' one, so the core joins it unchecked (MembershipCore.joinVerified) and this does
   * what onChange() would with it, from figures computed once per member: the same tables,
   * detectors (the same random draws in the same order), fingerprints and byte counts.
   */
  private formedJoiner(made: SimNode[]): (node: SimNode, j: number) => void {
    const slow = (node: SimNode, j: number): void => {
      node.core.apply(this.nodes[j].signed, this.now)
    }
    // an extension watches every change; formed members are all connected (onChange dials none)
    if (this.extensions.some((x) => x.onChange !== undefined)) return slow
    for (const node of made) if (!node.baseLinked || node.cut.size > 0) return slow
    const first = made.length > 0 ? made[0].idx : 0
    const n = made.length
    const wire = new Float64Array(n)
    const h0 = new Int32Array(n)
    const h1 = new Int32Array(n)
    // object ids in the order the first full member's applies gave them (rowHash: records of
    // full members got theirs when they applied their own at boot, the rest in index order)
    const hashed = made.some((x) => x.rowAt !== undefined)
    for (let k = 0; k < n; k++) {
      const signed = made[k].signed
      wire[k] = entryWire({ signed })
      if (!hashed) continue
      const s = this.objId(signed)
      h0[k] = mix3(first + k, s, 0)
      h1[k] = mix4(0, s, first + k, 7)
    }
    const mask = this.buckets - 1
    return (node, j) => {
      const other = this.nodes[j]
      if (!node.core.joinVerified(other.signed, this.now)) {
        slow(node, j)
        return
      }
      const k = j - first
      if (node.rowAt !== undefined) {
        const b = j & mask
        node.hash[2 * b] ^= h0[k]
        node.hash[2 * b + 1] ^= h1[k]
      }
      this.tracker.row(node.idx, j, undefined, 'alive')
      node.tableBytes += wire[k]
    }
  }

  private globalTimers = false

  private startGlobalTimers(): void {
    if (this.globalTimers) return
    this.globalTimers = true
    this.every(GOSSIP_MESH.heartbeatMs, () => this.meshHeartbeat(), this.now + GOSSIP_MESH.heartbeatMs)
    this.every(1000, () => this.tracker.sample(), this.now)
  }

  /** A new member joins through `seed` (a running member): it dials it and syncs. */
  join(seed: number, opts: { nat?: boolean } = {}): SimNode {
    const node = this.addNode({ ...opts, kind: this.observerCount < this.observerTarget ? 'full' : 'light' })
    this.boot(node)
    this.tracker.addMember(node.idx)
    if (node.full) this.tracker.observerUp(node.idx)
    this.tracker.expect(node.idx, 'join')
    node.unlinked.add(seed)
    this.startTimers(node, false)
    if (this.opts.announceOnStart) this.announceStart(node)
    this.startGlobalTimers()
    return node
  }

  /** kill -9: no goodbye. */
  crash(i: number): void {
    const node = this.nodes[i]
    if (!node.up) return
    this.stop(node)
    this.tracker.crashed(i)
  }

  /** Start a stopped member again on its data dir: same peer ID, new incarnation, empty table. */
  restart(i: number): void {
    const node = this.nodes[i]
    if (node.up) return
    // its peer store remembers the members it had met: what it dials first
    const known: number[] = []
    for (const r of node.table.rows()) {
      const j = this.idxOf(r.peerId)
      if (j !== i && (r.status === 'alive' || r.status === 'suspect')) known.push(j)
    }
    this.boot(node)
    node.baseLinked = false
    for (const j of known) node.unlinked.add(j)
    node.dialable.clear()
    this.tracker.setTruth(i, true)
    if (node.full) this.tracker.observerUp(i)
    this.tracker.expect(i, 'restart')
    this.startTimers(node, false)
    // the DHT's start-up dials (each connection then syncs): kad-dht refills its routing table
    // from the peer store and its refresh and self-query dial the K closest members to a few
    // keys (sim/kad.ts, from @libp2p/kad-dht's routing-table/refresh.ts and query-self.ts). A
    // restarted agent among 20 on 127.0.0.1 held outbound connections to all 19 others, and had
    // synced with each, before its control API answered (2026-12-04): at N <= K + 1 one query
    // covers everyone
    const seed = this.opts.seed
    for (const j of kadStartDials(kadIdOf(seed, i), known, (x) => kadIdOf(seed, x), this.rng))
      if (!this.connected(i, j)) this.dial(node, j)
    if (this.opts.announceOnStart) this.announceStart(node)
  }

  /** `mesh leave`: announce 'left' on gossip, push to every connected member, stop after 3 s. */
  leave(i: number): void {
    const node = this.nodes[i]
    if (!node.up || node.left) return
    if (node.full) this.tracker.observerDown(i)
    this.tracker.setTruth(i, false)
    this.tracker.expect(i, 'leave')
    node.left = true
    node.stopAt = this.now + AGENT.leaveGraceMs
    node.core.leave(this.now)
    for (let j = 0; j < this.nodes.length; j++) {
      if (j !== i && this.connected(i, j) && this.isMember(node, j)) this.sync(node, j, 'leave')
    }
    const epoch = node.epoch
    this.at(node.stopAt, () => {
      if (node.epoch === epoch && node.up) this.stop(node)
    })
  }

  private stop(node: SimNode): void {
    const i = node.idx
    if (node.full && !node.left) this.tracker.observerDown(i)
    if (!node.left) this.tracker.setTruth(i, false)
    for (const x of this.extensions) x.onStop?.(node)
    this.accountLive()
    this.liveCount--
    node.aliveMs += this.now - node.upSince
    node.up = false
    node.downAt[node.epoch] = this.now
    // what it had queued but not sent never leaves (only big syncs queue for long)
    const unsent = this.net.flush(i, this.now)
    this.bytes.sync = Math.max(0, this.bytes.sync - unsent)
    node.sent = Math.max(0, node.sent - unsent)
    // its connections close: the others notice at once (RST from the kernel) and will redial
    for (let j = 0; j < this.nodes.length; j++) {
      if (j === i || !this.connected(i, j)) continue
      const other = this.nodes[j]
      other.conn.delete(i)
      other.connCount--
      if (other.up && this.knows(other, i)) this.markUnlinked(other, i)
      if (other.mesh.includes(i)) other.meshDirty = true
      // as the agent's peer:disconnect and its refused redial (service.ts): a probe out of turn
      if (other.up && this.opts.probeOnClose) other.core.closed(node.peerId, this.now)
    }
    node.conn.clear()
    node.cut.clear()
    node.baseLinked = false
    node.connCount = 0
    node.unlinked.clear()
    node.dialable.clear()
    node.mesh = []
  }

  /** Whether member i is running and has not left. */
  isUp(i: number): boolean {
    const n = this.nodes[i]
    return n.up && !n.left
  }

  /** Running members that have not left. */
  liveNodes(): number[] {
    const out: number[] = []
    for (const n of this.nodes) if (n.up && !n.left) out.push(n.idx)
    return out
  }

  /** Whether member i is a full member (knows every member; light ones follow a sample). */
  isFull(i: number): boolean {
    return this.nodes[i].full
  }

  /** Mark a node slow from now on (mean extra delay per thing it handles). */
  setSlow(i: number, meanMs: number): void {
    this.nodes[i].slowMs = meanMs
  }

  private procDelay(node: SimNode): number {
    return node.slowMs > 0 ? exponential(this.rng, node.slowMs) : 0
  }

  private accountLive(): void {
    this.nodeMs += this.liveCount * (this.now - this.lastLiveAt)
    this.lastLiveAt = this.now
  }

  /** The node knows `j` but holds no connection to it: its dial loops will try. */
  private markUnlinked(node: SimNode, j: number): void {
    node.unlinked.add(j)
    if (this.rowOf(node, j)?.status === 'alive') node.dialable.add(j)
  }

  /** Peers in the node's peer store: what it has seen alive. */
  private knows(node: SimNode, j: number): boolean {
    return node.follows(j) && this.rowOf(node, j) !== undefined
  }

  private isMember(node: SimNode, j: number): boolean {
    const s = this.rowOf(node, j)?.status
    return s === 'alive' || s === 'suspect'
  }

  /** Member j's row in the node's table: by index on a full node. */
  private rowOf(node: SimNode, j: number): Row | undefined {
    const r = node.rowAt
    return r !== undefined ? r[j] : node.table.row(this.nodes[j].peerId)
  }

  private entryOf(node: SimNode, peerId: string): Entry | undefined {
    const r = node.rowAt
    const j = r === undefined ? -1 : this.idxOf(peerId)
    return j < 0 ? node.table.get(peerId) : r![j]?.entry
  }

  // ---- partitions -----------------------------------------------------------------------------

  /** Cut the network: members on different sides cannot talk until heal(). */
  partition(sideOf: (i: number) => number): void {
    const side: number[] = []
    for (let i = 0; i < this.nodes.length; i++) side.push(sideOf(i))
    this.net.setPartition((i) => side[i])
    this.partitions.push({ start: this.now, end: Number.POSITIVE_INFINITY, side })
    // TCP gives up on connections across the cut after linkTimeoutMs
    const span = this.partitions[this.partitions.length - 1]
    this.at(this.now + this.opts.linkTimeoutMs, () => {
      if (span.end !== Number.POSITIVE_INFINITY) return
      for (let i = 0; i < this.nodes.length; i++) {
        for (let j = i + 1; j < this.nodes.length; j++)
          if (side[i] !== side[j] && this.connected(i, j)) this.unlink(i, j)
      }
      this.held = []
    })
  }

  /** Join the sides again; gossip held in surviving TCP connections arrives at the next retransmission. */
  heal(): void {
    const span = this.partitions[this.partitions.length - 1]
    if (span === undefined || span.end !== Number.POSITIVE_INFINITY) return
    span.end = this.now
    this.net.heal()
    const held = this.held
    this.held = []
    if (this.now - span.start >= this.opts.linkTimeoutMs) return
    for (const h of held) {
      const order: number[] = []
      const times: number[] = []
      for (const j of h.nodes) {
        const node = this.nodes[j]
        if (!node.up) continue
        // RTO doubling from the first unacknowledged segment, shortly after the cut
        let t = span.start + this.rng() * 1000
        let rto = 200 + 2 * this.net.baseMs(h.b.from, j)
        while (t < this.now) {
          t += rto
          rto = Math.min(rto * 2, 120_000)
        }
        order.push(j)
        times.push(t + this.net.oneWay(h.b.from, j) + this.procDelay(node))
      }
      this.counters.heldDelivered += order.length
      this.schedule(h.b, order, times)
    }
  }

  /** Were a and b on different sides of a cut at some time in [t - windowMs, t]? */
  acrossPartition(a: number, b: number, t: number, windowMs: number): boolean {
    for (let k = this.partitions.length - 1; k >= 0; k--) {
      const p = this.partitions[k]
      if (p.end < t - windowMs) break
      if (p.start <= t && (p.side[a] ?? 0) !== (p.side[b] ?? 0)) return true
    }
    return false
  }

  // ---- the table, as the adapter feeds it ----------------------------------------------------

  private objId(o: object | undefined): number {
    if (o === undefined) return 0
    let id = this.objIds.get(o)
    if (id === undefined) {
      id = this.nextObjId++
      this.objIds.set(o, id)
    }
    return id
  }

  private rowHash(node: SimNode, j: number, e: Entry): void {
    const s = this.objId(e.signed)
    const c = this.objId(e.claim)
    const b = j & (this.buckets - 1)
    node.hash[2 * b] ^= mix3(j, s, c)
    node.hash[2 * b + 1] ^= mix4(c, s, j, 7)
  }

  /** The effects of a node's membership core: what service.ts does with them, here. */
  private onEffect(node: SimNode, e: MembershipEffect): void {
    switch (e.type) {
      case 'change':
        this.onChange(node, e.change, e.replaced, e.quiet)
        break
      case 'publish':
        this.publish(node, e.record, e.claim)
        break
      case 'queued':
        this.armFanout(node)
        break
      case 'refuted':
        this.counters.refutations++
        break
      case 'dropped':
        break
      case 'probe':
        this.ask(node, this.idxOf(e.to), MSG.probe, e.seq, -1)
        break
      case 'probe-req':
        this.ask(node, this.idxOf(e.via), MSG.probeReq, e.seq, this.idxOf(e.target))
        break
      case 'ack':
      case 'nack': {
        const key = `${e.to}/${e.seq}`
        const req = node.waiters.get(key)
        if (req === undefined) break
        node.waiters.delete(key)
        this.reply(node, req, MSG.replyIndirect, e.type === 'ack')
        break
      }
    }
  }

  /** A change of a node's table: the simulator's bookkeeping (fingerprints, sizes, metrics), then the adapter's. */
  private onChange(node: SimNode, change: Change, old: Entry | undefined, quiet: boolean): void {
    const { peerId, after } = change
    const j = this.idxOf(peerId)
    if (j >= 0) {
      if (node.rowAt !== undefined) {
        if (old !== undefined) this.rowHash(node, j, old)
        this.rowHash(node, j, change.entry)
      }
      this.tracker.row(node.idx, j, change.before, change.after)
    }
    node.tableBytes += entryWire(change.entry) - (old === undefined ? 0 : entryWire(old))
    // the agent applies its own 'left' record without onChange
    if (quiet) return
    if (peerId === node.peerId) {
      // nothing to dial
    } else if (after === 'alive' || after === 'suspect') {
      // learnAddrs: the peer store now knows it, and the dial loops will connect
      if (j >= 0 && node.up && !this.connected(node.idx, j)) {
        node.unlinked.add(j)
        if (after === 'alive') node.dialable.add(j)
        else node.dialable.delete(j)
      }
    } else {
      node.dialable.delete(j)
    }
    for (const x of this.extensions) x.onChange?.(node, change)
  }

  /** What the agent does when its addresses change: a new incarnation, spread. */
  announce(node: SimNode): void {
    node.core.refresh(this.now)
    this.arm(node)
  }

  /** What the agent does on start: its first record (the wall clock's incarnation) spread as it is. */
  private announceStart(node: SimNode): void {
    node.core.announce()
    this.arm(node)
  }

  /** service.ts ingest(): records, then claims (a claim counts only from a known member). */
  private ingest(
    node: SimNode,
    records: readonly SignedInfo[],
    claims: readonly Claim[],
    from?: number,
  ): void {
    node.core.ingest(
      records,
      claims,
      this.now,
      true,
      from === undefined ? undefined : this.nodes[from].peerId,
    )
    this.arm(node)
  }

  /** Records and claims that arrived mixed (piggybacked): records first, as ingest() wants. */
  private ingestMixed(
    node: SimNode,
    items: ReadonlyArray<SignedInfo | Claim> | undefined,
    from: number,
  ): void {
    if (items === undefined || items.length === 0 || !node.up) return
    // most messages bring only news already held: no arrays for them
    let records: SignedInfo[] | undefined
    let claims: Claim[] | undefined
    let relayed = false
    const rowAt = node.rowAt
    const light = node.interest !== undefined
    for (const x of items) {
      const isRecord = 'info' in x
      const peerId = isRecord ? x.info.peerId : x.peerId
      const j = this.idxOf(peerId)
      // news about a member a light node does not follow: no row to ask (most of what a light
      // node hears at 10,000), so it is passed on the first time this node hears it
      if (light && !node.follows(j)) {
        if (this.opts.lightRelay && this.relayFilter.first(x, j, node.idx)) {
          node.core.relay(x, this.nodes[from].peerId)
          relayed = true
        }
        continue
      }
      const held = rowAt !== undefined && j >= 0 ? rowAt[j]?.entry : node.table.get(peerId)
      // already held as is (all copies share objects): nothing to check or change
      if (isRecord) {
        if (held?.signed !== x) {
          records ??= []
          records.push(x)
        }
      } else if (held?.claim !== x) {
        claims ??= []
        claims.push(x as Claim)
      }
    }
    if (records === undefined && claims === undefined) {
      if (relayed) this.arm(node)
      return
    }
    this.ingest(node, records ?? NO_RECORDS, claims ?? NO_CLAIMS, from)
  }

  /** What the node piggybacks on its next message, and its size as a MemberSet field. */
  private takeGossip(node: SimNode, m: Msg, to: number): number {
    if (node.core.queued === 0 || node.left) return 0
    const items = node.core.take(this.opts.piggybackBudget, this.nodes[to].peerId)
    if (items.length === 0) return 0
    m.gossip = items
    // the queue sums the sizes it was given (newsBytes) as it takes
    return field(node.core.takenBytes)
  }

  private clusterSize(node: SimNode): number {
    // a light member sizes its limits for the whole cluster, as its suspicion timeouts are
    return node.full ? node.table.size : Math.max(node.table.size, this.opts.expectedNodes)
  }

  private armFanout(node: SimNode): void {
    if (node.fanoutArmed || !node.up || node.left) return
    node.fanoutArmed = true
    // an event kind, not a closure: every member with news queued arms this every 200 ms
    this.push(this.now + PIGGYBACK.intervalMs, K_FANOUT, node.idx, node.epoch)
  }

  private onFanout(ev: Ev): void {
    const node = this.nodes[ev.n]
    if (node.epoch !== ev.e || !node.up) return
    node.fanoutArmed = false
    // again only while news was due to someone (service.ts: a pair's news from the other member
    // is due to nobody; the agent checks every member, this the members it tried)
    if (this.fanout(node) > 0 && node.core.queued > 0) this.armFanout(node)
  }

  /** Send what is queued to a few random members, on their probe links (dialling if needed). */
  private fanout(node: SimNode): number {
    const pool = node.interest
    const n = pool === undefined ? this.nodes.length : pool.length
    let sent = 0
    // distinct members, as the agent picks them (a second send to one member tells it nothing)
    const picked: number[] = []
    // as many as the agent picks for what is queued (fanoutWidth), tries bounded as before
    const width = fanoutWidth(node.core.queuedBytes)
    for (let tries = 0; sent < width && tries < 4 * width + 4; tries++) {
      if (node.core.queued === 0) return sent
      const j = pool === undefined ? randInt(this.rng, n) : pool[randInt(this.rng, n)]
      if (j === node.idx || picked.includes(j) || !this.isMember(node, j)) continue
      picked.push(j)
      if (!node.core.hasNewsFor(this.nodes[j].peerId)) continue
      sent++
      const m = this.newMsg(MSG.gossip, node)
      const g = this.takeGossip(node, m, j)
      // Probe{seq, gossip} with a seq from 2^31 up (service.ts FANOUT_SEQ_BASE), answered by
      // ProbeReply{seq, ack, now_ms, gossip} on the same long-lived link; the agent counts both
      // on its probe channel, gossip included
      this.send(node, j, m, COST.probe + g + COST.frame, 'gossip', 1 + FANOUT_SEQ_FIELD + g, 0, 'probe')
    }
    return sent
  }

  // ---- the failure detector -------------------------------------------------------------------

  /** Re-arm the node's wake-up: nextWakeup() rounded up to the agent's 100 ms tick grid. */
  private arm(node: SimNode): void {
    // a member that left no longer ticks its detector
    if (!node.up || node.left) return
    const w = Math.max(node.swim.nextWakeup(), this.now)
    const tick = AGENT.tickMs
    const t = node.tickPhase + Math.ceil((w - node.tickPhase) / tick) * tick
    if (t >= node.wakeAt) return
    node.wakeAt = t
    const ev = this.push(t + this.procDelay(node), K_WAKE, node.idx, node.epoch)
    ev.x = t
  }

  private onWake(ev: Ev): void {
    const node = this.nodes[ev.n]
    if (!node.up || node.epoch !== ev.e || ev.x !== node.wakeAt) return
    node.wakeAt = Number.POSITIVE_INFINITY
    if (!node.left) node.core.tick(this.now)
    this.arm(node)
  }

  private newMsg(t: number, from: SimNode): Msg {
    return {
      t,
      from: from.idx,
      fe: from.epoch,
      tx: 0,
      seq: 0,
      target: -1,
      ack: false,
      sentAt: this.now,
      why: 'periodic',
      body: undefined,
      gossip: undefined,
    }
  }

  /** A probe or probe request on a new stream (dialling first when not connected). */
  private ask(node: SimNode, to: number, t: number, seq: number, target: number): void {
    if (to < 0) return
    const m = this.newMsg(t, node)
    m.seq = seq
    m.target = target
    // Probe{seq, target}: proto3 leaves out a zero seq and an empty target
    const body = uintField(seq) + (t === MSG.probe ? 0 : field(this.nodes[target].peerId.length))
    const g = this.takeGossip(node, m, to)
    this.send(
      node,
      to,
      m,
      (t === MSG.probe ? COST.probe : COST.probeReq) + COST.frame + COST.stream / 2 + g,
      'probe',
      1 + body + g,
      g,
    )
  }

  private reply(node: SimNode, req: Msg, t: number, ack: boolean): void {
    const m = this.newMsg(t, node)
    m.seq = req.seq
    m.ack = ack
    m.sentAt = req.sentAt
    // ProbeReply{seq, ack, now_ms}: ack = false is left out, now_ms (a double) never
    const body = uintField(req.seq) + (ack ? 2 : 0) + NOW_MS_FIELD
    const g = this.takeGossip(node, m, req.from)
    this.send(node, req.from, m, COST.reply + COST.frame + COST.stream / 2 + g, 'probe', 1 + body + g, g)
  }

  private onProbe(node: SimNode, m: Msg): void {
    const from = this.nodes[m.from]
    this.ingestMixed(node, m.gossip, m.from)
    // their probe proves them alive: our own probe of them may wait (Swim.heard), as service.ts
    node.core.heard(from.peerId, this.now)
    if (m.t === MSG.probe || m.target === node.idx) {
      this.reply(node, m, m.t === MSG.probe ? MSG.reply : MSG.replyIndirect, true)
      return
    }
    // an indirect probe: ask the target ourselves, answer when the detector decides
    node.waiters.set(`${from.peerId}/${m.seq}`, m)
    node.core.onProbeReq(from.peerId, this.nodes[m.target].peerId, m.seq, this.now)
    this.arm(node)
  }

  private onReply(node: SimNode, m: Msg): void {
    const from = this.nodes[m.from]
    this.ingestMixed(node, m.gossip, m.from)
    const m2 = this.opts.membership
    if (m.t === MSG.reply) {
      // the agent's ask() gives a direct probe twice the probe timeout
      if (this.now - m.sentAt > 2 * m2.probeTimeoutMs || !m.ack) return
      node.core.onAck(from.peerId, m.seq, this.now)
    } else {
      if (this.now - m.sentAt > 2 * m2.probeIntervalMs) return
      if (m.ack) node.core.onAck(from.peerId, m.seq, this.now)
      else node.core.onNack(from.peerId, m.seq)
    }
    this.arm(node)
  }

  // ---- messages -------------------------------------------------------------------------------

  private count(node: SimNode, channel: Channel, bytes: number): void {
    this.bytes[channel] += bytes
    node.sent += bytes
  }

  /**
   * Send one message on a stream to `to`, opening a connection first when there is none (as
   * dialProtocol does). False when it cannot arrive.
   */
  private send(
    from: SimNode,
    to: number,
    m: Msg,
    bytes: number,
    channel: Channel,
    payload = 0,
    gossipBytes = 0,
    /** where the agent's counter puts the payload, when not on `channel` */
    payloadChannel: Channel = channel,
  ): boolean {
    if (!from.up) return false
    let extra = 0
    if (!this.connected(from.idx, to)) {
      extra = this.dial(from, to)
      if (extra < 0) return false
    }
    const at = this.net.send(from.idx, to, bytes, this.now)
    m.tx = this.net.lastTxStart
    if (m.tx > from.stopAt) {
      this.syncs.unsent += m.t === MSG.syncReq ? 1 : 0
      return false
    }
    this.count(from, channel, bytes - gossipBytes)
    if (gossipBytes > 0) this.count(from, 'gossip', gossipBytes)
    this.payload[payloadChannel] += payload
    if (at < 0) return false
    const dest = this.nodes[to]
    const ev = this.push(at + extra + this.procDelay(dest), K_MSG, to, dest.epoch)
    ev.m = m
    return true
  }

  private onMsg(ev: Ev): void {
    const node = this.nodes[ev.n]
    if (!node.up || node.epoch !== ev.e) return
    const m = ev.m!
    const src = this.nodes[m.from]
    // a crash stops what had not left the sender yet
    if (src.epoch !== m.fe || !src.up) {
      if (m.tx > src.downAtOf(m.fe)) return
    }
    switch (m.t) {
      case MSG.probe:
      case MSG.probeReq:
        this.onProbe(node, m)
        break
      case MSG.reply:
      case MSG.replyIndirect:
        if (src.epoch === m.fe) this.onReply(node, m)
        break
      case MSG.syncReq:
      case MSG.syncResp:
      case MSG.syncFin:
        this.onSync(node, src, m)
        break
      case MSG.dial:
        this.onDial(node, src, m)
        break
      case MSG.gossip: {
        this.ingestMixed(node, m.gossip, src.idx)
        const r = this.newMsg(MSG.gossipReply, node)
        const g = this.takeGossip(node, r, src.idx)
        this.send(
          node,
          src.idx,
          r,
          COST.reply + g + COST.frame,
          'gossip',
          1 + FANOUT_SEQ_FIELD + 2 + NOW_MS_FIELD + g,
          0,
          'probe',
        )
        break
      }
      case MSG.gossipReply:
        this.ingestMixed(node, m.gossip, src.idx)
        break
      case MSG.ext:
        for (const x of this.extensions)
          if (x.name === (m.body as { ext: string }).ext)
            x.onMessage?.(node, src, (m.body as { body: unknown }).body)
        break
    }
  }

  /** Send an extension's message directly to one node. */
  sendExt(from: SimNode, to: number, ext: string, body: unknown, bytes: number): boolean {
    const m = this.newMsg(MSG.ext, from)
    m.body = { ext, body }
    return this.send(from, to, m, bytes + COST.frame + COST.stream / 2, 'ext')
  }

  // ---- connections ----------------------------------------------------------------------------

  connected(i: number, j: number): boolean {
    const a = this.nodes[i]
    if (a.conn.has(j)) return true
    return a.baseLinked && this.nodes[j].baseLinked && !a.cut.has(j)
  }

  private link(i: number, j: number): void {
    if (this.connected(i, j)) return
    const a = this.nodes[i]
    const b = this.nodes[j]
    a.conn.add(j)
    b.conn.add(i)
    a.unlinked.delete(j)
    b.unlinked.delete(i)
    a.dialable.delete(j)
    b.dialable.delete(i)
    a.connCount++
    b.connCount++
    if (a.mesh.length < GOSSIP_MESH.Dlo) a.meshDirty = true
    if (b.mesh.length < GOSSIP_MESH.Dlo) b.meshDirty = true
  }

  private unlink(i: number, j: number): void {
    if (!this.connected(i, j)) return
    const a = this.nodes[i]
    const b = this.nodes[j]
    a.conn.delete(j)
    b.conn.delete(i)
    if (a.baseLinked && b.baseLinked) {
      a.cut.add(j)
      b.cut.add(i)
    }
    a.connCount--
    b.connCount--
    if (a.up && this.knows(a, j)) this.markUnlinked(a, j)
    if (b.up && this.knows(b, i)) this.markUnlinked(b, i)
    a.mesh = a.mesh.filter((x) => x !== j)
    b.mesh = b.mesh.filter((x) => x !== i)
    a.meshDirty = true
    b.meshDirty = true
  }

  /**
   * Open a connection from `from` to `to` (TCP + Noise + admission: about three one-way trips).
   * Returns that delay, or -1 when `to` cannot be reached. The connection fires the adapter's
   * connection:open handler on both ends (sync by the dialer; by the other end if it does not
   * know the dialer yet).
   */
  private dial(from: SimNode, to: number): number {
    if (!this.net.reachable(from.idx, to)) return -1
    const d = 3 * this.net.oneWay(from.idx, to)
    this.counters.dials++
    this.count(from, 'dial', COST.dial / 2)
    this.count(this.nodes[to], 'dial', COST.dial / 2)
    this.link(from.idx, to)
    const m = this.newMsg(MSG.dial, from)
    const dest = this.nodes[to]
    const ev = this.push(this.now + d, K_MSG, to, dest.epoch)
    m.tx = this.now
    ev.m = m
    return d
  }

  private onDial(node: SimNode, src: SimNode, m: Msg): void {
    if (src.epoch !== m.fe || !src.up) return
    // each end by service.ts's rule (sync-on-connect.ts)
    this.syncOnConnect(src, node.idx, true)
    this.syncOnConnect(node, src.idx, false)
  }

  private syncOnConnect(node: SimNode, peer: number, outbound: boolean): void {
    if (!node.up) return
    const last = node.lastSync.get(peer)
    if (last !== undefined && this.now - last < AGENT.syncOnConnectGapMs) return
    const due = syncOnConnect({
      outbound,
      peerStatus: this.rowOf(node, peer)?.status,
      lastSyncOkAt: node.lastSyncOk,
      now: this.now,
      gapMs: AGENT.syncOnConnectGapMs,
    })
    if (due) this.sync(node, peer, 'connect')
  }

  private onPeriodic(ev: Ev): void {
    const node = this.nodes[ev.n]
    if (!node.up || node.epoch !== ev.e) return
    switch (ev.k) {
      case K_SYNC:
        this.push(this.now + this.opts.membership.syncIntervalMs, K_SYNC, node.idx, node.epoch)
        // the core says which rounds run a sync (every syncScale(N) intervals, sync-scale.ts)
        if (!node.left && node.core.syncRound()) this.syncRandom(node)
        break
      case K_CONNECT:
        this.push(this.now + AGENT.connectEveryMs, K_CONNECT, node.idx, node.epoch)
        this.connectMembers(node)
        break
      case K_RECONNECT:
        this.push(this.now + AGENT.reconnectEveryMs, K_RECONNECT, node.idx, node.epoch)
        this.reconnect(node)
        break
    }
  }

  /** service.ts connectMembers(): the first 8 alive members it holds no connection to. */
  private connectMembers(node: SimNode): void {
    if (node.dialable.size === 0) return
    const todo: number[] = []
    for (const j of node.dialable) {
      if (todo.length >= AGENT.connectBatch) break
      todo.push(j)
    }
    for (const j of todo) if (!this.connected(node.idx, j)) this.dial(node, j)
  }

  /** node-component reconnect(): 8 known members it is not connected to, in peer-store order. */
  private reconnect(node: SimNode): void {
    if (node.unlinked.size === 0) return
    // peer-store order is by peer ID: the 8 lowest, here by index (as random)
    const todo: number[] = []
    for (const j of node.unlinked) {
      if (todo.length < AGENT.reconnectBatch) {
        todo.push(j)
        if (todo.length === AGENT.reconnectBatch) todo.sort((a, b) => a - b)
      } else if (j < todo[todo.length - 1]) {
        todo[todo.length - 1] = j
        todo.sort((a, b) => a - b)
      }
    }
    for (const j of todo) if (!this.connected(node.idx, j)) this.dial(node, j)
  }

  // ---- push-pull ------------------------------------------------------------------------------

  private onCatchUp(ev: Ev): void {
    const node = this.nodes[ev.n]
    if (!node.up || node.epoch !== ev.e) return
    node.catchUpArmed = false
    if (!node.left) this.syncRandom(node, 'catchup')
  }

  private syncRandom(node: SimNode, why: SyncWhy = 'periodic'): void {
    // uniform over the alive and suspect members it holds, itself excluded
    const pool = node.interest
    const n = pool === undefined ? this.nodes.length : pool.length
    for (let tries = 0; tries < 64; tries++) {
      const j = pool === undefined ? randInt(this.rng, n) : pool[randInt(this.rng, n)]
      if (j !== node.idx && this.isMember(node, j)) {
        this.sync(node, j, why)
        return
      }
    }
    const all: number[] = []
    for (const j of pool ?? this.nodes.map((x) => x.idx))
      if (j !== node.idx && this.isMember(node, j)) all.push(j)
    if (all.length > 0) this.sync(node, all[randInt(this.rng, all.length)], why)
  }

  /** Bytes of a node's whole table as a MemberSet (a light node stands in for a full one). */
  private fullSetBytes(node: SimNode): number {
    if (node.full) return node.tableBytes
    for (const o of this.nodes) if (o.full && o.up) return o.tableBytes
    return node.tableBytes
  }

  private tableRows(node: SimNode): number {
    if (node.full) return node.table.size
    for (const o of this.nodes) if (o.full && o.up) return o.table.size
    return node.table.size
  }

  /** service.ts sync(): push our table, pull theirs, merge. */
  sync(node: SimNode, peer: number, why: SyncWhy): void {
    node.lastSync.set(peer, this.now)
    this.syncs[why]++
    let bytes: number
    let payload: number
    if (this.opts.sync === 'full') {
      bytes = this.fullSetBytes(node)
      if (bytes > AGENT.maxSyncBytes) {
        // the other end's length-prefixed read refuses it
        this.syncs.tooLarge++
        return
      }
      payload = bytes
    } else {
      bytes = this.tableRows(node) * COST.digestItem
      // SyncDigest{fingerprints}
      payload = bytesField(bytes)
    }
    const m = this.newMsg(MSG.syncReq, node)
    m.why = why
    const before = this.syncs.unsent
    if (
      !this.send(node, peer, m, bytes + COST.frame + COST.stream / 2, 'sync', payload) &&
      this.syncs.unsent === before
    )
      this.syncs.failed++
  }

  private onSync(node: SimNode, src: SimNode, m: Msg): void {
    if (this.now - m.sentAt > AGENT.syncTimeoutMs) {
      this.syncs.failed++
      return
    }
    // a sync's request (responder) or answer (initiator) proves the other side alive, as service.ts
    if (m.t !== MSG.syncFin) node.core.heard(src.peerId, this.now)
    if (m.t === MSG.syncReq) {
      let bytes: number
      let payload: number
      if (this.opts.sync === 'full') {
        this.ingestFrom(node, src)
        bytes = this.fullSetBytes(node)
        if (bytes > AGENT.maxSyncBytes) {
          this.syncs.tooLarge++
          return
        }
        payload = bytes
      } else {
        // digest mode: answer diff(their digest) and our digest; they apply, then send diff(ours)
        const diff = this.diffBytes(node, src)
        const digest = this.tableRows(node) * COST.digestItem
        bytes = diff + digest
        // SyncReply{missing (always set, even empty), fingerprints}
        payload = field(diff) + bytesField(digest)
      }
      const r = this.newMsg(MSG.syncResp, node)
      r.why = m.why
      r.sentAt = m.sentAt
      this.send(node, src.idx, r, bytes + COST.frame, 'sync', payload)
    } else if (m.t === MSG.syncResp) {
      if (src.epoch !== m.fe) return
      node.lastSyncOk = this.now
      const learnt = this.ingestFrom(node, src)
      if (this.opts.sync === 'digest') {
        const f = this.newMsg(MSG.syncFin, node)
        f.why = m.why
        f.sentAt = m.sentAt
        const diff = this.diffBytes(node, src)
        this.send(node, src.idx, f, diff + COST.frame, 'sync', diff)
      }
      // service.ts sync(): a sync that taught us something dials the members we lack a
      // connection to now, not at the next 5 s round (a restarted agent syncs with all of them
      // within a second this way: 19 'connect' syncs at 20 agents)
      if (learnt > 0) this.connectMembers(node)
      // service.ts: a sync that taught us something is followed by another with a random member
      if (learnt > 0 && !node.catchUpArmed) {
        node.catchUpArmed = true
        this.push(this.now + AGENT.syncOnConnectGapMs, K_CATCHUP, node.idx, node.epoch)
      }
    } else this.ingestFrom(node, src)
  }

  /** Entries of `src` that differ from what `dst` holds (by object identity: all copies share objects). */
  private differing(dst: SimNode, src: SimNode): Entry[] {
    const out: Entry[] = []
    const consider = (j: number): void => {
      const e = this.rowOf(src, j)?.entry
      if (e === undefined || !dst.follows(j)) return
      const d = this.rowOf(dst, j)?.entry
      if (d !== undefined && d.signed === e.signed && d.claim === e.claim) return
      out.push(e)
    }
    if (dst.full && src.full) {
      const B = this.buckets
      const n = this.nodes.length
      for (let b = 0; b < B; b++) {
        if (dst.hash[2 * b] === src.hash[2 * b] && dst.hash[2 * b + 1] === src.hash[2 * b + 1]) continue
        for (let j = b; j < n; j += B) consider(j)
      }
    } else {
      for (const j of (dst.full ? src.interest : dst.interest)!) consider(j)
    }
    return out
  }

  private diffBytes(dst: SimNode, src: SimNode): number {
    let n = 0
    for (const e of this.differing(src, dst)) n += entryWire(e)
    return n
  }

  /** `dst` ingests `src`'s table: records first, then claims, as ingest() does with a MemberSet. */
  private ingestFrom(dst: SimNode, src: SimNode): number {
    const rows = this.differing(dst, src)
    if (rows.length === 0) return 0
    this.syncs.rowsMoved += rows.length
    const records: SignedInfo[] = []
    const claims: Claim[] = []
    for (const e of rows) {
      const d = this.entryOf(dst, e.signed.info.peerId)
      if (d === undefined || d.signed !== e.signed) records.push(e.signed)
      if (e.claim !== undefined) claims.push(e.claim)
    }
    const changed = dst.core.ingest(records, claims, this.now, false)
    this.arm(dst)
    return changed
  }

  // ---- gossip ---------------------------------------------------------------------------------

  /**
   * A node spreads a record or claim of its own (the core has queued it to piggyback already):
   * on gossipsub where members still use it. Its claims are scored against the truth here.
   */
  private publish(origin: SimNode, record: SignedInfo | undefined, claim: Claim | undefined): void {
    if (claim !== undefined) {
      const subject = this.idxOf(claim.peerId)
      // a claim across a cut that lasted into the suspicion window is the partition's doing
      const window = origin.swim.suspicionBounds().maxMs + 2 * this.opts.membership.probeIntervalMs
      const stale = claim.incarnation < this.nodes[subject].swim.incarnation
      this.tracker.claim(
        claim.status,
        subject,
        this.acrossPartition(origin.idx, subject, this.now, window),
        stale,
      )
    }
    const records = record === undefined ? [] : [record]
    const claims = claim === undefined ? [] : [claim]
    if (this.opts.dissemination === 'piggyback') {
      if (!origin.up || this.now > origin.stopAt) return
      this.counters.broadcasts++
      return
    }
    this.broadcast(origin, records, claims, undefined, undefined, memberSetBytes(records, claims))
  }

  /** Publish an extension's message on gossip. */
  publishExt(origin: SimNode, ext: string, body: unknown, bytes: number): void {
    this.broadcast(origin, [], [], ext, body, bytes)
  }

  /**
   * gossipsub, as configured in src/node/libp2p.ts: flood publish (the origin sends to every
   * connected subscriber), then each node forwards on first receipt to its mesh peers (D = 6);
   * a node that missed it (a lost or late path) fetches it after an IHAVE within a heartbeat.
   * Arrival times come from a shortest-path pass over those edges with sampled latencies.
   */
  private broadcast(
    origin: SimNode,
    records: SignedInfo[],
    claims: Claim[],
    ext: string | undefined,
    body: unknown,
    payload: number,
  ): void {
    if (!origin.up || this.now > origin.stopAt) return
    this.counters.broadcasts++
    const bytes = payload + COST.gossipEnvelope + COST.frame
    const channel: Channel = ext === undefined ? 'gossip' : 'ext'
    const N = this.nodes.length
    const o = origin.idx
    const stamp = ++this.curStamp
    const dist = this.dist
    const mark = this.stamp
    const pred = this.pred
    // a binary heap of (time, node) with lazy deletion
    const hk: number[] = []
    const hv: number[] = []
    const hpush = (t: number, v: number): void => {
      let i = hk.length
      hk.push(t)
      hv.push(v)
      while (i > 0) {
        const p = (i - 1) >> 1
        if (hk[p] <= t) break
        hk[i] = hk[p]
        hv[i] = hv[p]
        i = p
      }
      hk[i] = t
      hv[i] = v
    }
    const hpop = (): number => {
      const v = hv[0]
      const lk = hk.pop()!
      const lv = hv.pop()!
      const n = hk.length
      if (n > 0) {
        let i = 0
        for (;;) {
          let c = 2 * i + 1
          if (c >= n) break
          if (c + 1 < n && hk[c + 1] < hk[c]) c++
          if (hk[c] >= lk) break
          hk[i] = hk[c]
          hv[i] = hv[c]
          i = c
        }
        hk[i] = lk
        hv[i] = lv
      }
      return v
    }
    const jit = this.jit
    const relax = (from: number, j: number, at: number): void => {
      if (at < 0) return
      // one jitter and processing delay per receiver and message
      if (mark[j] !== stamp) jit[j] = this.net.jitter() + this.procDelay(this.nodes[j])
      const t = at + jit[j]
      if (mark[j] === stamp && dist[j] <= t) return
      mark[j] = stamp
      dist[j] = t
      pred[j] = from
      hpush(t, j)
    }
    mark[o] = stamp
    dist[o] = -1
    // flood publish over every connection
    let copies = 0
    const perCopy = bytes / this.net.bytesPerMs
    for (const j of this.floodTargets(origin)) {
      copies++
      relax(o, j, this.net.quickSend(o, j, bytes, this.now, copies * perCopy))
    }
    this.bytes[channel] += copies * bytes
    origin.sent += copies * bytes
    // the agent counts what it hands to publish(), once
    if (channel === 'gossip') this.payload.gossip += payload
    this.chargeIhave(origin)
    const order: number[] = []
    const times: number[] = []
    while (hk.length > 0) {
      const j = hpop()
      if (dist[j] < 0) continue
      const t = dist[j]
      if (mark[j] !== stamp) continue
      // settled: negative marks it so later pops skip it
      order.push(j)
      times.push(t)
      dist[j] = -1 - t
      const node = this.nodes[j]
      let fwd = 0
      for (const k of node.mesh) {
        if (k === o || k === pred[j] || !this.nodes[k].up || !this.connected(j, k)) continue
        fwd++
        if (mark[k] === stamp && dist[k] < 0) continue
        relax(j, k, this.net.quickSend(j, k, bytes, t, fwd * perCopy))
      }
      this.bytes[channel] += fwd * bytes
      node.sent += fwd * bytes
      this.chargeIhave(node)
    }
    // nodes no path reached: a later IHAVE brings it (same side), or a surviving TCP connection does after the cut
    let held: number[] | undefined
    for (let j = 0; j < N; j++) {
      const node = this.nodes[j]
      if (j === o || !node.up || (mark[j] === stamp && dist[j] < 0)) continue
      if (!this.net.canTalk(o, j)) {
        if (this.net.opts.lossMode === 'tcp' && node.connCount > 0) {
          held ??= []
          held.push(j)
        }
        continue
      }
      if (node.connCount === 0) continue
      order.push(j)
      times.push(this.now + GOSSIP_MESH.heartbeatMs * (1 + this.rng()) + 3 * this.net.oneWay(o, j))
    }
    const b: Broadcast = { from: o, records, claims, ext, body, order: [], times: [], epochs: [], i: 0 }
    if (held !== undefined) this.held.push({ b, nodes: held })
    this.schedule(b, order, times)
  }

  /** The running peers a flood publish goes to: every connection, at most maxConnections. */
  private floodTargets(origin: SimNode): number[] {
    const cap = this.opts.maxConnections
    const o = origin.idx
    const out: number[] = []
    const N = this.nodes.length
    if (!origin.baseLinked || origin.connCount <= cap || N <= 2 * cap) {
      if (origin.baseLinked) {
        for (let j = 0; j < N && out.length < cap; j++)
          if (j !== o && this.nodes[j].up && this.connected(o, j)) out.push(j)
      } else {
        for (const j of origin.conn) {
          if (out.length >= cap) break
          if (this.nodes[j].up) out.push(j)
        }
      }
      return out
    }
    // a large formed cluster: `cap` random connected peers
    const seen = this.seen
    const s = ++this.curStamp
    for (let tries = 0; out.length < cap && tries < 4 * cap; tries++) {
      const j = randInt(this.rng, N)
      if (j === o || seen[j] === s || !this.nodes[j].up || !this.connected(o, j)) continue
      seen[j] = s
      out.push(j)
    }
    return out
  }

  private chargeIhave(node: SimNode): void {
    const targets = ihaveTargets(Math.min(node.connCount, this.opts.maxConnections), node.mesh.length)
    if (targets === 0) return
    const n = targets * COST.ihaveRounds * COST.ihaveId
    this.bytes.ihave += n
    node.sent += n
  }

  private schedule(b: Broadcast, order: number[], times: number[]): void {
    // a light member ignores records and claims outside its sample: skip delivering those
    if (b.ext === undefined && this.lightFrac < 1) {
      const subjects = new Set<number>()
      for (const r of b.records) subjects.add(this.idxOf(r.info.peerId))
      for (const c of b.claims) subjects.add(this.idxOf(c.peerId))
      const keep = (j: number): boolean => {
        const n = this.nodes[j]
        if (n.full) return true
        for (const x of subjects) if (n.follows(x)) return true
        return false
      }
      const o2: number[] = []
      const t2: number[] = []
      for (let k = 0; k < order.length; k++) {
        if (keep(order[k])) {
          o2.push(order[k])
          t2.push(times[k])
        }
      }
      order = o2
      times = t2
    }
    if (order.length === 0) return
    const idx = order.map((_, i) => i)
    idx.sort((x, y) => times[x] - times[y] || order[x] - order[y])
    const nb: Broadcast = {
      ...b,
      order: idx.map((i) => order[i]),
      times: idx.map((i) => times[i]),
      epochs: [],
      i: 0,
    }
    nb.epochs = nb.order.map((j) => this.nodes[j].epoch)
    const ev = this.push(Math.max(this.now, nb.times[0]), K_CURSOR, -1, 0)
    ev.b = nb
  }

  private onCursor(ev: Ev): void {
    const b = ev.b!
    for (;;) {
      const j = b.order[b.i]
      const node = this.nodes[j]
      if (node.up && node.epoch === b.epochs[b.i]) {
        this.counters.deliveries++
        if (b.ext === undefined) this.ingest(node, b.records, b.claims)
        else
          for (const x of this.extensions)
            if (x.name === b.ext) x.onMessage?.(node, this.nodes[b.from], b.body)
      }
      b.i++
      if (b.i >= b.order.length) return
      // deliver straight on while nothing else is due first (the same order as via the queue)
      const t = Math.max(this.now, b.times[b.i])
      const top = this.q.peek()
      if (t > this.runUntil || (top !== undefined && top.at <= t)) {
        ev.at = t
        this.q.push(ev)
        return
      }
      this.now = t
    }
  }

  // ---- the gossipsub mesh ---------------------------------------------------------------------

  private buildMesh(nodes: SimNode[]): void {
    const n = nodes.length
    if (n < 2) return
    const D = Math.min(GOSSIP_MESH.D, n - 1)
    for (const a of nodes) {
      for (let tries = 0; a.mesh.length < D && tries < 20 * D; tries++) {
        const b = nodes[randInt(this.rng, n)]
        if (b === a || a.mesh.includes(b.idx) || b.mesh.length >= GOSSIP_MESH.Dhi) continue
        a.mesh.push(b.idx)
        b.mesh.push(a.idx)
      }
      a.meshDirty = false
    }
  }

  /** gossipsub heartbeat: drop mesh peers that are gone, graft up to D when below Dlo, prune above Dhi. */
  private meshHeartbeat(): void {
    for (const a of this.nodes) {
      if (!a.meshDirty) continue
      a.meshDirty = false
      if (!a.up) continue
      const before = a.mesh.length
      a.mesh = a.mesh.filter((k) => this.nodes[k].up && this.connected(a.idx, k))
      if (a.mesh.length !== before) this.counters.meshRepairs++
      if (a.mesh.length < GOSSIP_MESH.Dlo) this.graft(a)
      else if (a.mesh.length > GOSSIP_MESH.Dhi) {
        while (a.mesh.length > GOSSIP_MESH.D) {
          const k = a.mesh.splice(randInt(this.rng, a.mesh.length), 1)[0]
          const b = this.nodes[k]
          b.mesh = b.mesh.filter((x) => x !== a.idx)
          if (b.mesh.length < GOSSIP_MESH.Dlo) b.meshDirty = true
        }
      }
    }
  }

  private graft(a: SimNode): void {
    const want = GOSSIP_MESH.D
    // candidates: its explicit connections (all a joiner has), and any member when it is in the formed mesh
    const cands = [...a.conn]
    for (let tries = 0; a.mesh.length < want && tries < 8 * want; tries++) {
      const fromConn = cands.length > 0 && (!a.baseLinked || tries % 2 === 0)
      if (!fromConn && !a.baseLinked) break
      const k = fromConn ? cands[randInt(this.rng, cands.length)] : randInt(this.rng, this.nodes.length)
      if (k === a.idx || a.mesh.includes(k) || !this.nodes[k].up || !this.connected(a.idx, k)) continue
      const b = this.nodes[k]
      a.mesh.push(k)
      b.mesh.push(a.idx)
      if (b.mesh.length > GOSSIP_MESH.Dhi) b.meshDirty = true
    }
  }

  // ---- reporting helpers ----------------------------------------------------------------------

  /** Bytes each running-or-ran node sent per second of its own uptime. */
  perNodeRates(onlyFull = false): number[] {
    const out: number[] = []
    for (const n of this.nodes) {
      if (onlyFull && !n.full) continue
      const ms = n.aliveMs + (n.up ? this.now - n.upSince : 0)
      if (ms > 10_000) out.push((n.sent * 1000) / ms)
    }
    return out
  }

  statusOf(observer: number, member: number): Status | undefined {
    return this.rowOf(this.nodes[observer], member)?.status
  }

  /** Add an extension (call before the run starts). */
  use(x: Extension): void {
    this.extensions.push(x)
    x.attach?.(this)
  }
}
