import type { Socket } from 'node:net'
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Component } from '../kernel/component.js'
import type { ComponentReporter } from '../kernel/reporter.js'
import { displayNames, ResolveError, resolveMember } from '../membership/names.js'
import type { MembershipComponent } from '../membership/service.js'
import type { NatComponent } from '../nat/component.js'
import type { Cluster } from '../node/cluster.js'
import type { NodeComponent } from '../node/node-component.js'
import { type PathKind, pathKind } from '../node/paths.js'
import { bridge, destroySocket } from './bridge.js'
import type { TunnelConfig } from './config.js'
import { TunnelDialer } from './dialer.js'
import { writeData, writeEnd, writeError } from './frames.js'
import { PathUpgrader } from './path-upgrade.js'
import { acceptTunnel, connectLocal, requestTunnel, TunnelError, tunnelProtocol } from './protocol.js'

export interface TunnelTarget {
  peerId: string
  /** the display name, as `mesh members` shows it */
  name: string
  overlay: string
  self: boolean
  addrs: string[]
}

export type TunnelPath = PathKind | 'self'

/** One open tunnel, as /v1/tunnels lists it. */
export interface TunnelInfo {
  id: number
  direction: 'out' | 'in'
  peerId: string
  name: string
  port: number
  path: TunnelPath
  startedAt: number
  sent: number
  received: number
}

/** What the control API pipes its socket into once a tunnel is open. */
export interface Opened {
  target: TunnelTarget
  port: number
  path: TunnelPath
  stream?: Stream
  /** a tunnel to ourselves: straight to 127.0.0.1:port */
  socket?: Socket
  connection?: Connection
  openMs: number
}

interface Active {
  info: TunnelInfo
  close: (err: Error) => void
}

/**
 * Tunnels: the target side of the tunnel protocol (protocols/tunnel.md) and the client side
 * the control API uses, plus the relayed -> direct path upgrade. Needs the node and membership.
 */
export class TunnelComponent implements Component {
  readonly name = 'tunnel'
  readonly protocol: string
  private readonly active = new Map<number, Active>()
  private nextId = 1
  private running = false
  private readonly dialer: TunnelDialer
  private readonly upgrader: PathUpgrader
  private readonly metrics

