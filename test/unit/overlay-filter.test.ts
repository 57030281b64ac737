import assert from 'node:assert/strict'
import { parseIPv6 } from '../../src/membership/overlay.js'
import { OverlayConfigSchema } from '../../src/overlay/config.js'
import { type FilterMember, PacketFilter, packetInfo } from '../../src/overlay/filter.js'
import { encodePackets, PacketDecoder, packMessages, splitIPv6 } from '../../src/overlay/frames.js'
import { withBlock } from '../../src/overlay/hosts.js'

const A = parseIPv6('fd11:2233:4455::a')!
const B = parseIPv6('fd11:2233:4455::b')!
const C = parseIPv6('fd11:2233:4455::c')!

const alpha: FilterMember = { peerId: 'pa', name: 'alpha', overlay: A, tags: { role: 'web' } }
const charlie: FilterMember = { peerId: 'pc', name: 'charlie', overlay: C, tags: { role: 'db' } }

/** An IPv6 packet: 40-byte header, then a TCP/UDP header with ports, or an ICMPv6 header. */
function packet(
  src: Uint8Array,
  dst: Uint8Array,
  proto: number,
  opts: { sport?: number; dport?: number; icmpType?: number; id?: number; payload?: number } = {},
): Uint8Array {
  const upper = proto === 58 ? 8 : proto === 6 ? 20 : 8
  const len = upper + (opts.payload ?? 0)
  const p = new Uint8Array(40 + len)
  p[0] = 0x60
  p[4] = len >> 8
  p[5] = len & 0xff
  p[6] = proto
  p[7] = 64
  p.set(src, 8)
  p.set(dst, 24)
  if (proto === 58) {
    p[40] = opts.icmpType ?? 128
    p[44] = (opts.id ?? 0) >> 8
    p[45] = (opts.id ?? 0) & 0xff
  } else {
    const s = opts.sport ?? 40000
    const d = opts.dport ?? 80
    p[40] = s >> 8
    p[41] = s & 0xff
    p[42] = d >> 8
    p[43] = d & 0xff
  }
  return p
}

const TCP = 6
const UDP = 17
const ICMP = 58

