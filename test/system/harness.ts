// Helpers for system tests: prerequisites (root, netns, iptables, sshd, docker) and a
// network lab of namespaces. Everything here stays on this machine: each lab host lives in
// its own network namespace, segments are bridges inside their own namespaces, and all
// addresses come from 198.18.0.0/16 (docker's bridge gets 198.19.0.0/16 from .ci/run), and
// the IPv6 ones a test asks for from 2001:2::/48 (the IPv6 benchmarking range, RFC 5180).
// Nothing is added to the host's own network stack, so deleting the namespaces removes
// every veth, bridge, route and iptables rule the lab made.
import { type ChildProcess, execFileSync, type SpawnOptions, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pidAlive } from '../../src/kernel/pid.js'

export type Need = 'root' | 'netns' | 'iptables' | 'sshd' | 'docker'

// root's PATH usually has /usr/sbin, but a sudo or cron PATH may not
const IP = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => existsSync(p)) ?? 'ip'
const SETUP_TIMEOUT_MS = 15_000

// ---------------------------------------------------------------------------------------
// a throwaway sshd

export const SSHD = ['/usr/sbin/sshd', '/usr/local/sbin/sshd'].find((p) => existsSync(p))

/**
 * Prepares a throwaway sshd in `dir` on `listen` (127.0.0.1 unless told) port `port`: a fresh
 * host key, `pubKey` as the only authorized key, no PAM, no passwords, sftp for scp. Returns the
 * argv that runs it in the foreground (in whatever namespace the caller spawns it).
 */
export function sshdSetup(
  dir: string,
  port: number,
  pubKey: Buffer | string,
  listen: string[] = ['127.0.0.1'],
): string[] {
  if (SSHD === undefined) throw new Error('no sshd here (apt-get install openssh-server)')
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }) // its privilege separation directory
  mkdirSync(dir, { recursive: true })
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')], {
    stdio: 'ignore',
  })
  writeFileSync(join(dir, 'authorized_keys'), pubKey)
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      ...listen.map((a) => `ListenAddress ${a}`),
      `HostKey ${join(dir, 'host_key')}`,
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
  return [SSHD, '-D', '-e', '-f', join(dir, 'sshd_config')]
}

// ---------------------------------------------------------------------------------------
// prerequisites

const probed = new Map<Need, string | undefined>() // need -> reason it is missing, or undefined

function commandPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (dir !== '' && existsSync(`${dir}/${name}`)) return `${dir}/${name}`
  }
  return undefined
}

function tryRun(cmd: string, args: string[], timeoutMs = 10_000): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' })
  const out = `${r.stderr ?? ''}${r.stdout ?? ''}`.trim() || String(r.error?.message ?? '')
  return { ok: r.status === 0, out }
}

/** Runs `body` inside a throwaway namespace; the namespace is removed whatever happens. */
function inProbeNs(body: (ns: string) => string | undefined): string | undefined {
  const ns = `${PREFIX_ROOT}${process.pid}-probe${randomBytes(2).toString('hex')}`
  const add = tryRun(IP, ['netns', 'add', ns])
  if (!add.ok) return `cannot create a network namespace (ip netns add: ${add.out})`
  try {
    return body(ns)
  } finally {
    tryRun(IP, ['netns', 'del', ns])
  }
}

