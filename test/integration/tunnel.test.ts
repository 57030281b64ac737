import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { type AgentProcess, CLI, Fixture, mesh, meshJson, runIO, waitFor } from './cluster-harness.js'

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const SOURCE_MIB = 64

/** `mesh ARGS` with `input` on stdin (then EOF), collecting stdout as bytes; bounded. */
function meshIO(args: string[], input: Uint8Array, timeoutMs = 60_000) {
  return runIO([process.execPath, CLI, ...args], input, timeoutMs)
}

/** A long-running `mesh` command that prints its listen address as JSON on the first line. */
async function meshServer(
  args: string[],
  children: ChildProcess[],
): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [CLI, '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  const port = await waitFor(
    `mesh ${args.join(' ')} to listen`,
    async () => {
      if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${err}`)
      const m = /"listen": "127\.0\.0\.1:(\d+)"/.exec(out)
      return m === null ? undefined : Number(m[1])
    },
    20_000,
    100,
  )
  return { child, port }
}

/** Connect, send `data`, half-close, read until the other side ends. */
function exchange(port: number, data: Uint8Array, prelude?: (s: Socket) => Promise<void>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    const chunks: Buffer[] = []
    const timer = setTimeout(() => s.destroy(new Error('exchange timed out')), 60_000)
    s.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    s.on('connect', async () => {
      try {
        if (prelude !== undefined) await prelude(s)
        s.on('data', (d: Buffer) => chunks.push(d))
        s.end(data)
      } catch (e) {
        s.destroy(e as Error)
      }
    })
    s.on('end', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks))
      s.destroy()
    })
  })
}

/** Read exactly n bytes from a socket (SOCKS replies). */
function readN(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (buf.length >= n) {
        s.off('data', onData)
        s.off('end', onEnd)
        if (buf.length > n) s.unshift(buf.subarray(n))
        resolve(buf.subarray(0, n))
      }
    }
    const onEnd = () => reject(new Error(`ended after ${buf.length} of ${n} bytes`))
    s.on('data', onData)
    s.once('end', onEnd)
  })
}

/** SOCKS5 CONNECT (no auth) to a domain name or an IPv6 address; resolves with the reply code. */
async function socksConnect(s: Socket, host: string, port: number): Promise<number> {
  s.write(Buffer.from([5, 1, 0]))
  assert.deepEqual([...(await readN(s, 2))], [5, 0])
  const p = Buffer.alloc(2)
  p.writeUInt16BE(port)
  if (host.includes(':')) {
    const { parseIPv6 } = await import('../../src/membership/overlay.js')
    s.write(Buffer.concat([Buffer.from([5, 1, 0, 4]), Buffer.from(parseIPv6(host)!), p]))
  } else {
    s.write(Buffer.concat([Buffer.from([5, 1, 0, 3, host.length]), Buffer.from(host), p]))
  }
  const rep = await readN(s, 10)
  return rep[1]
}

describe('tunnel: proxy, forward, socks, ssh-config (3 agents on 127.0.0.1)', function () {
  this.timeout(240_000)
  const fx = new Fixture()
  const children: ChildProcess[] = []
  let a: AgentProcess
  let b: AgentProcess
  let c: AgentProcess
  let echo: Server
  let half: Server
  let slow: Server
  let source: Server
  let echoPort: number
  let halfPort: number
  let slowPort: number
  let sourcePort: number
  let resetter: Server
  let resetPort: number
  let closedPort: number
  const ids: Record<string, string> = {}
  let bOverlay: string

  const listen = (s: Server) =>
    new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as any).port)))

  before(async () => {
    // an echo server, and one that answers with the sha256 of everything once the client ends
    echo = createServer({ allowHalfOpen: true }, (sock) => {
      sock.on('error', () => {})
      sock.pipe(sock)
    })
    half = createServer({ allowHalfOpen: true }, (sock) => {
      sock.on('error', () => {})
      const h = createHash('sha256')
      sock.on('data', (d) => h.update(d))
      sock.on('end', () => sock.end(`${h.digest('hex')}\n`))
    })
    // a reader much slower than the tunnel (~16 MB/s), then the count; and a fast writer
    slow = createServer({ allowHalfOpen: true }, (sock) => {
      sock.on('error', () => {})
      let n = 0
      sock.on('data', (d) => {
        n += d.length
        sock.pause()
        setTimeout(() => sock.resume(), Math.ceil(d.length / 16_000))
      })
      sock.on('end', () => sock.end(`${n}\n`))
    })
    source = createServer({ allowHalfOpen: true }, (sock) => {
      sock.on('error', () => {})
      const chunk = Buffer.alloc(1 << 20, 7)
      let left = SOURCE_MIB
      const pump = () => {
        while (left > 0) {
          left--
          if (!sock.write(chunk)) return void sock.once('drain', pump)
        }
        sock.end()
      }
      pump()
    })
    // sends a little, then resets the connection
    // (half-open, so that the client's FIN does not end it cleanly first)
    resetter = createServer({ allowHalfOpen: true }, (sock) => {
      sock.on('error', () => {})
      sock.write(Buffer.alloc(100_000, 1))
      setTimeout(() => sock.resetAndDestroy(), 300)
    })
    resetPort = await listen(resetter)
    echoPort = await listen(echo)
    halfPort = await listen(half)
    slowPort = await listen(slow)
    sourcePort = await listen(source)
    const tmp = createServer()
    closedPort = await listen(tmp)
    await new Promise((r) => tmp.close(r)) // a port nothing listens on

    const allow = {
      MESH_TUNNEL__ALLOW_PORTS: `${echoPort},${halfPort},${slowPort},${sourcePort},${resetPort},${closedPort}`,
    }
    const dirA = fx.tempDir()
    const init = await mesh(['--data-dir', dirA, 'init', '--cluster', 'lab'])
    assert.equal(init.code, 0, init.stderr)
    a = fx.agent(dirA, ['--name', 'a']).start([], allow)
    ids.a = (await a.ready()).peerId
    const invite = async () => (await meshJson<{ token: string }>(dirA, ['invite'])).token
    b = fx.agent(fx.tempDir(), ['--name', 'b']).start(['--join', await invite()], allow)
    // c keeps the default allow-list: 22 only
    c = fx.agent(fx.tempDir(), ['--name', 'c']).start(['--join', await invite()])
    ids.b = (await b.ready()).peerId
    ids.c = (await c.ready()).peerId
    await waitFor(
      'a to see b and c alive',
      async () => {
        const ms = await meshJson<any[]>(a.dataDir, ['members'])
        return ['b', 'c'].every((n) => ms.some((m) => m.name === n && m.status === 'alive'))
      },
      60_000,
    )
    bOverlay = (await meshJson<any[]>(a.dataDir, ['members'])).find((m) => m.name === 'b').overlay
  })

  after(async () => {
    for (const ch of children) if (ch.exitCode === null) ch.kill('SIGKILL')
    for (const srv of [echo, half, slow, source, resetter]) srv?.close()
    await fx.cleanup()
  })

  it('proxy carries 4 MB of random bytes both ways, byte for byte', async () => {
    const data = randomBytes(4 << 20)
    const r = await meshIO(['--data-dir', a.dataDir, 'proxy', 'b', String(echoPort)], data)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.length, data.length)
    assert.equal(sha256(r.stdout), sha256(data))
  })

  it('half-close: the client ends its side and still gets the reply', async () => {
    const data = randomBytes(1 << 20)
    const r = await meshIO(['--data-dir', a.dataDir, 'proxy', 'b', String(halfPort)], data)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().trim(), sha256(data))
  })

  it('backpressure: a slow reader on the member does not overrun the tunnel (64 MiB)', async () => {
    const r = await meshIO(
      ['--data-dir', a.dataDir, 'proxy', 'b', String(slowPort)],
      Buffer.alloc(64 << 20, 1),
      120_000,
    )
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().trim(), String(64 << 20))
  })

  it('backpressure: a slow reader here does not overrun the tunnel either (forward, 64 MiB)', async () => {
    const { child, port } = await meshServer(
      ['--data-dir', a.dataDir, 'forward', '0', `b:${sourcePort}`],
      children,
    )
    try {
      const got = await new Promise<number>((resolve, reject) => {
        const s = connect({ port, host: '127.0.0.1' })
        let n = 0
        const timer = setTimeout(() => s.destroy(new Error(`stuck after ${n} bytes`)), 120_000)
        s.on('data', (d: Buffer) => {
          n += d.length
          s.pause()
          setTimeout(() => s.resume(), Math.ceil(d.length / 16_000))
        })
        s.on('end', () => {
          clearTimeout(timer)
          resolve(n)
        })
        s.on('error', (e) => {
          clearTimeout(timer)
          reject(e)
        })
      })
      assert.equal(got, SOURCE_MIB << 20)
    } finally {
      child.kill('SIGTERM')
    }
  })

  it('a reset on the member reaches the client as an error, not as a clean end', async () => {
    const r = await meshIO(['--data-dir', a.dataDir, 'proxy', 'b', String(resetPort)], Buffer.alloc(0))
    assert.notEqual(r.code, 0, 'mesh proxy fails')
    assert.match(r.stderr, new RegExp(`the tunnel to b:${resetPort} was reset`))
    const { child, port } = await meshServer(
      ['--data-dir', a.dataDir, 'forward', '0', `b:${resetPort}`],
      children,
    )
    try {
      const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
        const s = connect({ port, host: '127.0.0.1' })
        s.resume()
        s.on('error', (e) => resolve(e))
        s.on('end', () => resolve(undefined))
      })
      assert.equal(err?.code, 'ECONNRESET', 'the forward client sees a reset')
    } finally {
      child.kill('SIGTERM')
    }
  })

  it('resolves NAME, NAME.mesh, the overlay address (plain and bracketed) and the peer ID', async () => {
    for (const host of ['b', 'b.mesh', 'B.MESH.', bOverlay, `[${bOverlay}]`, ids.b]) {
      const msg = Buffer.from(`hello ${host}`)
      const r = await meshIO(['--data-dir', a.dataDir, 'proxy', host, String(echoPort)], msg)
      assert.equal(r.code, 0, `${host}: ${r.stderr}`)
      assert.equal(r.stdout.toString(), msg.toString(), host)
    }
  })

  it('a tunnel to ourselves goes straight to 127.0.0.1', async () => {
    const r = await meshIO(
      ['--data-dir', a.dataDir, 'proxy', 'a.mesh', String(echoPort)],
      Buffer.from('self'),
    )
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString(), 'self')
  })

  it('a port off the allow-list is refused with a message that says what to do', async () => {
    const r = await meshIO(['--data-dir', a.dataDir, 'proxy', 'c', String(echoPort)], Buffer.from('x'))
    assert.notEqual(r.code, 0)
    assert.equal(r.stdout.length, 0)
    assert.match(
      r.stderr,
      new RegExp(
        `member c does not allow tunnels to port ${echoPort}; allowed: 22\\. Add it to tunnel\\.allowPorts on c\\.`,
      ),
    )
  })

  it('unknown members and closed ports fail clearly', async () => {
    const r1 = await meshIO(['--data-dir', a.dataDir, 'proxy', 'nobody', String(echoPort)], Buffer.from('x'))
    assert.equal(r1.code, 2)
    assert.match(r1.stderr, /no member 'nobody'/)
    const r2 = await meshIO(['--data-dir', a.dataDir, 'proxy', 'b', String(closedPort)], Buffer.from('x'))
    assert.notEqual(r2.code, 0)
    assert.match(
      r2.stderr,
      new RegExp(`member b: nothing accepted a connection on 127\\.0\\.0\\.1:${closedPort}`),
    )
    const r3 = await meshIO(['--data-dir', a.dataDir, 'proxy', 'b', '70000'], Buffer.from('x'))
    assert.equal(r3.code, 2)
    assert.match(r3.stderr, /invalid port '70000'/)
  })

  it('forward listens on 127.0.0.1 and carries each connection to MEMBER:PORT', async () => {
    const { child, port } = await meshServer(
      ['--data-dir', a.dataDir, 'forward', '0', `b.mesh:${echoPort}`],
      children,
    )
    try {
      const data = randomBytes(2 << 20)
      const [r1, r2] = await Promise.all([exchange(port, data), exchange(port, Buffer.from('second'))])
      assert.equal(sha256(r1), sha256(data))
      assert.equal(r2.toString(), 'second')
      // the overlay-address form of the target parses too
      const h = await exchange(port, Buffer.from('again'))
      assert.equal(h.toString(), 'again')
    } finally {
      child.kill('SIGTERM')
    }
    const bracket = await meshServer(
      ['--data-dir', a.dataDir, 'forward', '0', `[${bOverlay}]:${halfPort}`],
      children,
    )
    try {
      const data = randomBytes(100_000)
      assert.equal((await exchange(bracket.port, data)).toString().trim(), sha256(data))
    } finally {
      bracket.child.kill('SIGTERM')
    }
  })

  it('socks reaches *.mesh names and overlay addresses, and refuses everything else', async () => {
    const { child, port } = await meshServer(['--data-dir', a.dataDir, 'socks', '--port', '0'], children)
    try {
      const data = randomBytes(1 << 20)
      let rep = -1
      const got = await exchange(port, data, async (s) => {
        rep = await socksConnect(s, 'b.mesh', echoPort)
      })
      assert.equal(rep, 0)
      assert.equal(sha256(got), sha256(data))
      const viaOverlay = await exchange(port, Buffer.from('v6'), async (s) => {
        assert.equal(await socksConnect(s, bOverlay, echoPort), 0)
      })
      assert.equal(viaOverlay.toString(), 'v6')
      const refused = async (host: string, p: number) => {
        const s = connect({ port, host: '127.0.0.1' })
        await new Promise((r) => s.once('connect', r))
        try {
          return await socksConnect(s, host, p)
        } finally {
          s.destroy()
        }
      }
      assert.equal(await refused('example.com', 80), 2, 'not a mesh name: not allowed')
      assert.equal(await refused('nobody.mesh', echoPort), 4, 'unknown member: host unreachable')
      assert.equal(await refused('c.mesh', echoPort), 2, 'port not allowed on c')
    } finally {
      child.kill('SIGTERM')
    }
  })

  it('ssh --info-only prints ssh with the proxy command and the overlay address as host key alias', async () => {
    const r = await mesh(['--data-dir', a.dataDir, 'ssh', '--info-only', 'root@b', '--', 'uname', '-a'])
    assert.equal(r.code, 0, r.stderr)
    // the proxy hands ssh the tunnel's socket (ProxyUseFdpass): no process copies the bytes
    assert.match(
      r.stdout,
      /^ssh -o 'ProxyCommand=.+ --data-dir .+ proxy --fdpass %h %p' -o ProxyUseFdpass=yes /,
    )
    assert.ok(r.stdout.includes(`-o HostKeyAlias=${bOverlay} root@${bOverlay} uname -a`), r.stdout)
    const j = await meshJson<{ argv: string[] }>(a.dataDir, ['ssh', '--info-only', 'b.mesh'])
    assert.equal(j.argv.at(-1), bOverlay)
  })

  it('ssh-config prints the blocks and --install includes them once, keeping the user config', async () => {
    const r = await mesh(['--data-dir', a.dataDir, 'ssh-config'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^Host \*\.mesh fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}:\*$/m)
    assert.match(r.stdout, /^ {4}ProxyCommand .+ proxy --fdpass %h %p\n {4}ProxyUseFdpass yes$/m)
    assert.ok(r.stdout.includes(`Host b.mesh\n    HostKeyAlias ${bOverlay}\n`), r.stdout)
    const sshDir = join(fx.tempDir(), '.ssh')
    const { mkdirSync } = await import('node:fs')
    mkdirSync(sshDir, { mode: 0o700 })
    writeFileSync(join(sshDir, 'config'), 'Host old\n    User someone\n', { mode: 0o600 })
    for (let i = 0; i < 2; i++) {
      const inst = await mesh(['--data-dir', a.dataDir, 'ssh-config', '--install', '--ssh-dir', sshDir])
      assert.equal(inst.code, 0, inst.stderr)
    }
    const cfg = readFileSync(join(sshDir, 'config'), 'utf8')
    assert.equal(cfg.match(/^Include mesh\.config$/gm)?.length, 1)
    assert.ok(cfg.indexOf('Include mesh.config') < cfg.indexOf('Host old'), 'the include comes first')
    assert.ok(cfg.includes('Host old\n    User someone'))
    assert.ok(existsSync(join(sshDir, 'mesh.config')))
    assert.equal(statSync(join(sshDir, 'mesh.config')).mode & 0o777, 0o600)
    assert.equal(readFileSync(join(sshDir, 'mesh.config'), 'utf8'), r.stdout)
  })

  it('lists open tunnels on both ends and counts them in the metrics', async () => {
    const child = spawn(process.execPath, [CLI, '--data-dir', a.dataDir, 'proxy', 'b', String(echoPort)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    children.push(child)
    try {
      child.stdin.write('ping')
      await waitFor('the echo', async () => child.stdout.read()?.toString() === 'ping', 20_000, 100)
      const out = await meshJson<any[]>(a.dataDir, ['tunnels'])
      assert.ok(
        out.some(
          (t) => t.direction === 'out' && t.name === 'b' && t.port === echoPort && t.path === 'direct',
        ),
      )
      const inb = await meshJson<any[]>(b.dataDir, ['tunnels'])
      assert.ok(inb.some((t) => t.direction === 'in' && t.peerId === ids.a && t.port === echoPort))
    } finally {
      child.stdin.end()
      await new Promise((r) => child.once('close', r))
    }
    const metrics = await metricsOf(c)
    assert.match(metrics, /mesh_tunnel_opened_total\{direction="in",result="port-not-allowed"\} [1-9]/)
  })
})

async function metricsOf(a: AgentProcess): Promise<string> {
  const { request } = await import('node:http')
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: join(a.dataDir, 'mesh.sock'), path: '/metrics' }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(body))
    })
    req.on('error', reject)
    req.end()
  })
}
