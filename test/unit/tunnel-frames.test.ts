import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { PassThrough, Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import fc from 'fast-check'
import {
  FRAME,
  FrameDecoder,
  TunnelResetError,
  writeData,
  writeEnd,
  writeError,
} from '../../src/tunnel/frames.js'

// The agent -> CLI direction of a control-socket tunnel is framed so the CLI can tell a clean
// end from a cut. The decoder sees the bytes in whatever pieces the unix socket delivers.

/** What the agent side writes, as bytes: writeData/writeEnd/writeError on a stream standing in for the socket. */
function encode(write: (s: Socket) => void): Buffer {
  const s = new PassThrough()
  write(s as unknown as Socket)
  s.end()
  const out: Buffer[] = []
  for (let c = s.read(); c !== null; c = s.read()) out.push(c)
  return Buffer.concat(out)
}

/** Cut `bytes` at the given offsets (sorted, deduplicated, inside the buffer). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y)
  const parts: Buffer[] = []
  let from = 0
  for (const c of [...at, bytes.length]) {
    if (c > from) parts.push(bytes.subarray(from, c))
    from = c
  }
  return parts
}

/** Feed the pieces to a decoder: the plain bytes out, and the error it failed with, if any. */
async function decode(pieces: Buffer[]): Promise<{ out: Buffer; err?: Error }> {
  const out: Buffer[] = []
  try {
    await pipeline(Readable.from(pieces), new FrameDecoder(), async (src: AsyncIterable<Buffer>) => {
      for await (const c of src) out.push(c)
    })
    return { out: Buffer.concat(out) }
  } catch (err) {
    return { out: Buffer.concat(out), err: err as Error }
  }
}

const header = (type: number, len: number) =>
  Buffer.from([type, len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255])

describe('tunnel frames (agent -> CLI half of a control-socket tunnel)', () => {
  it('any split of the framed stream gives back exactly the bytes written, then a clean end', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        async (payloads, cuts) => {
          const bytes = encode((s) => {
            for (const p of payloads) writeData(s, p)
            writeEnd(s)
          })
          const { out, err } = await decode(split(bytes, cuts))
          assert.equal(err, undefined)
          assert.deepEqual(out, Buffer.concat(payloads))
        },
      ),
      { numRuns: 300 },
    )
  })

  it('an error frame fails the stream with the agent message (data before it may be dropped, as an RST drops it)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        async (data, cuts) => {
          const bytes = encode((s) => {
            writeData(s, data)
            writeError(s, 'connect to 127.0.0.1:22 refused')
          })
          const { out, err } = await decode(split(bytes, cuts))
          assert.ok(err instanceof TunnelResetError)
          assert.equal(err.message, 'connect to 127.0.0.1:22 refused')
          assert.deepEqual(out, Buffer.from(data).subarray(0, out.length))
        },
      ),
      { numRuns: 100 },
    )
  })

  it('an error message is cut to 4096 characters', async () => {
    const { err } = await decode([encode((s) => writeError(s, 'x'.repeat(10_000)))])
    assert.equal(err?.message.length, 4096)
  })

  it('bytes that stop without an end frame are a reset, wherever they stop', async () => {
    const whole = encode((s) => {
      writeData(s, Buffer.from('hello'))
      writeData(s, Buffer.from('world'))
    })
    for (let n = 0; n <= whole.length; n++) {
      const { err } = await decode([whole.subarray(0, n)])
      assert.ok(err instanceof TunnelResetError, `cut after ${n} bytes`)
      assert.match(err.message, /closed the tunnel without finishing it/)
    }
    // an end frame cut in its header is not an end either
    const { err } = await decode([Buffer.concat([whole, header(FRAME.end, 0).subarray(0, 3)])])
    assert.match(err?.message ?? '', /without finishing/)
  })

  it('an unknown frame type fails the stream and says so', async () => {
    const { out, err } = await decode([
      Buffer.concat([
        header(FRAME.data, 2),
        Buffer.from('ok'),
        header(7, 1),
        Buffer.from('?'),
        header(FRAME.end, 0),
      ]),
    ])
    assert.ok(err instanceof TunnelResetError)
    assert.equal(err.message, 'bad frame type 7 from the agent')
    assert.ok(out.length === 0 || out.equals(Buffer.from('ok')))
  })

  it('nothing after the end frame comes out', async () => {
    const { out, err } = await decode([
      Buffer.concat([
        header(FRAME.data, 1),
        Buffer.from('a'),
        header(FRAME.end, 0),
        header(FRAME.data, 1),
        Buffer.from('b'),
      ]),
    ])
    assert.equal(err, undefined)
    assert.deepEqual(out, Buffer.from('a'))
  })

  it('the writers write nothing on a closed socket and no frame for empty data', () => {
    assert.equal(encode((s) => writeData(s, new Uint8Array(0))).length, 0)
    const ended = encode((s) => {
      s.end()
      writeEnd(s)
      writeError(s, 'late')
    })
    assert.equal(ended.length, 0)
  })
})
