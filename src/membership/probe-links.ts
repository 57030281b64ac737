import type { Stream } from '@libp2p/interface'
import { pbStream } from '@libp2p/utils'
import { type MemberSet, Probe, ProbeReply } from '../../protocols/membership.js'
import { closeOrAbort } from '../kernel/streams.js'

/**
 * One long-lived probe stream per member instead of a new stream per probe. A new stream costs
 * both sides a multistream-select round, yamux frames and a logger each time: in an idle pair of
 * agents that was most of the CPU (issue 20). Probes on a link are matched to replies by seq, so
 * an indirect probe that waits for its verdict does not hold up the direct ones behind it.
 */

export const MAX_PROBE = 512
/** on probe/3.0.0 links a probe or reply also carries gossip (PIGGYBACK_BUDGET plus framing) */
export const MAX_PROBE_GOSSIP = 8192
/** an outbound link unused this long is closed (a large cluster probes each member rarely) */
export const LINK_IDLE_MS = 60_000
/** an inbound link that carries nothing this long is closed: every read has a deadline */
export const INBOUND_IDLE_MS = 2 * LINK_IDLE_MS
/**
 * Unanswered probes in a row before a link is started afresh. A probe that times out is mostly a
 * member slow to answer (a loaded machine), not a broken stream; reopening at the first cost both
 * sides a stream negotiation each time: in a 20-agent join storm, 30-70 reopened links per agent.
 * A stream that really broke is seen closed and replaced at the next probe anyway.
 */
export const SILENT_PROBES_BEFORE_REOPEN = 3
/** replies queued on an inbound link before the prober is deemed not to read them */
const MAX_UNSENT_REPLIES = 64

interface Link {
  stream: Stream
  pb: ReturnType<typeof pbStream>
  waiting: Map<number, (reply: ProbeReply | undefined) => void>
  lastUsed: number
  /** false for a peer that only speaks the one-probe-per-stream protocol */
  persistent: boolean
  /** the peer speaks probe/3.0.0: probes and replies carry piggybacked gossip */
  gossip: boolean
  /** a one-probe link already handed to a probe */
  claimed?: boolean
  /** probes in a row that went unanswered */
  silent: number
}

/** What rides on probes (probe/3.0.0): the service's dissemination queue and its ingest. */
export interface Piggyback {
  /** records and claims to attach to a message for `peer` (undefined: nothing queued) */
  take(peer: string): MemberSet | undefined
  /** records and claims that came attached to a message from `peer` */
  receive(peer: string, set: MemberSet): void
}

export interface ProbeLinksDeps {
  /** open a probe stream to `peer`; its `protocol` says which version the peer took */
  open(peer: string, signal: AbortSignal): Promise<Stream>
  /**
   * how long opening a link may take (a dial and its handshakes when we hold no connection),
   * apart from the probe's own timeout: see link()
   */
  openTimeoutMs?: number
  /** the protocol id of the persistent version */
  persistentProtocol: string
  /** the protocol id of the persistent version with piggybacked gossip, and what rides on it */
  gossipProtocol?: string
  piggyback?: Piggyback
  /** a link to `peer` was opened on `protocol` (tells older agents apart) */
  opened?(peer: string, protocol: string): void
  count(direction: 'in' | 'out', bytes: number): void
  /** an answered probe: when we sent it, when the reply came, and the responder's clock */
  clock?(peer: string, sentAt: number, receivedAt: number, remoteNow: number): void
}

/** the default budget of opening a link (the agent passes its dial budget) */
const OPEN_TIMEOUT_MS = 5_000

export class ProbeLinks {
  private readonly links = new Map<string, Link>()
  /** links being opened: one open per peer at a time, whichever probes wait on it */
  private readonly opening = new Map<string, Promise<Link>>()
  private closed = false

  constructor(private readonly deps: ProbeLinksDeps) {}

