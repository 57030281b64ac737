/**
 * A userspace impaired link, netem-like, for the netns lab (this kernel has no sch_netem and no
 * sch_fq, so neither `tc ... netem` nor a BPF departure-time delay can be used). Runs inside a
 * router namespace: the router sends every packet it forwards into one TUN device (policy
 * routing, see impair.ts); this process reads each packet, drops it at random (seeded), holds it
 * for the configured delay (plus uniform jitter) or, at the reorder rate, sends it at once so
 * it overtakes the packets held (netem's `reorder`), and writes it back into the TUN device,
 * from where the kernel routes it on to its destination. Both directions cross it, so each
 * direction gets the delay, the loss and the reordering.
 *
 * One synchronous loop (ppoll with a nanosecond timeout, non-blocking reads and writes through
 * koffi): no event-loop timers, whose 1 ms granularity would be half of a 2 ms delay.
 *
 *   node impair-link.js DEV  (then configuration lines on stdin: {"delayMs":2,"jitterMs":0,
 *   "lossPct":0.25,"reorderPct":0.5,"seed":1}; each replaces the previous one)
 *
 * stdout: 'ready' once the device exists, then a JSON line of counters every 250 ms.
 */
import { closeSync, writeSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import koffi from 'koffi'
import { openTunFd } from '../../src/overlay/tun.js'
import { mulberry32 } from '../rng.js'

export interface Impairment {
  /** one-way delay added to every packet (each direction), ms */
  delayMs: number
  /** uniform jitter, +- ms around the delay (reorders packets as netem's jitter does) */
  jitterMs?: number
  /** share of packets dropped, % */
  lossPct: number
  /** share of packets sent at once, past the ones held (netem's reorder), % */
  reorderPct: number
  seed?: number
}

export interface ImpairStats {
  /** packets read from the router */
  in: number
  /** packets written back (delivered on) */
  out: number
  /** dropped at random (the loss) */
  dropped: number
  /** sent at once while older packets were held: each overtook at least one */
  reordered: number
  /** dropped because the queue was full (netem's limit) */
  overflow: number
  /** writes the kernel refused */
  writeErrors: number
  /** the largest lateness of a release against its scheduled time, ms */
  maxLateMs: number
}

const POLLIN = 1
const SLOT = 2048 // the link's MTU is 1500
const LIMIT = 4096 // packets held at most (netem's default limit is 1000)
const STATS_MS = 250

async function main(): Promise<void> {
  const dev = process.argv[2]
  if (dev === undefined || !/^[a-z0-9]{1,15}$/.test(dev)) throw new Error('usage: impair-link.js DEVICE')
  const libc = koffi.load('libc.so.6')
  const read = libc.func('long read(int fd, _Out_ uint8_t *buf, unsigned long n)')
  const write = libc.func('long write(int fd, uint8_t *buf, unsigned long n)')
  const ppoll = libc.func('int ppoll(_Inout_ uint8_t *fds, unsigned long n, uint8_t *tmo, void *sigmask)')

  const fd = await openTunFd(dev)
  // stdin carries the configuration; non-blocking so the loop never waits on it
  const pfds = Buffer.alloc(16)
  pfds.writeInt32LE(fd, 0)
  pfds.writeInt16LE(POLLIN, 4)
  pfds.writeInt32LE(0, 8)
  pfds.writeInt16LE(POLLIN, 12)
  const tmo = Buffer.alloc(16)

  let cfg: Impairment = { delayMs: 0, lossPct: 0, reorderPct: 0 }
  let rng = mulberry32(1)
  const stats: ImpairStats = {
    in: 0,
    out: 0,
    dropped: 0,
    reordered: 0,
    overflow: 0,
    writeErrors: 0,
    maxLateMs: 0,
  }

  // the held packets: a ring ordered by release time (insertion from the tail: with no jitter
  // every packet goes at the end)
  const pool = Buffer.allocUnsafeSlow(LIMIT * SLOT)
  const scratch = Buffer.allocUnsafeSlow(SLOT)
  const free: number[] = Array.from({ length: LIMIT }, (_, i) => LIMIT - 1 - i)
  const ringSlot = new Int32Array(LIMIT)
  const ringLen = new Int32Array(LIMIT)
  const ringAt = new Float64Array(LIMIT)
  let head = 0
  let count = 0

  const send = (slot: number, len: number) => {
    const off = slot * SLOT
    if (Number(write(fd, pool.subarray(off, off + len), len)) === len) stats.out++
    else stats.writeErrors++
  }
  const enqueue = (slot: number, len: number, at: number) => {
    let i = count++
    while (i > 0 && ringAt[(head + i - 1) % LIMIT] > at) {
      const from = (head + i - 1) % LIMIT
      const to = (head + i) % LIMIT
      ringAt[to] = ringAt[from]
      ringSlot[to] = ringSlot[from]
      ringLen[to] = ringLen[from]
      i--
    }
    const j = (head + i) % LIMIT
    ringAt[j] = at
    ringSlot[j] = slot
    ringLen[j] = len
  }

  let stdinLine = ''
  const stdinBuf = Buffer.alloc(4096)
  const readConfig = (): boolean => {
    const n = Number(read(0, stdinBuf, stdinBuf.length))
    if (n === 0) return false // stdin closed: the lab is done with us
    if (n < 0) return true
    stdinLine += stdinBuf.toString('utf8', 0, n)
    let nl = stdinLine.indexOf('\n')
    while (nl >= 0) {
      const line = stdinLine.slice(0, nl).trim()
      stdinLine = stdinLine.slice(nl + 1)
      if (line !== '') {
        cfg = JSON.parse(line) as Impairment
        rng = mulberry32(cfg.seed ?? 1)
        writeSync(1, `${JSON.stringify({ config: cfg })}\n`)
      }
      nl = stdinLine.indexOf('\n')
    }
    return true
  }

  writeSync(1, 'ready\n')
  let nextStats = performance.now() + STATS_MS
  for (;;) {
    let now = performance.now()
    while (count > 0 && ringAt[head] <= now) {
      const late = now - ringAt[head]
      if (late > stats.maxLateMs) stats.maxLateMs = late
      send(ringSlot[head], ringLen[head])
      free.push(ringSlot[head])
      head = (head + 1) % LIMIT
      count--
    }
    if (now >= nextStats) {
      writeSync(1, `${JSON.stringify({ ...stats, queued: count })}\n`)
      nextStats = now + STATS_MS
    }
    const waitMs = Math.max(0, Math.min(nextStats - now, count > 0 ? ringAt[head] - now : STATS_MS))
    const ns = Math.round(waitMs * 1e6)
    tmo.writeBigInt64LE(BigInt(Math.floor(ns / 1e9)), 0)
    tmo.writeBigInt64LE(BigInt(ns % 1e9), 8)
    pfds.writeInt16LE(0, 6)
    pfds.writeInt16LE(0, 14)
    if (Number(ppoll(pfds, 2, tmo, null)) <= 0) continue
    if (pfds.readInt16LE(14) !== 0 && !readConfig()) break
    if (pfds.readInt16LE(6) === 0) continue
    now = performance.now()
    // every packet the kernel has now, up to a batch, each read into a free slot
    for (let k = 0; k < 256; k++) {
      const slot = free.length > 0 ? free[free.length - 1] : -1
      // full: read into the scratch buffer, to drop (overflow)
      const into = slot >= 0 ? pool.subarray(slot * SLOT, slot * SLOT + SLOT) : scratch
      const len = Number(read(fd, into, SLOT))
      if (len <= 0) break
      stats.in++
      if (slot < 0) {
        stats.overflow++
        continue
      }
      if (cfg.lossPct > 0 && rng() * 100 < cfg.lossPct) {
        stats.dropped++
        continue
      }
      const jitter = cfg.jitterMs ?? 0
      const delay = cfg.delayMs + (jitter > 0 ? (rng() * 2 - 1) * jitter : 0)
      if (delay <= 0 || (cfg.reorderPct > 0 && rng() * 100 < cfg.reorderPct)) {
        if (delay > 0 && count > 0) stats.reordered++
        send(slot, len)
        continue
      }
      free.pop()
      enqueue(slot, len, now + delay)
    }
  }
  closeSync(fd)
}

if (process.argv[1]?.endsWith('impair-link.js'))
  main().catch((err: Error) => {
    process.stderr.write(`impair-link: ${err.message}\n`)
    process.exit(1)
  })
