import '../../src/shim.js'
import assert from 'node:assert/strict'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { until } from '../../sim/bench/report.js'
import { parseIPv6 } from '../../src/membership/overlay.js'
import { DATAGRAM_MTU, DatagramLink } from '../../src/overlay/datagram.js'
import { PROTO_ICMP6 } from '../../src/overlay/filter.js'
import { packetTooBig } from '../../src/overlay/icmp.js'

const A = parseIPv6('fd11:2233:4455::a')!
const B = parseIPv6('fd11:2233:4455::b')!

function tcpPacket(size: number): Uint8Array {
  const p = new Uint8Array(size)
  p[0] = 0x60
  p[4] = (size - 40) >> 8
  p[5] = (size - 40) & 0xff
  p[6] = 6
  p[7] = 64
  p.set(A, 8)
  p.set(B, 24)
  for (let i = 40; i < size; i++) p[i] = i & 0xff
  return p
}

/** The one's-complement sum over the pseudo-header and the whole ICMPv6 message: 0xffff when the checksum is right. */
function verify(p: Uint8Array): number {
  let sum = p.length - 40 + PROTO_ICMP6
  for (let i = 8; i < p.length; i += 2) sum += (p[i] << 8) | (i + 1 < p.length ? p[i + 1] : 0)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return sum
}

describe('overlay: ICMPv6 Packet Too Big for the datagram carrier', () => {
  it('goes back to the sender, from the destination, with the MTU and the quoted packet', () => {
    const big = tcpPacket(9000)
    const ptb = packetTooBig(big, DATAGRAM_MTU)!
    assert.equal(ptb.length, 1280, 'an ICMPv6 error fits the minimum MTU')
    assert.deepEqual(ptb.subarray(8, 24), B, 'from the packet destination')
    assert.deepEqual(ptb.subarray(24, 40), A, 'to its source')
    assert.equal(ptb[6], PROTO_ICMP6)
    assert.equal(ptb[40], 2, 'type Packet Too Big')
    assert.equal(new DataView(ptb.buffer).getUint32(44), DATAGRAM_MTU)
    assert.deepEqual(ptb.subarray(48), big.subarray(0, 1280 - 48), 'as much of the packet as fits')
    assert.equal((ptb[4] << 8) | ptb[5], ptb.length - 40, 'payload length')
    assert.equal(verify(ptb), 0xffff, 'checksum')
    const odd = packetTooBig(tcpPacket(1301).subarray(0, 1301), DATAGRAM_MTU)!
    assert.equal(verify(odd), 0xffff, 'checksum of an odd-length quote')
  })

  it('is never sent about an ICMPv6 error, nor for what is not IPv6', () => {
    const err = tcpPacket(2000)
    err[6] = PROTO_ICMP6
    err[40] = 1 // destination unreachable
    assert.equal(packetTooBig(err, DATAGRAM_MTU), undefined)
    const echo = tcpPacket(2000)
    echo[6] = PROTO_ICMP6
    echo[40] = 128
    assert.notEqual(packetTooBig(echo, DATAGRAM_MTU), undefined, 'an echo request is not an error')
    const v4 = tcpPacket(2000)
    v4[0] = 0x45
    assert.equal(packetTooBig(v4, DATAGRAM_MTU), undefined)
  })
})

describe('overlay: the datagram link (node-datachannel on loopback)', function () {
  this.timeout(60_000)

  async function streams(): Promise<[Stream, Stream]> {
    const [outbound, inbound] = multiaddrConnectionPair()
    const factory = yamux({ enableKeepAlive: false })()
    const client = factory.createStreamMuxer(outbound)
    const server = factory.createStreamMuxer(inbound)
    const remote = new Promise<Stream>((resolve) =>
      server.addEventListener('stream', (e) => resolve(e.detail)),
    )
    const local = await client.createStream()
    return [local, await remote]
  }

  it('opens with one offer and one answer and carries packets both ways, small ones together', async () => {
    const [o, a] = await streams()
    const gotA: Uint8Array[] = []
    const gotB: Uint8Array[] = []
    const closed: string[] = []
    const opts = (into: Uint8Array[]) => ({
      iceServers: [],
      onPackets: (ps: Uint8Array[]) => {
        for (const p of ps) into.push(new Uint8Array(p))
      },
      onClosed: (why: string) => closed.push(why),
    })
    const [offerer, answerer] = await Promise.all([
      DatagramLink.offer(o, opts(gotA)),
      DatagramLink.answer(a, opts(gotB)),
    ])
    try {
      assert.ok(offerer.open && answerer.open)
      const p = tcpPacket(DATAGRAM_MTU)
      const q = tcpPacket(100)
      // unreliable: on loopback nothing is lost, but the wait is bounded
      await until(
        'packets both ways',
        async () => {
          offerer.send([p], DATAGRAM_MTU)
          answerer.send([q], DATAGRAM_MTU)
          return gotB.length > 0 && gotA.length > 0
        },
        20_000,
        100,
      )
      assert.deepEqual(gotB[0], p, 'a full-size packet intact')
      assert.deepEqual(gotA[0], q)
      assert.ok(offerer.sentPackets > 0 && answerer.receivedPackets > 0)
      assert.match(offerer.route() ?? '', /^host->/, 'the ICE pair in use')
      // small packets of one burst go together in one message, and come out one by one
      assert.ok(offerer.batches && answerer.batches, 'each said it splits messages')
      const [m0, p0, n0] = [offerer.receivedMessages, offerer.receivedPackets, gotA.length]
      await until(
        'a batch of three',
        async () => {
          assert.equal(answerer.send([q, q, q], DATAGRAM_MTU), 3)
          return gotA.length >= n0 + 3
        },
        20_000,
        100,
      )
      // (single packets of the loop above may still arrive in between: one message each)
      assert.ok(offerer.receivedPackets - p0 > offerer.receivedMessages - m0, 'more packets than messages')
      assert.deepEqual(gotA.slice(n0, n0 + 3), [q, q, q])
    } finally {
      offerer.close()
      answerer.close()
    }
    await until('both sides to report the close', async () => closed.length >= 2, 20_000, 100)
    assert.equal(offerer.send([tcpPacket(100)], DATAGRAM_MTU), 0, 'nothing is sent on a closed link')
  })

  it('a refused offer fails the offerer, saying why', async () => {
    const [o, a] = await streams()
    const [offer] = await Promise.allSettled([
      DatagramLink.offer(o, { iceServers: [], onPackets: () => {}, onClosed: () => {} }),
      DatagramLink.refuse(a, 'not a live member'),
    ])
    assert.equal(offer.status, 'rejected')
    assert.match((offer as PromiseRejectedResult).reason.message, /refused: not a live member/)
  })
})