  /** Send one probe and wait for its reply (undefined on timeout or a broken link). */
  async ask(peer: string, probe: Probe, timeoutMs: number): Promise<ProbeReply | undefined> {
    // a cleared timer, not AbortSignal.timeout: that one fires (and builds an exception) after
    // every probe, answered or not, and probes are the most frequent thing an idle agent does
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(), timeoutMs)
    const signal = ac.signal
    try {
      const link = await this.link(peer, signal)
      if (!link.persistent) return await this.askOnce(link, probe, signal)
      if (link.waiting.has(probe.seq)) return undefined // a duplicate seq in flight: let it time out
      link.lastUsed = Date.now()
      const reply = new Promise<ProbeReply | undefined>((resolve) => {
        link.waiting.set(probe.seq, resolve)
        signal.addEventListener('abort', () => resolve(undefined), { once: true })
      })
      const sentAt = Date.now()
      if (link.gossip) {
        const gossip = this.deps.piggyback?.take(peer)
        if (gossip !== undefined) probe = { ...probe, gossip }
      }
      await link.pb.write(probe, Probe, { signal })
      this.deps.count('out', Probe.encode(probe).length)
      const r = await reply
      link.waiting.delete(probe.seq)
      if (r !== undefined) this.deps.clock?.(peer, sentAt, Date.now(), r.nowMs)
      if (r !== undefined) link.silent = 0
      else if (++link.silent >= SILENT_PROBES_BEFORE_REOPEN && link.waiting.size === 0) this.drop(peer, link)
      return r
    } catch {
      const link = this.links.get(peer)
      if (link !== undefined) this.drop(peer, link)
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }

  /** Close links idle for longer than LINK_IDLE_MS (call it from a periodic tick). */
  sweep(now: number): void {
    for (const [peer, link] of this.links)
      if (link.waiting.size === 0 && now - link.lastUsed > LINK_IDLE_MS) this.drop(peer, link)
  }

  /**
   * Close the links that ride a worse connection than the peer now has (a relayed one, opened
   * before WebRTC or a direct path came up): a link lasts as long as it is used, so without this
   * every probe kept crossing the relay, costing the relay member and both ends twice. The next
   * probe opens a new link, on the connection libp2p prefers. Returns how many were closed.
   */
  rehome(worse: (peer: string, stream: Stream) => boolean): number {
    let n = 0
    for (const [peer, link] of this.links)
      if (link.waiting.size === 0 && worse(peer, link.stream)) {
        this.drop(peer, link)
        n++
      }
    return n
  }

  closeAll(): void {
    this.closed = true
    for (const [peer, link] of this.links) this.drop(peer, link)
  }

  get size(): number {
    return this.links.size
  }

  /**
   * The open link to `peer`, opened if need be. The open has its own budget, not the probe's:
   * a probe gives up after about a second, but a dial to a member we hold no connection to
   * takes TCP, Noise, yamux and admission, which on a busy machine (a join storm: 50 agents on
   * 2 cores) takes longer. Tied to the probe, every such dial was aborted half way and made
   * again by the next probe or gossip round, so the work was spent and nothing gained; now the
   * probe still times out as before (SWIM sees the same), but the dial goes on and the next
   * probe finds the link.
   */
  private async link(peer: string, signal: AbortSignal): Promise<Link> {
    const have = this.links.get(peer)
    if (have !== undefined && have.stream.status === 'open') return have
    if (have !== undefined) this.drop(peer, have)
    let opening = this.opening.get(peer)
    if (opening === undefined) {
      opening = this.open(peer).finally(() => this.opening.delete(peer))
      this.opening.set(peer, opening)
    }
    signal.throwIfAborted()
    let onAbort: (() => void) | undefined
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason)
      signal.addEventListener('abort', onAbort, { once: true })
    })
    try {
      const link = await Promise.race([opening, aborted])
      if (link.persistent) return link
      // a one-probe stream (probe/1.0.0, older agents) serves one probe: later waiters open their own
      if (!link.claimed) {
        link.claimed = true
        return link
      }
      return await this.open(peer, signal)
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
      aborted.catch(() => {})
    }
  }

  private async open(peer: string, signal?: AbortSignal): Promise<Link> {
    const stream = await this.deps.open(
      peer,
      signal ?? AbortSignal.timeout(this.deps.openTimeoutMs ?? OPEN_TIMEOUT_MS),
    )
    if (this.closed) {
      void stream.close().catch(() => stream.abort(new Error('probe links closed')))
      throw new Error('probe links closed')
    }
    const gossip = this.deps.gossipProtocol !== undefined && stream.protocol === this.deps.gossipProtocol
    if (stream.protocol !== undefined) this.deps.opened?.(peer, stream.protocol)
    const link: Link = {
      stream,
      pb: pbStream(stream, { maxDataLength: gossip ? MAX_PROBE_GOSSIP : MAX_PROBE }),
      waiting: new Map(),
      lastUsed: Date.now(),
      persistent: gossip || stream.protocol === this.deps.persistentProtocol,
      gossip,
      silent: 0,
    }
    if (!link.persistent) return link
    // a concurrent ask may have opened one meanwhile: keep the first, close ours
    const raced = this.links.get(peer)
    if (raced !== undefined && raced.stream.status === 'open') {
      void stream.close().catch(() => stream.abort(new Error('duplicate probe link')))
      return raced
    }
    this.links.set(peer, link)
    void this.readReplies(peer, link)
    return link
  }

  private async askOnce(link: Link, probe: Probe, signal: AbortSignal): Promise<ProbeReply> {
    await link.pb.write(probe, Probe, { signal })
    this.deps.count('out', Probe.encode(probe).length)
    const reply = await link.pb.read(ProbeReply, { signal })
    this.deps.count('in', ProbeReply.encode(reply).length)
    await closeOrAbort(link.stream, signal)
    return reply
  }

  private async readReplies(peer: string, link: Link): Promise<void> {
    try {
      for (;;) {
        const reply = await link.pb.read(ProbeReply)
        this.deps.count('in', ProbeReply.encode(reply).length)
        if (link.gossip && reply.gossip !== undefined) this.deps.piggyback?.receive(peer, reply.gossip)
        link.waiting.get(reply.seq)?.(reply)
      }
    } catch {
      // the stream ended or broke: the next probe opens a new one
    } finally {
      if (this.links.get(peer) === link) this.links.delete(peer)
      for (const resolve of link.waiting.values()) resolve(undefined)
    }
  }

  private drop(peer: string, link: Link): void {
    if (this.links.get(peer) === link) this.links.delete(peer)
    void link.stream.close().catch(() => link.stream.abort(new Error('probe link closed')))
  }
}

