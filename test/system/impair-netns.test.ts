import { strict as assert } from 'node:assert'
import type { ChildProcess } from 'node:child_process'
import { type ImpairedLink, impairedLink } from '../../sim/bench/impair.js'
import { type Host, Lab, requireSystem } from './harness.js'
import { waitFor } from './world.js'

// The overlay bench's impaired link (sim/bench/impair.ts, a userspace netem: this kernel has no
// sch_netem) does what it claims: the delay shows in ping, and the drops and reorders that
// one-way UDP sees are the configured shares, and exactly the ones the impairer counted.

// a receiver on :7100 that counts datagrams (4-byte sequence numbers): how many, and how often
// one arrived after a higher one ("descents": each packet sent ahead of the held ones is one)
const RECEIVER = `
const s = require('node:dgram').createSocket({ type: 'udp4', recvBufferSize: 8 << 20 })
let got = 0, descents = 0, prev = -1
s.on('message', (m) => { const q = m.readUInt32BE(0); got++; if (q < prev) descents++; prev = q })
s.bind(7100, () => console.log('ready'))
process.stdin.on('data', () => console.log(JSON.stringify({ got, descents })))
setTimeout(() => process.exit(0), 120000)
`
// sends N datagrams to HOST:7100, in bursts of 10 every millisecond (so packets are held together)
const SENDER = `
const s = require('node:dgram').createSocket('udp4')
const [host, n] = [process.argv[1], Number(process.argv[2])]
let q = 0
const burst = () => {
  for (let i = 0; i < 10 && q < n; i++) { const b = Buffer.alloc(200); b.writeUInt32BE(q++, 0); s.send(b, 7100, host) }
  if (q < n) setTimeout(burst, 1); else setTimeout(() => process.exit(0), 200)
}
burst()
`

