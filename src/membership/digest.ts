/**
 * Digests for push-pull sync (sync/2.0.0). Each side first sends 8-byte fingerprints of what it
 * holds (one per table row: record + claim; one per admin statement), then only what the other
 * side's digest lacks. In steady state a sync costs a few hundred bytes instead of two whole
 * tables (about 1 KiB per member each way). The set difference goes both ways, so merging the
 * exchanged items is still the CRDT merge of the two tables.
 */
import { createHash } from 'node:crypto'
import type { MemberSet } from '../../protocols/membership.js'
import type { Entry } from './merge.js'
import { toWireClaim, toWireInfo } from './wire.js'

export const FINGERPRINT_BYTES = 8

/** What one side sends the other: the items it holds that the other's digest lacks. */
export type Missing = MemberSet
type StatementBytes = MemberSet['statements'][number]

interface Item {
  fp: string
  entry?: Entry
  statement?: StatementBytes
}

function fingerprint(parts: Uint8Array[]): Buffer {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest().subarray(0, FINGERPRINT_BYTES)
}

// Signatures are unique to what was signed (Ed25519 is deterministic), so a row's fingerprint
// is that of its signatures (a hash of 64-128 bytes: a thousand rows cost about a millisecond).
function entryFingerprint(e: Entry): Buffer {
  return fingerprint(e.claim === undefined ? [e.signed.sig] : [e.signed.sig, e.claim.sig])
}

/** A snapshot of what we hold, as a digest to send and a way to answer another digest. */
export class Digest {
  private readonly items: Item[] = []
  readonly bytes: Uint8Array<ArrayBuffer>

  constructor(entries: Iterable<Entry>, statements: Iterable<StatementBytes>) {
    const fps: Buffer[] = []
    for (const entry of entries) {
      const fp = entryFingerprint(entry)
      fps.push(fp)
      this.items.push({ fp: fp.toString('hex'), entry })
    }
    for (const statement of statements) {
      const fp = fingerprint([statement])
      fps.push(fp)
      this.items.push({ fp: fp.toString('hex'), statement })
    }
    this.bytes = new Uint8Array(Buffer.concat(fps))
  }

  /** Everything we hold that a peer with digest `theirs` does not. */
  missingFrom(theirs: Uint8Array): Missing {
    const have = parseDigest(theirs)
    const out: Missing = { records: [], claims: [], statements: [] }
    for (const it of this.items) {
      if (have.has(it.fp)) continue
      if (it.statement !== undefined) out.statements.push(it.statement)
      else if (it.entry !== undefined) {
        out.records.push(toWireInfo(it.entry.signed))
        if (it.entry.claim !== undefined) out.claims.push(toWireClaim(it.entry.claim))
      }
    }
    return out
  }
}

/** The fingerprints in a digest from the wire; throws on a malformed one. */
export function parseDigest(bytes: Uint8Array): Set<string> {
  if (bytes.length % FINGERPRINT_BYTES !== 0) {
    throw new Error(`a sync digest must be a multiple of ${FINGERPRINT_BYTES} bytes, not ${bytes.length}`)
  }
  const out = new Set<string>()
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  for (let i = 0; i < b.length; i += FINGERPRINT_BYTES) {
    out.add(b.subarray(i, i + FINGERPRINT_BYTES).toString('hex'))
  }
  return out
}
