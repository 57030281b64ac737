/**
 * A TUN device from Node: /dev/net/tun opened here, ioctl(TUNSETIFF) through koffi (an FFI with
 * prebuilt binaries: no compiler on the machine), packets read on the main thread's event loop
 * (libuv polls the fd, see mainLoopReader) or, where that is not possible, in a worker thread,
 * and written from the main thread (a write to a TUN device hands the packet to the kernel and
 * returns). Addresses, routes and the link state are set with iproute2's `ip`, as a sysadmin would.
 */
import { execFile } from 'node:child_process'
import { closeSync, constants, existsSync, openSync, writeSync } from 'node:fs'
import { promisify } from 'node:util'
import { Worker } from 'node:worker_threads'

const run = promisify(execFile)

const TUNSETIFF = 0x400454ca
const IFF_TUN = 0x0001
const IFF_NO_PI = 0x1000
const IFNAMSIZ = 16

/**
 * Open /dev/net/tun as the TUN device `name` (IFF_TUN, no packet info), non-blocking; the device
 * exists while the fd is open. Also used by the benchmarks' impaired link (sim/bench/impair-link.ts).
 */
export async function openTunFd(name: string): Promise<number> {
  if (existsSync(`/sys/class/net/${name}`))
    throw new TunError(
      'name-taken',
      `an interface named ${name} already exists (another agent?); set overlay.name to another name`,
    )
  if (!existsSync('/dev/net/tun'))
    throw new TunError(
      'no-tun',
      '/dev/net/tun is missing (load the tun module, or run the container with --device /dev/net/tun)',
    )
  let fd: number
  try {
    fd = openSync('/dev/net/tun', constants.O_RDWR | constants.O_NONBLOCK)
  } catch (err) {
    throw new TunError('no-tun', `cannot open /dev/net/tun: ${(err as Error).message}`)
  }
  const { ioctl: call, errno } = await ioctl()
  const ifr = Buffer.alloc(40)
  ifr.write(name, 0, IFNAMSIZ - 1, 'utf8')
  ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI, IFNAMSIZ)
  if (call(fd, TUNSETIFF, ifr) !== 0) {
    const e = errno()
    closeSync(fd)
    if (e === EPERM)
      throw new TunError(
        'no-privilege',
        'creating a TUN interface needs CAP_NET_ADMIN (run the agent as root)',
      )
    if (e === EBUSY) throw new TunError('name-taken', `interface ${name} is in use by another process`)
    throw new TunError('failed', `ioctl(TUNSETIFF) failed with errno ${e}`)
  }
  return fd
}

/** Why the interface could not be made: `mesh status` shows it. */
export class TunError extends Error {
  override name = 'TunError'
  constructor(
    readonly code: 'no-privilege' | 'name-taken' | 'no-tun' | 'no-ip' | 'failed',
    message: string,
  ) {
    super(message)
  }
}

let ioctlFn: ((fd: number, req: number, arg: Buffer) => number) | undefined
let errnoFn: (() => number) | undefined

async function ioctl(): Promise<{ ioctl: NonNullable<typeof ioctlFn>; errno: NonNullable<typeof errnoFn> }> {
  if (ioctlFn === undefined || errnoFn === undefined) {
    // loaded on first use: an agent without the interface never loads native code
    const koffi = (await import('koffi')).default
    const libc = koffi.load('libc.so.6')
    ioctlFn = libc.func('int ioctl(int fd, unsigned long req, _Inout_ uint8_t *arg)') as typeof ioctlFn
    errnoFn = () => koffi.errno()
  }
  return { ioctl: ioctlFn!, errno: errnoFn! }
}

export interface TunOptions {
  name: string
  mtu: number
  /** our address, as text; added as a /128 */
  address: string
  /** routed through the device, e.g. the cluster's /48 */
  routes: string[]
  /** packets from the kernel, in bursts (one worker message per burst) */
  onPackets: (packets: Uint8Array[]) => void
  onError?: (err: Error) => void
}

const EPERM = 1
const EBUSY = 16

/** What reads the device on the event loop: stopped and closed (with the fd) by close(). */
interface LoopReader {
  close(): Promise<void>
}

/**
 * Reads the TUN fd on the main thread: libuv's epoll watches it like a pipe, and each read()
 * returns one packet, so each read callback is one packet. This saves the hand-off from a reader
 * thread to the main thread, a scheduler wake-up on every packet that arrives alone (a ping),
 * on each side. It needs Node's internal pipe_wrap and stream_wrap bindings (uv_pipe_open on
 * any pollable fd, and where a read's length is); undefined where they are not there, and the
 * worker reads instead. The packets go straight from the handle's read callback, without a
 * net.Socket: its stream machinery (push, a nextTick per read, the 'data' event) took 13% of an
 * agent's main thread in a profile of pings (sim/PROFILE.md, issue 15). The packets that one
 * turn of the event loop reads are handed on together (one burst, as the worker posts them).
 */