describe('system: the userspace impaired link (netem stand-in)', function () {
  this.timeout(180_000)
  let lab: Lab
  let link: ImpairedLink
  let a: Host
  let b: Host

  before(async function () {
    requireSystem.call(this, ['root', 'netns'])
    lab = new Lab()
    link = await impairedLink(lab)
    a = lab.host('a', link.sideA)
    b = lab.host('b', link.sideB)
  })

  after(async () => {
    if (lab === undefined) return
    await lab.cleanup()
    assert.deepEqual(lab.existing(), [], 'every namespace of the lab is gone')
  })

  const rtts = async (): Promise<number[]> => {
    const out = await lab.execOk(a, ['ping', '-n', '-c', '40', '-i', '0.02', b.ip], { timeoutMs: 30_000 })
    return [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((x, y) => x - y)
  }

  it('adds the delay to each direction: ping RTT >= 2 x delay', async () => {
    assert.ok(await lab.ping(a, b), 'a reaches b through the router')
    const clean = await rtts()
    await link.set({ delayMs: 4, lossPct: 0, reorderPct: 0 })
    const slow = await rtts()
    await link.set({ delayMs: 0, lossPct: 0, reorderPct: 0 })
    const med = (xs: number[]) => xs[xs.length >> 1]
    console.log(`      ping RTT median: clean ${med(clean)} ms, 4 ms each way ${med(slow)} ms`)
    assert.equal(slow.length, 40, 'no ping lost')
    assert.ok(slow[0] >= 8, `every RTT at least 2 x 4 ms (min ${slow[0]} ms)`)
    // loose: catches a delay in the wrong unit, not a slow machine
    assert.ok(med(slow) < 8 + 100, `median RTT ${med(slow)} ms is about 8 ms`)
  })

  it('drops and reorders the configured shares, and counts exactly what it dropped', async () => {
    const n = 20_000
    const recv = lab.spawn(b, [process.execPath, '-e', RECEIVER])
    let out = ''
    recv.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d
    })
    await waitFor('receiver bound', async () => out.includes('ready'), 10_000)
    await link.set({ delayMs: 4, lossPct: 1, reorderPct: 2.5, seed: 7 })
    const s0 = await link.stats()
    // on a loaded machine the kernel may drop too (the TUN queue while the impairer is not
    // scheduled, b's socket buffer while the receiver is not): counted, so every loss has a cause
    const k0 = await kernelDrops(lab, link, b)
    await lab.execOk(a, [process.execPath, '-e', SENDER, b.ip, String(n)], { timeoutMs: 120_000 })
    const s1 = await waitFor(
      'the impairer has read every datagram and released the held ones',
      async () => {
        const s = await link.stats()
        const k = await kernelDrops(lab, link, b)
        const read = n - (k.tun - k0.tun)
        return s.in - s0.in >= read && s.in === s.out + s.dropped + s.overflow ? s : undefined
      },
      30_000,
    )
    const dropped = s1.dropped - s0.dropped
    const reordered = s1.reordered - s0.reordered
    assert.equal(s1.overflow - s0.overflow, 0, 'nothing dropped for want of room')
    const report = await waitFor(
      'b received every datagram the impairer let through',
      async () => {
        const r = await ask(recv, () => out)
        const k = await kernelDrops(lab, link, b)
        const lostInKernel = k.tun - k0.tun + (k.socket - k0.socket)
        return r !== undefined && r.got + lostInKernel >= n - dropped ? { ...r, lostInKernel } : undefined
      },
      30_000,
    )
    await link.set({ delayMs: 0, lossPct: 0, reorderPct: 0 })
    console.log(
      `      ${n} datagrams: impairer dropped ${dropped} (1% = ${n / 100}), reordered ${reordered} (2.5% of those kept = ${Math.round((n - dropped) * 0.025)}); b got ${report.got}, ${report.descents} out of order; the kernel dropped ${report.lostInKernel} (TUN queue + b's socket buffer)`,
    )
    assert.equal(
      report.got + report.lostInKernel,
      n - dropped,
      'what b lost is what the impairer (or, counted, the kernel) dropped',
    )
    // the shares below are of what the impairer saw; kernel drops must stay a small part of it
    assert.ok(
      report.lostInKernel < n * 0.05,
      `the kernel dropped ${report.lostInKernel} of ${n}: the machine is too busy for this test`,
    )
    // 20,000 draws: the binomial's sigma is 14 for 1% and 22 for 2.5%; the bounds are 5+ sigma
    assert.ok(dropped > n * 0.006 && dropped < n * 0.014, `about 1% dropped (${dropped})`)
    assert.ok(reordered > n * 0.019 && reordered < n * 0.031, `about 2.5% sent ahead (${reordered})`)
    // each packet sent ahead arrives before the ones it overtook: one descent each (two close
    // together, within the held window, make one)
    assert.ok(
      report.descents <= reordered && report.descents > reordered * 0.5,
      `b saw the reorders (${report.descents} descents, ${reordered} sent ahead)`,
    )
    recv.kill()
  })
})

/** Packets the kernel dropped: queued to the impairer's TUN device, and for b's UDP sockets. */
async function kernelDrops(lab: Lab, link: ImpairedLink, b: Host): Promise<{ tun: number; socket: number }> {
  const dev = JSON.parse(await lab.execOk(link.router, ['ip', '-j', '-s', 'link', 'show', 'dev', 'imp0']))
  const snmp = (await lab.execOk(b, ['cat', '/proc/net/snmp']))
    .split('\n')
    .filter((l) => l.startsWith('Udp:'))
  const [names, values] = snmp.map((l) => l.trim().split(/\s+/))
  return { tun: Number(dev[0].stats64.tx.dropped), socket: Number(values[names.indexOf('RcvbufErrors')]) }
}

/** Asks the receiver for its counts (one line on stdin, one JSON line back). */
async function ask(
  recv: ChildProcess,
  out: () => string,
): Promise<{ got: number; descents: number } | undefined> {
  const before = out().length
  recv.stdin!.write('\n')
  for (let i = 0; i < 50 && out().length === before; i++) await new Promise((r) => setTimeout(r, 20))
  const lines = out().trim().split('\n')
  const last = lines[lines.length - 1]
  return last.startsWith('{') ? JSON.parse(last) : undefined
}
