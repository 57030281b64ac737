/**
 * `mesh proxy --fdpass`: open a tunnel on the control socket and hand the connected socket to
 * ssh (its ProxyUseFdpass option: the ProxyCommand passes one descriptor over its stdout with
 * SCM_RIGHTS and exits). ssh then talks to the agent directly, and no `mesh proxy` process
 * copies every byte between two pipes: on this machine that process cost about as much CPU as
 * each agent during an scp.
 *
 * The socket is made and read with plain syscalls through koffi (already the overlay's FFI),
 * not node:net: the reply's headers must be read exactly to their end, byte by byte, because
 * whatever the agent sends after them (the remote sshd's banner) belongs to ssh, and a Node
 * socket reads ahead into its own buffer. The agent does not frame a raw tunnel (`raw=1`):
 * ssh's own packets detect a cut, which is what the framing is for.
 */
import { TunnelCallError } from './tunnel-client.js'

const AF_UNIX = 1
const SOCK_STREAM = 1
const SOCK_CLOEXEC = 0o2000000
const SOL_SOCKET = 1
const SCM_RIGHTS = 1
const SO_RCVTIMEO = 20
const EINTR = 4
const ENOENT = 2
const ECONNREFUSED = 111
const MAX_HEAD = 16 * 1024

interface Libc {
  socket(domain: number, type: number, protocol: number): number
  connect(fd: number, addr: Buffer, len: number): number
  write(fd: number, buf: Buffer, len: number): number
  read(fd: number, buf: Buffer, len: number): number
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number
  sendmsg(fd: number, msg: Record<string, unknown>, flags: number): number
  close(fd: number): number
  errno(): number
}

let libc: Libc | undefined

async function load(): Promise<Libc> {
  if (libc !== undefined) return libc
  // the control message and timeval below are laid out for 64-bit Linux
  if (process.platform !== 'linux' || !['x64', 'arm64', 'ppc64', 's390x', 'riscv64'].includes(process.arch)) {
    throw new Error(`passing descriptors is not implemented on ${process.platform}/${process.arch}`)
  }
  const koffi = (await import('koffi')).default
  const lib = koffi.load('libc.so.6')
  const iovec = koffi.struct('mesh_iovec', { base: 'void *', len: 'size_t' })
  const msghdr = koffi.struct('mesh_msghdr', {
    name: 'void *',
    namelen: 'uint32_t',
    iov: koffi.pointer(iovec),
    iovlen: 'size_t',
    control: 'void *',
    controllen: 'size_t',
    flags: 'int',
  })
  libc = {
    socket: lib.func('int socket(int, int, int)'),
    connect: lib.func('int connect(int, const uint8_t *, uint32_t)'),
    write: lib.func('intptr_t write(int, const uint8_t *, size_t)'),
    read: lib.func('intptr_t read(int, _Out_ uint8_t *, size_t)'),
    setsockopt: lib.func('int setsockopt(int, int, int, const uint8_t *, uint32_t)'),
    sendmsg: lib.func('sendmsg', 'intptr_t', ['int', koffi.pointer(msghdr), 'int']),
    close: lib.func('int close(int)'),
    errno: () => koffi.errno(),
  } as Libc
  return libc
}

/** Whether this machine can pass descriptors (koffi loads): `mesh ssh-config` asks before writing ProxyUseFdpass. */
export async function canPassFd(): Promise<boolean> {
  try {
    await load()
    return true
  } catch {
    return false
  }
}

function sysError(what: string, errno: number): Error {
  const err = new Error(`${what} failed (errno ${errno})`) as NodeJS.ErrnoException
  err.errno = errno
  return err
}

/**
 * Connect to the agent's control socket, ask for a raw tunnel to `port` on `member`, and read
 * the reply's head exactly. Returns the connected descriptor once the agent answered 101;
 * throws TunnelCallError with the agent's refusal, or the agent-not-running error.
 */