function probe(need: Need): string | undefined {
  if (probed.has(need)) return probed.get(need)
  let why: string | undefined
  const root = process.getuid?.() === 0
  switch (need) {
    case 'root':
      why = root ? undefined : 'needs root (run the tests as root, as .ci/run does)'
      break
    case 'netns':
      if (process.platform !== 'linux') why = 'network namespaces need Linux'
      else if (!root) why = 'network namespaces need root'
      else if (commandPath('ip') === undefined) why = "the 'ip' command is missing (apt-get install iproute2)"
      else if (commandPath('ping') === undefined) why = "'ping' is missing (apt-get install iputils-ping)"
      else why = inProbeNs(() => undefined)
      break
    case 'iptables':
      if (!root) why = 'iptables needs root'
      else if (commandPath('iptables') === undefined) why = "'iptables' is missing (apt-get install iptables)"
      else {
        why = inProbeNs((ns) => {
          // the two kinds of rule the lab relies on: NAT and conntrack state matching
          for (const rule of [
            ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'lo', '-j', 'MASQUERADE'],
            ['-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'NEW', '-i', 'lo', '-j', 'DROP'],
          ]) {
            const r = tryRun(IP, ['netns', 'exec', ns, 'iptables', ...rule])
            if (!r.ok) {
              return `iptables cannot add rules in a namespace (${r.out}); try 'update-alternatives --set iptables /usr/sbin/iptables-legacy'`
            }
          }
          return undefined
        })
      }
      break
    case 'sshd': {
      const missing = ['sshd', 'ssh', 'ssh-keygen'].filter((c) => commandPath(c) === undefined)
      why =
        missing.length === 0
          ? undefined
          : `${missing.join(', ')} missing (apt-get install openssh-server openssh-client)`
      break
    }
    case 'docker': {
      if (commandPath('docker') === undefined)
        why = "the 'docker' client is missing (apt-get install docker.io)"
      else {
        const r = tryRun('docker', ['info', '--format', '{{.ServerVersion}}'], 15_000)
        why = r.ok
          ? undefined
          : `no docker engine answers (docker info: ${r.out.split('\n')[0]}); start dockerd`
      }
      break
    }
  }
  probed.set(need, why)
  return why
}

/**
 * Skips the current test or suite, with a printed reason, when a prerequisite is missing;
 * fails instead when MESH_REQUIRE_SYSTEM=1 (CI), so a broken CI machine cannot pass by skipping.
 * Use from `before` or `it`: `before(function () { requireSystem.call(this, ['netns']) })`.
 */
export function requireSystem(this: Mocha.Context, needs: Need[]): void {
  const missing = [...new Set(needs)]
    .map((n) => [n, probe(n)] as const)
    .filter(([, why]) => why !== undefined)
  if (missing.length === 0) return
  const reason = missing.map(([n, why]) => `${n}: ${why}`).join('; ')
  if (process.env.MESH_REQUIRE_SYSTEM === '1') {
    throw new Error(`system prerequisite missing and MESH_REQUIRE_SYSTEM=1: ${reason}`)
  }
  // in a hook, name the suite it guards; in a test, the test
  const where =
    ((this.test as { type?: string } | undefined)?.type === 'hook'
      ? this.test?.parent?.fullTitle()
      : this.test?.fullTitle()) ?? 'system test'
  console.log(`      skipped (${where}): ${reason}`)
  this.skip()
}

// ---------------------------------------------------------------------------------------
// the lab

/** Every lab namespace is named `mesh-t-<pid>-<run>-<what>`; the pid finds leftovers of dead runs. */
const PREFIX_ROOT = 'mesh-t-'
const STALE_RE = /^mesh-t-(\d+)-/

export interface Segment {
  /** a layer-2 segment: a bridge in its own namespace */
  name: string
  ns: string
  /** e.g. '198.18.3.0/24' */
  subnet: string
  /** default gateway for hosts on this segment (a NAT router's inside address), if any */
  gateway?: string
  /** first three octets, e.g. '198.18.3' */
  net: string
  nextHost: number
  ports: number
}

export interface Host {
  name: string
  ns: string
  /** the address on its segment (interface eth0, or wan for a router) */
  ip: string
  segment: Segment
  /** the address others on the public side see: its own, or its NAT router's */
  publicIp: string
  /** its IPv6 address on eth0, when it was given one */
  ip6?: string
}

export interface NatRouter extends Host {
  /** the private segment behind the router; put hosts on it with lab.host(name, router.lan) */
  lan: Segment
  /** the router's address on the private segment (the gateway of its hosts) */
  lanIp: string
}

export interface ExecResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  timedOut: boolean
}

const liveLabs = new Set<Lab>()
let exitHookInstalled = false

