import '../../src/shim.js'
import assert from 'node:assert/strict'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream, StreamMuxer } from '@libp2p/interface'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { deferYamuxWindowUpdates } from '../../src/node/yamux-window.js'

// yamux frame header: version, type, flags (2), stream id (4), length (4); type 1 = window update
const WINDOW_UPDATE = 1

interface Pair {
  client: StreamMuxer
  server: StreamMuxer
  /** window-update frames the receiving side sent */
  updates: () => number
  received: Promise<number>
}

/** Two yamux muxers over an in-memory connection; the server counts the bytes it reads. */
function muxerPair(expectBytes: number): Pair {
  const [outbound, inbound] = multiaddrConnectionPair()
  let updates = 0
  const send = inbound.send.bind(inbound)
  inbound.send = (data) => {
    const bytes = data instanceof Uint8Array ? data : data.subarray()
    if (bytes[1] === WINDOW_UPDATE) updates++
    return send(data)
  }
  const factory = yamux({ enableKeepAlive: false })()
  const client = factory.createStreamMuxer(outbound)
  const server = factory.createStreamMuxer(inbound)
  const received = new Promise<number>((resolve) => {
    server.addEventListener('stream', (evt) => {
      void (async () => {
        let n = 0
        for await (const chunk of evt.detail as Stream) {
          n += chunk.byteLength
          if (n >= expectBytes) break
        }
        resolve(n)
      })()
    })
  })
  return { client, server, updates: () => updates, received }
}

async function send(stream: Stream, chunks: number, size: number): Promise<void> {
  for (let i = 0; i < chunks; i++)
    if (!stream.send(new Uint8Array(size).fill(i & 0xff))) await stream.onDrain()
}

describe('yamux window updates (node/yamux-window.ts)', () => {
  before(() => assert.equal(deferYamuxWindowUpdates(), true, 'the patch applies to this yamux'))

  it('200 small messages cost the receiver no window update per message', async () => {
    const p = muxerPair(200 * 40)
    const stream = await p.client.createStream()
    await send(stream, 200, 40)
    assert.equal(await p.received, 200 * 40)
    // only the update that acknowledges the new stream; the library sent one per message
    assert.ok(p.updates() <= 1, `${p.updates()} window updates for 200 messages`)
    p.client.abort(new Error('done'))
    p.server.abort(new Error('done'))
  })

  it('a bulk transfer far larger than the window completes, with updates per half window', async () => {
    const total = 8 * 1024 * 1024
    const p = muxerPair(total)
    const stream = await p.client.createStream()
    await send(stream, total / 16384, 16384)
    assert.equal(await p.received, total)
    // initial window 256 KiB: at most one update per 128 KiB received, plus the stream's ACK
    assert.ok(p.updates() >= 2, 'credit was granted along the way')
    assert.ok(p.updates() <= 1 + total / (128 * 1024), `${p.updates()} window updates for 8 MiB`)
    p.client.abort(new Error('done'))
    p.server.abort(new Error('done'))
  })

  it('a stream opened just as its connection closes does not crash the process', async () => {
    const [outbound, inbound] = multiaddrConnectionPair()
    const factory = yamux({ enableKeepAlive: false })()
    const client = factory.createStreamMuxer(outbound)
    const server = factory.createStreamMuxer(inbound)
    const uncaught: Error[] = []
    const record = (err: Error) => uncaught.push(err)
    // mocha's own handler would fail the run later, in whichever test is running then
    const mochaHandlers = process.listeners('uncaughtException')
    process.removeAllListeners('uncaughtException')
    process.on('uncaughtException', record)
    try {
      // the SYN goes out from a microtask queued by createStream; the close starts before it
      const opening = client.createStream().catch(() => undefined)
      await outbound.close()
      await opening
      await new Promise((resolve) => setTimeout(resolve, 20))
    } finally {
      process.removeListener('uncaughtException', record)
      for (const h of mochaHandlers) process.on('uncaughtException', h)
      client.abort(new Error('done'))
      server.abort(new Error('done'))
    }
    assert.deepEqual(
      uncaught.map((e) => e.message),
      [],
    )
  })
})
