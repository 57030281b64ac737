import { strict as assert } from 'node:assert'
import { join } from 'node:path'
import { requireSystem } from './harness.js'
import { type Agent, ok, World, waitFor } from './world.js'

// The mesh0 interface (issue 15), as a user on each member sees it: three members in their own
// namespaces (the hub and C public on 198.18.1.0/24, A behind a home-router NAT), each agent
// root with its own mesh0. ping6, TCP and UDP between every pair through mesh0.

const PUBLIC_NET = '198.18.1.0/24'
const ON = { MESH_OVERLAY__INTERFACE: 'true' }

// a TCP and a UDP echo server on [::]:7000 inside a namespace, for at most 10 minutes
const ECHO_SERVERS = `
const net = require('node:net'), dgram = require('node:dgram')
net.createServer((s) => s.pipe(s)).listen(7000, '::')
const u = dgram.createSocket('udp6'); u.on('message', (m, r) => u.send(m, r.port, r.address)); u.bind(7000, '::')
setTimeout(() => process.exit(0), 600000)
`
// one TCP round trip and one UDP round trip to process.argv[1]:7000; prints 'tcp ok udp ok'
const ECHO_CLIENT = `
const net = require('node:net'), dgram = require('node:dgram')
const host = process.argv[1]
const fail = (why) => { console.error(why); process.exit(1) }
setTimeout(() => fail('timed out'), 8000)
const s = net.connect(7000, host, () => s.write('hello tcp'))
s.on('error', (e) => fail('tcp ' + e.message))
s.once('data', (d) => {
  if (String(d) !== 'hello tcp') fail('tcp echo was ' + d)
  s.destroy()
  const u = dgram.createSocket('udp6')
  let tries = 0
  const send = () => { if (++tries > 10) fail('no udp echo'); u.send('hello udp', 7000, host) }
  const t = setInterval(send, 500); send()
  u.on('message', (m) => { if (String(m) === 'hello udp') { clearInterval(t); console.log('tcp ok udp ok'); process.exit(0) } })
})
`

describe('system: the mesh0 overlay interface', function () {
  this.timeout(600_000)
  let w: World
  let agents: Agent[]
  const overlay = new Map<string, string>()

  before(async function () {
    requireSystem.call(this, ['root', 'netns', 'iptables'])
    w = new World()
    const pub = w.lab.segment('pub')
    const hubHost = w.lab.host('hub', pub)
    const cHost = w.lab.host('c', pub)
    const ra = w.lab.natRouter('ra', pub)
    const aHost = w.lab.host('a', ra.lan)
    ok(await w.mesh({ dir: join(w.tmp, 'agent-hub') } as Agent, ['init', '--cluster', 'ovl']), 'mesh init')
    const reach = ['--reachable', PUBLIC_NET]
    const hub = w.agent('hub', hubHost, ['--announce', `/ip4/${hubHost.ip}/tcp/4701`, ...reach], ON)
    await w.ready(hub)
    const c = w.agent(
      'c',
      cHost,
      ['--announce', `/ip4/${cHost.ip}/tcp/4701`, '--join', await w.invite(hub), ...reach],
      ON,
    )
    const a = w.agent('a', aHost, ['--join', await w.invite(hub), ...reach], ON)
    agents = [hub, a, c]
    for (const x of agents) await w.ready(x)
    await waitFor(
      'three members alive everywhere, each with its interface up',
      async () => {
        for (const x of agents) {
          const ms = await w.json<any[]>(x, ['members'])
          if (ms.length !== 3 || !ms.every((m) => m.status === 'alive')) return false
          const s = await w.json(x, ['status'])
          if (s.overlayInterface?.interface !== 'mesh0') return false
          overlay.set(x.name, s.overlay)
        }
        return true
      },
      120_000,
    )
    for (const x of agents) w.lab.spawn(x.host, [process.execPath, '-e', ECHO_SERVERS])
  })
  after(async () => {
    await w?.cleanup()
  })
  afterEach(function () {
    if (this.currentTest?.state === 'failed' && w !== undefined)
      for (const x of w.agents.values()) console.log(`--- ${x.name} log tail ---\n${w.tail(x)}`)
  })

  it('each member has mesh0 with its overlay address and a route for the cluster /48', async () => {
    for (const x of agents) {
      const s = await w.json(x, ['status'])
      const addrs = await w.lab.execOk(x.host, ['ip', '-6', 'addr', 'show', 'dev', 'mesh0'])
      assert.match(addrs, new RegExp(`inet6 ${s.overlay}/128`))
      const routes = await w.lab.execOk(x.host, ['ip', '-6', 'route', 'show', 'dev', 'mesh0'])
      assert.ok(routes.includes(s.overlayInterface.prefix), `${x.name} routes: ${routes}`)
    }
  })

  it('ping6, TCP and UDP work between every pair through mesh0, by overlay address', async () => {
    for (const from of agents)
      for (const to of agents) {
        if (from === to) continue
        const addr = overlay.get(to.name)!
        const ping = await w.lab.exec(
          from.host,
          ['ping', '-6', '-n', '-c', '3', '-i', '0.2', '-W', '5', addr],
          {
            timeoutMs: 30_000,
          },
        )
        assert.equal(ping.code, 0, `ping ${from.name} -> ${to.name}: ${ping.stdout}${ping.stderr}`)
        const echo = await w.lab.exec(from.host, [process.execPath, '-e', ECHO_CLIENT, addr], {
          timeoutMs: 20_000,
        })
        assert.equal(echo.stdout.trim(), 'tcp ok udp ok', `${from.name} -> ${to.name}: ${echo.stderr}`)
      }
  })

  it('stopping an agent removes its interface and routes', async () => {
    const c = agents[2]
    c.child.kill('SIGTERM')
    await waitFor('agent c to exit', async () => c.child.exitCode !== null, 30_000)
    const r = await w.lab.exec(c.host, ['ip', 'link', 'show', 'mesh0'])
    assert.notEqual(r.code, 0, 'mesh0 is gone')
    const routes = await w.lab.execOk(c.host, ['ip', '-6', 'route', 'show'])
    assert.ok(!routes.includes('mesh0'), routes)
  })
})
