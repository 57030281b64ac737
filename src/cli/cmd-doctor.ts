import { spawnSync } from 'node:child_process'
import { lookup as dnsLookup } from 'node:dns/promises'
import { connect } from 'node:net'
import type { Command } from 'commander'
import { AgentNotRunningError } from '../api/client.js'
import type { AgentStatus, MembersReply, MemberView, NatStatus, PeersReply } from '../api/contract.js'
import { action, client, dataDirOf, EXIT, fmtDuration, type GlobalOpts, printJson } from './common.js'

export type Level = 'ok' | 'warn' | 'fail' | 'skip'

/** One line of `mesh doctor`: what was checked, how it went, and what to do about it. */
export interface Finding {
  check: string
  level: Level
  message: string
  fix?: string
}

interface Status {
  name: string
  version: string
  uptimeMs: number
  listen: string[]
  nat?: NatStatus
  revoked?: { message: string }
  tunnel?: { allowPorts: number[] }
  overlayInterface?: OverlayView
}

/** Whether something accepts TCP connections on 127.0.0.1:port (bounded by timeoutMs). */
function listening(port: number, timeoutMs = 1500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port })
    const done = (ok: boolean) => {
      clearTimeout(timer)
      s.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15_000 })
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || (r.error?.message ?? '') }
}

const isLoopback = (ma: string) => /^\/ip4\/127\.|^\/ip6\/::1\//.test(ma)
const isCircuit = (ma: string) => ma.includes('/p2p-circuit')
const withoutPeer = (ma: string) => ma.replace(/\/p2p\/[^/]+$/, '')

/** The checks that need the agent: read from its status and membership table. */
export function agentFindings(s: Status, members: MemberView[], connected: Set<string>): Finding[] {
  const f: Finding[] = []
  f.push({
    check: 'agent',
    level: 'ok',
    message: `${s.name} running for ${fmtDuration(s.uptimeMs)}, version ${s.version}`,
  })
  if (s.revoked !== undefined)
    f.push({
      check: 'membership',
      level: 'fail',
      message: s.revoked.message,
      fix: 'ask an admin for a new invite and join again with a new data dir',
    })
  const others = members.filter((m) => !m.self)
  const down = others.filter((m) => m.status === 'dead' || m.status === 'suspect')
  const alive = others.filter((m) => m.status === 'alive')
  f.push(
    down.length === 0
      ? {
          check: 'members',
          level: 'ok',
          message: `${alive.length} other member${alive.length === 1 ? '' : 's'} alive`,
        }
      : {
          check: 'members',
          level: 'warn',
          message: `${down.map((m) => `${m.name} ${m.status}`).join(', ')}; ${alive.length} alive`,
          fix: `check those machines; one that is gone for good: mesh revoke NAME (dead members are forgotten after a day)`,
        },
  )
  const unconnected = alive.filter((m) => !connected.has(m.peerId))
  if (unconnected.length > 0)
    f.push({
      check: 'connections',
      level: 'warn',
      message: `no connection to ${unconnected.map((m) => m.name).join(', ')}, though alive`,
      fix: 'mesh members --rejoin dials them again; mesh peers shows the paths',
    })
  const direct = s.listen.filter((a) => !isCircuit(a)).map(withoutPeer)
  if (direct.length > 0 && direct.every(isLoopback))
    f.push({
      check: 'listen',
      level: 'warn',
      message: `listening on loopback only (${direct.join(' ')}): no other machine or container can reach this member`,
      fix: "listen on all interfaces: 'listen: [/ip4/0.0.0.0/tcp/4701]' in config.yaml or --listen /ip4/0.0.0.0/tcp/4701",
    })
  else f.push({ check: 'listen', level: 'ok', message: direct.join(' ') || '(no direct address)' })
  if (s.nat !== undefined) {
    const reservations = s.listen.filter(isCircuit).length
    if (s.nat.reachable) {
      f.push({
        check: 'nat',
        level: 'ok',
        message: `reachable${s.nat.stunPort !== undefined ? `; answering STUN for members on udp/${s.nat.stunPort}` : ''}`,
      })
    } else {
      f.push(
        reservations > 0
          ? {
              check: 'nat',
              level: 'ok',
              message: `behind NAT or on a private network; reachable through ${reservations} relay address${reservations === 1 ? '' : 'es'}`,
            }
          : {
              check: 'nat',
              level: others.length === 0 ? 'ok' : 'warn',
              message:
                others.length === 0
                  ? 'behind NAT or on a private network (no other member yet to relay through)'
                  : 'behind NAT or on a private network, with no relay reservation: members that cannot dial it directly cannot reach it',
              fix:
                others.length === 0
                  ? undefined
                  : 'run a member with a public address and relay.server (the default); or, on a private network members can reach, --reachable CIDR',
            },
      )
      if (s.nat.iceServers.length === 0 && others.length > 0)
        f.push({
          check: 'stun',
          level: 'warn',
          message:
            'no member answers STUN: direct (WebRTC) paths through NAT are unlikely, traffic goes through relays',
          fix: 'a member with a public address answers STUN by itself (nat.stun: auto)',
        })
    }
  }
  return f
}

