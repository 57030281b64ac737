import { strict as assert } from 'node:assert'
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type ExecResult, type Host, Lab, type NatRouter, requireSystem } from './harness.js'

// Tunnels and ssh in the netns lab (root): real agents and a real sshd in each target's
// namespace, listening on that namespace's 127.0.0.1:22, where the tunnel target connects.
//   1. NAT: a public hub, A behind NAT router RA, B behind RB. A reaches B only through the hub.
//   2. The raptiformica demo: A, B, C on one segment; a firewall between A and C; ssh A -> C
//      goes through B within 15 s, and goes direct again once the firewall is lifted.
// Everything lives in 198.18.0.0/16 namespaces the lab creates; all of it is removed in `after`.

const ROOT = resolve(import.meta.dirname, '../../..')
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js')
const SSHD = ['/usr/sbin/sshd', '/usr/local/sbin/sshd'].find((p) => existsSync(p)) ?? 'sshd'

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Agent {
  name: string
  host: Host
  dir: string
  child: ChildProcess
  log: string[]
}

/** One lab with agents and sshds; `cleanup` removes all of it. */
class World {
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
    this.run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_ed25519')])
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${this.key}.pub`))
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        'Port 22',
        'ListenAddress 127.0.0.1',
        `HostKey ${join(dir, 'host_ed25519')}`,
        'PidFile none',
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'Subsystem sftp internal-sftp',
        '',
      ].join('\n'),
    )
    const child = this.lab.spawn(host, [SSHD, '-D', '-e', '-f', join(dir, 'sshd_config')])
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
      { env: { ...process.env, MESH_LOG_LEVEL: 'info', ...env } },
    )
    const log: string[] = []
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      log.push(d)
      if (log.length > 400) log.splice(0, 100)
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

  async metric(a: Agent, re: RegExp): Promise<number> {
    const body: string = await new Promise((res, rej) => {
      const req = request({ socketPath: join(a.dir, 'mesh.sock'), path: '/metrics' }, (resp: any) => {
        let t = ''
        resp.on('data', (d: Buffer) => (t += d))
        resp.on('end', () => res(t))
      })
      req.on('error', rej)
      req.end()
    })
    let sum = 0
    for (const line of body.split('\n')) {
      const m = re.exec(line)
      if (m !== null) sum += Number(line.split(' ').pop())
    }
    return sum
  }

  tail(a: Agent): string {
    return a.log.join('').slice(-3000)
  }

  async cleanup(): Promise<void> {
    await this.lab.cleanup()
    rmSync(this.tmp, { recursive: true, force: true })
  }
}

async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
  everyMs = 300,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    await sleep(everyMs)
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
  )
}

function ok(r: ExecResult, what: string): string {
  assert.equal(
    r.code,
    0,
    `${what} ${r.timedOut ? 'timed out' : `exited ${r.code ?? r.signal}`}: ${r.stderr.trim()}`,
  )
  return r.stdout
}

describe('system: tunnels and ssh through NAT and around firewalls', function () {
  this.timeout(600_000)

  describe('NAT: a public hub, A behind RA, B behind RB', () => {
    let w: World
    let hub: Agent
    let a: Agent
    let b: Agent
    let hubHost: Host
    let ra: NatRouter
    let bHost: Host
    const ids: Record<string, string> = {}

    before(async function () {
      requireSystem.call(this, ['root', 'netns', 'iptables', 'sshd'])
      w = new World()
      const pub = w.lab.segment('pub')
      hubHost = w.lab.host('hub', pub)
      ra = w.lab.natRouter('ra', pub)
      const rb = w.lab.natRouter('rb', pub)
      const aHost = w.lab.host('a', ra.lan)
      bHost = w.lab.host('b', rb.lan)
      await w.sshd(bHost)

      const init = await w.mesh({ dir: join(w.tmp, 'agent-hub') } as Agent, ['init', '--cluster', 'natlab'])
      ok(init, 'mesh init')
      // a relay announces its reachable address (NAT-LAB.md: AutoNAT dial-back otherwise drops the NATed clients)
      hub = w.agent('hub', hubHost, ['--announce', `/ip4/${hubHost.ip}/tcp/4701`])
      ids.hub = await w.ready(hub)
      a = w.agent('a', aHost, ['--join', await w.invite(hub)])
      b = w.agent('b', bHost, ['--join', await w.invite(hub)])
      ids.a = await w.ready(a)
      ids.b = await w.ready(b)
      await waitFor(
        'everyone alive everywhere',
        async () => {
          for (const x of [hub, a, b]) {
            const ms = await w.json<any[]>(x, ['members'])
            if (ms.length !== 3 || !ms.every((m) => m.status === 'alive')) return false
          }
          return true
        },
        90_000,
      )
    })

    after(async () => {
      await w?.cleanup()
    })

    afterEach(function () {
      if (this.currentTest?.state === 'failed' && w !== undefined) {
        for (const x of w.agents.values()) console.log(`--- ${x.name} log tail ---\n${w.tail(x)}`)
      }
    })

    it('the NATed members hold a reservation on the hub and announce the circuit; the hub announces its address', async () => {
      for (const x of [a, b]) {
        const m = await waitFor(
          `${x.name}'s record to carry a circuit through the hub`,
          async () => {
            const rec = await w.member(hub, x.name)
            return rec?.addrs.some((ad: string) =>
              ad.includes(`/p2p/${ids.hub}/p2p-circuit/p2p/${ids[x.name]}`),
            )
              ? rec
              : undefined
          },
          60_000,
        )
        assert.ok(
          m.addrs.some((ad: string) =>
            ad.startsWith(`/ip4/${hubHost.ip}/tcp/4701/p2p/${ids.hub}/p2p-circuit`),
          ),
        )
      }
      const h = await w.member(a, 'hub')
      assert.deepEqual(h.addrs, [`/ip4/${hubHost.ip}/tcp/4701/p2p/${ids.hub}`])
    })

    it("from A, mesh ssh to B runs a command in B's namespace (through the hub)", async () => {
      const r = await w.meshIn(a, ['ssh', 'root@b', '--', ...w.sshOpts(), 'ip -o -4 addr show eth0'], {
        timeoutMs: 90_000,
      })
      const out = ok(r, 'mesh ssh root@b')
      assert.ok(out.includes(`inet ${bHost.ip}/24`), `ran in B's namespace: ${out}`)
      const path = (await w.member(a, 'b')).path
      // WebRTC would be a hole punch; without a STUN server in the lab it is the relay
      assert.ok(['relayed', 'webrtc'].includes(path), `path from A to B: ${path}`)
      // the host key is pinned under B's overlay address
      const overlay = (await w.member(a, 'b')).overlay
      // (Debian hashes known_hosts names: ask ssh-keygen)
      const found = spawnSync('ssh-keygen', ['-F', overlay, '-f', w.knownHosts], {
        encoding: 'utf8',
        timeout: 10_000,
      })
      assert.equal(found.status, 0, `known_hosts has an entry for ${overlay}`)
    })

    it('scp of 50 MB to B through `mesh ssh-config` arrives intact', async () => {
      const cfg = join(w.tmp, 'ssh_config')
      writeFileSync(cfg, ok(await w.mesh(a, ['ssh-config']), 'mesh ssh-config'))
      const src = join(w.tmp, 'big.bin')
      const dst = join(w.tmp, 'received.bin')
      const data = randomBytes(50 << 20)
      writeFileSync(src, data)
      const t0 = Date.now()
      const r = await w.lab.exec(a.host, ['scp', '-F', cfg, ...w.sshOpts(), src, `root@b.mesh:${dst}`], {
        timeoutMs: 300_000,
      })
      ok(r, 'scp')
      const secs = (Date.now() - t0) / 1000
      console.log(
        `      scp 50 MiB A -> B through the hub relay: ${secs.toFixed(1)} s (${(50 / secs).toFixed(1)} MiB/s)`,
      )
      // checked on B itself, through the tunnel again (plain ssh with the generated config)
      const sum = ok(
        await w.lab.exec(a.host, ['ssh', '-F', cfg, ...w.sshOpts(), 'root@b.mesh', `sha256sum ${dst}`], {
          timeoutMs: 60_000,
        }),
        'ssh sha256sum',
      )
      assert.equal(sum.split(' ')[0], sha256(data))
      rmSync(src)
      rmSync(dst)
    })

    it('refuses a port off the allow-list, with what to do', async () => {
      const r = await w.meshIn(a, ['proxy', 'b.mesh', '2222'], { timeoutMs: 60_000 })
      assert.notEqual(r.code, 0)
      assert.match(
        r.stderr,
        /member b does not allow tunnels to port 2222; allowed: 22\. Add it to tunnel\.allowPorts on b\./,
      )
    })

    it('a stranger (no cluster key) gets no tunnel stream from the hub', async () => {
      const x = w.lab.host('x', hubHost.segment)
      const prefix = `/mesh/${(await w.json(hub, ['status'])).cluster.id.slice(0, 16)}`
      const before = await w.metric(hub, /^mesh_tunnel_opened_total\{direction="in"/)
      const code = `
        import '${join(ROOT, 'dist', 'src', 'shim.js')}'
        import { createLibp2p } from 'libp2p'
        import { tcp } from '@libp2p/tcp'
        import { noise } from '@chainsafe/libp2p-noise'
        import { yamux } from '@chainsafe/libp2p-yamux'
        import { multiaddr } from '@multiformats/multiaddr'
        const node = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
        let out
        try {
          const s = await node.dialProtocol(multiaddr(process.argv[1]), process.argv[2], { signal: AbortSignal.timeout(10000) })
          out = { opened: true, protocol: s.protocol }
        } catch (err) { out = { opened: false, error: err.message } }
        console.log(JSON.stringify(out))
        await node.stop()
        process.exit(0)`
      const r = await w.lab.exec(
        x,
        [
          'env',
          `--chdir=${ROOT}`,
          process.execPath,
          '--input-type=module',
          '-e',
          code,
          `/ip4/${hubHost.ip}/tcp/4701/p2p/${ids.hub}`,
          `${prefix}/tunnel/1.0.0`,
        ],
        { timeoutMs: 60_000 },
      )
      const res = JSON.parse(ok(r, 'stranger').trim().split('\n').pop()!)
      assert.equal(res.opened, false, `the stranger opened a tunnel stream: ${JSON.stringify(res)}`)
      assert.equal(await w.metric(hub, /^mesh_tunnel_opened_total\{direction="in"/), before)
    })

    it('a revoked member can no longer open tunnels', async function () {
      const help = await w.mesh(hub, ['revoke', '--help'])
      if (help.code !== 0) {
        console.log('      skipped: this build has no `mesh revoke`')
        this.skip()
      }
      ok(await w.mesh(hub, ['revoke', 'a']), 'mesh revoke a')
      // B learns of the revocation by gossip and cuts A off; A's attempts must fail from then on
      const probe = () => w.meshIn(a, ['proxy', 'b', '22'], { timeoutMs: 40_000, input: 'SSH-2.0-probe\r\n' })
      await waitFor(
        'A to be refused',
        async () => {
          const r = await probe()
          return r.code !== 0 && !r.stdout.startsWith('SSH-')
        },
        90_000,
        1_000,
      )
      const okIn = /^mesh_tunnel_opened_total\{direction="in",result="ok"\}/
      const before = await w.metric(b, okIn)
      const r = await probe()
      assert.notEqual(r.code, 0, 'still refused')
      assert.equal(r.stdout, '', 'no bytes from B')
      console.log(`      A after the revocation: ${r.stderr.trim()}`)
      assert.equal(await w.metric(b, okIn), before, 'B opened no tunnel for A')
    })
  })

  describe('firewall: A, B, C directly reachable; the path between A and C is blocked and lifted', () => {
    let w: World
    let a: Agent
    let b: Agent
    let c: Agent
    let cHost: Host
    let aHost: Host

    before(async function () {
      requireSystem.call(this, ['root', 'netns', 'iptables', 'sshd'])
      w = new World()
      const pub = w.lab.segment('pub')
      aHost = w.lab.host('a', pub)
      const bHost = w.lab.host('b', pub)
      cHost = w.lab.host('c', pub)
      await w.sshd(cHost)
      ok(await w.mesh({ dir: join(w.tmp, 'agent-a') } as Agent, ['init', '--cluster', 'demo']), 'mesh init')
      const announce = (h: Host) => ['--announce', `/ip4/${h.ip}/tcp/4701`]
      a = w.agent('a', aHost, announce(aHost))
      await w.ready(a)
      b = w.agent('b', bHost, [...announce(bHost), '--join', await w.invite(a)])
      c = w.agent('c', cHost, [...announce(cHost), '--join', await w.invite(a)])
      await w.ready(b)
      await w.ready(c)
      await waitFor(
        'A, B and C alive and directly connected everywhere',
        async () => {
          for (const x of [a, b, c]) {
            const ms = await w.json<any[]>(x, ['members'])
            if (
              ms.length !== 3 ||
              !ms.every((m) => m.status === 'alive' && ['self', 'direct'].includes(m.path))
            )
              return false
          }
          return true
        },
        90_000,
      )
    })

    after(async () => {
      await w?.cleanup()
    })

    afterEach(function () {
      if (this.currentTest?.state === 'failed' && w !== undefined) {
        for (const x of w.agents.values()) console.log(`--- ${x.name} log tail ---\n${w.tail(x)}`)
      }
    })

    const sshC = (timeoutMs: number) =>
      w.meshIn(a, ['ssh', 'root@c', '--', ...w.sshOpts(), 'ip -o -4 addr show eth0'], { timeoutMs })

    it('ssh A -> C goes direct', async () => {
      const out = ok(await sshC(60_000), 'mesh ssh root@c')
      assert.ok(out.includes(`inet ${cHost.ip}/24`), out)
      assert.equal((await w.member(a, 'c')).path, 'direct')
    })

    it('with A <-> C blocked, ssh A -> C still works within 15 s, through B', async () => {
      w.lab.block(aHost, cHost)
      const t0 = Date.now()
      let last: ExecResult | undefined
      // bounded: each attempt has its own timeout, and the loop stops at 15 s plus one attempt
      for (let i = 0; i < 10 && Date.now() - t0 < 15_000; i++) {
        last = await sshC(Math.max(3_000, 15_000 - (Date.now() - t0)) + 5_000)
        if (last.code === 0) break
      }
      const secs = (Date.now() - t0) / 1000
      assert.equal(last?.code, 0, `no ssh A -> C after ${secs} s: ${last?.stderr}`)
      assert.ok(last!.stdout.includes(`inet ${cHost.ip}/24`))
      console.log(`      ssh A -> C worked ${secs.toFixed(1)} s after the firewall went up`)
      assert.ok(secs <= 15, `took ${secs} s`)
      assert.equal((await w.member(a, 'c')).path, 'relayed')
      assert.equal(await w.lab.ping(aHost, cHost), false, 'the firewall is really up')
    })

    it('with the firewall lifted, the path returns to direct and new tunnels use it', async () => {
      w.lab.unblock(aHost, cHost)
      const t0 = Date.now()
      await waitFor(
        'the path A -> C to be direct again',
        async () => (await w.member(a, 'c')).path === 'direct',
        60_000,
        500,
      )
      console.log(
        `      path A -> C direct again ${((Date.now() - t0) / 1000).toFixed(1)} s after the firewall was lifted`,
      )
      const direct = /^mesh_tunnel_paths_total\{path="direct"\}/
      const before = await w.metric(a, direct)
      const out = ok(await sshC(60_000), 'mesh ssh root@c after unblock')
      assert.ok(out.includes(`inet ${cHost.ip}/24`))
      assert.equal(await w.metric(a, direct), before + 1, 'the tunnel took the direct connection')
    })
  })
})
