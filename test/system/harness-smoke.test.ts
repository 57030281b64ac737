import { strict as assert } from 'node:assert'
import { once } from 'node:events'
import { type Host, Lab, type NatRouter, requireSystem } from './harness.js'

// The lab itself: two public hosts and one behind a NAT router, all in 198.18.0.0/16.
describe('system: lab harness', function () {
  this.timeout(60_000)
  let lab: Lab
  let a: Host
  let b: Host
  let r: NatRouter
  let n: Host

  before(function () {
    requireSystem.call(this, ['root', 'netns', 'iptables'])
    lab = new Lab()
    const pub = lab.segment('pub')
    a = lab.host('a', pub)
    b = lab.host('b', pub)
    r = lab.natRouter('r', pub)
    n = lab.host('n', r.lan)
  })

  after(async () => {
    if (lab === undefined) return
    await lab.cleanup()
    assert.deepEqual(lab.existing(), [], 'every namespace of the lab is gone')
  })

  it('public hosts reach each other', async () => {
    assert.ok(await lab.ping(a, b), 'a -> b')
    assert.ok(await lab.ping(b, a), 'b -> a')
  })

  it('the NATed host reaches a public one, and is seen from the router address', async () => {
    assert.ok(await lab.ping(n, a), 'n -> a')
    // a TCP listener on a tells who connected: the router's public address, not n's own
    const server = lab.spawn(a, [
      process.execPath,
      '-e',
      `const s = require('net').createServer((c) => { console.log(c.remoteAddress); c.end(); s.close() })
       s.listen(7001, '${a.ip}', () => console.log('ready'))
       setTimeout(() => process.exit(3), 10000).unref()`,
    ])
    let out = ''
    server.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d
    })
    await waitFor(() => out.includes('ready'), 5_000, 'listener on a')
    await lab.execOk(n, [
      process.execPath,
      '-e',
      `const c = require('net').connect(7001, '${a.ip}'); c.on('error', (e) => { console.error(e.message); process.exit(1) })
       c.resume(); c.on('end', () => process.exit(0)); setTimeout(() => process.exit(2), 5000)`,
    ])
    if (server.exitCode === null) await once(server, 'exit')
    assert.equal(
      out.trim().split('\n').pop(),
      r.ip,
      `a saw the connection from the router (${r.ip}), not ${n.ip}`,
    )
    assert.equal(n.publicIp, r.ip)
  })

  it('nothing reaches the NATed host from outside, even with a route to it', async () => {
    assert.equal(await lab.ping(a, n), false, 'no route: a -> n fails')
    // give a a route through the router, as a neighbour on the same wire could: still dropped
    await lab.execOk(a, ['ip', 'route', 'add', r.lan.subnet, 'via', r.ip])
    try {
      assert.equal(await lab.ping(a, n), false, 'a -> n through the router is dropped')
      assert.equal(await lab.ping(a, r), false, 'the router drops new inbound traffic to itself')
    } finally {
      await lab.execOk(a, ['ip', 'route', 'del', r.lan.subnet, 'via', r.ip])
    }
    assert.ok(await lab.ping(n, a), 'replies still pass: n -> a')
  })

  it('block cuts two hosts apart, both ways, and unblock restores them', async () => {
    lab.block(a, b)
    try {
      assert.equal(await lab.ping(a, b), false, 'a -> b blocked')
      assert.equal(await lab.ping(b, a), false, 'b -> a blocked')
      assert.ok(await lab.ping(n, b), 'others are not affected')
    } finally {
      lab.unblock(a, b)
    }
    assert.ok(await lab.ping(a, b), 'a -> b again')
    // a firewall between a NATed host and a public one
    lab.block(n, b)
    try {
      assert.equal(await lab.ping(n, b), false, 'n -> b blocked')
      assert.ok(await lab.ping(n, a), 'n -> a still open')
    } finally {
      lab.unblock(n, b)
    }
    assert.ok(await lab.ping(n, b), 'n -> b again')
  })
})

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