/** sshd and the other ports members may tunnel to: something must listen on 127.0.0.1. */
async function portFindings(allowPorts: readonly number[]): Promise<Finding[]> {
  const f: Finding[] = []
  for (const port of allowPorts) {
    const ok = await listening(port)
    const what = port === 22 ? 'sshd' : `port ${port}`
    f.push(
      ok
        ? {
            check: 'tunnel',
            level: 'ok',
            message: `${what} listens on 127.0.0.1:${port} (tunnel.allowPorts)`,
          }
        : {
            check: 'tunnel',
            level: 'warn',
            message: `nothing listens on 127.0.0.1:${port}, which tunnel.allowPorts offers to members${port === 22 ? ': mesh ssh to this member fails' : ''}`,
            fix:
              port === 22
                ? 'install and start sshd (apt-get install openssh-server), or take 22 out of tunnel.allowPorts'
                : `start the service on ${port}, or take it out of tunnel.allowPorts`,
          },
    )
  }
  return f
}

/** docker: only needed for `mesh spawn --compute-type docker`. */
function dockerFindings(listen: string[] | undefined): Finding[] {
  if (spawnSync('sh', ['-c', 'command -v docker'], { stdio: 'ignore' }).status !== 0)
    return [
      {
        check: 'docker',
        level: 'skip',
        message: 'not installed (only needed for mesh spawn --compute-type docker)',
      },
    ]
  const info = run('docker', ['info', '--format', '{{.ServerVersion}}'])
  if (!info.ok)
    return [
      {
        check: 'docker',
        level: 'warn',
        message: `no docker engine answers (${info.out.split('\n')[0]})`,
        fix: 'start dockerd (systemctl start docker), or ignore this if you do not spawn containers',
      },
    ]
  const f: Finding[] = [{ check: 'docker', level: 'ok', message: `engine ${info.out}` }]
  const image = process.env.MESH_DOCKER_IMAGE ?? 'mesh:latest'
  f.push(
    run('docker', ['image', 'inspect', image]).ok
      ? { check: 'docker image', level: 'ok', message: `${image} present` }
      : {
          check: 'docker image',
          level: 'warn',
          message: `${image} is missing: mesh spawn --compute-type docker cannot start containers`,
          fix: `in a mesh checkout: npm run build && docker build -f docker/Dockerfile -t ${image} .`,
        },
  )
  const direct = (listen ?? []).filter((a) => !isCircuit(a))
  if (direct.length > 0 && direct.every(isLoopback)) {
    const gw = run('docker', [
      'network',
      'inspect',
      'bridge',
      '--format',
      '{{range .IPAM.Config}}{{.Gateway}}{{end}}',
    ])
    f.push({
      check: 'docker bridge',
      level: 'fail',
      message:
        'the agent listens on loopback only: containers cannot reach it, so a spawned container never joins',
      fix: `listen on 0.0.0.0 or on the bridge address: --listen /ip4/${gw.ok && gw.out !== '' ? gw.out : '172.17.0.1'}/tcp/4701`,
    })
  }
  return f
}