export async function openRawTunnelFd(
  socketPath: string,
  member: string,
  port: number,
  notRunning: () => Error,
  timeoutMs = 45_000,
): Promise<{ fd: number; name: string; path: string }> {
  const c = await load()
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)
  if (fd < 0) throw sysError('socket()', c.errno())
  try {
    const pathBytes = Buffer.from(socketPath)
    if (pathBytes.length >= 108)
      throw new Error(`the control socket path is too long for a unix socket: ${socketPath}`)
    const addr = Buffer.alloc(110)
    addr.writeUInt16LE(AF_UNIX, 0)
    pathBytes.copy(addr, 2)
    if (c.connect(fd, addr, addr.length) !== 0) {
      const e = c.errno()
      if (e === ENOENT || e === ECONNREFUSED) throw notRunning()
      throw sysError(`connect(${socketPath})`, e)
    }
    // the agent may take a while to reach the member; a read past this fails with EAGAIN
    const tv = Buffer.alloc(16)
    tv.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0)
    tv.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8)
    c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length)
    const path = `/v1/tunnel?member=${encodeURIComponent(member)}&port=${port}&raw=1`
    const req = Buffer.from(
      `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: mesh-tunnel\r\n\r\n`,
    )
    writeAll(c, fd, req)
    const head = readHead(c, fd, timeoutMs)
    const [statusLine, ...lines] = head.split('\r\n')
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0)
    const headers = new Map<string, string>()
    for (const l of lines) {
      const i = l.indexOf(':')
      if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim())
    }
    if (status !== 101) {
      const body = readBody(c, fd, Number(headers.get('content-length') ?? 0))
      let parsed: { error?: string; code?: string } = {}
      try {
        parsed = JSON.parse(body)
      } catch {
        parsed = { error: body }
      }
      throw new TunnelCallError(
        status,
        parsed.error ?? `the agent answered ${status}`,
        parsed.code ?? 'error',
      )
    }
    return { fd, name: headers.get('x-mesh-name') ?? member, path: headers.get('x-mesh-path') ?? '' }
  } catch (err) {
    c.close(fd)
    throw err
  }
}

function writeAll(c: Libc, fd: number, buf: Buffer): void {
  let off = 0
  while (off < buf.length) {
    const n = c.write(fd, buf.subarray(off), buf.length - off)
    if (n < 0) {
      const e = c.errno()
      if (e === EINTR) continue
      throw sysError('write to the control socket', e)
    }
    off += n
  }
}

/** The reply's status line and headers, up to and including the blank line, and not a byte more. */
function readHead(c: Libc, fd: number, timeoutMs: number): string {
  const out = Buffer.alloc(MAX_HEAD)
  const one = Buffer.alloc(1)
  let len = 0
  while (len < MAX_HEAD) {
    const n = c.read(fd, one, 1)
    if (n === 0) throw new Error('the agent closed the control socket before answering')
    if (n < 0) {
      const e = c.errno()
      if (e === EINTR) continue
      throw new Error(`the agent did not open the tunnel within ${timeoutMs / 1000} s (errno ${e})`)
    }
    out[len++] = one[0]
    if (
      len >= 4 &&
      out[len - 1] === 10 &&
      out[len - 2] === 13 &&
      out[len - 3] === 10 &&
      out[len - 4] === 13
    ) {
      return out.subarray(0, len - 4).toString('latin1')
    }
  }
  throw new Error('the agent answered with headers over 16 KiB')
}

function readBody(c: Libc, fd: number, length: number): string {
  const want = Math.min(Math.max(length, 0), 64 * 1024)
  const buf = Buffer.alloc(want)
  let got = 0
  while (got < want) {
    const n = c.read(fd, buf.subarray(got), want - got)
    if (n <= 0) {
      if (n < 0 && c.errno() === EINTR) continue
      break
    }
    got += n
  }
  return buf.subarray(0, got).toString('utf8')
}

/**
 * Send `fd` over `via` (ssh's end of the ProxyCommand's stdout, a unix socketpair) with one
 * byte of data, as OpenSSH's mm_receive_fd expects, then close our copy.
 */
export async function passFd(via: number, fd: number): Promise<void> {
  const c = await load()
  const control = Buffer.alloc(24) // CMSG_SPACE(sizeof(int)) on 64-bit Linux
  control.writeBigUInt64LE(20n, 0) // CMSG_LEN(sizeof(int))
  control.writeInt32LE(SOL_SOCKET, 8)
  control.writeInt32LE(SCM_RIGHTS, 12)
  control.writeInt32LE(fd, 16)
  const msg = {
    name: null,
    namelen: 0,
    iov: [{ base: Buffer.from([0]), len: 1 }],
    iovlen: 1,
    control,
    controllen: control.length,
    flags: 0,
  }
  for (;;) {
    const n = c.sendmsg(via, msg, 0)
    if (n >= 0) break
    const e = c.errno()
    if (e === EINTR) continue
    c.close(fd)
    throw new Error(
      e === 88 // ENOTSOCK
        ? '--fdpass hands the tunnel to ssh: run it as ssh\'s ProxyCommand with "-o ProxyUseFdpass=yes" (stdout is not a socket here)'
        : `could not pass the tunnel to ssh (sendmsg errno ${e})`,
    )
  }
  c.close(fd)
}
