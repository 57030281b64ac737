import '../../src/shim.js'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { type AddressInfo, createServer, type Server } from 'node:net'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Libp2p, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { pbStream } from '@libp2p/utils'
import { createLibp2p } from 'libp2p'
import { TunnelOpen, TunnelReply } from '../../protocols/tunnel.js'
import { acceptTunnel, requestTunnel, TunnelError } from '../../src/tunnel/protocol.js'

// The tunnel handshake between two members (protocols/tunnel.md): TunnelOpen, then a reply that
// either opens the raw stream or refuses with a code the control API maps to a status. Two real
// libp2p nodes on loopback TCP; the target's service is a real loopback socket.

const PROTO = '/test/tunnel/1.0.0'

async function newNode(): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
  })
}

describe('tunnel handshake between two members', () => {
  let client: Libp2p
  let target: Libp2p
  let service: Server
  let servicePort: number
  let closedPort: number
  /** what the target's side answered, per stream */
  let accepted: Array<Awaited<ReturnType<typeof acceptTunnel>>>
  let serve: (s: Stream) => Promise<void>

  before(async () => {
    ;[client, target] = await Promise.all([newNode(), newNode()])
    service = createServer((s) => s.end('hello from the service\n'))
    service.listen(0, '127.0.0.1')
    await once(service, 'listening')
    servicePort = (service.address() as AddressInfo).port
    // a port nothing listens on: bound, then closed
    const probe = createServer().listen(0, '127.0.0.1')
    await once(probe, 'listening')
    closedPort = (probe.address() as AddressInfo).port
    await new Promise((r) => probe.close(r))
    await target.handle(PROTO, (s) => void serve(s))
  })
  beforeEach(() => {
    accepted = []
    serve = async (s) => {
      const r = await acceptTunnel(s, { allowPorts: [servicePort, closedPort], connectTimeoutMs: 5_000 })
      accepted.push(r)
      if ('socket' in r) {
        // what the bridge does, one way: the service's bytes onto the stream
        for await (const chunk of r.socket) r.stream.send(chunk as Buffer)
        await r.stream.close()
      }
    }
  })
  after(async () => {
    await Promise.all([client?.stop(), target?.stop()])
    service?.close()
  })

  const open = async (port: number) => {
    const signal = AbortSignal.timeout(10_000)
    const s = await client.dialProtocol(target.getMultiaddrs(), PROTO, { signal })
    return requestTunnel(s, port, signal)
  }
  const refusal = async (port: number): Promise<TunnelError> => {
    const err = await open(port).then(
      () => assert.fail('the tunnel opened'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof TunnelError, String(err))
    return err
  }

  it('an allowed port with a service behind it opens: the raw stream carries what the service sends', async () => {
    const stream = await open(servicePort)
    const got: Buffer[] = []
    for await (const chunk of stream) got.push(Buffer.from(chunk.subarray()))
    assert.equal(Buffer.concat(got).toString(), 'hello from the service\n')
    assert.equal(accepted.length, 1)
    assert.ok('socket' in accepted[0])
    assert.equal(accepted[0].port, servicePort)
  })

  it('a port outside tunnel.allowPorts is refused with 403 and the allowed list', async () => {
    const err = await refusal(8080)
    assert.equal(err.code, 'port-not-allowed')
    assert.equal(err.status, 403)
    assert.equal(err.message, 'port 8080 is not in tunnel.allowPorts')
    assert.deepEqual(err.allowed, [servicePort, closedPort])
    assert.deepEqual(accepted, [{ refused: 'port-not-allowed', port: 8080 }])
  })

  it('port 0 or above 65535 is a bad request (400)', async () => {
    for (const port of [0, 70_000]) {
      const err = await refusal(port)
      assert.equal(err.code, 'bad-request')
      assert.equal(err.status, 400)
      assert.equal(err.message, `invalid port ${port}`)
    }
  })

  it('an allowed port where nothing listens: connect-failed (502), with the errno', async () => {
    const err = await refusal(closedPort)
    assert.equal(err.code, 'connect-failed')
    assert.equal(err.status, 502)
    assert.equal(err.message, `nothing accepted a connection on 127.0.0.1:${closedPort} (ECONNREFUSED)`)
  })

  it('a refusal code this version does not know is taken as refused (403), with the message sent', async () => {
    serve = async (s) => {
      const pb = pbStream(s)
      await pb.read(TunnelOpen)
      await pb.write(
        { ok: false, code: 'quota-exceeded', error: 'too many tunnels', allowed: [] },
        TunnelReply,
      )
      await s.close()
    }
    const err = await refusal(servicePort)
    assert.equal(err.code, 'refused')
    assert.equal(err.status, 403)
    assert.equal(err.message, 'too many tunnels')
  })
})