/**
 * Serve a persistent probe stream: answer each probe as soon as `answer` decides (replies may
 * go out of order), close the stream after INBOUND_IDLE_MS without a probe.
 */
export async function serveProbeLink(
  stream: Stream,
  answer: (req: Probe) => Promise<boolean>,
  count: (direction: 'in' | 'out', bytes: number) => void,
  idleMs = INBOUND_IDLE_MS,
  /** probe/3.0.0: the prober's peer ID and the queue whose gossip rides on our replies */
  gossip?: { peer: string; piggyback: Piggyback },
): Promise<void> {
  const pb = pbStream(stream, { maxDataLength: gossip !== undefined ? MAX_PROBE_GOSSIP : MAX_PROBE })
  // one idle timer, re-armed by every probe (a timeout signal per read left one live timer and
  // one exception per probe behind it); when it fires, closing the stream ends the pending read
  const idle = setTimeout(() => stream.abort(new Error('probe link idle')), idleMs)
  idle.unref()
  let writes = Promise.resolve()
  let unsent = 0
  try {
    for (;;) {
      let req: Probe
      try {
        req = await pb.read(Probe)
      } catch {
        // idle, ended or malformed: this link is done (the prober opens a new one when it needs it)
        await stream
          .close({ signal: AbortSignal.timeout(1_000) })
          .catch(() => stream.abort(new Error('probe link closed')))
        return
      }
      idle.refresh()
      count('in', Probe.encode(req).length)
      if (gossip !== undefined && req.gossip !== undefined) gossip.piggyback.receive(gossip.peer, req.gossip)
      void answer(req).then((ack) => {
        // a prober that sends but never reads its replies is cut off, not buffered for
        if (++unsent > MAX_UNSENT_REPLIES) return stream.abort(new Error('probe replies not read'))
        const reply: ProbeReply = { seq: req.seq, ack, nowMs: 0 }
        writes = writes
          .then(() => {
            reply.nowMs = Date.now() // stamped when it leaves, after any wait for its turn
            if (gossip !== undefined) reply.gossip = gossip.piggyback.take(gossip.peer)
            return pb.write(reply, ProbeReply)
          })
          .then(() => {
            unsent--
            count('out', ProbeReply.encode(reply).length)
          })
          .catch(() => stream.abort(new Error('probe reply failed')))
      })
    }
  } finally {
    clearTimeout(idle)
  }
}
