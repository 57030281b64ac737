import type {
  Connection,
  ConnectionGater,
  Libp2pEvents,
  PeerId,
  Startable,
  Stream,
  TypedEventTarget,
} from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'
import { pbStream } from '@libp2p/utils'
import { AuthMessage } from '../../protocols/auth.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import { closeOrAbort } from '../kernel/streams.js'
import { dialerHandshake, type HandshakeContext, listenerHandshake, REFUSED } from './auth-handshake.js'
import { type Cluster, deriveKey, protocolPrefix } from './cluster.js'
import { INBOUND_LIMITS, JoinRate } from './inbound-limits.js'
import { AdmissionRefusedError, guard, openAuthStream } from './stream-guard.js'
import type { Standing } from './trust.js'

export { AdmissionRefusedError }

const MAX_MESSAGE = 1024

export interface AdmissionInit {
  cluster: Cluster
  timeoutMs: number
  /** the deadline as a starved event loop stretches it (local-lag.ts); as is without */
  stretch?: (ms: number) => number
  reporter: ComponentReporter
  /** certificates: ours to show, and the verdict on a peer's (see trust.ts) */
  trust: {
    ours(): Uint8Array<ArrayBuffer>
    standing(peerId: string, certificate: Uint8Array): Standing
    /** a statement a peer showed with its refusal (our own revocation): verified before use */
    learn?(statement: Uint8Array): void
  }
}

export interface AdmissionComponents {
  registrar: Registrar
  events: TypedEventTarget<Libp2pEvents>
  peerId: PeerId
}

/**
 * Per-connection member admission, on every transport (see protocols/auth.md). Each new
 * connection gets a stream guard (stream-guard.ts): until the auth handshake has admitted the
 * peer, nothing but the auth protocol is negotiated on it in either direction, and libp2p never
 * sees (nor records in its peer store) a stream of an unadmitted peer. A connection's state is
 * a promise of its verdict; the guard waits on it.
 */
export class Admission implements Startable {
  readonly protocol: string
  private readonly key: Uint8Array
  private readonly state = new WeakMap<Connection, PromiseWithResolvers<Standing>>()
  private readonly verdict = new WeakMap<Connection, Standing>()
  private readonly admittedPeers = new Map<string, number>() // peer -> open admitted connections
  /** protocols a joiner (key, no certificate yet) may use: redeeming its invite */
  readonly joinProtocols = new Set<string>()
  private readonly metrics
  private started = false
  private readonly joinRate = new JoinRate()
  private guardBroken = false

  constructor(
    private readonly components: AdmissionComponents,
    private readonly init: AdmissionInit,
  ) {
    this.protocol = `${protocolPrefix(init.cluster)}/auth/2.0.0`
    this.key = deriveKey(init.cluster, 'auth')
    this.metrics = {
      result: init.reporter.counter('auth_total', 'member authentications by result', ['result']),
      refusedStreams: init.reporter.counter('refused_streams_total', 'streams refused to unadmitted peers', [
        'protocol',
      ]),
      joinDeadline: init.reporter.counter(
        'join_deadline_closed_total',
        'joiner connections closed because they did not redeem in time',
      ),
    }
    this.onOpen = this.onOpen.bind(this)
    this.onClose = this.onClose.bind(this)
    // Listen from construction, not start: services built after this one (identify) open
    // streams from their own connection:open listeners, and the guard must be on first.
    this.components.events.addEventListener('connection:open', this.onOpen)
    this.components.events.addEventListener('connection:close', this.onClose)
  }

  readonly [Symbol.toStringTag] = 'mesh/admission'

  start(): void {
    this.started = true
  }

  stop(): void {
    this.started = false
  }

  /** Is there an open, admitted connection to this peer? */
  isAdmitted(peer: PeerId): boolean {
    return (this.admittedPeers.get(peer.toString()) ?? 0) > 0
  }

  /** Resolves with whether the connection is to an admitted member (waits for the handshake). */
  async admitted(connection: Connection): Promise<boolean> {
    return (await this.stateOf(connection).promise).kind === 'member'
  }

  /** member, joiner (proved the key, has no certificate yet: may only redeem its invite), or refused. */
  standing(connection: Connection): Promise<Standing> {
    return this.stateOf(connection).promise
  }

  /** Close every connection to a peer (revoked, say) at once. */
  async cutOff(peer: string, connections: Connection[]): Promise<void> {
    await Promise.allSettled(
      connections
        .filter((c) => c.remotePeer.toString() === peer)
        .map((c) => c.abort(new AdmissionRefusedError('revoked'))),
    )
  }

  /** A connection gater that refuses relay service to peers that are not admitted members. */
  gater(): Partial<ConnectionGater> {
    return {
      denyInboundRelayReservation: (source) => !this.isAdmitted(source),
      denyOutboundRelayedConnection: (source, destination) =>
        !this.isAdmitted(source) || !this.isAdmitted(destination),
      denyInboundRelayedConnection: (relay) => !this.isAdmitted(relay),
    }
  }

  private stateOf(connection: Connection): PromiseWithResolvers<Standing> {
    let s = this.state.get(connection)
    if (s === undefined) {
      s = Promise.withResolvers<Standing>()
      this.state.set(connection, s)
    }
    return s
  }

  /** a deadline now (the auth handshake's by default), stretched while we run late */
  private deadlineMs(ms = this.init.timeoutMs): number {
    return this.init.stretch?.(ms) ?? ms
  }

