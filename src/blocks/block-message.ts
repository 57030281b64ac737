/**
 * The provider's common answer, an `Exchange` message holding exactly one block, read from the
 * pieces it arrived in without joining them: field 3 (blocks) wrapping field 1 (cid) and field 2
 * (data), nothing else. Anything of another shape is undefined, and the caller decodes it with
 * protons after joining (so this only skips a copy; it accepts nothing protons would not).
 */
const BLOCKS = (3 << 3) | 2
const CID_FIELD = (1 << 3) | 2
const DATA_FIELD = (2 << 3) | 2
/** CIDs are short (36 bytes for raw sha2-256); a longer one is left to the full decoder */
const MAX_CID = 128

export interface BlockPieces {
  cid: Uint8Array
  /** views of the pieces, in order */
  data: Uint8Array[]
  size: number
}

/**
 * The bytes of a one-block `Exchange` message that come before the block's data, exactly as
 * protons would encode them: the provider sends these and the data as they are, rather than
 * encoding the message into a new buffer (a copy of every byte served). Data of at least one
 * byte (protons leaves an empty field out, so an empty block goes through protons).
 */
export function blockMessageHead(cid: Uint8Array, size: number): Uint8Array {
  if (size <= 0) throw new RangeError('a one-block head needs data of at least one byte')
  const inner = 1 + varintLength(cid.byteLength) + cid.byteLength + 1 + varintLength(size) + size
  const head = new Uint8Array(1 + varintLength(inner) + (inner - size))
  let at = 0
  const put = (v: number) => {
    while (v >= 0x80) {
      head[at++] = (v & 0x7f) | 0x80
      v = Math.floor(v / 128)
    }
    head[at++] = v
  }
  put(BLOCKS)
  put(inner)
  put(CID_FIELD)
  put(cid.byteLength)
  head.set(cid, at)
  at += cid.byteLength
  put(DATA_FIELD)
  put(size)
  return head
}

function varintLength(v: number): number {
  let n = 1
  while (v >= 0x80) {
    v = Math.floor(v / 128)
    n++
  }
  return n
}

export function blockMessage(pieces: readonly Uint8Array[]): BlockPieces | undefined {
  const c = new Cursor(pieces)
  if (c.varint() !== BLOCKS) return undefined
  if (c.varint() !== c.left) return undefined
  if (c.varint() !== CID_FIELD) return undefined
  const cidLen = c.varint()
  if (cidLen === undefined || cidLen > MAX_CID || cidLen > c.left) return undefined
  const cidParts = c.take(cidLen)
  if (c.varint() !== DATA_FIELD) return undefined
  const size = c.varint()
  if (size === undefined || size !== c.left) return undefined
  const cid = cidParts.length === 1 ? cidParts[0] : Uint8Array.from(Buffer.concat(cidParts))
  return { cid, data: c.take(size), size }
}

/** Reads varints and byte runs across pieces. */
class Cursor {
  private i = 0
  private off = 0
  /** bytes not yet read */
  left = 0

  constructor(private readonly pieces: readonly Uint8Array[]) {
    for (const p of pieces) this.left += p.byteLength
  }

  private byte(): number | undefined {
    while (this.i < this.pieces.length && this.off >= this.pieces[this.i].byteLength) {
      this.i++
      this.off = 0
    }
    if (this.i >= this.pieces.length) return undefined
    this.left--
    return this.pieces[this.i][this.off++]
  }

  /** A varint of at most 5 bytes (every length and tag here is < 2^32), or undefined. */
  varint(): number | undefined {
    let v = 0
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.byte()
      if (b === undefined) return undefined
      v += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return v
    }
    return undefined
  }

  /** The next n bytes (n <= left) as views of the pieces. */
  take(n: number): Uint8Array[] {
    const out: Uint8Array[] = []
    this.left -= n
    while (n > 0) {
      const p = this.pieces[this.i]
      const k = Math.min(n, p.byteLength - this.off)
      if (k > 0) out.push(p.subarray(this.off, this.off + k))
      this.off += k
      n -= k
      if (this.off >= p.byteLength) {
        this.i++
        this.off = 0
      }
    }
    return out
  }
}
