import '../../src/shim.js'
import assert from 'node:assert/strict'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { until } from '../../sim/bench/report.js'
import { RECEIVE_WINDOW, widenReceiveWindow } from '../../src/overlay/carrier.js'

// The receiving member grants RECEIVE_WINDOW of credit on an inbound carrier stream, so a
// sender is not held to yamux's first 256 KiB per round trip. Seen from a reader that is
// paused: what the sender could put in flight is what piles up in its read buffer.
async function inFlight(widen: boolean, bytes: number): Promise<number> {
  const [outbound, inbound] = multiaddrConnectionPair()
  const factory = yamux({ enableKeepAlive: false })()
  const client = factory.createStreamMuxer(outbound)
  const server = factory.createStreamMuxer(inbound)
  let remote: Stream | undefined
  server.addEventListener('stream', (evt) => {
    remote = evt.detail
    if (widen) assert.equal(widenReceiveWindow(remote), true, 'a yamux stream')
    remote.pause()
  })
  const stream = await client.createStream()
  // the stream opens with its first frame; the receiver widens before the bulk comes
  stream.send(new Uint8Array(1))
  await until('the stream at the receiver', async () => remote !== undefined, 10_000, 10)
  for (let sent = 0; sent < bytes; sent += 64 << 10) stream.send(new Uint8Array(64 << 10))
  // as much as the window lets through arrives (bounded wait), then nothing more comes
  let last = -1
  await until(
    'the paused reader to stop receiving',
    async () => {
      const n = remote!.readBufferLength
      const settled = n === last
      last = n
      return settled || n >= bytes
    },
    20_000,
    200,
  )
  client.abort(new Error('done'))
  server.abort(new Error('done'))
  return last
}

describe('overlay carrier: the receive window of an inbound stream', () => {
  it(`lets a member put ${RECEIVE_WINDOW >> 20} MiB in flight, where yamux alone allows 256 KiB`, async () => {
    const want = RECEIVE_WINDOW - (256 << 10)
    assert.ok((await inFlight(false, want)) <= 256 << 10, 'without widening, yamux holds the sender')
    assert.ok((await inFlight(true, want)) >= want, 'widened, all of it arrives')
  })
})