/** What `mesh status` says of the overlay interface (overlay/component.ts OverlayStatus). */
export interface OverlayView {
  interface: string | null
  reason?: string
  address: string
  prefix: string
}

/**
 * The mesh0 interface and NAME.mesh, checked as a program sees them: the device carries our
 * overlay address, and every alive member's NAME.mesh resolves (getaddrinfo, as curl and ssh do)
 * to its overlay address.
 */
export async function overlayFindings(
  ov: OverlayView | undefined,
  members: MemberView[],
  resolve6: (host: string) => Promise<string | undefined> = lookup6,
  addrsOf: (dev: string) => string = (dev) => run('ip', ['-6', 'addr', 'show', 'dev', dev]).out,
): Promise<Finding[]> {
  if (ov === undefined)
    return [{ check: 'overlay', level: 'skip', message: 'this agent has no overlay interface component' }]
  if (ov.interface === null) {
    if (ov.reason?.startsWith('disabled') === true)
      return [
        {
          check: 'overlay',
          level: 'skip',
          message: `off (${ov.reason}); mesh ssh, proxy and socks reach members`,
        },
      ]
    return [
      {
        check: 'overlay',
        level: 'warn',
        message: `no interface: ${ov.reason ?? 'unknown reason'}`,
        fix: 'run the agent as root (it needs CAP_NET_ADMIN and /dev/net/tun), or set overlay.interface: false; mesh ssh, proxy, forward and socks work without it',
      },
    ]
  }
  const f: Finding[] = []
  const addrs = addrsOf(ov.interface)
  f.push(
    addrs.includes(`${ov.address}/128`)
      ? {
          check: 'overlay',
          level: 'ok',
          message: `${ov.interface} up with ${ov.address}, route for ${ov.prefix}`,
        }
      : {
          check: 'overlay',
          level: 'fail',
          message: `the agent reports ${ov.interface}, but it does not carry ${ov.address} here`,
          fix: `restart the agent (mesh service restart or mesh agent); ip -6 addr show dev ${ov.interface} shows what is there`,
        },
  )
  const alive = members.filter((m) => !m.self && m.status === 'alive')
  const wrong: string[] = []
  for (const m of alive) {
    const got = await resolve6(`${m.name}.mesh`)
    if (got !== m.overlay)
      wrong.push(`${m.name}.mesh ${got === undefined ? 'does not resolve' : `resolves to ${got}`}`)
  }
  f.push(
    wrong.length === 0
      ? {
          check: 'names',
          level: 'ok',
          message: `${alive.length} member name${alive.length === 1 ? ' resolves' : 's resolve'} as NAME.mesh to ${alive.length === 1 ? 'its overlay address' : 'their overlay addresses'}`,
        }
      : {
          check: 'names',
          level: 'warn',
          message: wrong.join('; '),
          fix: 'the agent keeps a managed block in /etc/hosts (overlay.hostsFile): check that it can write it and that nsswitch.conf reads files',
        },
  )
  return f
}

async function lookup6(host: string): Promise<string | undefined> {
  try {
    return (await dnsLookup(host, { family: 6 })).address
  } catch {
    return undefined
  }
}

/** A member's clock this far from ours is worth a warning; this far, a failure. */
export const SKEW_WARN_MS = 1_000
export const SKEW_FAIL_MS = 5 * 60_000

/**
 * Our clock against the members': each probe reply carries the member's clock, so the agent
 * knows every alive member's offset to within half a round trip (membership/clock-skew.ts).
 */
