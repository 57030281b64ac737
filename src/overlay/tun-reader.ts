/**
 * The TUN device's reader, in a worker thread: poll, then read every packet the kernel has
 * (non-blocking fd) into one buffer and post the burst to the main thread in one message.
 */
import { parentPort, workerData } from 'node:worker_threads'
import koffi from 'koffi'

const { fd, mtu, stop } = workerData as { fd: number; mtu: number; stop: Int32Array }
const libc = koffi.load('libc.so.6')
const read = libc.func('long read(int fd, _Out_ uint8_t *buf, unsigned long n)')
const poll = libc.func('int poll(_Inout_ uint8_t *fds, unsigned long nfds, int timeout)')

const POLLIN = 1
// a burst: up to this many bytes or packets per message to the main thread
const BURST_BYTES = 1 << 20
const BURST_PACKETS = 256
const POLL_MS = 200

const pfd = Buffer.alloc(8)
pfd.writeInt32LE(fd, 0)
pfd.writeInt16LE(POLLIN, 4)

const buf = Buffer.allocUnsafeSlow(BURST_BYTES + mtu)
while (Atomics.load(stop, 0) === 0) {
  pfd.writeInt16LE(0, 6)
  const n = poll(pfd, 1, POLL_MS) as number
  if (n <= 0) continue
  const lens: number[] = []
  let off = 0
  while (off < BURST_BYTES && lens.length < BURST_PACKETS) {
    const got = Number(read(fd, buf.subarray(off), mtu))
    if (got <= 0) break // EAGAIN: the kernel has nothing more for now
    lens.push(got)
    off += got
  }
  if (lens.length === 0) continue
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + off)
  parentPort!.postMessage({ buf: ab, lens }, [ab])
}