  private onOpen(evt: CustomEvent<Connection>): void {
    const connection = evt.detail
    const state = this.stateOf(connection)
    const installed = guard(connection, {
      authProtocol: this.protocol,
      joinProtocols: this.joinProtocols,
      settled: (c) => this.verdict.get(c),
      standing: (c) => this.standing(c),
      onAuthStream: (s, c) => void this.respond(s, c),
      refused: (_c, protocol) => this.metrics.refusedStreams.inc({ protocol }),
      registrar: this.components.registrar,
      negotiationTimeoutMs: this.deadlineMs(),
    })
    if (!installed) {
      // fail closed: without the guard an unadmitted peer could negotiate every protocol
      if (!this.guardBroken) {
        this.guardBroken = true
        this.init.reporter.log.error(
          'cannot guard connections before admission (libp2p internals changed?): refusing every connection',
        )
      }
      this.settle(connection, REFUSED('cannot guard this connection'), 'error')
      connection.abort(new AdmissionRefusedError('cannot guard this connection before admission'))
      return
    }
    if (!this.started) {
      this.settle(connection, REFUSED('node stopped'), 'error')
      return
    }
    const timer = setTimeout(() => this.settle(connection, REFUSED('timeout'), 'timeout'), this.deadlineMs())
    timer.unref()
    void state.promise.then(() => clearTimeout(timer))
    if (connection.direction === 'outbound') {
      void this.initiate(connection).catch(() => this.settle(connection, REFUSED('error'), 'error'))
    }
  }

  private onClose(evt: CustomEvent<Connection>): void {
    const connection = evt.detail
    const s = this.state.get(connection)
    if (s === undefined) return
    // an admitted connection going away lowers the peer's count; an unsettled one fails
    void s.promise.then((st) => {
      if (st.kind !== 'member') return
      const key = connection.remotePeer.toString()
      const n = (this.admittedPeers.get(key) ?? 1) - 1
      if (n <= 0) this.admittedPeers.delete(key)
      else this.admittedPeers.set(key, n)
    })
    this.settle(connection, REFUSED('closed'), 'closed')
  }

  private settle(connection: Connection, standing: Standing, result: string): void {
    // only the first outcome counts: a late handshake cannot undo a timeout
    if (this.verdict.has(connection)) return
    this.verdict.set(connection, standing)
    this.stateOf(connection).resolve(standing)
    this.metrics.result.inc({ result })
    if (result === 'refused_by_peer' && standing.kind === 'refused') {
      this.init.reporter.log.warn(
        { peer: connection.remotePeer.toString(), why: standing.why },
        'a member refused us',
      )
    }
    if (standing.kind === 'member') {
      const key = connection.remotePeer.toString()
      this.admittedPeers.set(key, (this.admittedPeers.get(key) ?? 0) + 1)
    } else if (standing.kind === 'joiner') {
      // a joiner connection exists to redeem one invite: it does not get to stay
      const timer = setTimeout(() => {
        if (connection.status !== 'open') return
        this.metrics.joinDeadline.inc()
        connection.abort(new AdmissionRefusedError('the join was not completed in time'))
      }, this.deadlineMs(INBOUND_LIMITS.joinDeadlineMs))
      timer.unref()
    } else if (standing.kind === 'refused' && connection.status === 'open') {
      // a refused connection may be one that never carried a byte (a WebRTC connection whose
      // ICE did not complete): a graceful close would wait on it, so abort after a moment
      const done = connection.close().catch(() => connection.abort(new AdmissionRefusedError(result)))
      const timer = setTimeout(() => connection.abort(new AdmissionRefusedError(result)), 2_000)
      void done.finally(() => clearTimeout(timer))
    }
  }

  /** Whether this very connection completed admission (not just some connection to its peer). */
  connectionAdmitted(connection: Connection): boolean {
    return this.verdict.get(connection)?.kind === 'member'
  }

  private context(connection: Connection, signal: AbortSignal): HandshakeContext {
    return {
      key: this.key,
      me: this.components.peerId,
      them: connection.remotePeer,
      ours: () => this.init.trust.ours(),
      standing: (peer, cert) => {
        const st = this.init.trust.standing(peer, cert)
        // anyone who ever saw a token holds the key: joiner connections are rate-limited per address
        if (st.kind === 'joiner' && !this.joinRate.take(connection.remoteAddr)) {
          return REFUSED('too many joins from this address: wait a minute and try again')
        }
        return st
      },
      learn: this.init.trust.learn?.bind(this.init.trust),
      signal,
    }
  }

  /** Dialer side. */
  private async initiate(connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.deadlineMs())
    const stream = await openAuthStream(connection, this.protocol, signal)
    try {
      const pb = pbStream(stream, { maxDataLength: MAX_MESSAGE }).pb(AuthMessage)
      const { standing, result } = await dialerHandshake(pb, this.context(connection, signal))
      await closeOrAbort(stream, signal)
      this.settle(connection, standing, result)
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  /** Listener side. */
  private async respond(stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.deadlineMs())
    try {
      const pb = pbStream(stream, { maxDataLength: MAX_MESSAGE }).pb(AuthMessage)
      const { standing, result } = await listenerHandshake(pb, this.context(connection, signal))
      await closeOrAbort(stream, signal)
      this.settle(connection, standing, result)
    } catch (err) {
      stream.abort(err as Error)
      this.settle(connection, REFUSED('error'), 'error')
    }
  }
}

export function admission(init: AdmissionInit): (components: AdmissionComponents) => Admission {
  return (components) => new Admission(components, init)
}
