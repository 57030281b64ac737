import '../../src/shim.js'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { until } from '../../sim/bench/report.js'
import { parseIPv6 } from '../../src/membership/overlay.js'
import { socketAddress } from '../../src/overlay/udp-address.js'
import {
  CONFIRM_MS,
  type Endpoint,
  LOST_MS,
  literalLookup,
  MAX_REKEY_AFTER_MS,
  REJECT_AFTER_DUE_MS,
  UdpCarrier,
  type UdpSession,
} from '../../src/overlay/udp-carrier.js'
import { newKey, Opener, ReplayWindow, Sealer, WINDOW } from '../../src/overlay/udp-crypto.js'

const A = parseIPv6('fd11:2233:4455::a')!
const B = parseIPv6('fd11:2233:4455::b')!

function packet(size: number, tag = 0): Uint8Array {
  const p = new Uint8Array(size)
  p[0] = 0x60
  p[4] = (size - 40) >> 8
  p[5] = (size - 40) & 0xff
  p[6] = 17
  p[7] = 64
  p.set(A, 8)
  p.set(B, 24)
  p[40] = tag
  return p
}

const joined = (d: Buffer | Buffer[]) => (Array.isArray(d) ? Buffer.concat(d) : d)

/** Both carriers' ticks every `ms`, as the component runs them, until paused or closed. */
function ticking(a: UdpCarrier, b: UdpCarrier, ms: number) {
  const t = setInterval(() => {
    a.tick()
    b.tick()
  }, ms)
  return {
    pause: () => clearInterval(t),
    close: () => {
      clearInterval(t)
      a.closeAll()
      b.closeAll()
    },
  }
}

/**
 * What the key exchange does, a offering to b: b takes a's public key and id (its session is
 * ready before its answer goes), then a takes b's. With `rekey`, both keep their sessions and
 * rotate their keys. Returns a's session.
 */
function exchange(
  a: UdpCarrier,
  b: UdpCarrier,
  atA: Endpoint,
  atB: Endpoint,
  sizes?: { min: number; max: number },
  rekey = false,
): UdpSession {
  const ka = a.newLocalKey()
  const kb = b.newLocalKey()
  const fromA = { keyId: ka.keyId, publicKey: ka.ephemeral.publicKey }
  const fromB = { keyId: kb.keyId, publicKey: kb.ephemeral.publicKey }
  if (rekey) {
    b.rekey('A', kb, fromA)
    return a.rekey('B', ka, fromB)
  }
  b.start('A', kb, { ...fromA, endpoint: atA }, { offerer: false, sizes })
  return a.start('B', ka, { ...fromB, endpoint: atB }, { offerer: true, sizes })
}

describe('overlay: the direct UDP carrier sealing (ChaCha20-Poly1305, replay window)', () => {
  it('opens what the member sealed with our key, and nothing else', () => {
    const key = newKey()
    const sealer = new Sealer(key, 7)
    const opener = new Opener(key)
    const p = packet(1280)
    const d = joined(sealer.seal(p))
    assert.equal(d.length, 1280 + 28)
    const r = opener.open(d)
    assert.ok(r.ok)
    assert.deepEqual(new Uint8Array(r.plaintext), p)
    // another key: refused
    const other = joined(new Sealer(newKey(), 7).seal(p))
    assert.deepEqual(new Opener(key).open(other), { ok: false, reason: 'udp-bad-tag' })
    // one flipped bit of ciphertext, or a changed counter: refused
    const flipped = joined(sealer.seal(p))
    flipped[100] ^= 1
    assert.deepEqual(opener.open(flipped), { ok: false, reason: 'udp-bad-tag' })
    const moved = joined(sealer.seal(p))
    moved[11] ^= 0x40
    assert.equal(opener.open(moved).ok, false)
  })

  it('accepts each counter once, out of order within the window, never one older than it', () => {
    const key = newKey()
    const sealer = new Sealer(key, 1)
    const opener = new Opener(key)
    const ds = Array.from({ length: 10 }, (_, i) => joined(sealer.seal(packet(60, i))))
    for (const i of [0, 3, 2, 9, 1]) assert.ok(opener.open(ds[i]).ok, `counter ${i}`)
    for (const i of [0, 3, 9]) assert.deepEqual(opener.open(ds[i]), { ok: false, reason: 'udp-replayed' })
    for (const i of [4, 5, 6, 7, 8]) assert.ok(opener.open(ds[i]).ok, `late counter ${i}`)
    const w = new ReplayWindow()
    w.mark(5)
    w.mark(5 + WINDOW)
    assert.equal(w.fresh(5), false, 'older than the window')
    assert.equal(w.fresh(4 + WINDOW), true, 'not seen, inside the window')
    // a counter that wraps onto the ring slot of an old one is still new
    assert.equal(w.fresh(5 + 2 * WINDOW), true)
  })
})

