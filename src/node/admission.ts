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

const MAX_MESSAGE = 1024
const enc = new TextEncoder()

export interface AdmissionInit {
  cluster: Cluster
  timeoutMs: number
  reporter: ComponentReporter
  /** extra check for a peer that proved the cluster key (revocation lands here later) */
  refuse?: (peer: PeerId) => string | undefined
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
  private readonly state = new WeakMap<Connection, PromiseWithResolvers<boolean>>()
  private readonly admittedPeers = new Map<string, number>() // peer -> open admitted connections
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
      refusedStreams: init.reporter.counter('refused_streams_total', 'streams refused to unadmitted peers', ['protocol']),
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

  /** Resolves with whether the connection was admitted (waits for the handshake). */
  admitted(connection: Connection): Promise<boolean> {
    return this.stateOf(connection).promise
  }

  /** A connection gater that refuses relay service to peers that are not admitted members. */
  gater(): Partial<ConnectionGater> {
    return {
      denyInboundRelayReservation: (source) => !this.isAdmitted(source),
      denyOutboundRelayedConnection: (source, destination) => !this.isAdmitted(source) || !this.isAdmitted(destination),
      denyInboundRelayedConnection: (relay) => !this.isAdmitted(relay),
    }
  }

  private stateOf(connection: Connection): PromiseWithResolvers<boolean> {
    let s = this.state.get(connection)
    if (s === undefined) {
      s = Promise.withResolvers<boolean>()
      this.state.set(connection, s)
    }
    return s
  }

  private async gateStream(
    stream: Stream,
    connection: Connection,
    next: (s: Stream, c: Connection) => void,
  ): Promise<void> {
    if (await this.admitted(connection)) {
      next(stream, connection)
      return
    }
    this.metrics.refusedStreams.inc({ protocol: stream.protocol ?? 'unknown' })
    throw new AdmissionRefusedError(`peer ${connection.remotePeer} is not an admitted cluster member`)
  }

  private onOpen(evt: CustomEvent<Connection>): void {
    const connection = evt.detail
    const state = this.stateOf(connection)
    const timer = setTimeout(() => this.settle(connection, false, 'timeout'), this.init.timeoutMs)
    timer.unref()
    void state.promise.then(() => clearTimeout(timer))
    if (connection.direction === 'outbound') {
      void this.initiate(connection).catch((err) => this.settle(connection, false, 'error'))
    }
  }

  private onClose(evt: CustomEvent<Connection>): void {
    const connection = evt.detail
    const s = this.state.get(connection)
    if (s === undefined) return
    // an admitted connection going away lowers the peer's count; an unsettled one fails
    void s.promise.then((ok) => {
      if (!ok) return
      const key = connection.remotePeer.toString()
      const n = (this.admittedPeers.get(key) ?? 1) - 1
      if (n <= 0) this.admittedPeers.delete(key)
      else this.admittedPeers.set(key, n)
    })
    this.settle(connection, false, 'closed')
  }

  private settle(connection: Connection, ok: boolean, result: string): void {
    // only the first outcome counts: a late handshake cannot undo a timeout
    if (this.settled.has(connection)) return
    this.settled.add(connection)
    this.stateOf(connection).resolve(ok)
    this.metrics.result.inc({ result })
    if (ok) {
      const key = connection.remotePeer.toString()
      this.admittedPeers.set(key, (this.admittedPeers.get(key) ?? 0) + 1)
    } else if (connection.status === 'open') {
      void connection.close().catch(() => connection.abort(new AdmissionRefusedError(result)))
    }
  }

  private readonly settled = new WeakSet<Connection>()

  private proof(role: 'D' | 'L', dialer: PeerId, listener: PeerId, nD: Uint8Array, nL: Uint8Array): Uint8Array<ArrayBuffer> {
    return hmac(this.key, enc.encode(role), dialer.toMultihash().bytes, listener.toMultihash().bytes, nD, nL)
  }

  private check(expected: Uint8Array, got: Uint8Array): boolean {
    return got.length === expected.length && timingSafeEqual(expected, got)
  }

  private refusal(peer: PeerId): string | undefined {
    return this.init.refuse?.(peer)
  }

  /** Dialer side. */
  private async initiate(connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.init.timeoutMs)
    const stream = await connection.newStream(this.protocol, { signal, runOnLimitedConnection: true })
    const pb = pbStream(stream, { maxDataLength: MAX_MESSAGE }).pb(AuthMessage)
    const me = this.components.peerId
    const them = connection.remotePeer
    const nD = new Uint8Array(randomBytes(32))
    await pb.write({ nonce: nD, proof: new Uint8Array(), error: '' }, { signal })
    const reply = await pb.read({ signal })
    if (reply.error !== '') {
      this.settle(connection, false, 'refused_by_peer')
      return
    }
    if (reply.nonce.length !== 32 || !this.check(this.proof('L', me, them, nD, reply.nonce), reply.proof)) {
      await pb.write({ nonce: new Uint8Array(), proof: new Uint8Array(), error: 'wrong cluster key' }, { signal }).catch(() => {})
      this.settle(connection, false, 'bad_proof')
      return
    }
    const why = this.refusal(them)
    if (why !== undefined) {
      await pb.write({ nonce: new Uint8Array(), proof: new Uint8Array(), error: why }, { signal }).catch(() => {})
      this.settle(connection, false, 'refused')
      return
    }
    await pb.write({ nonce: new Uint8Array(), proof: this.proof('D', me, them, nD, reply.nonce), error: '' }, { signal })
    const done = await pb.read({ signal })
    await stream.close({ signal }).catch(() => {})
    this.settle(connection, done.error === '', done.error === '' ? 'ok' : 'refused_by_peer')
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
      await pb.write({ nonce: nL, proof: this.proof('L', them, me, hello.nonce, nL), error: '' }, { signal })
      const final = await pb.read({ signal })
      if (final.error !== '') {
        this.settle(connection, false, 'refused_by_peer')
        return
      }
      if (!this.check(this.proof('D', them, me, hello.nonce, nL), final.proof)) {
        await pb.write({ nonce: new Uint8Array(), proof: new Uint8Array(), error: 'wrong cluster key' }, { signal })
        this.settle(connection, false, 'bad_proof')
        return
      }
      const why = this.refusal(them)
      await pb.write({ nonce: new Uint8Array(), proof: new Uint8Array(), error: why ?? '' }, { signal })
      await stream.close({ signal }).catch(() => {})
      this.settle(connection, why === undefined, why === undefined ? 'ok' : 'refused')
    } catch (err) {
      stream.abort(err as Error)
      this.settle(connection, false, 'error')
    }
  }
}

export function admission(init: AdmissionInit): (components: AdmissionComponents) => Admission {
  return (components) => new Admission(components, init)
}
