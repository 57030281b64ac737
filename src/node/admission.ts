import { randomBytes, timingSafeEqual } from 'node:crypto'
import type {
  Connection,
  ConnectionGater,
  Libp2pEvents,
  PeerId,
  Startable,
  Stream,
  StreamMiddleware,
  TypedEventTarget,
} from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'
import { pbStream } from '@libp2p/utils'
import { AuthMessage } from '../../protocols/auth.js'
import type { ComponentReporter } from '../reporter/reporter.js'
import { type Cluster, deriveKey, hmac, protocolPrefix } from './cluster.js'
import type { Standing } from './trust.js'

const MAX_MESSAGE = 1024
const enc = new TextEncoder()

export interface AdmissionInit {
  cluster: Cluster
  timeoutMs: number
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

export class AdmissionRefusedError extends Error {
  override name = 'AdmissionRefusedError'
}

/**
 * Per-connection member admission. See protocols/auth.md. A connection's state is a
 * promise of whether it was admitted; stream middleware waits on it for every protocol.
 */
export class Admission implements Startable {
  readonly protocol: string
  private readonly key: Uint8Array
  private readonly state = new WeakMap<Connection, PromiseWithResolvers<Standing>>()
  private readonly admittedPeers = new Map<string, number>() // peer -> open admitted connections
  /** protocols a joiner (key, no certificate yet) may use: redeeming its invite */
  readonly joinProtocols = new Set<string>()
  private readonly metrics
  private origGetMiddleware: Registrar['getMiddleware'] | undefined

  constructor(
    private readonly components: AdmissionComponents,
    private readonly init: AdmissionInit,
  ) {
    this.protocol = `${protocolPrefix(init.cluster)}/auth/1.0.0`
    this.key = deriveKey(init.cluster, 'auth')
    this.metrics = {
      result: init.reporter.counter('auth_total', 'member authentications by result', ['result']),
      refusedStreams: init.reporter.counter('refused_streams_total', 'streams refused to unadmitted peers', [
        'protocol',
      ]),
    }
    this.onOpen = this.onOpen.bind(this)
    this.onClose = this.onClose.bind(this)
  }

  readonly [Symbol.toStringTag] = 'mesh/admission'

  async start(): Promise<void> {
    await this.components.registrar.handle(this.protocol, (s: Stream, c: Connection) => this.respond(s, c), {
      runOnLimitedConnection: true,
      maxInboundStreams: 2,
    })
    // Hold every other protocol's streams until the connection is admitted. Patching
    // getMiddleware covers protocols registered later too, in both directions. It also
    // returns a fresh array: libp2p 3.3 pushes the handler onto the array it gets back,
    // which would grow a registered middleware list with every inbound stream.
    const registrar = this.components.registrar
    const orig = registrar.getMiddleware.bind(registrar)
    this.origGetMiddleware = registrar.getMiddleware
    const gate: StreamMiddleware = (stream, connection, next) => this.gateStream(stream, connection, next)
    registrar.getMiddleware = (protocol: string) =>
      protocol === this.protocol ? [...orig(protocol)] : [gate, ...orig(protocol)]
    this.components.events.addEventListener('connection:open', this.onOpen)
    this.components.events.addEventListener('connection:close', this.onClose)
  }