  constructor(
    private readonly deps: {
      node: NodeComponent
      /** WebRTC upgrades of relayed connections; a fresh relayed tunnel waits briefly for one */
      nat?: NatComponent
      membership: MembershipComponent
      cluster: Cluster
      config: TunnelConfig
      /** the budget of a dial to a member (the agent's dialTimeoutMs) */
      dialTimeoutMs: number
      reporter: ComponentReporter
    },
  ) {
    this.protocol = tunnelProtocol(deps.cluster)
    const t = deps.config
    this.dialer = new TunnelDialer(() => deps.node.node, {
      protocol: this.protocol,
      streamTimeoutMs: t.streamTimeoutMs,
      directDialTimeoutMs: t.directDialTimeoutMs,
      dialTimeoutMs: deps.dialTimeoutMs,
      rttOf: (peer) => deps.membership.rttOf(peer),
      pendingUpgrade: deps.nat === undefined ? undefined : (peer, ms) => deps.nat!.pendingUpgrade(peer, ms),
    })
    const r = deps.reporter
    this.metrics = {
      opened: r.counter('opened_total', 'tunnels opened, by direction and result', ['direction', 'result']),
      active: r.gauge('active', 'open tunnels by direction', ['direction'], () => {
        const g = this.metrics.active
        g.reset()
        for (const a of this.active.values()) g.inc({ direction: a.info.direction })
      }),
      bytes: r.counter('bytes_total', 'tunnel bytes, by direction (out: sent to the stream)', ['direction']),
      paths: r.counter('paths_total', 'outbound tunnels by path kind', ['path']),
      dropped: r.counter(
        'dead_connections_total',
        'connections aborted because a tunnel stream could not open on them',
      ),
      upgrades: r.counter('path_upgrades_total', 'relayed -> direct dial attempts, by result', ['result']),
      openSeconds: r.histogram(
        'open_seconds',
        'time to open an outbound tunnel',
        [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      ),
    }
    this.upgrader = new PathUpgrader({
      node: () => deps.node.node,
      candidates: () =>
        deps.membership
          .rows()
          .filter((row) => row.status === 'alive' || row.status === 'suspect')
          .map((row) => ({ peerId: row.peerId, addrs: row.entry.signed.info.addrs })),
      intervalMs: t.pathUpgradeMs,
      // a background dial: it may take a slow path's whole handshake
      timeoutMs: Math.max(t.directDialTimeoutMs, deps.dialTimeoutMs),
      log: r.log,
      onResult: (result) => this.metrics.upgrades.inc({ result }),
      onUpgraded: (peer) => this.dialer.noteDirect(peer, true),
    })
    r.health(() => ({ ok: this.running, detail: `${this.active.size} open tunnels` }))
  }

  async start(): Promise<void> {
    await this.deps.node.node.handle(this.protocol, (s, c) => void this.onStream(s, c), {
      runOnLimitedConnection: true,
      maxInboundStreams: 256,
      maxOutboundStreams: 1024,
    })
    this.upgrader.start()
    this.running = true
  }

  async stop(): Promise<void> {
    this.running = false
    this.upgrader.stop()
    for (const a of this.active.values()) a.close(new Error('the agent is stopping'))
    this.active.clear()
    await this.deps.node.node.unhandle(this.protocol).catch(() => {})
  }

  /** One path-upgrade pass now (tests and `--rejoin`-style nudges). */
  upgradePaths(): Promise<string[]> {
    return this.upgrader.round()
  }

  list(): TunnelInfo[] {
    return [...this.active.values()].map((a) => ({ ...a.info }))
  }

  /** The member `query` names (NAME, NAME.mesh, overlay address, peer ID). Throws TunnelError. */
  resolve(query: string): TunnelTarget {
    const rows = this.deps.membership.rows()
    const infos = rows.map((r) => r.entry.signed.info)
    const m = resolveMember(query, infos, this.deps.cluster.id)
    if (m instanceof ResolveError)
      throw new TunnelError(m.code === 'empty' ? 'bad-request' : 'unknown-member', m.message)
    const row = rows.find((r) => r.peerId === m.peerId)
    const name = displayNames(infos).get(m.peerId) ?? m.name
    if (row?.status === 'left') throw new TunnelError('unreachable', `member ${name} has left the cluster`)
    return {
      peerId: m.peerId,
      name,
      overlay: m.overlay,
      self: m.peerId === this.deps.membership.selfPeerId,
      addrs: [...m.addrs],
    }
  }

  /** Open a tunnel to `port` on the target: the stream (or a local socket for ourselves). Throws TunnelError. */
  async open(target: TunnelTarget, port: number, signal: AbortSignal): Promise<Opened> {
    const t0 = performance.now()
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new TunnelError('bad-request', `invalid port '${port}'`)
    const allowed = this.deps.config.allowPorts
    try {
      if (target.self) {
        if (!allowed.includes(port)) throw new TunnelError('port-not-allowed', '', [...allowed])
        let socket: Socket
        try {
          socket = await connectLocal(port, this.deps.config.connectTimeoutMs)
        } catch (err) {
          const e = err as NodeJS.ErrnoException
          throw new TunnelError(
            'connect-failed',
            `nothing accepted a connection on 127.0.0.1:${port} (${e.code ?? e.message})`,
          )
        }
        return this.opened(target, port, 'self', t0, { socket })
      }
      let opened: Awaited<ReturnType<TunnelDialer['open']>>
      try {
        opened = await this.dialer.open(peerIdFromString(target.peerId), target.addrs, signal)
      } catch (err) {
        if (err instanceof TunnelError) throw err
        if ((err as Error).name === 'UnsupportedProtocolError') {
          throw new TunnelError(
            'refused',
            `member ${target.name} does not offer tunnels (it runs an older mesh?)`,
          )
        }
        throw new TunnelError('unreachable', `cannot reach member ${target.name}: ${(err as Error).message}`)
      }
      if (opened.dropped > 0) this.metrics.dropped.inc(opened.dropped)
      const streamMs = performance.now() - t0
      if (streamMs > 1000 || opened.errors.length > 0)
        this.deps.reporter.log.info(
          { peer: target.peerId, path: opened.path, ms: Math.round(streamMs), errors: opened.errors },
          'tunnel stream took another path or was slow',
        )
      let stream: Stream
      try {
        stream = await requestTunnel(
          opened.stream,
          port,
          AbortSignal.any([signal, AbortSignal.timeout(15_000)]),
        )
      } catch (err) {
        if (!(err instanceof TunnelError)) {
          opened.stream.abort(err as Error)
          throw new TunnelError(
            'unreachable',
            `member ${target.name} did not answer the tunnel request: ${(err as Error).message}`,
          )
        }
        throw err
      }
      this.metrics.paths.inc({ path: opened.path })
      return this.opened(target, port, opened.path, t0, { stream, connection: opened.connection })
    } catch (err) {
      const e = err instanceof TunnelError ? err : new TunnelError('unreachable', (err as Error).message)
      this.metrics.opened.inc({ direction: 'out', result: e.code })
      this.deps.reporter.log.info(
        { peer: target.peerId, port, code: e.code, ms: Math.round(performance.now() - t0), err: e.message },
        'tunnel failed',
      )
      throw explain(e, target, port)
    }
  }

  private opened(
    target: TunnelTarget,
    port: number,
    path: TunnelPath,
    t0: number,
    rest: Partial<Opened>,
  ): Opened {
    const openMs = performance.now() - t0
    this.metrics.opened.inc({ direction: 'out', result: 'ok' })
    this.metrics.openSeconds.observe(openMs / 1000)
    return { target, port, path, openMs, ...rest }
  }

  /** Pipe a local socket (the control API's upgraded connection) through an opened tunnel until both ends finish. */
  async pipe(
    local: Socket,
    opened: Opened,
    head?: Uint8Array,
    opts: { framed?: boolean } = {},
  ): Promise<void> {
    const framed = opts.framed !== false
    const info: TunnelInfo = {
      id: this.nextId++,
      direction: 'out',
      peerId: opened.target.peerId,
      name: opened.target.name,
      port: opened.port,
      path: opened.path,
      startedAt: Date.now(),
      sent: 0,
      received: 0,
    }
    if (opened.stream !== undefined) {
      await this.track(info, opened.stream, local, head, framed)
      return
    }
    // to ourselves: socket to socket, framed towards the CLI like the bridge does (unless raw)
    const remote = opened.socket!
    const close = (err: Error) => {
      if (framed) writeError(local, err.message)
      local.end()
      destroySocket(remote, true)
    }
    this.active.set(info.id, { info, close })
    try {
      if (head !== undefined && head.byteLength > 0) remote.write(head)
      await new Promise<void>((resolve) => {
        local.on('data', (d: Buffer) => {
          info.sent += d.length
        })
        local.pipe(remote) // with its FIN: half-close
        remote.on('data', (d: Buffer) => {
          info.received += d.length
          if (!(framed ? writeData(local, d) : local.write(d))) {
            remote.pause()
            local.once('drain', () => remote.resume())
          }
        })
        remote.on('end', () => {
          if (framed) writeEnd(local)
          local.end()
        })
        remote.on('error', (err) => close(err))
        local.on('error', () => remote.destroy())
        // done when the CLI's side is closed both ways (or gone)
        local.once('close', () => {
          if (!remote.destroyed) remote.destroy()
          resolve()
        })
        remote.resume()
      })
    } finally {
      this.active.delete(info.id)
    }
  }

  private async track(
    info: TunnelInfo,
    stream: Stream,
    socket: Socket,
    head?: Uint8Array,
    framed = info.direction === 'out',
  ): Promise<void> {
    const log = this.deps.reporter.log
    this.active.set(info.id, {
      info,
      close: (err) => {
        stream.abort(err)
        destroySocket(socket, true)
      },
    })
    log.info(
      { id: info.id, direction: info.direction, peer: info.peerId, port: info.port, path: info.path },
      'tunnel open',
    )
    try {
      // the bridge counts into info as bytes move, so /v1/tunnels shows live totals
      const r = await bridge(stream, socket, head, info, { framed })
      this.metrics.bytes.inc({ direction: 'out' }, r.sent)
      this.metrics.bytes.inc({ direction: 'in' }, r.received)
      log.info(
        {
          id: info.id,
          peer: info.peerId,
          port: info.port,
          sent: r.sent,
          received: r.received,
          ms: Date.now() - info.startedAt,
          err: r.error?.message,
        },
        'tunnel closed',
      )
    } finally {
      this.active.delete(info.id)
    }
  }

  /** The target side: only members get here (admission holds every stream until the peer proved it). */
  private async onStream(stream: Stream, conn: Connection): Promise<void> {
    const node = this.deps.node.node
    const peer = conn.remotePeer.toString()
    try {
      if (!node.services.admission.isAdmitted(conn.remotePeer)) {
        this.metrics.opened.inc({ direction: 'in', result: 'refused' })
        stream.abort(new Error('not an admitted member'))
        return
      }
      if (this.active.size >= this.deps.config.maxTunnels) {
        this.metrics.opened.inc({ direction: 'in', result: 'busy' })
        stream.abort(new Error('too many tunnels'))
        return
      }
      const t = this.deps.config
      const r = await acceptTunnel(stream, { allowPorts: t.allowPorts, connectTimeoutMs: t.connectTimeoutMs })
      if ('refused' in r) {
        this.metrics.opened.inc({ direction: 'in', result: r.refused })
        this.deps.reporter.log.info({ peer, port: r.port, reason: r.refused }, 'tunnel refused')
        return
      }
      this.metrics.opened.inc({ direction: 'in', result: 'ok' })
      const names = displayNames(this.deps.membership.rows().map((row) => row.entry.signed.info))
      const info: TunnelInfo = {
        id: this.nextId++,
        direction: 'in',
        peerId: peer,
        name: names.get(peer) ?? peer,
        port: r.port,
        path: pathKind(conn.remoteAddr),
        startedAt: Date.now(),
        sent: 0,
        received: 0,
      }
      await this.track(info, r.stream, r.socket)
    } catch (err) {
      this.metrics.opened.inc({ direction: 'in', result: 'error' })
      this.deps.reporter.log.debug({ peer, err: (err as Error).message }, 'inbound tunnel failed')
      stream.abort(err as Error)
    }
  }
}

/** Messages people can act on, with the member's name. */
function explain(e: TunnelError, target: TunnelTarget, port: number): TunnelError {
  switch (e.code) {
    case 'port-not-allowed': {
      const allowed = e.allowed.length > 0 ? e.allowed.join(', ') : 'none'
      return new TunnelError(
        e.code,
        `member ${target.name} does not allow tunnels to port ${port}; allowed: ${allowed}. ` +
          `Add it to tunnel.allowPorts on ${target.name}.`,
        e.allowed,
      )
    }
    case 'connect-failed':
      return new TunnelError(e.code, `member ${target.name}: ${e.message}. Is the service running there?`)
    case 'refused':
      return new TunnelError(
        e.code,
        e.message.startsWith('member ')
          ? e.message
          : `member ${target.name} refused the tunnel: ${e.message}`,
      )
    default:
      return e
  }
}
