import { close, ftruncate, open, read, writev } from 'node:fs'
import { CID } from 'multiformats/cid'

/**
 * One pack file: block records appended back to back, each
 *   'MBK1' | data length (u32 BE) | CID length (u16 BE) | CID bytes | data
 * so the pack alone says which block is where (the index is rebuilt from it at open). Deleted
 * records are listed in `<id>.dead` (record offsets, u64 BE, append-only) and their pages punched
 * out (punch-hole.ts). A pack is written only at its end, by one writer at a time.
 */
export const MAGIC = 0x4d424b31
const FIXED = 10
/** more than any header: fixed part + a CID (36 bytes for raw sha2-256; CIDs are < 128) */
const HEADER_READ = FIXED + 256

export function recordHeader(cid: Uint8Array, dataLength: number): Buffer {
  const h = Buffer.allocUnsafe(FIXED + cid.byteLength)
  h.writeUInt32BE(MAGIC, 0)
  h.writeUInt32BE(dataLength, 4)
  h.writeUInt16BE(cid.byteLength, 8)
  h.set(cid, FIXED)
  return h
}

export interface ScannedRecord {
  key: string
  cid: CID
  /** offset of the record (its header) in the pack */
  rec: number
  /** offset of the block's bytes */
  data: number
  size: number
}

export class Pack {
  /** bytes written (records end here; the next record goes here) */
  end = 0
  live = 0
  liveBytes = 0
  /** reads in flight: the fd is closed only when none is left */
  readers = 0
  private closing = false

  constructor(
    readonly id: number,
    readonly path: string,
    readonly deadPath: string,
    readonly fd: number,
  ) {}

  /** Read `size` bytes at `offset`, however many read calls it takes. */
  read(offset: number, size: number): Promise<Buffer> {
    if (this.closing) return Promise.reject(Object.assign(new Error('pack deleted'), { code: 'ENOENT' }))
    this.readers++
    return new Promise<Buffer>((resolve, reject) => {
      const buf = Buffer.allocUnsafe(size)
      const more = (filled: number) =>
        read(this.fd, buf, filled, size - filled, offset + filled, (err, n) => {
          if (err === null && n > 0 && filled + n < size) return more(filled + n)
          if (err !== null) reject(err)
          else resolve(buf.subarray(0, filled + n))
        })
      more(0)
    }).finally(() => {
      this.readers--
      if (this.closing && this.readers === 0) close(this.fd, () => {})
    })
  }

  truncate(length: number): Promise<void> {
    return new Promise((resolve, reject) =>
      ftruncate(this.fd, length, (err) => (err ? reject(err) : resolve())),
    )
  }

  /** Close the fd once no read is in flight (a closed fd number may be reused by another open). */
  release(): void {
    if (this.closing) return
    this.closing = true
    if (this.readers === 0) close(this.fd, () => {})
  }

  /**
   * Walk the records from offset 0. Stops at the first record that does not fit in the file or
   * has no valid header: a write torn by a crash (the caller truncates it away or ignores it).
   */
  async *scan(fileSize: number): AsyncGenerator<ScannedRecord> {
    let off = 0
    while (off + FIXED <= fileSize) {
      const h = await this.read(off, Math.min(HEADER_READ, fileSize - off))
      if (h.length < FIXED || h.readUInt32BE(0) !== MAGIC) break
      const size = h.readUInt32BE(4)
      const cidLen = h.readUInt16BE(8)
      const data = off + FIXED + cidLen
      if (h.length < FIXED + cidLen || data + size > fileSize) break
      let cid: CID
      try {
        cid = CID.decode(h.subarray(FIXED, FIXED + cidLen))
      } catch {
        break
      }
      yield { key: cid.toString(), cid, rec: off, data, size }
      off = data + size
    }
    this.end = off
  }
}

export function openFd(path: string, flags: string): Promise<number> {
  return new Promise((resolve, reject) =>
    open(path, flags, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))),
  )
}

/** How a batch reaches the disk; tests replace it to make the disk fill up. */
export interface BlockIO {
  /** write every buffer at `position` onwards, all of it or an error */
  writev(fd: number, buffers: Uint8Array[], position: number): Promise<void>
}

// fs's callback API: no FileHandle (an object with a finalizer) per write
export const defaultIO: BlockIO = {
  writev(fd, buffers, position) {
    return new Promise((resolve, reject) => {
      const more = (bufs: Uint8Array[], pos: number) =>
        writev(fd, bufs, pos, (err, n) => {
          if (err) return reject(err)
          // a short write: go on with what is left
          let rest = n
          let i = 0
          while (i < bufs.length && rest >= bufs[i].byteLength) rest -= bufs[i++].byteLength
          if (i === bufs.length) return resolve()
          const left = [bufs[i].subarray(rest), ...bufs.slice(i + 1)]
          more(left, pos + n)
        })
      more(buffers, position)
    })
  },
}