describe('overlay packet filter', () => {
  it('parses the protocol and ports of TCP, UDP and ICMPv6 echo, through extension headers', () => {
    assert.deepEqual(packetInfo(packet(A, B, TCP, { sport: 1234, dport: 22 })), {
      proto: TCP,
      srcPort: 1234,
      dstPort: 22,
      icmpType: -1,
    })
    assert.equal(packetInfo(packet(A, B, UDP, { dport: 53 }))?.dstPort, 53)
    assert.equal(packetInfo(packet(A, B, ICMP, { icmpType: 128, id: 7 }))?.dstPort, 7)
    // a destination-options header (60) in front of TCP
    const inner = packet(A, B, TCP, { dport: 443 })
    const p = new Uint8Array(inner.length + 8)
    p.set(inner.subarray(0, 40))
    p[6] = 60
    p[40] = TCP // next header
    p[41] = 0 // (0 + 1) * 8 bytes
    p.set(inner.subarray(40), 48)
    assert.equal(packetInfo(p)?.dstPort, 443)
    assert.equal(packetInfo(new Uint8Array(20)), undefined)
  })

  it('lets a member in only with its own source address and our destination', () => {
    const f = new PacketFilter({ self: B, rules: [] })
    assert.deepEqual(f.inbound(packet(A, B, TCP), alpha), { ok: true, rule: 'default' })
    // charlie's address, sent by alpha: spoofed
    assert.deepEqual(f.inbound(packet(C, B, TCP), alpha), { ok: false, reason: 'spoofed-source' })
    // to someone else's address through us
    assert.deepEqual(f.inbound(packet(A, C, TCP), alpha), { ok: false, reason: 'wrong-destination' })
    const v4 = packet(A, B, TCP)
    v4[0] = 0x45
    assert.deepEqual(f.inbound(v4, alpha), { ok: false, reason: 'not-ipv6' })
    // a header that claims more payload than arrived
    assert.deepEqual(f.inbound(packet(A, B, TCP).subarray(0, 50), alpha), { ok: false, reason: 'truncated' })
    assert.equal(f.drops['spoofed-source'], 1)
    assert.equal(f.drops['wrong-destination'], 1)
    assert.equal(f.accepted, 1)
  })

  it('applies overlay.allow rules by member name, tag, protocol and port, counting each rule', () => {
    const { allow } = OverlayConfigSchema.parse({
      allow: [
        { from: 'alpha', proto: 'tcp', ports: [22, '8000-8099'] },
        { from: 'tag:role=db', proto: 'udp', ports: [53] },
        { from: '*', proto: 'icmp' },
      ],
    })
    const f = new PacketFilter({ self: B, rules: allow })
    assert.deepEqual(f.inbound(packet(A, B, TCP, { dport: 22 }), alpha), { ok: true, rule: 0 })
    assert.deepEqual(f.inbound(packet(A, B, TCP, { dport: 8080 }), alpha), { ok: true, rule: 0 })
    assert.deepEqual(f.inbound(packet(A, B, TCP, { dport: 8100 }), alpha), {
      ok: false,
      reason: 'not-allowed',
    })
    // charlie is not alpha: no tcp/22 for it; but udp/53 by its tag
    assert.deepEqual(f.inbound(packet(C, B, TCP, { dport: 22 }), charlie), {
      ok: false,
      reason: 'not-allowed',
    })
    assert.deepEqual(f.inbound(packet(C, B, UDP, { dport: 53 }), charlie), { ok: true, rule: 1 })
    assert.deepEqual(f.inbound(packet(A, B, UDP, { dport: 53 }), alpha), { ok: false, reason: 'not-allowed' })
    assert.deepEqual(f.inbound(packet(C, B, ICMP, { icmpType: 128 }), charlie), { ok: true, rule: 2 })
    assert.deepEqual(f.ruleHits, [2, 1, 1])
    assert.equal(f.drops['not-allowed'], 3)
  })

  it('with rules, lets in the replies to flows we opened, and only those, until they go idle', () => {
    let now = 1_000
    const { allow } = OverlayConfigSchema.parse({ allow: [{ from: 'nobody', proto: 'tcp', ports: [22] }] })
    const f = new PacketFilter({ self: B, rules: allow, now: () => now })
    const reply = packet(A, B, TCP, { sport: 80, dport: 40000 })
    assert.equal(f.inbound(reply, alpha).ok, false, 'no flow yet')
    assert.ok(f.outbound(packet(B, A, TCP, { sport: 40000, dport: 80 })))
    assert.deepEqual(f.inbound(reply, alpha), { ok: true, rule: 'established' })
    // another port of the same member is not part of the flow
    assert.equal(f.inbound(packet(A, B, TCP, { sport: 81, dport: 40000 }), alpha).ok, false)
    // ping: our echo request lets its reply in; an unsolicited reply is dropped
    f.outbound(packet(B, A, ICMP, { icmpType: 128, id: 9 }))
    assert.equal(f.inbound(packet(A, B, ICMP, { icmpType: 129, id: 9 }), alpha).ok, true)
    assert.equal(f.inbound(packet(A, B, ICMP, { icmpType: 129, id: 10 }), alpha).ok, false)
    now += 11 * 60_000
    assert.equal(f.inbound(reply, alpha).ok, false, 'the flow expired')
  })

  it('forgets the oldest flow beyond maxFlows', () => {
    const { allow } = OverlayConfigSchema.parse({ allow: [{ from: 'nobody' }] })
    const f = new PacketFilter({ self: B, rules: allow, maxFlows: 2 })
    for (const port of [1001, 1002, 1003]) f.outbound(packet(B, A, UDP, { sport: port, dport: 9 }))
    assert.equal(f.inbound(packet(A, B, UDP, { sport: 9, dport: 1001 }), alpha).ok, false)
    assert.equal(f.inbound(packet(A, B, UDP, { sport: 9, dport: 1003 }), alpha).ok, true)
  })

  it('rejects rules that cannot mean anything, saying why', () => {
    assert.throws(
      () => OverlayConfigSchema.parse({ allow: [{ from: 'a', proto: 'icmp', ports: [22] }] }),
      /ports only apply/,
    )
    assert.throws(() => OverlayConfigSchema.parse({ allow: [{ from: 'a', ports: ['90-80'] }] }), /low-high/)
    assert.throws(() => OverlayConfigSchema.parse({ mtu: 1000 }))
  })
})

describe('overlay frames', () => {
  it('carries packets across any split of the byte stream', () => {
    const ps = [
      packet(A, B, TCP, { payload: 1000 }),
      packet(A, B, UDP),
      packet(A, B, ICMP, { payload: 60000 }),
    ]
    const bytes = encodePackets(ps)
    for (const cut of [1, 2, 41, 1050, bytes.length - 1]) {
      const d = new PacketDecoder()
      const got = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))]
      assert.deepEqual(
        got.map((p) => Buffer.from(p).toString('hex')),
        ps.map((p) => Buffer.from(p).toString('hex')),
        `cut at ${cut}`,
      )
      assert.equal(d.pendingBytes, 0)
    }
  })
})

