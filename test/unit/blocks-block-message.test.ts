import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { Exchange, Want } from '../../protocols/blocks.js'
import { blockMessage, blockMessageHead } from '../../src/blocks/block-message.js'
import { cidOf, matches } from '../../src/blocks/cid.js'

type Bytes = Uint8Array<ArrayBuffer>

/** `msg` cut at the given offsets, as the frames of a stream would deliver it. */
function cut(msg: Uint8Array, at: number[]): Uint8Array[] {
  const points = [...new Set(at.map((x) => x % (msg.byteLength + 1)))].sort((a, b) => a - b)
  const out: Uint8Array[] = []
  let prev = 0
  for (const p of [...points, msg.byteLength]) {
    out.push(msg.subarray(prev, p))
    prev = p
  }
  return out
}

const encode = (m: Partial<Exchange>) =>
  Exchange.encode({ wants: [], presences: [], blocks: [], cancels: [], ...m })

describe('blocks: one-block messages read from their pieces', () => {
  it('gives the CID and the data of a one-block message however it was cut, without joining it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300_000 }), fc.array(fc.nat(), { maxLength: 12 }), (size, at) => {
        const data = randomBytes(size)
        const cid = cidOf(data)
        const msg = encode({ blocks: [{ cid: cid.bytes as Bytes, data: data as Bytes }] })
        const pieces = cut(msg, at)
        const got = blockMessage(pieces)
        assert.ok(got !== undefined)
        assert.deepEqual(got.cid, cid.bytes)
        assert.equal(got.size, size)
        assert.ok(Buffer.concat(got.data).equals(data))
        // views of the pieces, not copies
        for (const d of got.data) assert.ok(pieces.some((p) => p.buffer === d.buffer))
        assert.ok(matches(cid, got.data))
      }),
      { numRuns: 60 },
    )
  })

  it('leaves every other message to the full decoder', () => {
    const a = randomBytes(1000)
    const b = randomBytes(10)
    const block = (d: Uint8Array) => ({ cid: cidOf(d).bytes as Bytes, data: d as Bytes })
    const others = [
      encode({ presences: [{ cid: cidOf(a).bytes as Bytes, have: true }] }),
      encode({ blocks: [block(a), block(b)] }),
      encode({ blocks: [block(a)], presences: [{ cid: cidOf(b).bytes as Bytes, have: false }] }),
      encode({ wants: [{ cid: cidOf(a).bytes as Bytes, kind: Want.Kind.BLOCK }] }),
      encode({ blocks: [{ cid: cidOf(a).bytes as Bytes, data: new Uint8Array(0) as Bytes }] }),
      encode({}),
    ]
    for (const m of others) {
      assert.equal(blockMessage([m]), undefined)
      assert.equal(blockMessage(cut(m, [1, 3, 7])), undefined)
    }
    // truncated or padded one-block messages
    const one = encode({ blocks: [block(a)] })
    assert.equal(blockMessage([one.subarray(0, one.byteLength - 1)]), undefined)
    assert.equal(blockMessage([one, new Uint8Array(1)]), undefined)
  })

  it('sends a one-block message as a head and the data, byte for byte what protons encodes', () => {
    // sizes around the varint steps of the data and of the whole message, up to MAX_BLOCK
    const sizes = [1, 2, 80, 127, 128, 129, 16_300, 16_384, 65_536, 262_144, 1 << 20, 2 << 20]
    for (const size of sizes) {
      const data = randomBytes(size)
      const cid = cidOf(data)
      const head = blockMessageHead(cid.bytes, size)
      const whole = encode({ blocks: [{ cid: cid.bytes as Bytes, data: data as Bytes }] })
      assert.ok(Buffer.concat([head, data]).equals(whole), `size ${size}`)
      const got = blockMessage([head, data])
      assert.ok(got !== undefined && matches(cid, got.data))
    }
    assert.throws(() => blockMessageHead(cidOf(new Uint8Array(0)).bytes, 0), RangeError)
  })
})
