import { strict as assert } from 'node:assert'
import { randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { multiaddr } from '@multiformats/multiaddr'
import fc from 'fast-check'
import { webrtcAddrThrough } from '../../src/nat/component.js'
import { parseCidr, Reachability } from '../../src/nat/reachability.js'
import {
  bindingRequest,
  bindingSuccess,
  parseBindingRequest,
  parseBindingSuccess,
} from '../../src/nat/stun.js'
import { StunServer, stunQuery } from '../../src/nat/stun-server.js'

describe('nat: STUN messages', () => {
  it('a Binding response round-trips the mapped address, IPv4 and IPv6', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.ipV4(), fc.ipV6()),
        fc.integer({ min: 1, max: 65_535 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        (ip, port, id) => {
          const got = parseBindingSuccess(bindingSuccess(id, ip, port), id)
          assert.ok(got !== undefined)
          assert.equal(got.port, port)
          if (ip.includes(':')) {
            // compare as expanded groups: '::' and embedded IPv4 come back as eight hex groups
            const expand = (s: string) => new URL(`http://[${s}]`).hostname
            assert.equal(expand(got.ip), expand(ip))
          } else assert.equal(got.ip, ip)
        },
      ),
    )
  })

  it('a response to another transaction is not taken', () => {
    const id = randomBytes(12)
    const other = randomBytes(12)
    assert.equal(parseBindingSuccess(bindingSuccess(id, '198.18.1.10', 4701), other), undefined)
  })

  it('parses a Binding request and refuses what is not one, never throwing', () => {
    const id = randomBytes(12)
    const req = parseBindingRequest(bindingRequest(id))
    assert.ok(req.ok)
    assert.deepEqual(Buffer.from(req.transactionId), id)
    const bad: Array<[Uint8Array, RegExp]> = [
      [new Uint8Array(10), /shorter/],
      [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), /not STUN|cookie|length/],
      [bindingSuccess(id, '1.2.3.4', 5), /not a Binding request/],
      [Uint8Array.from([...bindingRequest(id).slice(0, 3), 8, ...bindingRequest(id).slice(4)]), /length/],
    ]
    for (const [buf, re] of bad) {
      const r = parseBindingRequest(buf)
      assert.equal(r.ok, false)
      assert.match((r as { reason: string }).reason, re)
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (buf) => {
        parseBindingRequest(buf)
        parseBindingSuccess(buf, id)
      }),
    )
  })
})

describe('nat: reachable networks', () => {
  it('public addresses are reachable, private ranges are not unless configured', () => {
    const plain = new Reachability()
    for (const ip of ['8.8.8.8', '2001:4860::8888']) assert.equal(plain.ip(ip), true, ip)
    for (const ip of [
      '10.1.2.3',
      '192.168.1.1',
      '172.20.0.1',
      '100.64.1.1',
      '198.18.1.10',
      '198.19.0.1',
      '127.0.0.1',
      'fd00::1',
      'fe80::1',
      'nonsense',
    ]) {
      assert.equal(plain.ip(ip), false, ip)
    }
    const lab = new Reachability(['198.18.1.0/24', '10.0.0.0/8'])
    assert.equal(lab.ip('198.18.1.10'), true)
    assert.equal(lab.ip('198.18.2.10'), false)
    assert.equal(lab.ip('10.200.0.1'), true)
    assert.equal(lab.addr(multiaddr('/ip4/198.18.1.10/tcp/4701')), true)
    assert.equal(lab.addr(multiaddr('/dns4/example.org/tcp/4701')), true)
  })

  it('refuses a malformed network with what it expected', () => {
    for (const bad of ['198.18.0.0', '198.18.0.0/33', 'x/8', '::/129']) {
      assert.throws(() => parseCidr(bad), /expected a network such as/)
    }
  })

  it('builds the WebRTC address that signals through the relay of a relayed connection', () => {
    const relay = '12D3KooWRelayRelayRelayRelayRelayRelayRelayRelayRelay'
    const ma = multiaddr(`/ip4/198.18.1.10/tcp/4701/p2p/${relay}/p2p-circuit`)
    const peer = '12D3KooWTargetTargetTargetTargetTargetTargetTargetTar'
    assert.equal(
      webrtcAddrThrough(ma, peer)?.toString(),
      `/ip4/198.18.1.10/tcp/4701/p2p/${relay}/p2p-circuit/webrtc/p2p/${peer}`,
    )
    assert.equal(webrtcAddrThrough(multiaddr('/ip4/198.18.1.10/tcp/4701'), peer), undefined)
  })
})

describe('nat: the STUN responder on a real UDP socket', () => {
  let server: StunServer | undefined
  afterEach(async () => {
    await server?.stop()
    server = undefined
  })

  it('tells a member its address and port as seen from the server', async () => {
    server = new StunServer({ port: 0, host: '127.0.0.1', allow: (ip) => ip === '127.0.0.1' })
    await server.start()
    const got = await stunQuery('127.0.0.1', server.port, 2000)
    assert.equal(got?.ip, '127.0.0.1')
    assert.ok(got !== undefined && got.port > 0)
  })

  it('does not answer an address no member is connected from', async () => {
    const seen: string[] = []
    server = new StunServer({
      port: 0,
      host: '127.0.0.1',
      allow: () => false,
      onRequest: (o) => seen.push(o),
    })
    await server.start()
    assert.equal(await stunQuery('127.0.0.1', server.port, 600), undefined)
    assert.ok(seen.length > 0 && seen.every((o) => o === 'not-member'), seen.join(','))
  })

  it('rate-limits one source and counts malformed requests without answering them', async () => {
    const seen = new Map<string, number>()
    server = new StunServer({
      port: 0,
      host: '127.0.0.1',
      allow: () => true,
      perSourceRate: 5,
      onRequest: (o) => seen.set(o, (seen.get(o) ?? 0) + 1),
    })
    await server.start()
    const sock = createSocket('udp4')
    let answers = 0
    sock.on('message', () => answers++)
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()))
    const req = bindingRequest(randomBytes(12))
    sock.send(Buffer.from('not stun at all, just some bytes'), server.port, '127.0.0.1')
    for (let i = 0; i < 40; i++) sock.send(req, server.port, '127.0.0.1')
    // bounded wait for the datagrams to be handled (loopback: well under a second)
    for (let i = 0; i < 20 && [...seen.values()].reduce((a, b) => a + b, 0) < 41; i++) {
      await new Promise((r) => setTimeout(r, 50))
    }
    sock.close()
    // a burst of twice the per-second rate, then refusals
    assert.ok((seen.get('answered') ?? 0) <= 11, JSON.stringify([...seen]))
    assert.ok((seen.get('rate-limited') ?? 0) >= 28, JSON.stringify([...seen]))
    assert.equal(seen.get('malformed'), 1)
    assert.ok(answers <= 11)
  })

  it('a busy port is an error at start, not a crash later', async () => {
    server = new StunServer({ port: 0, host: '127.0.0.1', allow: () => true })
    await server.start()
    const second = new StunServer({ port: server.port, host: '127.0.0.1', allow: () => true })
    await assert.rejects(second.start(), /EADDRINUSE/)
  })
})