describe('overlay: the direct UDP carrier between two sockets on 127.0.0.1', () => {
  let a: UdpCarrier
  let b: UdpCarrier
  const got: Record<string, Uint8Array[]> = { a: [], b: [] }
  const confirmed = new Set<string>()

  before(async () => {
    const deps = (self: string) => ({
      port: 0,
      onPackets: (_peer: string, ps: Uint8Array[]) => {
        got[self].push(...ps)
        return true
      },
      onConfirmed: () => confirmed.add(self),
      onClosed: () => {},
      onError: () => {},
    })
    a = await UdpCarrier.open(deps('a'))
    b = await UdpCarrier.open(deps('b'))
    exchange(a, b, { address: '127.0.0.1', port: a.port }, { address: '127.0.0.1', port: b.port })
  })
  after(() => {
    a?.closeAll()
    b?.closeAll()
  })

  it('confirms both ends with probes, then carries packets both ways, small ones batched', async () => {
    await until('both ends confirmed', async () => confirmed.has('a') && confirmed.has('b'), 10_000)
    const rx = a.session('B')!
    const before = { datagrams: rx.receivedDatagrams, packets: rx.receivedPackets }
    assert.equal(a.send('B', [packet(1280, 1)], 1280), 1)
    assert.equal(b.send('A', [packet(60, 2), packet(60, 3), packet(60, 4)], 1280), 3)
    await until('the packets', async () => got.b.length === 1 && got.a.length === 3, 10_000)
    assert.deepEqual(new Uint8Array(got.b[0]), packet(1280, 1))
    assert.deepEqual(
      got.a.map((p) => p[40]),
      [2, 3, 4],
    )
    // the three small packets went in one datagram
    assert.equal(rx.receivedPackets - before.packets, 3)
    assert.equal(rx.receivedDatagrams - before.datagrams, 1)
  })

  it('drops and counts a stranger, a wrong key and a replayed datagram; none is delivered', async () => {
    const before = { a: got.a.length, drops: { ...a.drops } }
    const s = createSocket('udp4')
    const sendTo = (d: Uint8Array) =>
      new Promise<void>((resolve, reject) =>
        s.send(d, a.port, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
      )
    try {
      // a stranger: a key id a does not know, and garbage too short to be a datagram
      await sendTo(joined(new Sealer(newKey(), 12345).seal(packet(100))))
      await sendTo(new Uint8Array([1, 2, 3]))
      // the right key id with the wrong key (a counter not seen yet: judged by its tag)
      const kid = a.session('B')!.localKeyId
      await sendTo(joined(new Sealer(newKey(), kid, 1e9).seal(packet(100))))
      // a datagram b really sent, captured and replayed: the first copy is delivered, not the second
      let captured: Buffer | undefined
      const tap = createSocket('udp4')
      await new Promise<void>((r) => tap.bind(0, '127.0.0.1', () => r()))
      const session = b.session('A')!
      const real = session.endpoint
      session.endpoint = { address: '127.0.0.1', port: tap.address().port }
      session.sendTo = socketAddress('127.0.0.1', b.family)
      tap.once('message', (m) => {
        captured = m
      })
      b.send('A', [packet(200, 9)], 1280)
      await until('the captured datagram', async () => captured !== undefined, 10_000)
      session.endpoint = real
      session.sendTo = socketAddress(real.address, b.family)
      tap.close()
      await sendTo(captured!)
      await sendTo(captured!)
      await until(
        'the replay dropped',
        async () => a.drops['udp-replayed'] >= before.drops['udp-replayed'] + 1,
        10_000,
      )
      assert.equal(a.drops['udp-replayed'], before.drops['udp-replayed'] + 1)
      assert.equal(a.drops['udp-unknown-key'], before.drops['udp-unknown-key'] + 1)
      assert.equal(a.drops['udp-malformed'], before.drops['udp-malformed'] + 1)
      assert.equal(a.drops['udp-bad-tag'], before.drops['udp-bad-tag'] + 1)
      assert.equal(got.a.length, before.a + 1, 'only the first copy of the real datagram is delivered')
      assert.equal(got.a.at(-1)![40], 9)
    } finally {
      s.close()
    }
  })
})

describe('overlay: the direct UDP carrier on a dual-stack socket, to IPv4 and IPv6 members', () => {
  const deps = (got: Uint8Array[]) => ({
    port: 0,
    onPackets: (_peer: string, ps: Uint8Array[]) => {
      got.push(...ps)
      return true
    },
    onConfirmed: () => {},
    onClosed: () => {},
    onError: () => {},
  })

  /** a and b confirm each other, then one packet each way; returns both ends' sessions */
  async function roundTrip(a: UdpCarrier, b: UdpCarrier, atA: Endpoint, atB: Endpoint, got: Uint8Array[][]) {
    const sizes = { min: 1280, max: 16000 }
    const sa = exchange(a, b, atA, atB, sizes)
    const sb = b.session('A')!
    const t = ticking(a, b, 50)
    try {
      await until('both ends confirmed', async () => sa.confirmed && sb.confirmed, 10_000)
      assert.equal(a.send('B', [packet(1280, 1)], 1280), 1)
      assert.equal(b.send('A', [packet(1280, 2)], 1280), 1)
      await until('a packet each way', async () => got[0].length === 1 && got[1].length === 1, 10_000)
      assert.equal(got[1][0][40], 1)
      assert.equal(got[0][0][40], 2)
    } finally {
      t.pause()
    }
    return { sa, sb }
  }

  it('reaches an IPv4-only member at ::ffff:a.b.c.d and keeps its endpoint plain (no roaming to the mapped form)', async () => {
    const got: Uint8Array[][] = [[], []]
    const a = await UdpCarrier.open({ ...deps(got[0]), family: 'ipv4' })
    const b = await UdpCarrier.open(deps(got[1]))
    try {
      assert.equal(a.family, 'ipv4')
      assert.equal(b.family, 'dual')
      const { sa, sb } = await roundTrip(
        a,
        b,
        { address: '127.0.0.1', port: a.port },
        { address: '127.0.0.1', port: b.port },
        got,
      )
      // b's socket hears a from ::ffff:127.0.0.1: the same endpoint, kept as a.b.c.d
      assert.deepEqual(sb.endpoint, { address: '127.0.0.1', port: a.port })
      assert.deepEqual(sa.endpoint, { address: '127.0.0.1', port: b.port })
      assert.equal(sb.sizer?.ip, 4)
      // an endpoint given in the mapped form is the same IPv4 endpoint
      const c = await UdpCarrier.open(deps([]))
      try {
        const s = c.start(
          'M',
          c.newLocalKey(),
          { key: newKey(), keyId: 1, endpoint: { address: '::ffff:127.0.0.1', port: 9 } },
          { offerer: true },
        )
        assert.equal(s.endpoint.address, '127.0.0.1')
        // a udp4 socket cannot send to an IPv6 member: no session
        assert.throws(
          () =>
            a.start(
              'X',
              a.newLocalKey(),
              { key: newKey(), keyId: 2, endpoint: { address: '::1', port: 9 } },
              { offerer: true },
            ),
          /no UDP to ::1 from a ipv4 socket/,
        )
      } finally {
        c.closeAll()
      }
    } finally {
      a.closeAll()
      b.closeAll()
    }
  })

  it('carries packets between two members over IPv6 (::1), sizing its datagrams for IPv6 fragments', async () => {
    const got: Uint8Array[][] = [[], []]
    const a = await UdpCarrier.open(deps(got[0]))
    const b = await UdpCarrier.open(deps(got[1]))
    try {
      const { sa, sb } = await roundTrip(
        a,
        b,
        { address: '::1', port: a.port },
        { address: '0:0:0:0:0:0:0:1', port: b.port },
        got,
      )
      assert.deepEqual(sa.endpoint, { address: '::1', port: b.port }, 'kept in RFC 5952 form')
      assert.deepEqual(sb.endpoint, { address: '::1', port: a.port })
      assert.equal(sa.sizer?.ip, 6)
      assert.equal(sb.sizer?.ip, 6)
    } finally {
      a.closeAll()
      b.closeAll()
    }
  })
})

describe('overlay: the direct UDP carrier gives up on a silent member', () => {
  it('closes a session the member never confirms, and one that stops hearing it, saying why', async () => {
    const closed: string[] = []
    const c = await UdpCarrier.open({
      port: 0,
      onPackets: () => true,
      onConfirmed: () => {},
      onClosed: (peer, why) => closed.push(`${peer}: ${why}`),
      onError: () => {},
    })
    // nobody listens there: no probe is ever answered
    const sink = createSocket('udp4')
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()))
    try {
      const endpoint = { address: '127.0.0.1', port: sink.address().port }
      const remote = { key: newKey(), keyId: 1, endpoint }
      const s = c.start('X', c.newLocalKey(), remote, { offerer: true })
      c.tick(s.since + CONFIRM_MS - 1)
      assert.equal(c.session('X'), s, 'still trying within CONFIRM_MS')
      c.tick(s.since + CONFIRM_MS + 1)
      assert.equal(c.session('X'), undefined)
      assert.match(closed[0], /^X: no UDP reply within 5 s$/)
      // a confirmed session that then hears nothing for LOST_MS
      const t = c.start('Y', c.newLocalKey(), { ...remote, keyId: 2 }, { offerer: true })
      t.confirmed = true
      t.lastReceived = Date.now()
      c.tick(t.lastReceived + LOST_MS - 1)
      assert.equal(c.session('Y'), t)
      c.tick(t.lastReceived + LOST_MS + 1)
      assert.equal(c.session('Y'), undefined)
      assert.match(closed[1], /^Y: nothing heard on UDP for 15 s$/)
      assert.equal(c.send('Y', [packet(100)], 1280), 0, 'no session: nothing sent')
    } finally {
      c.closeAll()
      sink.close()
    }
  })
})