export function skewFinding(members: MemberView[]): Finding {
  const measured = members.filter((m) => !m.self && m.status === 'alive' && m.clockOffsetMs !== undefined)
  if (measured.length === 0)
    return { check: 'clock skew', level: 'skip', message: 'no member answered a probe yet' }
  const worst = measured.reduce((a, b) =>
    Math.abs(b.clockOffsetMs ?? 0) > Math.abs(a.clockOffsetMs ?? 0) ? b : a,
  )
  const off = worst.clockOffsetMs ?? 0
  const signed = `${off >= 0 ? '+' : '-'}${fmtMs(Math.abs(off))}`
  if (Math.abs(off) < SKEW_WARN_MS)
    return {
      check: 'clock skew',
      level: 'ok',
      message: `within ${fmtMs(Math.abs(off))} of ${measured.length} member${measured.length === 1 ? '' : 's'} (largest: ${worst.name} ${signed})`,
    }
  const ahead =
    off > 0
      ? `${worst.name} is ${fmtMs(off)} ahead of this machine`
      : `${worst.name} is ${fmtMs(-off)} behind this machine`
  return {
    check: 'clock skew',
    level: Math.abs(off) >= SKEW_FAIL_MS ? 'fail' : 'warn',
    message: `${ahead}: invites, certificates and logs disagree about time`,
    fix: `run NTP on both machines (timedatectl set-ntp true, or chrony); mesh members -v shows each member's offset`,
  }
}

const fmtMs = (ms: number) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`)

/**
 * The local clock: skewed clocks make invites and certificates look expired or not yet valid.
 * Whether NTP keeps this clock in sync (systemd's timedatectl); the skew against the members is
 * skewFinding's.
 */
function clockFinding(): Finding {
  const r = run('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'])
  if (!r.ok || (r.out !== 'yes' && r.out !== 'no'))
    return {
      check: 'clock',
      level: 'skip',
      message: 'cannot tell whether NTP keeps the clock in sync (no timedatectl answer)',
    }
  return r.out === 'yes'
    ? { check: 'clock', level: 'ok', message: 'synchronized by NTP' }
    : {
        check: 'clock',
        level: 'warn',
        message: 'not synchronized by NTP: a skewed clock makes invites look expired',
        fix: 'timedatectl set-ntp true (or run chrony / ntpd)',
      }
}

export function doctorCommand(program: Command): void {
  program
    .command('doctor')
    .description(
      'check what running a member needs, one line each (ok / warn / fail) with what to do: agent, members, listen addresses, NAT and relays, sshd and tunnel ports, docker',
    )
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const api = client(g)
        const findings: Finding[] = []
        let status: Status | undefined
        try {
          status = await api.call<AgentStatus>('GET', '/v1/status')
          const { members } = await api.call<MembersReply>('GET', '/v1/members')
          const { connections } = await api.call<PeersReply>('GET', '/v1/peers')
          findings.push(
            ...agentFindings(
              status,
              members,
              new Set(connections.filter((c) => c.admitted).map((c) => c.peerId)),
            ),
          )
          findings.push(skewFinding(members))
          findings.push(...(await overlayFindings(status.overlayInterface, members)))
        } catch (err) {
          if (!(err instanceof AgentNotRunningError)) throw err
          findings.push({
            check: 'agent',
            level: 'fail',
            message: `no agent is running on data dir ${dataDirOf(g)}`,
            fix: 'start it: mesh agent (or systemctl start mesh); the other agent checks wait for it',
          })
        }
        findings.push(...(await portFindings(status?.tunnel?.allowPorts ?? [22])))
        findings.push(...dockerFindings(status?.listen))
        findings.push(clockFinding())
        const failed = findings.some((x) => x.level === 'fail')
        if (g.json) {
          printJson(findings)
        } else {
          const w = Math.max(...findings.map((x) => x.check.length))
          for (const x of findings) {
            process.stdout.write(
              `${x.level.padEnd(4)}  ${x.check.padEnd(w)}  ${x.message}${x.fix !== undefined ? `; fix: ${x.fix}` : ''}\n`,
            )
          }
        }
        if (failed) process.exit(EXIT.error)
      }),
    )
}
