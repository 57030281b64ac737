import assert from 'node:assert/strict'
import { once } from 'node:events'
import { type AddressInfo, connect, createServer, type Server } from 'node:net'
import { meshHost, REP, socksServer } from '../../src/api/socks5.js'
import type { TunnelSocket } from '../../src/api/tunnel-client.js'
import { FrameDecoder, writeData, writeEnd } from '../../src/tunnel/frames.js'

// `mesh socks`: a SOCKS5 server on 127.0.0.1 that reaches only mesh members. Real loopback
// sockets on both sides; the "agent" behind open() is a TCP server that answers in the
// agent's frames (as the control socket does) and echoes what it gets, upper-cased.

/** What a client got back after sending `writes` and its FIN: every byte until the server closed. */
async function exchange(port: number, ...writes: Buffer[]): Promise<Buffer> {
  const s = connect({ host: '127.0.0.1', port })
  const got: Buffer[] = []
  s.on('data', (d: Buffer) => got.push(d))
  s.on('error', () => {})
  await once(s, 'connect')
  for (const w of writes) s.write(w)
  s.end()
  await once(s, 'close')
  return Buffer.concat(got)
}

const greeting = Buffer.from([5, 1, 0]) // version 5, one method: no authentication
const connectReq = (atyp: number, addr: Buffer, port: number, cmd = 1) =>
  Buffer.concat([Buffer.from([5, cmd, 0, atyp]), addr, Buffer.from([port >> 8, port & 255])])
const domain = (name: string) => Buffer.concat([Buffer.from([name.length]), Buffer.from(name)])
const reply = (rep: number) => Buffer.from([5, rep, 0, 1, 0, 0, 0, 0, 0, 0])

