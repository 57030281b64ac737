import type { Command } from 'commander'
import type { AgentStatus, ConnectionInfo, NatStatus, OverlayStatus, PeersReply } from '../api/contract.js'
import {
  action,
  client,
  fmtDuration,
  fmtMs,
  type GlobalOpts,
  memberNames,
  printJson,
  table,
} from './common.js'

/** A connection's address for people: no peer IDs; a relayed one names its relay. */
function displayAddr(addr: string, nameOf: (peerId: string) => string): string {
  const relayed = /^(.*)\/p2p\/([^/]+)\/p2p-circuit(?:\/p2p\/[^/]+)?$/.exec(addr)
  if (relayed !== null) return `${relayed[1]} (relayed by ${nameOf(relayed[2])})`
  return addr.replace(/\/p2p\/[^/]+$/, '')
}

const PATH_RANK: Record<string, number> = { direct: 0, 'webrtc-direct': 1, webrtc: 1, relayed: 2 }

/**
 * One row per peer, named: its best connection (admitted, then the most direct path, then the
 * lowest RTT), with how many it has. `verbose`: every connection, with the full peer ID.
 */
export function connectionTable(
  conns: ConnectionInfo[],
  nameOf: (peerId: string) => string,
  verbose = false,
): string {
  if (verbose) {
    return table(
      ['NAME', 'PEER ID', 'PATH', 'RTT', 'DIR', 'ADMITTED', 'ADDRESS'],
      conns.map((c) => [
        nameOf(c.peerId),
        c.peerId,
        c.path,
        fmtMs(c.rttMs),
        c.direction,
        c.admitted ? 'yes' : 'no',
        c.remoteAddr,
      ]),
    )
  }
  const byPeer = new Map<string, ConnectionInfo[]>()
  for (const c of conns) byPeer.set(c.peerId, [...(byPeer.get(c.peerId) ?? []), c])
  const score = (c: ConnectionInfo) => [c.admitted ? 0 : 1, PATH_RANK[c.path] ?? 3, c.rttMs ?? Infinity]
  const better = (a: ConnectionInfo, b: ConnectionInfo) => {
    const [x, y] = [score(a), score(b)]
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] < y[i] ? a : b
    return a
  }
  const rows = [...byPeer.values()]
    .map((cs) => ({ best: cs.reduce(better), n: cs.length }))
    .sort((a, b) => nameOf(a.best.peerId).localeCompare(nameOf(b.best.peerId)))
  return table(
    ['NAME', 'PATH', 'RTT', 'DIR', 'ADMITTED', 'CONNS', 'ADDRESS'],
    rows.map(({ best: c, n }) => [
      nameOf(c.peerId),
      c.path,
      fmtMs(c.rttMs),
      c.direction,
      c.admitted ? 'yes' : 'no',
      n,
      displayAddr(c.remoteAddr, nameOf),
    ]),
  )
}

function natLines(n: NatStatus): string[] {
  return [
    `reachable: ${n.reachable ? 'yes' : 'no (behind NAT or on a private network)'}${
      n.reachableNetworks.length > 0 ? ` (also counted reachable: ${n.reachableNetworks.join(', ')})` : ''
    }`,
    `stun:      ${n.stunPort !== undefined ? `answering members on udp/${n.stunPort}` : 'not answering'}`,
    `ice:       ${n.iceServers.length > 0 ? n.iceServers.join(' ') : '- (no member answers STUN: WebRTC uses host addresses only)'}`,
  ]
}

/** ", packets up to 8000 B (fragment loss 0.12%), keys rotated 3x": what the loss reports allow now, the keys */
function udpSize(u: OverlayStatus['peers'][number]['udp']): string {
  if (u?.packetSize === undefined) return ''
  const loss = u.fragmentLoss === undefined ? '' : ` (fragment loss ${(u.fragmentLoss * 100).toFixed(2)}%)`
  const keys =
    u.keys === 'random' ? ', keys not rotated (member on an older version)' : `, keys rotated ${u.rekeys}x`
  return `, packets up to ${u.packetSize} B${loss}${keys}`
}

function overlayLines(o: OverlayStatus): string[] {
  if (o.interface === null) return [`interface: none (${o.reason ?? 'not started'})`]
  const drops = Object.entries(o.drops).filter(([, n]) => n > 0)
  return [
    `interface: ${o.interface} ${o.address}/128, route ${o.prefix}, mtu ${o.mtu}`,
    ...o.peers.map(
      (p) =>
        `  to ${p.name}: ${
          p.carrier === 'udp'
            ? `direct UDP to ${p.udp?.endpoint ?? '?'}${udpSize(p.udp)}`
            : p.carrier === 'datagram'
              ? `datagram (WebRTC data channel, ${p.datagramRoute ?? 'ICE'})`
              : `stream on ${p.path ?? 'no path'}`
        }, ${p.sentPackets} packets sent`,
    ),
    ...o.rules.map((r) => `  allow ${r.rule}: ${r.packets} packets`),
    ...(drops.length === 0 ? [] : [`  dropped: ${drops.map(([k, n]) => `${k} ${n}`).join(', ')}`]),
  ]
}

export function statusCommand(program: Command): void {
  program
    .command('status')
    .description('this agent: peer ID, overlay address, cluster, addresses, connections, uptime, version')
    .option('-v, --verbose', 'every connection, with full peer IDs')
    .action(
      action(async (opts: { verbose?: boolean }) => {
        const g = program.opts<GlobalOpts>()
        const api = client(g)
        const s = await api.call<AgentStatus>('GET', '/v1/status')
        if (g.json) return printJson(s)
        const lines = [
          ...(s.revoked === undefined ? [] : [`REVOKED:   ${s.revoked.message}`]),
          `name:      ${s.name}`,
          `peer id:   ${s.peerId}`,
          `overlay:   ${s.overlay}`,
          `cluster:   ${s.cluster.name} (${s.cluster.id})`,
          `version:   ${s.version}`,
          `uptime:    ${fmtDuration(s.uptimeMs)}`,
          `data dir:  ${s.dataDir}`,
          'listening:',
          ...s.listen.map((a) => `  ${a}`),
          `observed:  ${s.observed.length === 0 ? '-' : ''}`,
          ...s.observed.map((a) => `  ${a}`),
          ...(s.nat === undefined ? [] : natLines(s.nat)),
          ...(s.overlayInterface === undefined ? [] : overlayLines(s.overlayInterface)),
          `connections: ${s.connections.length}`,
        ]
        process.stdout.write(`${lines.join('\n')}\n`)
        if (s.connections.length > 0)
          process.stdout.write(connectionTable(s.connections, (await memberNames(api)).nameOf, opts.verbose))
      }),
    )

  program
    .command('peers')
    .description(
      'the connected members, one row each: name, path kind (direct / webrtc / relayed), RTT, connections, address',
    )
    .option('-v, --verbose', 'every connection, with full peer IDs')
    .action(
      action(async (opts: { verbose?: boolean }) => {
        const g = program.opts<GlobalOpts>()
        const api = client(g)
        const res = await api.call<PeersReply>('GET', '/v1/peers')
        const { names, nameOf } = await memberNames(api)
        if (g.json) return printJson(res.connections.map((c) => ({ name: names.get(c.peerId), ...c })))
        if (res.connections.length === 0) {
          process.stdout.write('no open connections\n')
          return
        }
        process.stdout.write(connectionTable(res.connections, nameOf, opts.verbose))
      }),
    )
}
