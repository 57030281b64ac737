import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import type { BlockBytes } from './block-bytes.js'
import { BlocksError } from './errors.js'

/** The raw codec: a block is opaque bytes. */
export const RAW = 0x55
/** sha2-256 multihash code. */
export const SHA2_256 = 0x12

/** The CIDv1 (raw, sha2-256) of some bytes. Node's hash is native, so this is the fast path. */
export function cidOf(bytes: Uint8Array): CID {
  const d = createHash('sha256').update(bytes).digest()
  return CID.createV1(RAW, Digest.create(SHA2_256, new Uint8Array(d.buffer, d.byteOffset, d.byteLength)))
}

/** True when `bytes` (one buffer or its pieces, hashed in order) hash to `cid`. */
export function matches(cid: CID, bytes: BlockBytes): boolean {
  const h = createHash('sha256')
  if (bytes instanceof Uint8Array) h.update(bytes)
  else for (const p of bytes) h.update(p)
  const d = h.digest()
  const want = cid.multihash.digest
  return d.length === want.length && d.equals(want)
}

/** A CID the blockstore can hold, from text; anything else is a clear BlocksError. */
export function parseCid(text: string): CID {
  const t = text.trim()
  let cid: CID
  try {
    cid = CID.parse(t)
  } catch (err) {
    throw new BlocksError(
      'bad-request',
      `'${text}' is not a CID (${(err as Error).message}); expected a CIDv1 such as bafkrei…`,
    )
  }
  return checkCid(cid, text)
}

/** A CID from wire bytes; throws BlocksError when malformed or of a kind we do not store. */
export function decodeCid(bytes: Uint8Array): CID {
  let cid: CID
  try {
    cid = CID.decode(bytes)
  } catch (err) {
    throw new BlocksError('bad-request', `malformed CID bytes: ${(err as Error).message}`)
  }
  return checkCid(cid, cid.toString())
}

function checkCid(cid: CID, text: string): CID {
  if (
    cid.version !== 1 ||
    cid.code !== RAW ||
    cid.multihash.code !== SHA2_256 ||
    cid.multihash.digest.length !== 32
  ) {
    throw new BlocksError(
      'bad-request',
      `unsupported CID '${text}': mesh blocks are CIDv1, raw codec (0x55), sha2-256 (bafkrei…)`,
    )
  }
  return cid
}

export { CID }