describe('mesh socks (SOCKS5 on a loopback socket)', () => {
  let agent: Server
  let socks: Server
  let port: number
  let opened: Array<[string, number]>
  let logs: string[]
  let refuseWith: (Error & { rep?: number }) | undefined

  before(async () => {
    // the agent's side of a tunnel: framed, upper-cases, ends cleanly after the client's FIN
    agent = createServer({ allowHalfOpen: true }, (s) => {
      s.on('data', (d: Buffer) => writeData(s, Buffer.from(d.toString().toUpperCase())))
      s.on('end', () => {
        writeEnd(s)
        s.end()
      })
      s.on('error', () => {})
    })
    agent.listen(0, '127.0.0.1')
    await once(agent, 'listening')
    socks = socksServer({
      clusterId: undefined,
      log: (l) => logs.push(l),
      open: async (query, p) => {
        opened.push([query, p])
        if (refuseWith !== undefined) throw refuseWith
        const socket = connect({
          host: '127.0.0.1',
          port: (agent.address() as AddressInfo).port,
          allowHalfOpen: true,
        })
        await once(socket, 'connect')
        const output = new FrameDecoder()
        socket.pipe(output)
        return { socket, output, peerId: 'p', name: query, path: 'direct' } satisfies TunnelSocket
      },
    })
    socks.listen(0, '127.0.0.1')
    await once(socks, 'listening')
    port = (socks.address() as AddressInfo).port
  })
  beforeEach(() => {
    opened = []
    logs = []
    refuseWith = undefined
  })
  after(() => {
    socks.close()
    agent.close()
  })

  it('CONNECT to a .mesh name: the tunnel opens, bytes sent before the reply arrive, and both ends close cleanly', async () => {
    const s = connect({ host: '127.0.0.1', port })
    const got: Buffer[] = []
    s.on('data', (d: Buffer) => got.push(d))
    await once(s, 'connect')
    // greeting, request and early data in one write, as curl and ssh do
    s.write(Buffer.concat([greeting, connectReq(3, domain('Web.Mesh'), 8080), Buffer.from('early ')]))
    s.end(Buffer.from('late'))
    await once(s, 'close')
    const all = Buffer.concat(got)
    assert.deepEqual(all.subarray(0, 2), Buffer.from([5, 0]), 'no authentication chosen')
    assert.deepEqual(all.subarray(2, 12), reply(REP.ok))
    assert.equal(all.subarray(12).toString(), 'EARLY LATE')
    assert.deepEqual(opened, [['web.mesh', 8080]])
    assert.deepEqual(logs, [])
  })

  it('CONNECT to an overlay IPv6 address goes through; other IPv6 and IPv4 addresses are refused (not allowed)', async () => {
    const overlay = Buffer.from('fd12345678 9a0000 0000000000000001'.replace(/ /g, ''), 'hex')
    let got = await exchange(port, greeting, connectReq(4, overlay, 22), Buffer.from('x'))
    assert.deepEqual(got.subarray(2, 12), reply(REP.ok))
    assert.deepEqual(opened, [['fd12:3456:789a::1', 22]])
    opened = []
    got = await exchange(
      port,
      greeting,
      connectReq(4, Buffer.from('00000000000000000000000000000001', 'hex'), 22),
    )
    assert.deepEqual(got, Buffer.concat([Buffer.from([5, 0]), reply(REP.notAllowed)]))
    got = await exchange(port, greeting, connectReq(1, Buffer.from([10, 0, 0, 1]), 80))
    assert.deepEqual(got, Buffer.concat([Buffer.from([5, 0]), reply(REP.notAllowed)]))
    got = await exchange(port, greeting, connectReq(3, domain('example.com'), 443))
    assert.deepEqual(got, Buffer.concat([Buffer.from([5, 0]), reply(REP.notAllowed)]))
    assert.deepEqual(opened, [])
    assert.deepEqual(logs, [
      'socks: refused [::1]:22: only *.mesh names and overlay addresses go through the mesh',
      'socks: refused 10.0.0.1:80: only *.mesh names and overlay addresses go through the mesh',
      'socks: refused example.com:443: only *.mesh names and overlay addresses go through the mesh',
    ])
  })

  it('a tunnel that cannot open answers with the reply code the opener chose, and says why', async () => {
    refuseWith = Object.assign(new Error('db is not a member'), { rep: REP.hostUnreachable })
    let got = await exchange(port, greeting, connectReq(3, domain('db.mesh'), 5432))
    assert.deepEqual(got, Buffer.concat([Buffer.from([5, 0]), reply(REP.hostUnreachable)]))
    refuseWith = new Error('agent not running')
    got = await exchange(port, greeting, connectReq(3, domain('db.mesh'), 5432))
    assert.deepEqual(got.subarray(2), reply(REP.failure))
    assert.deepEqual(logs, [
      'socks: db.mesh:5432: db is not a member',
      'socks: db.mesh:5432: agent not running',
    ])
  })

  it('a client that wants authentication is told no acceptable method', async () => {
    const got = await exchange(port, Buffer.from([5, 2, 1, 2])) // GSSAPI, user/password
    assert.deepEqual(got, Buffer.from([5, 0xff]))
    assert.match(logs[0], /wants authentication; mesh socks only offers none/)
  })

  it('BIND, UDP ASSOCIATE and unknown address types get their reply codes; nothing is opened', async () => {
    for (const cmd of [2, 3]) {
      const got = await exchange(port, greeting, connectReq(3, domain('web.mesh'), 80, cmd))
      assert.deepEqual(got.subarray(2), reply(REP.commandNotSupported))
    }
    const got = await exchange(port, greeting, Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80]))
    assert.deepEqual(got.subarray(2), reply(REP.addressNotSupported))
    assert.deepEqual(opened, [])
    assert.deepEqual(logs, [
      'socks: command 2 is not supported (only CONNECT)',
      'socks: command 3 is not supported (only CONNECT)',
      'socks: address type 9 is not supported',
    ])
  })

  it('a request cut short, or another protocol, is closed without a reply and logged', async () => {
    const full = Buffer.concat([greeting, connectReq(3, domain('web.mesh'), 80)])
    for (const n of [1, 3, 5, 8, full.length - 1]) {
      logs = []
      const got = await exchange(port, full.subarray(0, n))
      assert.ok(got.length === 0 || got.equals(Buffer.from([5, 0])), `cut after ${n}: ${got.toString('hex')}`)
      assert.deepEqual(logs, ['socks: the client closed the connection'], `cut after ${n}`)
    }
    logs = []
    const got = await exchange(port, Buffer.from('GET / HTTP/1.1\r\n\r\n'))
    assert.equal(got.length, 0)
    assert.deepEqual(logs, ['socks: not a SOCKS5 client (version 71)'])
    assert.deepEqual(opened, [])
  })

  it('which hosts are in the mesh', () => {
    assert.equal(meshHost('Web.MESH.'), 'web.mesh')
    assert.equal(meshHost('.mesh'), undefined)
    assert.equal(meshHost('mesh'), undefined)
    assert.equal(meshHost('web.mesh.example.com'), undefined)
    assert.equal(meshHost('fd12:3456:789a::1'), 'fd12:3456:789a::1')
    assert.equal(meshHost('fe80::1'), undefined)
  })
})
