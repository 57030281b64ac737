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

/**
 * A datagram-carrier message holding one or more IPv6 packets back to back (protocols/overlay.md,
 * "Batches"): each packet's own header says its length (40 + payload length), so no framing is
 * added. Whatever does not parse as a whole IPv6 packet is returned as it is, last, for the
 * filter to drop and count (not IPv6, truncated).
 */
export function splitIPv6(m: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = []
  let off = 0
  while (off < m.length) {
    const left = m.length - off
    const size = left >= 40 && m[off] >> 4 === 6 ? 40 + ((m[off + 4] << 8) | m[off + 5]) : left + 1
    if (size > left) {
      out.push(off === 0 ? m : m.subarray(off))
      break
    }
    out.push(size === m.length ? m : m.subarray(off, off + size))
    off += size
  }
  return out
}

/**
 * Packets in messages of at most `max` bytes, in order: consecutive packets that fit together go
 * into one (a burst of TCP acks costs one message, one SCTP chunk, one DTLS record, one UDP
 * datagram), a packet alone goes as it is (no copy). `emit` gets each message; a message of
 * several packets is built in `scratch` (at least `max` bytes), reused for the next one, so
 * `emit` must be done with it when it returns (node-datachannel copies what it sends); it says
 * false when the message could not go, and nothing more is emitted. Returns the packets that went.
 */
export function packMessages(
  packets: readonly Uint8Array[],
  max: number,
  scratch: Uint8Array,
  emit: (message: Uint8Array, packets: number) => boolean,
): number {
  let i = 0
  while (i < packets.length) {
    let total = packets[i].byteLength
    let j = i + 1
    while (j < packets.length && total + packets[j].byteLength <= max) total += packets[j++].byteLength
    if (j === i + 1) {
      if (!emit(packets[i], 1)) return i
    } else {
      let off = 0
      for (let k = i; k < j; k++) {
        scratch.set(packets[k], off)
        off += packets[k].byteLength
      }
      if (!emit(scratch.subarray(0, total), j - i)) return i
    }
    i = j
  }
  return i
}