function mainLoopReader(
  fd: number,
  onPackets: (packets: Uint8Array[]) => void,
  onError: (err: Error) => void,
): LoopReader | undefined {
  let handle: any
  let state: Int32Array
  let NREAD: number
  let OFFSET: number
  try {
    const bind = (process as unknown as { binding(name: string): any }).binding
    const pipe = bind('pipe_wrap')
    const stream = bind('stream_wrap')
    state = stream.streamBaseState
    NREAD = stream.kReadBytesOrError
    OFFSET = stream.kArrayBufferOffset
    if (!(state instanceof Int32Array) || typeof NREAD !== 'number' || typeof OFFSET !== 'number')
      return undefined
    handle = new pipe.Pipe(pipe.constants.SOCKET)
    if (handle.open(fd) !== 0) return undefined
  } catch {
    return undefined
  }
  let burst: Uint8Array[] = []
  const flush = () => {
    const packets = burst
    burst = []
    onPackets(packets)
  }
  handle.onread = (buf: ArrayBuffer | undefined) => {
    const n = state[NREAD]
    if (n > 0) {
      if (burst.push(new Uint8Array(buf!, state[OFFSET], n)) === 1) setImmediate(flush)
      return
    }
    if (n === 0) return
    // a TUN device gives no end of file: an error stops the reading, and says so
    handle.readStop()
    onError(new Error(`reading the TUN device failed (libuv error ${n})`))
  }
  // not closed on failure: closing it would close the fd the worker then reads
  if (handle.readStart() !== 0) return undefined
  // like the worker: the device alone does not keep the process running
  handle.unref()
  return {
    close: () =>
      new Promise<void>((resolve) => {
        handle.readStop()
        // closing the handle closes the fd (and the kernel removes the device)
        handle.close(() => resolve())
      }),
  }
}

/** An open TUN device with its address and routes; close() removes it (and them, with it). */
export class TunDevice {
  private fd: number
  private readonly worker: Worker | undefined
  private readonly loop: LoopReader | undefined
  private readonly stopFlag = new Int32Array(new SharedArrayBuffer(4))
  writeErrors = 0
  private closed = false

  /** where packets are read: on the event loop, or in a worker thread where that is not possible */
  get reader(): 'event-loop' | 'worker' {
    return this.loop !== undefined ? 'event-loop' : 'worker'
  }

  private constructor(
    readonly name: string,
    fd: number,
    opts: TunOptions,
  ) {
    this.fd = fd
    this.loop = mainLoopReader(fd, opts.onPackets, (err) => opts.onError?.(err))
    if (this.loop !== undefined) return
    this.worker = new Worker(new URL('./tun-reader.js', import.meta.url), {
      workerData: { fd, mtu: opts.mtu, stop: this.stopFlag },
    })
    this.worker.on('message', (m: { buf: ArrayBuffer; lens: number[] } | { error: string }) => {
      if ('error' in m) {
        opts.onError?.(new Error(m.error))
        return
      }
      const out: Uint8Array[] = new Array(m.lens.length)
      let off = 0
      for (let i = 0; i < m.lens.length; i++) {
        out[i] = new Uint8Array(m.buf, off, m.lens[i])
        off += m.lens[i]
      }
      opts.onPackets(out)
    })
    this.worker.on('error', (err) => opts.onError?.(err))
    this.worker.unref()
  }

  /** Create the device, bring it up with its address and routes. Throws TunError saying why not. */
  static async open(opts: TunOptions): Promise<TunDevice> {
    const fd = await openTunFd(opts.name)
    const dev = new TunDevice(opts.name, fd, opts)
    try {
      await ip(['link', 'set', 'dev', opts.name, 'mtu', String(opts.mtu), 'up'])
      // nodad: the address is ours by construction, and DAD would hold it tentative for a second
      await ip(['-6', 'addr', 'add', `${opts.address}/128`, 'dev', opts.name, 'nodad'])
      for (const r of opts.routes) await ip(['-6', 'route', 'add', r, 'dev', opts.name])
    } catch (err) {
      await dev.close()
      throw err
    }
    return dev
  }

  /** Hand one packet to the kernel; false when it refused it (counted, like a drop). */
  write(packet: Uint8Array): boolean {
    if (this.closed) return false
    try {
      writeSync(this.fd, packet)
      return true
    } catch {
      this.writeErrors++
      return false
    }
  }

  /**
   * Forget the path MTU the kernel learnt for `address` from our Packet Too Big: it keeps one for
   * 10 minutes (net.ipv6.route.mtu_expires) and never raises it by itself, so without this TCP
   * inside would send small segments that long after the carrier takes large packets again.
   */
  async forgetPathMtu(address: string): Promise<void> {
    if (this.closed) return
    await ip(['-6', 'route', 'flush', 'cache', 'to', address, 'dev', this.name])
  }

  /** Stop reading and close the device: the kernel removes it with its address and routes. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.loop !== undefined) {
      // the handle owns the fd: closing it closes the fd (and the kernel removes the device)
      await this.loop.close()
      this.fd = -1
      return
    }
    const worker = this.worker!
    Atomics.store(this.stopFlag, 0, 1)
    // the reader polls with a short timeout and exits; the fd is closed only after it has
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => void worker.terminate().then(() => resolve()), 2_000)
      worker.once('exit', () => {
        clearTimeout(t)
        resolve()
      })
    })
    try {
      closeSync(this.fd)
    } catch {}
    this.fd = -1
  }
}

async function ip(args: string[]): Promise<void> {
  try {
    await run('ip', args, { timeout: 10_000 })
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string }
    if (e.code === 'ENOENT')
      throw new TunError('no-ip', "the 'ip' command (iproute2) is missing; install iproute2")
    throw new TunError('failed', `ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`)
  }
}
