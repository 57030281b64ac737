/**
 * Content-defined chunking: FastCDC (Xia et al., USENIX ATC 2016) with a gear rolling hash and
 * normalized chunking, written by hand so the boundaries are ours to keep stable forever.
 *
 *   min 64 KiB, average (normal point) 256 KiB, max 1 MiB.
 *
 * No cut before `min` bytes (those bytes are not even hashed). Between `min` and `avg` a cut
 * needs the top 20 bits of the hash to be zero (harder), after `avg` the top 16 bits (easier),
 * so sizes cluster around the average; a chunk is cut at `max` regardless. The hash at a byte
 * depends on the 32 bytes before it only, so an insertion moves the boundaries next to it and
 * the chunker falls back into step after the next boundary: a small edit costs one or two chunks.
 *
 * The gear table is derived from SHA-256 (not Math.random) so that every version of mesh
 * cuts the same bytes at the same places; changing it, or the sizes, changes every CID.
 */
import { createHash } from 'node:crypto'

export const MIN_CHUNK = 64 << 10
export const AVG_CHUNK = 256 << 10
export const MAX_CHUNK = 1 << 20

export interface ChunkerSizes {
  min: number
  avg: number
  max: number
}

export const DEFAULT_SIZES: ChunkerSizes = { min: MIN_CHUNK, avg: AVG_CHUNK, max: MAX_CHUNK }

/** gear[b] = first 4 bytes (big-endian) of SHA-256('mesh-gear-v1 ' + b). */
export const GEAR: Uint32Array = (() => {
  const g = new Uint32Array(256)
  for (let i = 0; i < 256; i++)
    g[i] = createHash('sha256').update(`mesh-gear-v1 ${i}`).digest().readUInt32BE(0)
  return g
})()

interface Masks {
  small: number
  large: number
}

function masks(avg: number): Masks {
  const bits = Math.round(Math.log2(avg))
  const top = (n: number) => (n >= 32 ? -1 : ((2 ** n - 1) * 2 ** (32 - n)) | 0)
  return { small: top(bits + 2), large: top(Math.max(1, bits - 2)) }
}

function checkSizes(s: ChunkerSizes): void {
  if (!(s.min >= 64 && s.min < s.avg && s.avg < s.max))
    throw new Error(`bad chunk sizes ${JSON.stringify(s)}`)
}

/**
 * Where the chunk starting at `start` ends (exclusive), given that `buf[start, end)` is all the
 * data there is (or at least `max` bytes of it).
 */
export function cutPoint(
  buf: Uint8Array,
  start: number,
  end: number,
  sizes: ChunkerSizes = DEFAULT_SIZES,
): number {
  const m = sizes === DEFAULT_SIZES ? DEFAULT_MASKS : masks(sizes.avg)
  let n = end - start
  if (n <= sizes.min) return end
  if (n > sizes.max) n = sizes.max
  const normal = start + (n < sizes.avg ? n : sizes.avg)
  const stop = start + n
  // locals only in the hot loop: this is the chunker's whole cost
  const g = GEAR
  const small = m.small
  const large = m.large
  let h = 0
  let i = start + sizes.min
  for (; i < normal; i++) {
    h = ((h << 1) + g[buf[i]]) | 0
    if ((h & small) === 0) return i + 1
  }
  for (; i < stop; i++) {
    h = ((h << 1) + g[buf[i]]) | 0
    if ((h & large) === 0) return i + 1
  }
  return stop
}

const DEFAULT_MASKS = masks(AVG_CHUNK)

/** Chunk lengths of a whole buffer (tests and tools; files go through Chunker). */
export function chunkLengths(data: Uint8Array, sizes: ChunkerSizes = DEFAULT_SIZES): number[] {
  checkSizes(sizes)
  const out: number[] = []
  let pos = 0
  while (pos < data.length) {
    const cut = cutPoint(data, pos, data.length, sizes)
    out.push(cut - pos)
    pos = cut
  }
  return out
}

/**
 * A streaming chunker: push() bytes as they are read, take the chunks it returns (copies, safe
 * to keep), then end() for the rest. Same boundaries as chunkLengths() over the whole input.
 */
export class Chunker {
  private buf: Uint8Array
  private len = 0

  constructor(private readonly sizes: ChunkerSizes = DEFAULT_SIZES) {
    checkSizes(sizes)
    this.buf = new Uint8Array(sizes.max * 4)
  }

  /** Space to read into directly (then call commit(n)), avoiding a copy. */
  space(): Uint8Array {
    if (this.buf.length - this.len < this.sizes.max) {
      const next = new Uint8Array(this.buf.length * 2)
      next.set(this.buf.subarray(0, this.len))
      this.buf = next
    }
    return this.buf.subarray(this.len)
  }

  commit(n: number): Uint8Array[] {
    this.len += n
    return this.drain(false)
  }

  push(data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = []
    let off = 0
    while (off < data.length) {
      const room = this.space()
      const n = Math.min(room.length, data.length - off)
      room.set(data.subarray(off, off + n))
      off += n
      out.push(...this.commit(n))
    }
    return out
  }

  end(): Uint8Array[] {
    return this.drain(true)
  }

  private drain(final: boolean): Uint8Array[] {
    const out: Uint8Array[] = []
    let pos = 0
    // a cut is only final once max bytes are buffered (or the input ended)
    while (this.len - pos >= this.sizes.max || (final && pos < this.len)) {
      const cut = cutPoint(this.buf, pos, this.len, this.sizes)
      out.push(this.buf.slice(pos, cut))
      pos = cut
    }
    if (pos > 0) {
      this.buf.copyWithin(0, pos, this.len)
      this.len -= pos
    }
    return out
  }
}

/** Fixed-size chunk lengths, the baseline the benchmark compares dedup against. */
export function fixedLengths(size: number, chunk: number = AVG_CHUNK): number[] {
  const out: number[] = []
  for (let pos = 0; pos < size; pos += chunk) out.push(Math.min(chunk, size - pos))
  return out
}
