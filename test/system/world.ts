// A netns lab with real mesh agents and real sshds in it, shared by the system tests of
// tunnels and NAT traversal. Everything it starts lives in 198.18.0.0/16 namespaces the lab
// creates, and cleanup() removes all of it.
import { strict as assert } from 'node:assert'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { until } from '../../sim/bench/report.js'
import { ApiClient } from '../../src/api/client.js'
import type { MetricsView } from '../../src/api/contract.js'
import { MetricsSnapshot } from '../../src/kernel/metric-samples.js'
import { type ExecResult, type Host, Lab, sshdSetup } from './harness.js'

export const ROOT = resolve(import.meta.dirname, '../../..')
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js')

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export interface Agent {
  name: string
  host: Host
  dir: string
  child: ChildProcess
  log: string[]
}

/** One lab with agents and sshds; `cleanup` removes all of it. */
export class World {
  readonly lab = new Lab()
  readonly tmp = mkdtempSync(join(tmpdir(), 'mesh-tun-'))
  readonly agents = new Map<string, Agent>()
  readonly key = join(this.tmp, 'user_ed25519')
  readonly knownHosts = join(this.tmp, 'known_hosts')

  constructor() {
    this.run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'mesh-test', '-f', this.key])
    // sshd refuses to start without its privilege separation directory
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 })
  }

  private run(cmd: string, args: string[]): void {
    execFileSync(cmd, args, { stdio: 'pipe', timeout: 20_000 })
  }

  sshOpts(): string[] {
    return [
      '-i',
      this.key,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      `UserKnownHostsFile=${this.knownHosts}`,
      '-o',
      'StrictHostKeyChecking=accept-new',
      '-o',
      'BatchMode=yes',
      '-o',
      'ConnectTimeout=30',
      '-o',
      'LogLevel=ERROR',
    ]
  }

  /** A real sshd in the host's namespace on 127.0.0.1:22, with its own config, host key and authorized key. */
  async sshd(host: Host): Promise<void> {
    const dir = join(this.tmp, `sshd-${host.name}`)
    mkdirSync(dir, { recursive: true })
    const child = this.lab.spawn(host, sshdSetup(dir, 22, readFileSync(`${this.key}.pub`)))
    let err = ''
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d
    })
    await waitFor(
      `sshd in ${host.name}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`sshd exited ${child.exitCode}: ${err}`)
        return err.includes('Server listening')
      },
      15_000,
    )
  }

  /** Start `mesh agent` in the host's namespace on 0.0.0.0:4701. */
  agent(name: string, host: Host, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Agent {
    const dir = join(this.tmp, `agent-${name}`)
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const child = this.lab.spawn(
      host,
      [
        process.execPath,
        CLI,
        '--data-dir',
        dir,
        'agent',
        '--listen',
        '/ip4/0.0.0.0/tcp/4701',
        '--name',
        name,
        ...extra,
      ],
      {
        env: {
          ...process.env,
          MESH_LOG_LEVEL: 'info',
          // no mesh0 unless the test asks for it (env below), as in test/setup.ts
          MESH_OVERLAY__INTERFACE: process.env.MESH_OVERLAY__INTERFACE ?? 'false',
          // the host key of the lab's sshd in this host (w.sshd), not this machine's /etc/ssh
          MESH_TUNNEL__SSH_HOST_KEYS: join(this.tmp, `sshd-${host.name}`, 'host_key.pub'),
          ...env,
        },
      },
    )
    const log: string[] = []
    // AGENT_LOG_DIR keeps every agent's whole log, for debugging a failed run
    const keep = process.env.AGENT_LOG_DIR
    const file = keep === undefined ? undefined : join(keep, `${basename(this.tmp)}-${name}.log`)
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      log.push(d)
      if (log.length > 400) log.splice(0, 100)
      if (file !== undefined) appendFileSync(file, d)
    })
    child.stdout!.resume()
    const a = { name, host, dir, child, log }
    this.agents.set(name, a)
    return a
  }

  /** `mesh ARGS` for an agent, from the host namespace (the CLI talks over the unix socket). */
  async mesh(a: Agent, args: string[], timeoutMs = 30_000): Promise<ExecResult> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(process.execPath, [CLI, '--data-dir', a.dir, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      let timedOut = false
      child.stdout.on('data', (d: Buffer) => (stdout += d))
      child.stderr.on('data', (d: Buffer) => (stderr += d))
      const timer = setTimeout(() => {
        timedOut = true
        child.kill('SIGKILL')
      }, timeoutMs)
      child.on('error', reject)
      child.on('close', (code, signal) => {
        clearTimeout(timer)
        resolvePromise({ code, signal, stdout, stderr, timedOut })
      })
    })
  }

  async json<T = any>(a: Agent, args: string[]): Promise<T> {
    const r = await this.mesh(a, ['--json', ...args])
    if (r.code !== 0) throw new Error(`mesh ${args.join(' ')} on ${a.name}: ${r.stderr}`)
    return JSON.parse(r.stdout) as T
  }

  /** `mesh ARGS` run inside the agent's namespace (what ssh and the proxy do there). */
  meshIn(
    a: Agent,
    args: string[],
    opts: { timeoutMs?: number; input?: string | Buffer } = {},
  ): Promise<ExecResult> {
    return this.lab.exec(a.host, [process.execPath, CLI, '--data-dir', a.dir, ...args], opts)
  }

  async ready(a: Agent): Promise<string> {
    const s = await waitFor<any>(
      `agent ${a.name} to answer`,
      async () => {
        if (a.child.exitCode !== null)
          throw new Error(`agent ${a.name} exited ${a.child.exitCode}: ${this.tail(a)}`)
        return this.json(a, ['status'])
      },
      60_000,
    )
    return s.peerId as string
  }

  async invite(a: Agent): Promise<string> {
    return (await this.json<{ token: string }>(a, ['invite'])).token
  }

  async member(from: Agent, name: string): Promise<any> {
    return (await this.json<any[]>(from, ['members'])).find((m) => m.name === name)
  }

  /** The sum of a metric's samples whose labels include `labels` (GET /v1/metrics, as values). */
  async metric(a: Agent, name: string, labels: Record<string, string> = {}): Promise<number> {
    const api = new ApiClient(join(a.dir, 'mesh.sock'), a.dir)
    const view = await api.call<MetricsView>('GET', '/v1/metrics', undefined, 10_000)
    return new MetricsSnapshot(view.samples).get(name, labels)
  }

  tail(a: Agent): string {
    return a.log.join('').slice(-3000)
  }

  async cleanup(): Promise<void> {
    await this.lab.cleanup()
    rmSync(this.tmp, { recursive: true, force: true })
  }
}

/** Polls `fn` until it returns something truthy; bounded by `timeoutMs`. */
export function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
  everyMs = 300,
): Promise<T> {
  return until(what, fn, timeoutMs, everyMs)
}

export function ok(r: ExecResult, what: string): string {
  assert.equal(
    r.code,
    0,
    `${what} ${r.timedOut ? 'timed out' : `exited ${r.code ?? r.signal}`}: ${r.stderr.trim()}`,
  )
  return r.stdout
}

const PUBLIC_NET = '198.18.1.0/24'

/** Bytes the host's eth0 has sent and received (the hub's share of a transfer). */
export async function ifaceBytes(lab: Lab, host: Host): Promise<number> {
  const out = await lab.execOk(host, [
    'sh',
    '-c',
    'cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes',
  ])
  return out
    .trim()
    .split('\n')
    .reduce((a, b) => a + Number(b), 0)
}

/**
 * A public hub that answers STUN (198.18.1.0/24 declared reachable), A behind NAT router RA,
 * B behind RB (with an sshd), all three members; `symmetric` NATs map each destination to a
 * random port.
 */
export async function natLab(symmetric: boolean, env: NodeJS.ProcessEnv = {}) {
  const w = new World()
  const pub = w.lab.segment('pub')
  const hubHost = w.lab.host('hub', pub)
  const ra = w.lab.natRouter('ra', pub, { symmetric })
  const rb = w.lab.natRouter('rb', pub, { symmetric })
  const aHost = w.lab.host('a', ra.lan)
  const bHost = w.lab.host('b', rb.lan)
  await w.sshd(bHost)
  ok(await w.mesh({ dir: join(w.tmp, 'agent-hub') } as Agent, ['init', '--cluster', 'natlab']), 'mesh init')
  const reach = ['--reachable', PUBLIC_NET]
  const hub = w.agent('hub', hubHost, ['--announce', `/ip4/${hubHost.ip}/tcp/4701`, ...reach], env)
  await w.ready(hub)
  const a = w.agent('a', aHost, ['--join', await w.invite(hub), ...reach], env)
  const b = w.agent('b', bHost, ['--join', await w.invite(hub), ...reach], env)
  await w.ready(a)
  await w.ready(b)
  await waitFor(
    'everyone alive everywhere, A and B with a circuit through the hub',
    async () => {
      for (const x of [hub, a, b]) {
        const ms = await w.json<any[]>(x, ['members'])
        if (ms.length !== 3 || !ms.every((m) => m.status === 'alive')) return false
      }
      const bRec = await w.member(a, 'b')
      return bRec.addrs.some((ad: string) => ad.includes('/p2p-circuit'))
    },
    90_000,
  )
  return { w, pub, hub, a, b, hubHost, aHost, bHost }
}