describe('overlay datagram batches (several IPv6 packets back to back in one message)', () => {
  const hex = (ps: Uint8Array[]) => ps.map((p) => Buffer.from(p).toString('hex'))

  it('puts consecutive packets that fit together, in order, and a packet alone as it is', () => {
    const ack = () => packet(A, B, TCP)
    const big = packet(A, B, TCP, { payload: 1200 })
    const ps = [ack(), ack(), ack(), big, ack(), ack(), packet(A, B, UDP, { payload: 1000 })]
    const messages: Uint8Array[] = []
    const counts: number[] = []
    const sent = packMessages(ps, 1280, new Uint8Array(1280), (m, n) => {
      messages.push(new Uint8Array(m))
      counts.push(n)
      return true
    })
    assert.equal(sent, ps.length)
    assert.deepEqual(counts, [3, 1, 3], 'the acks before the big packet in one message, and after it')
    assert.ok(messages.every((m) => m.length <= 1280))
    assert.equal(messages[1].length, big.length, 'the big packet alone')
    assert.deepEqual(hex(messages.flatMap(splitIPv6)), hex(ps), 'every packet back, in order, byte for byte')
  })

  it('stops at the first message that cannot go and says how many packets went', () => {
    const ps = [packet(A, B, TCP, { payload: 1000 }), packet(A, B, TCP, { payload: 1000 }), packet(A, B, TCP)]
    let calls = 0
    assert.equal(
      packMessages(ps, 1280, new Uint8Array(1280), () => ++calls === 1),
      1,
    )
    assert.equal(calls, 2)
  })

  it('hands what is not a whole IPv6 packet to the filter as it is, which drops it', () => {
    const p = packet(A, B, TCP, { payload: 100 })
    const cut = Buffer.concat([p, p.subarray(0, 50)])
    const parts = splitIPv6(cut)
    assert.equal(parts.length, 2)
    assert.deepEqual(hex([parts[0]]), hex([p]))
    assert.equal(parts[1].length, 50, 'the truncated rest, for the filter to drop')
    const v4 = Buffer.concat([p, Buffer.from([0x45, 0, 0, 20])])
    assert.equal(splitIPv6(v4)[1][0], 0x45, 'not IPv6: left for the filter')
    assert.equal(splitIPv6(p)[0], p, 'a message of one packet is that packet, not a copy')
    const f = new PacketFilter({ self: B, rules: [] })
    const from: FilterMember = { peerId: 'a', name: 'a', overlay: A, tags: {} }
    assert.deepEqual(f.inbound(parts[1], from), { ok: false, reason: 'truncated' })
  })
})

describe('overlay names in the hosts file', () => {
  const HOSTS = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n# a comment the admin wrote\n'
  const e = [{ name: 'bravo', address: 'fd11:2233:4455::b' }]

  it('adds, replaces and removes only its own block, keeping every other line as it was', () => {
    const once = withBlock(HOSTS, 100, e, () => true)
    assert.ok(once.startsWith(HOSTS))
    assert.match(once, /\nfd11:2233:4455::b\tbravo\.mesh\n# END mesh agent pid=100\n$/)
    const again = withBlock(once, 100, [{ name: 'bravo', address: 'fd11:2233:4455::c' }], () => true)
    assert.equal(again.match(/BEGIN mesh/g)?.length, 1)
    assert.match(again, /::c\tbravo\.mesh/)
    assert.equal(
      withBlock(again, 100, [], () => true),
      HOSTS,
    )
  })

  it("keeps another live agent's block and removes the block of an agent that died", () => {
    const two = withBlock(
      withBlock(HOSTS, 100, e, () => true),
      200,
      e,
      () => true,
    )
    assert.equal(two.match(/BEGIN mesh/g)?.length, 2)
    const live = withBlock(two, 300, [], (pid) => pid === 200)
    assert.doesNotMatch(live, /pid=100/)
    assert.match(live, /pid=200/)
  })

  it("removes a dead agent's block when its pid now belongs to another process (its start time differs)", () => {
    const mine = withBlock(HOSTS, 100, e, () => true, '4242')
    assert.match(mine, /^# BEGIN mesh agent pid=100 start=4242 \(managed by mesh/m)
    // pid 100 runs again, but it is a process that started later: not the agent that wrote the block
    const running = new Map([[100, '9999']])
    const isAlive = (pid: number, start: string | undefined) => running.get(pid) === start
    assert.doesNotMatch(withBlock(mine, 300, [], isAlive), /pid=100/)
    // the same process still running keeps its block
    running.set(100, '4242')
    assert.match(withBlock(mine, 300, [], isAlive), /pid=100 start=4242/)
  })
})