function installExitHooks(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // 'exit' runs on normal ends and on process.exit (mocha --exit); signals get the same
  // cleanup and are then re-raised so the process still ends as the signal asked.
  process.on('exit', () => {
    for (const lab of liveLabs) lab.cleanupSync()
  })
  for (const sig of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const) {
    if (process.listenerCount(sig) > 0) continue // someone else (mocha) owns it; 'exit' still runs
    process.once(sig, () => {
      for (const lab of liveLabs) lab.cleanupSync()
      process.kill(process.pid, sig)
    })
  }
}

function listNamespaces(): string[] {
  const r = spawnSync(IP, ['netns', 'list'], { encoding: 'utf8', timeout: SETUP_TIMEOUT_MS })
  if (r.status !== 0) return []
  // lines look like 'name' or 'name (id: 3)'
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(' ')[0])
    .filter((l) => l !== '')
}

/** Kills whatever still runs inside a namespace, then deletes it (which also removes its veths). */
function destroyNamespace(ns: string): void {
  const pids = spawnSync(IP, ['netns', 'pids', ns], { encoding: 'utf8', timeout: SETUP_TIMEOUT_MS })
  for (const p of (pids.stdout ?? '').split(/\s+/).filter((s) => /^\d+$/.test(s))) {
    try {
      process.kill(Number(p), 'SIGKILL')
    } catch {
      // already gone
    }
  }
  spawnSync(IP, ['netns', 'del', ns], { timeout: SETUP_TIMEOUT_MS })
}

/** Removes namespaces left by lab runs whose process is dead (a crashed or killed test run). */
export function removeStaleLabs(): string[] {
  const removed: string[] = []
  for (const ns of listNamespaces()) {
    const m = STALE_RE.exec(ns)
    if (m === null) continue
    const pid = Number(m[1])
    if (pid === process.pid || pidAlive(pid)) continue
    destroyNamespace(ns)
    removed.push(ns)
  }
  return removed
}

let staleSwept = false
let runCounter = 0

/**
 * Network namespaces joined by veth pairs to bridges, with NAT routers, for system tests.
 *
 *   const lab = new Lab()
 *   const pub = lab.segment('pub')            // 198.18.1.0/24
 *   const a = lab.host('a', pub)              // 198.18.1.10
 *   const r = lab.natRouter('r', pub)         // wan 198.18.1.11, lan 198.18.2.1/24
 *   const n = lab.host('n', r.lan)            // 198.18.2.10, default route via r
 *   await lab.exec(n, ['ping', '-c', '1', a.ip])
 *   await lab.cleanup()
 *
 * Setup is synchronous (a few `ip` commands each) so it reads top to bottom in a `before`.
 */
export class Lab {
  /** `mesh-t-<pid>-<run>`; every namespace of this lab starts with it */
  readonly prefix: string
  private readonly namespaces: string[] = []
  private readonly segments: Segment[] = []
  private readonly hosts = new Map<string, Host>()
  private readonly children = new Set<ChildProcess>()
  private readonly blocks = new Set<string>()
  private nextSubnet = 1
  private cleaned = false

  constructor() {
    if (!staleSwept) {
      staleSwept = true
      removeStaleLabs()
    }
    this.prefix = `${PREFIX_ROOT}${process.pid}-${++runCounter}${randomBytes(2).toString('hex')}`
    liveLabs.add(this)
    installExitHooks()
  }

  /** A new layer-2 segment with its own /24 in 198.18.0.0/16. */
  segment(name: string): Segment {
    checkName(name)
    if (this.nextSubnet > 254) throw new Error('lab: out of 198.18.x.0/24 subnets')
    const ns = this.addNamespace(`s-${name}`)
    this.ip(['-n', ns, 'link', 'add', 'br0', 'type', 'bridge'])
    this.ip(['-n', ns, 'link', 'set', 'br0', 'up'])
    // when docker has loaded br_netfilter, bridged frames would also cross this namespace's
    // iptables; the switch should be a plain switch (the sysctl is absent without the module)
    this.nsRun(ns, ['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0'], true)
    const net = `198.18.${this.nextSubnet++}`
    const seg: Segment = { name, ns, subnet: `${net}.0/24`, net, nextHost: 10, ports: 0 }
    this.segments.push(seg)
    return seg
  }