describe("overlay: the direct UDP carrier sizes its packets by the member's loss reports", () => {
  // a path between a and b through a relay on 127.0.0.1 that may lose a's large datagrams, as a
  // path that drops IP fragments does (loopback itself never fragments or loses them)
  async function path(dropLarge: boolean) {
    const got: Uint8Array[] = []
    const deps = (onPackets: (ps: Uint8Array[]) => void) => ({
      port: 0,
      onPackets: (_peer: string, ps: Uint8Array[]) => {
        onPackets(ps)
        return true
      },
      onConfirmed: () => {},
      onClosed: () => {},
      onError: () => {},
    })
    const a = await UdpCarrier.open(deps(() => {}))
    const b = await UdpCarrier.open(deps((ps) => got.push(...ps)))
    const relay = createSocket('udp4')
    await new Promise<void>((r) => relay.bind(0, '127.0.0.1', () => r()))
    const lost = { n: 0 }
    relay.on('message', (m, from) => {
      const fromA = from.port === a.port
      if (fromA && dropLarge && m.length > 1500) {
        lost.n++
        return
      }
      relay.send(m, fromA ? b.port : a.port, '127.0.0.1')
    })
    const at = { address: '127.0.0.1', port: relay.address().port }
    const s = exchange(a, b, at, at, { min: 1280, max: 8000 })
    const ticks = ticking(a, b, 250)
    const close = () => {
      ticks.close()
      relay.close()
    }
    await until('a confirmed', async () => s.confirmed, 10_000).catch((e) => {
      close()
      throw e
    })
    return { a, s, got, lost, close }
  }

  // what the overlay does with each burst: packets of at most the session's size, small ones batched
  const burst = (p: Awaited<ReturnType<typeof path>>) => {
    const size = p.s.packetSize(1280)
    return p.a.send(
      'B',
      Array.from({ length: 8 }, (_, i) => packet(size, i)),
      1280,
    )
  }

  it('falls back to 1280-byte packets within seconds on a path that loses every large datagram', async () => {
    const p = await path(true)
    try {
      assert.equal(p.s.packetSize(1280), 8000, 'a new session starts large')
      let sent = 0
      await until(
        'a to lower its packet size',
        async () => {
          if (p.s.packetSize(1280) === 1280) return true
          sent += burst(p)
          return false
        },
        15_000,
        20,
      )
      assert.ok(p.lost.n >= 16, `the relay lost ${p.lost.n} large datagrams before a lowered its size`)
      assert.equal(p.got.length, 0, 'none of the large packets arrived')
      const before = p.got.length
      assert.equal(burst(p), 8)
      await until('the small packets', async () => p.got.length === before + 8, 10_000)
      assert.ok(sent > 0)
      assert.ok((p.s.sizer?.fragmentLoss ?? 0) > 0.1, `fragment loss ${p.s.sizer?.fragmentLoss}`)
    } finally {
      p.close()
    }
  })

  it('keeps large packets on a path that loses none', async () => {
    const p = await path(false)
    try {
      for (let i = 0; i < 3000 && p.s.lossReports < 3; i++) {
        burst(p)
        await new Promise((r) => setTimeout(r, 10))
      }
      assert.ok(p.s.lossReports >= 3, `b reported ${p.s.lossReports} times`)
      assert.equal(p.s.packetSize(1280), 8000)
      assert.equal(p.lost.n, 0)
      await until('the large packets', async () => p.got.some((x) => x.byteLength === 8000), 10_000)
    } finally {
      p.close()
    }
  })
})