  async stop(): Promise<void> {
    this.components.events.removeEventListener('connection:open', this.onOpen)
    this.components.events.removeEventListener('connection:close', this.onClose)
    if (this.origGetMiddleware !== undefined) this.components.registrar.getMiddleware = this.origGetMiddleware
    await this.components.registrar.unhandle(this.protocol)
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

  private async gateStream(
    stream: Stream,
    connection: Connection,
    next: (s: Stream, c: Connection) => void,
  ): Promise<void> {
    const standing = await this.standing(connection)
    if (
      standing.kind === 'member' ||
      (standing.kind === 'joiner' && this.joinProtocols.has(stream.protocol ?? ''))
    ) {
      next(stream, connection)
      return
    }
    this.metrics.refusedStreams.inc({ protocol: stream.protocol ?? 'unknown' })
    throw new AdmissionRefusedError(`peer ${connection.remotePeer} is not an admitted cluster member`)
  }

  private onOpen(evt: CustomEvent<Connection>): void {
    const connection = evt.detail
    const state = this.stateOf(connection)
    const timer = setTimeout(
      () => this.settle(connection, REFUSED('timeout'), 'timeout'),
      this.init.timeoutMs,
    )
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
    if (this.settled.has(connection)) return
    this.settled.add(connection)
    this.stateOf(connection).resolve(standing)
    this.metrics.result.inc({ result })
    if (result === 'refused_by_peer' && standing.kind === 'refused') {
      this.init.reporter.log.warn(
        { peer: connection.remotePeer.toString(), why: standing.why },
        'a member refused us',
      )
    }
    if (standing.kind === 'member') {
      this.admittedConns.add(connection)
      const key = connection.remotePeer.toString()
      this.admittedPeers.set(key, (this.admittedPeers.get(key) ?? 0) + 1)
    } else if (standing.kind === 'refused' && connection.status === 'open') {
      // a refused connection may be one that never carried a byte (a WebRTC connection whose
      // ICE did not complete): a graceful close would wait on it, so abort after a moment
      const done = connection.close().catch(() => connection.abort(new AdmissionRefusedError(result)))
      const timer = setTimeout(() => connection.abort(new AdmissionRefusedError(result)), 2_000)
      void done.finally(() => clearTimeout(timer))
    }
  }

  private readonly settled = new WeakSet<Connection>()
  private readonly admittedConns = new WeakSet<Connection>()

  /** Whether this very connection completed admission (not just some connection to its peer). */
  connectionAdmitted(connection: Connection): boolean {
    return this.admittedConns.has(connection)
  }

  private proof(
    role: 'D' | 'L',
    dialer: PeerId,
    listener: PeerId,
    nD: Uint8Array,
    nL: Uint8Array,
  ): Uint8Array<ArrayBuffer> {
    return hmac(this.key, enc.encode(role), dialer.toMultihash().bytes, listener.toMultihash().bytes, nD, nL)
  }

  private check(expected: Uint8Array, got: Uint8Array): boolean {
    return got.length === expected.length && timingSafeEqual(expected, got)
  }

  /** A peer refused us: if it showed our revocation, the trust store checks and takes it. */
  private refusedBy(m: AuthMessage): void {
    if (m.revocation.length > 0) this.init.trust.learn?.(m.revocation)
  }

  /** Dialer side. */
  private async initiate(connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.init.timeoutMs)
    const stream = await connection.newStream(this.protocol, { signal, runOnLimitedConnection: true })
    const pb = pbStream(stream, { maxDataLength: MAX_MESSAGE }).pb(AuthMessage)
    const me = this.components.peerId
    const them = connection.remotePeer
    const nD = new Uint8Array(randomBytes(32))
    await pb.write(msg({ nonce: nD }), { signal })
    const reply = await pb.read({ signal })
    if (reply.error !== '') {
      this.refusedBy(reply)
      this.settle(connection, REFUSED(reply.error), 'refused_by_peer')
      return
    }
    if (reply.nonce.length !== 32 || !this.check(this.proof('L', me, them, nD, reply.nonce), reply.proof)) {
      await pb.write(msg({ error: 'wrong cluster key' }), { signal }).catch(() => {})
      this.settle(connection, REFUSED('wrong cluster key'), 'bad_proof')
      return
    }
    const theirs = this.init.trust.standing(them.toString(), reply.certificate)
    if (theirs.kind === 'refused') {
      await pb.write(msg({ error: theirs.why, revocation: theirs.revocation }), { signal }).catch(() => {})
      this.settle(connection, theirs, 'refused')
      return
    }
    await pb.write(
      msg({ proof: this.proof('D', me, them, nD, reply.nonce), certificate: this.init.trust.ours() }),
      { signal },
    )
    const done = await pb.read({ signal })
    await stream.close({ signal }).catch(() => {})
    if (done.error !== '') {
      this.refusedBy(done)
      this.settle(connection, REFUSED(done.error), 'refused_by_peer')
    } else this.settle(connection, theirs, theirs.kind === 'member' ? 'ok' : 'joiner')
  }

  /** Listener side. */
  private async respond(stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.init.timeoutMs)
    const pb = pbStream(stream, { maxDataLength: MAX_MESSAGE }).pb(AuthMessage)
    const me = this.components.peerId
    const them = connection.remotePeer
    try {
      const hello = await pb.read({ signal })
      if (hello.nonce.length !== 32) throw new AdmissionRefusedError('malformed hello')
      const nL = new Uint8Array(randomBytes(32))
      await pb.write(
        msg({
          nonce: nL,
          proof: this.proof('L', them, me, hello.nonce, nL),
          certificate: this.init.trust.ours(),
        }),
        { signal },
      )
      const final = await pb.read({ signal })
      if (final.error !== '') {
        this.refusedBy(final)
        this.settle(connection, REFUSED(final.error), 'refused_by_peer')
        return
      }
      if (!this.check(this.proof('D', them, me, hello.nonce, nL), final.proof)) {
        await pb.write(msg({ error: 'wrong cluster key' }), { signal })
        this.settle(connection, REFUSED('wrong cluster key'), 'bad_proof')
        return
      }
      const theirs = this.init.trust.standing(them.toString(), final.certificate)
      await pb.write(
        msg(theirs.kind === 'refused' ? { error: theirs.why, revocation: theirs.revocation } : {}),
        { signal },
      )
      await stream.close({ signal }).catch(() => {})
      this.settle(
        connection,
        theirs,
        theirs.kind === 'member' ? 'ok' : theirs.kind === 'joiner' ? 'joiner' : 'refused',
      )
    } catch (err) {
      stream.abort(err as Error)
      this.settle(connection, REFUSED('error'), 'error')
    }
  }
}

const REFUSED = (why: string): Standing => ({ kind: 'refused', why })

function msg(m: Partial<AuthMessage>): AuthMessage {
  return {
    nonce: new Uint8Array(),
    proof: new Uint8Array(),
    error: '',
    certificate: new Uint8Array(),
    revocation: new Uint8Array(),
    ...m,
    ...(m.revocation === undefined ? { revocation: new Uint8Array() } : {}),
  }
}

export function admission(init: AdmissionInit): (components: AdmissionComponents) => Admission {
  return (components) => new Admission(components, init)
}
