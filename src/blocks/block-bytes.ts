/**
 * A block's bytes: one buffer, or the pieces it arrived in (views of the frames that carried it).
 * A fetched block is hashed, stored (one writev) and written to DEST piece by piece, so it is
 * never joined into a copy of its own.
 */
export type BlockBytes = Uint8Array | readonly Uint8Array[]

export function sizeOf(b: BlockBytes): number {
  if (b instanceof Uint8Array) return b.byteLength
  let n = 0
  for (const p of b) n += p.byteLength
  return n
}

export function piecesOf(b: BlockBytes): readonly Uint8Array[] {
  return b instanceof Uint8Array ? [b] : b
}

/** One buffer (a copy only when there are several pieces). */
export function joined(b: BlockBytes): Uint8Array {
  if (b instanceof Uint8Array) return b
  if (b.length === 1) return b[0]
  return Buffer.concat(b as Uint8Array[])
}
