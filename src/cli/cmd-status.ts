import type { Command } from 'commander'
import type { NatStatus } from '../nat/component.js'
import type { ConnectionInfo } from '../node/node-component.js'
import { action, client, fmtDuration, fmtMs, type GlobalOpts, printJson, shortId, table } from './common.js'

interface Status {
  peerId: string
  name: string
  overlay: string
  cluster: { name: string; id: string }
  listen: string[]
  observed: string[]
  connections: ConnectionInfo[]
  nat?: NatStatus
  uptimeMs: number
  version: string
  dataDir: string
  /** set when an admin revoked this member (an agent told to stay: exitWhenRevoked false) */
  revoked?: { by: string; at: string; message: string }
}

function connectionTable(conns: ConnectionInfo[]): string {
  return table(
    ['PEER', 'PATH', 'RTT', 'DIR', 'ADMITTED', 'ADDRESS'],
    conns.map((c) => [
      shortId(c.peerId),
      c.path,
      fmtMs(c.rttMs),
      c.direction,
      c.admitted ? 'yes' : 'no',
      c.remoteAddr,
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

export function statusCommand(program: Command): void {
  program
    .command('status')
    .description('this agent: peer ID, overlay address, cluster, addresses, connections, uptime, version')
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const s = await client(g).call<Status>('GET', '/v1/status')
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
          `connections: ${s.connections.length}`,
        ]
        process.stdout.write(`${lines.join('\n')}\n`)
        if (s.connections.length > 0) process.stdout.write(connectionTable(s.connections))
      }),
    )

  program
    .command('peers')
    .description('the open connections: peer, path kind (direct / webrtc / relayed), RTT, address')
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const res = await client(g).call<{ connections: ConnectionInfo[] }>('GET', '/v1/peers')
        if (g.json) return printJson(res.connections)
        if (res.connections.length === 0) {
          process.stdout.write('no open connections\n')
          return
        }
        process.stdout.write(connectionTable(res.connections))
      }),
    )
}