describe("overlay: the direct UDP carrier's name lookup", () => {
  it('answers an IPv4 or IPv6 literal before it returns, and still resolves a name', async () => {
    let answer: [string, number] | undefined
    literalLookup('198.18.1.11', 4, (err, address, family) => {
      assert.equal(err, null)
      answer = [address, family]
    })
    // no deferral: dgram sends the datagram in the same turn as send()
    assert.deepEqual(answer, ['198.18.1.11', 4])
    // and an IPv6 one (the dual-stack socket's IPv4-mapped addresses included)
    for (const v6 of ['2001:2::a', '::ffff:198.18.1.11']) {
      answer = undefined
      literalLookup(v6, 6, (_err, address, family) => {
        answer = [address, family]
      })
      assert.deepEqual(answer, [v6, 6])
    }
    const named = await new Promise<string>((resolve, reject) =>
      literalLookup('localhost', 4, (err, address) => (err === null ? resolve(address) : reject(err))),
    )
    assert.equal(named, '127.0.0.1')
  })
})

describe('overlay: the direct UDP carrier rotates its keys within a session', () => {
  const local = (port: number) => ({ address: '127.0.0.1', port })
  const seqPacket = (n: number) => {
    const p = packet(1000)
    Buffer.from(p.buffer).writeUInt32BE(n, 40)
    return p
  }

  /**
   * a offers to b. With rekeyAfterMs, a's ticks start rotations as the component does: b takes
   * the new offer and answers at once, and the answer reaches a `answerMs` later, while packets flow.
   */
  async function pair(
    opts: { rekeyAfterMs?: number; rekeyAfterDatagrams?: number; answerMs?: number; graceMs?: number } = {},
  ) {
    const got = { a: [] as number[], b: [] as number[] }
    const closed: string[] = []
    const asked = { n: 0 }
    const deps = (self: 'a' | 'b') => ({
      port: 0,
      onPackets: (_peer: string, ps: Uint8Array[]) => {
        for (const p of ps) got[self].push(Buffer.from(p.buffer, p.byteOffset).readUInt32BE(40))
        return true
      },
      onConfirmed: () => {},
      onClosed: (_peer: string, why: string) => closed.push(`${self}: ${why}`),
      onError: () => {},
    })
    const b = await UdpCarrier.open(deps('b'))
    const a: UdpCarrier = await UdpCarrier.open({
      ...deps('a'),
      graceMs: opts.graceMs,
      rekeyAfterMs: opts.rekeyAfterMs,
      rekeyAfterDatagrams: opts.rekeyAfterDatagrams,
      onRekeyDue: () => {
        asked.n++
        if (opts.answerMs === undefined) return
        const ka = a.newLocalKey()
        const kb = b.newLocalKey()
        b.rekey('A', kb, { keyId: ka.keyId, publicKey: ka.ephemeral.publicKey })
        setTimeout(() => {
          if (a.session('B') !== undefined)
            a.rekey('B', ka, { keyId: kb.keyId, publicKey: kb.ephemeral.publicKey })
        }, opts.answerMs)
      },
    })
    const s = exchange(a, b, local(a.port), local(b.port), { min: 1280, max: 8000 })
    const ticks = ticking(a, b, 50)
    const close = ticks.close
    try {
      await until(
        'both ends confirmed',
        async () => s.confirmed && b.session('A')?.confirmed === true,
        10_000,
      )
    } catch (e) {
      close()
      throw e
    }
    return { a, b, s, got, closed, asked, ticks, close }
  }

  it('keeps packets flowing across several rotations: none lost, none twice, no loss reported, same session', async () => {
    const p = await pair({ rekeyAfterMs: 300, answerMs: 5 })
    try {
      const sb = p.b.session('A')!
      let n = 0
      const started = Date.now()
      // both ways, 4 packets every 5 ms, until each end has rotated 5 times (at most 20 s)
      while ((p.s.rekeys < 5 || sb.rekeys < 5) && Date.now() - started < 20_000) {
        const burst = [0, 1, 2, 3].map(() => seqPacket(n++))
        assert.equal(p.a.send('B', burst, 1280), 4, 'a sends on its session, never falling back')
        assert.equal(p.b.send('A', burst, 1280), 4)
        await new Promise((r) => setTimeout(r, 5))
      }
      assert.ok(p.s.rekeys >= 5 && sb.rekeys >= 5, `rotations: a ${p.s.rekeys}, b ${sb.rekeys}`)
      p.ticks.pause()
      await until(
        'every datagram in',
        async () => sb.receivedAll === p.s.sentDatagrams && p.s.receivedAll === sb.sentDatagrams,
        10_000,
      )
      for (const [who, seqs] of Object.entries(p.got)) {
        assert.equal(seqs.length, n, `${who} got each packet once`)
        assert.equal(new Set(seqs).size, n, `${who} got no packet twice`)
      }
      // the same sessions, confirmed, their totals over all their keys
      assert.equal(p.a.session('B'), p.s)
      assert.equal(p.b.session('A'), sb)
      assert.ok(p.s.confirmed && sb.confirmed)
      assert.deepEqual(p.closed, [])
      // what the loss reports count: every datagram sealed under every key, none missing
      assert.equal(sb.expected(), p.s.sentDatagrams)
      assert.equal(p.s.expected(), sb.sentDatagrams)
      assert.ok(p.s.lossReports >= 2, `b reported ${p.s.lossReports} times`)
      assert.equal(p.s.packetSize(1280), 8000, 'no rotation read as loss')
      for (const c of [p.a, p.b])
        for (const r of ['udp-unknown-key', 'udp-retired-key', 'udp-bad-tag', 'udp-replayed'] as const)
          assert.equal(c.drops[r], 0, r)
    } finally {
      p.close()
    }
  })

  it('opens a datagram under the old key during the grace, once; after it, drops and counts it', async () => {
    // a grace longer than GRACE_MS, so that a stall of this process on a loaded machine does not
    // end it before the test sends; its end is then brought forward by a's clock (tick)
    const graceMs = 10_000
    const p = await pair({ graceMs })
    const raw = createSocket('udp4')
    const tap = createSocket('udp4')
    try {
      await new Promise<void>((r) => tap.bind(0, '127.0.0.1', () => r()))
      // three datagrams b sealed under its first key, kept from a
      const sb = p.b.session('A')!
      const real = sb.endpoint
      const captured: Buffer[] = []
      tap.on('message', (m) => captured.push(m))
      sb.endpoint = local(tap.address().port)
      p.b.send('A', [seqPacket(1)], 1280)
      p.b.send('A', [seqPacket(2)], 1280)
      p.b.send('A', [seqPacket(3)], 1280)
      await until('the captured datagrams', async () => captured.length === 3, 10_000)
      sb.endpoint = real
      const oldKey = p.s.localKeyId
      exchange(p.a, p.b, local(p.a.port), local(p.b.port), undefined, true)
      await until('both ends on the new keys', async () => p.s.rekeys === 1 && sb.rekeys === 1, 10_000)
      assert.notEqual(p.s.localKeyId, oldKey)
      const sendTo = (d: Uint8Array) =>
        new Promise<void>((resolve, reject) =>
          raw.send(d, p.a.port, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
        )
      // within the grace: delivered once, its copy refused
      await sendTo(captured[0])
      await sendTo(captured[0])
      await until('the replay dropped', async () => p.a.drops['udp-replayed'] === 1, 10_000)
      assert.deepEqual(p.got.a, [1])
      // past the grace the old key opens nothing: dropped as a retired key's, not delivered
      p.ticks.pause()
      const retireAt = p.s.rxPrevious!.retireAt!
      assert.ok(retireAt <= Date.now() + graceMs)
      p.a.tick(retireAt - 1)
      assert.notEqual(p.s.rxPrevious, undefined, 'not before the grace ends')
      p.a.tick(retireAt)
      assert.equal(p.s.rxPrevious, undefined, 'the old key is retired')
      await sendTo(captured[1])
      await sendTo(captured[2])
      await until('the late ones dropped', async () => p.a.drops['udp-retired-key'] === 2, 10_000)
      assert.deepEqual(p.got.a, [1])
      assert.equal(p.a.drops['udp-unknown-key'], 0)
      assert.equal(p.a.drops['udp-bad-tag'], 0)
      // and the session goes on under the new keys
      p.b.send('A', [seqPacket(4)], 1280)
      await until('a packet under the new key', async () => p.got.a.includes(4), 10_000)
      assert.ok(p.s.confirmed)
    } finally {
      raw.close()
      tap.close()
      p.close()
    }
  })

  it('the offerer asks for a rotation by time and by count, retries, and closes a session left unrotated', async () => {
    const p = await pair({ rekeyAfterMs: 60_000, rekeyAfterDatagrams: 40 })
    try {
      p.ticks.pause()
      const now = Date.now()
      p.a.tick(now)
      assert.equal(p.asked.n, 0, 'not due yet')
      // by count: b sealed 40 datagrams under its key (a sees its counter)
      for (let i = 0; i < 40; i++) p.b.send('A', [seqPacket(i)], 1280)
      await until('b datagrams in', async () => p.got.a.length === 40, 10_000)
      p.a.tick(now)
      assert.equal(p.asked.n, 1)
      p.a.tick(now + 1_000)
      assert.equal(p.asked.n, 1, 'not again while the exchange may still be under way')
      p.a.tick(now + 5_000)
      assert.equal(p.asked.n, 2, 'again 5 s later')
      // the answerer never asks: the offerer's clock rules; it closes only keys an hour old
      const sb = p.b.session('A')!
      sb.lastReceived = sb.keysAt + MAX_REKEY_AFTER_MS + REJECT_AFTER_DUE_MS
      p.b.tick(sb.keysAt + 60_000)
      assert.equal(p.asked.n, 2)
      p.b.tick(sb.keysAt + MAX_REKEY_AFTER_MS + REJECT_AFTER_DUE_MS - 1)
      assert.equal(p.b.session('A'), sb)
      p.b.tick(sb.keysAt + MAX_REKEY_AFTER_MS + REJECT_AFTER_DUE_MS)
      assert.equal(p.b.session('A'), undefined)
      assert.match(p.closed.at(-1)!, /^b: the member did not rotate the keys for 3660 s$/)
      // by time, never rotated: the session closes a minute after its keys were due
      const since = p.s.keysAt
      // (the member is heard all along: only the keys' age closes the session)
      p.s.lastReceived = since + 60_000 + REJECT_AFTER_DUE_MS
      p.a.tick(since + 60_000 + REJECT_AFTER_DUE_MS - 1)
      assert.equal(p.a.session('B'), p.s)
      p.a.tick(since + 60_000 + REJECT_AFTER_DUE_MS)
      assert.equal(p.a.session('B'), undefined)
      assert.match(p.closed.at(-1)!, /^a: keys not rotated for 120 s$/)
    } finally {
      p.close()
    }
  })

  it('a member on the previous version (random keys, no public key) keeps one key per session', async () => {
    const asked: string[] = []
    const got: Uint8Array[] = []
    const open = (onPackets: (ps: Uint8Array[]) => void) =>
      UdpCarrier.open({
        port: 0,
        onPackets: (_peer, ps) => {
          onPackets(ps)
          return true
        },
        onConfirmed: () => {},
        onClosed: () => {},
        onError: () => {},
        onRekeyDue: (peer) => asked.push(peer),
        rekeyAfterMs: 100,
      })
    const a = await open(() => {})
    const b = await open((ps) => got.push(...ps))
    try {
      const ka = a.newLocalKey()
      const kb = b.newLocalKey()
      b.start('A', kb, { keyId: ka.keyId, key: ka.key, endpoint: local(a.port) }, { offerer: false })
      const s = a.start('B', ka, { keyId: kb.keyId, key: kb.key, endpoint: local(b.port) }, { offerer: true })
      await until('confirmed', async () => s.confirmed, 10_000)
      assert.equal(s.rotates, false)
      a.tick(Date.now() + 1_000)
      assert.deepEqual(asked, [], 'no rotation asked of a member that cannot take one')
      assert.throws(() => a.rekey('B', a.newLocalKey(), { keyId: 1, publicKey: kb.ephemeral.publicKey }))
      a.send('B', [seqPacket(7)], 1280)
      await until('the packet', async () => got.length === 1, 10_000)
    } finally {
      a.closeAll()
      b.closeAll()
    }
  })
})