  /**
   * A host with one interface (eth0) on `segment`; its default route is the segment's gateway, if
   * any. With `ip6` (in 2001:2::/48) eth0 also speaks IPv6 with that address, /64 on-link.
   */
  host(name: string, segment: Segment, opts: { ip?: string; ip6?: string } = {}): Host {
    checkName(name)
    if (this.hosts.has(name)) throw new Error(`lab: host '${name}' exists already`)
    const ns = this.addNamespace(name)
    const ip = opts.ip ?? this.allocate(segment)
    this.plug(ns, 'eth0', segment, ip)
    if (segment.gateway !== undefined) this.ip(['-n', ns, 'route', 'add', 'default', 'via', segment.gateway])
    if (opts.ip6 !== undefined) {
      if (!opts.ip6.startsWith('2001:2:')) throw new Error(`lab: ${opts.ip6} is not in 2001:2::/48`)
      this.nsRun(ns, ['sysctl', '-qw', 'net.ipv6.conf.eth0.disable_ipv6=0'])
      // nodad: usable at once, no duplicate address detection wait
      this.ip(['-n', ns, '-6', 'addr', 'add', `${opts.ip6}/64`, 'dev', 'eth0', 'nodad'])
    }
    const gw = this.routerFor(segment)
    const host: Host = { name, ns, ip, segment, publicIp: gw?.publicIp ?? ip, ip6: opts.ip6 }
    this.hosts.set(name, host)
    return host
  }

