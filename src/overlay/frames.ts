/**
 * Packets on the reliable carrier stream: each IP packet preceded by its length (2 bytes, big
 * endian; the MTU is at most 65000). Several packets go into one stream message, so a burst
 * read from the device costs one send (protocols/overlay.md).
 */
import type { Uint8ArrayList } from 'uint8arraylist'

export const MAX_PACKET = 65_535

/** Packets as one buffer of length-prefixed frames. */
export function encodePackets(packets: readonly Uint8Array[]): Uint8Array {
  let total = 0
  for (const p of packets) total += 2 + p.byteLength
  const out = Buffer.allocUnsafe(total)
  let off = 0
  for (const p of packets) {
    out[off] = p.byteLength >> 8
    out[off + 1] = p.byteLength & 0xff
    out.set(p, off + 2)
    off += 2 + p.byteLength
  }
  return out
}

/** Splits a byte stream into packets; a packet cut across messages is kept until the rest comes. */
export class PacketDecoder {
  private pending: Buffer | undefined

  /** The whole packets in `chunk` (plus what was pending). */
  push(chunk: Uint8Array | Uint8ArrayList): Uint8Array[] {
    let buf: Buffer =
      chunk instanceof Uint8Array
        ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
        : Buffer.from(chunk.subarray())
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, buf])
      this.pending = undefined
    }
    const out: Uint8Array[] = []
    let off = 0
    while (buf.length - off >= 2) {
      const len = (buf[off] << 8) | buf[off + 1]
      if (buf.length - off - 2 < len) break
      out.push(buf.subarray(off + 2, off + 2 + len))
      off += 2 + len
    }
    if (off < buf.length) this.pending = Buffer.from(buf.subarray(off))
    return out
  }

  /** Bytes of a packet not complete yet. */
  get pendingBytes(): number {
    return this.pending?.length ?? 0
  }
}