  /**
   * A home-router-like NAT: `wan` on the given segment, `lan` on a new private segment whose
   * hosts use it as their default gateway. Outbound traffic is masqueraded; inbound NEW
   * connections, to the router or through it, are dropped; replies pass. Linux keeps the
   * inside source port where it can (endpoint-independent mapping, as most home routers);
   * `symmetric` maps every destination to a random port, as some carrier NATs do.
   */
  natRouter(name: string, wan: Segment, opts: { ip?: string; symmetric?: boolean } = {}): NatRouter {
    checkName(name)
    if (this.hosts.has(name)) throw new Error(`lab: host '${name}' exists already`)
    const ns = this.addNamespace(name)
    const wanIp = opts.ip ?? this.allocate(wan)
    this.plug(ns, 'wan', wan, wanIp)
    if (wan.gateway !== undefined) this.ip(['-n', ns, 'route', 'add', 'default', 'via', wan.gateway])
    const lan = this.segment(`${name}-lan`)
    const lanIp = `${lan.net}.1`
    lan.gateway = lanIp
    this.plug(ns, 'lan', lan, lanIp)
    this.nsRun(ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    const rules: string[][] = [
      // symmetric: a random source port per destination (--random-fully), which defeats STUN
      [
        '-t',
        'nat',
        '-A',
        'POSTROUTING',
        '-o',
        'wan',
        '-j',
        'MASQUERADE',
        ...(opts.symmetric ? ['--random-fully'] : []),
      ],
      ['-A', 'FORWARD', '-i', 'wan', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
      ['-A', 'FORWARD', '-i', 'wan', '-j', 'DROP'],
      ['-A', 'INPUT', '-i', 'wan', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
      ['-A', 'INPUT', '-i', 'wan', '-j', 'DROP'],
    ]
    for (const rule of rules) this.nsRun(ns, ['iptables', '-w', '5', ...rule])
    const router: NatRouter = { name, ns, ip: wanIp, segment: wan, publicIp: wanIp, lan, lanIp }
    this.hosts.set(name, router)
    return router
  }

  /** argv that runs `argv` inside the host's namespace, for callers that spawn themselves. */
  nsArgv(host: Host, argv: string[]): string[] {
    return [IP, 'netns', 'exec', host.ns, ...argv]
  }

  /** Runs a command inside the host's namespace and collects its output; killed after `timeoutMs`. */
  exec(
    host: Host,
    argv: string[],
    opts: { timeoutMs?: number; input?: string | Buffer; env?: NodeJS.ProcessEnv } = {},
  ) {
    const timeoutMs = opts.timeoutMs ?? 30_000
    return new Promise<ExecResult>((resolve, reject) => {
      const child = spawn(IP, ['netns', 'exec', host.ns, ...argv], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: opts.env ?? process.env,
      })
      this.children.add(child)
      let stdout = ''
      let stderr = ''
      let timedOut = false
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        stdout += d
      })
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        stderr += d
      })
      const timer = setTimeout(() => {
        timedOut = true
        child.kill('SIGKILL')
      }, timeoutMs)
      child.on('error', (err) => {
        clearTimeout(timer)
        this.children.delete(child)
        reject(err)
      })
      child.on('close', (code, signal) => {
        clearTimeout(timer)
        this.children.delete(child)
        resolve({ code, signal, stdout, stderr, timedOut })
      })
      child.stdin!.on('error', () => {}) // a command that exits without reading its input
      child.stdin!.end(opts.input ?? '')
    })
  }

  /** Like exec, but throws with the command's output unless it exits 0. */
  async execOk(
    host: Host,
    argv: string[],
    opts: { timeoutMs?: number; input?: string | Buffer } = {},
  ): Promise<string> {
    const r = await this.exec(host, argv, opts)
    if (r.code !== 0) {
      const how = r.timedOut ? 'timed out' : `exited ${r.code ?? r.signal}`
      throw new Error(`in ${host.name}: '${argv.join(' ')}' ${how}: ${(r.stderr || r.stdout).trim()}`)
    }
    return r.stdout
  }

  /** Starts a long-running process inside the host's namespace; cleanup() kills it if it still runs. */
  spawn(host: Host, argv: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn(IP, ['netns', 'exec', host.ns, ...argv], { stdio: 'pipe', ...opts })
    this.children.add(child)
    child.on('exit', () => this.children.delete(child))
    child.on('error', () => this.children.delete(child))
    return child
  }

  /** Whether `from` gets an echo reply from `to` (bounded: `count` pings, 1 s wait each). */
  async ping(from: Host, to: Host | string, count = 2): Promise<boolean> {
    const addr = typeof to === 'string' ? to : to.ip
    const r = await this.exec(from, ['ping', '-n', '-q', '-c', String(count), '-i', '0.2', '-W', '1', addr], {
      timeoutMs: 5_000 + count * 1_500,
    })
    return r.code === 0
  }

  /**
   * Drops all traffic between two hosts, in both hosts' namespaces, by their own and their
   * public addresses (like a firewall between them). A host behind NAT blocks the other's
   * address; note that blocking by a NAT router's public address also blocks its other hosts
   * for that peer, as a real firewall would.
   */
  block(a: Host, b: Host): void {
    const key = pairKey(a, b)
    if (this.blocks.has(key)) return
    for (const rule of this.blockRules(a, b)) this.nsRun(rule.ns, ['iptables', '-w', '5', '-I', ...rule.spec])
    this.blocks.add(key)
  }

  /** Removes what block(a, b) added. */
  unblock(a: Host, b: Host): void {
    const key = pairKey(a, b)
    if (!this.blocks.has(key)) return
    for (const rule of this.blockRules(a, b))
      this.nsRun(rule.ns, ['iptables', '-w', '5', '-D', ...rule.spec], true)
    this.blocks.delete(key)
  }

  /** Stops the processes this lab started (TERM, then KILL after `graceMs`) and removes every namespace. */
  async cleanup(graceMs = 2_000): Promise<void> {
    if (this.cleaned) return
    const running = [...this.children].filter((c) => c.exitCode === null && c.signalCode === null)
    for (const c of running) c.kill('SIGTERM')
    if (running.length > 0) {
      await Promise.race([
        Promise.all(running.map((c) => new Promise((r) => c.once('exit', r)))),
        new Promise((r) => setTimeout(r, graceMs).unref()),
      ])
    }
    this.cleanupSync()
  }

  /** The synchronous part of cleanup, safe to call from a process 'exit' handler. */
  cleanupSync(): void {
    if (this.cleaned) return
    this.cleaned = true
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    }
    this.children.clear()
    // hosts first, then the switches; deleting a namespace removes its ends of the veths
    for (const ns of [...this.namespaces].reverse()) destroyNamespace(ns)
    this.namespaces.length = 0
    liveLabs.delete(this)
  }

  /** Namespaces of this lab that still exist (for tests of cleanup). */
  existing(): string[] {
    return listNamespaces().filter((ns) => ns.startsWith(`${this.prefix}-`))
  }

  // -------------------------------------------------------------------------------------

  private blockRules(a: Host, b: Host): { ns: string; spec: string[] }[] {
    const out: { ns: string; spec: string[] }[] = []
    for (const [self, other] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const addr of new Set([other.ip, other.publicIp])) {
        if (addr === self.publicIp) continue // two hosts behind the same NAT: only the inside address
        out.push({
          ns: self.ns,
          spec: ['INPUT', '-s', addr, '-m', 'comment', '--comment', 'mesh-lab-block', '-j', 'DROP'],
        })
        out.push({
          ns: self.ns,
          spec: ['OUTPUT', '-d', addr, '-m', 'comment', '--comment', 'mesh-lab-block', '-j', 'DROP'],
        })
      }
    }
    return out
  }

  private routerFor(segment: Segment): NatRouter | undefined {
    for (const h of this.hosts.values()) {
      if ('lan' in h && (h as NatRouter).lan === segment) return h as NatRouter
    }
    return undefined
  }

  private allocate(segment: Segment): string {
    if (segment.nextHost > 250) throw new Error(`lab: segment '${segment.name}' is full`)
    return `${segment.net}.${segment.nextHost++}`
  }

  private addNamespace(what: string): string {
    if (this.cleaned) throw new Error('lab: already cleaned up')
    const ns = `${this.prefix}-${what}`
    this.ip(['netns', 'add', ns])
    this.namespaces.push(ns)
    this.ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    return ns
  }

  /** A veth from `ns` (named `ifname`) to a port of the segment's bridge, addressed `ip/24`. */
  private plug(ns: string, ifname: string, segment: Segment, ip: string): void {
    const port = `p${segment.ports++}`
    // both ends are created directly in their namespaces, so names never clash in the host's
    this.ip(['link', 'add', ifname, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', segment.ns])
    this.ip(['-n', segment.ns, 'link', 'set', port, 'master', 'br0'])
    this.ip(['-n', segment.ns, 'link', 'set', port, 'up'])
    // IPv6 off on lab links: no router solicitations or DAD delays, only 198.18/16 traffic
    this.nsRun(ns, ['sysctl', '-qw', `net.ipv6.conf.${ifname}.disable_ipv6=1`], true)
    this.ip(['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', ifname])
    this.ip(['-n', ns, 'link', 'set', ifname, 'up'])
  }

  private ip(args: string[]): void {
    run(IP, args)
  }

  private nsRun(ns: string, argv: string[], allowFail = false): void {
    try {
      run(IP, ['netns', 'exec', ns, ...argv])
    } catch (err) {
      if (!allowFail) throw err
    }
  }
}

function run(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: SETUP_TIMEOUT_MS })
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string }
    throw new Error(`lab: '${cmd} ${args.join(' ')}' failed: ${e.stderr?.toString().trim() || e.message}`)
  }
}

function checkName(name: string): void {
  // names become part of namespace names and show in `ip netns list`: keep them short and plain
  if (!/^[a-z0-9][a-z0-9-]{0,23}$/.test(name)) throw new Error(`lab: bad name '${name}' (a-z, 0-9, -)`)
}

function pairKey(a: Host, b: Host): string {
  return [a.ns, b.ns].sort().join('|')
}
