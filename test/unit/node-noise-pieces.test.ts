import '../../src/shim.js'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { decryptInPieces, noiseCrypto } from '../../src/node/noise-pieces.js'

const READ = 65536

/** decrypts asked without a destination: split messages that took the piecewise path */
let splitDecrypts = 0
const countingCrypto: typeof noiseCrypto = {
  ...noiseCrypto,
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    if (dst === undefined) splitDecrypts++
    return noiseCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
  },
}

/**
 * Two Noise ends over an in-memory connection whose receiving side gets the bytes cut at every
 * multiple of 64 KiB of the stream, as socket reads cut them (so Noise messages of 65,537 bytes
 * arrive split). `tamper` flips one byte at that stream offset on the way.
 */
async function pair(tamper?: number) {
  const [outbound, inbound] = multiaddrConnectionPair()
  let offset = 0
  const send = outbound.send.bind(outbound)
  outbound.send = (data) => {
    const bytes = data instanceof Uint8Array ? data : data.subarray()
    let ok = true
    for (let at = 0; at < bytes.byteLength; ) {
      const n = Math.min(bytes.byteLength - at, READ - (offset % READ))
      const piece = Uint8Array.from(bytes.subarray(at, at + n))
      if (tamper !== undefined && tamper >= offset && tamper < offset + n) piece[tamper - offset] ^= 1
      ok = send(piece) && ok
      offset += n
      at += n
    }
    return ok
  }
  const ends = await Promise.all(
    [outbound, inbound].map(async () => {
      const privateKey = await generateKeyPair('Ed25519')
      return { privateKey, peerId: peerIdFromPrivateKey(privateKey) }
    }),
  )
  const make = (i: number) =>
    decryptInPieces(noise({ crypto: countingCrypto }))({
      ...ends[i],
      logger: defaultLogger(),
      upgrader: { getStreamMuxers: () => new Map() },
    } as never)
  const [a, b] = await Promise.all([
    make(0).secureOutbound(outbound, { remotePeer: ends[1].peerId, skipStreamMuxerNegotiation: true }),
    make(1).secureInbound(inbound, { skipStreamMuxerNegotiation: true }),
  ])
  return { sender: a.connection, receiver: b.connection, sentAfterHandshake: () => offset }
}

describe('noise: split messages decrypted in pieces (node/noise-pieces.ts)', () => {
  it('every byte arrives, in order, when each Noise message is split over two reads', async () => {
    const { sender, receiver } = await pair()
    const data = randomBytes(4 << 20)
    const got = new Uint8ArrayList()
    const done = new Promise<void>((resolve) =>
      receiver.addEventListener('message', (evt) => {
        got.append(evt.data)
        if (got.byteLength >= data.byteLength) resolve()
      }),
    )
    for (let i = 0; i < data.byteLength; i += 200_000) sender.send(data.subarray(i, i + 200_000))
    await done
    assert.ok(Buffer.from(got.subarray()).equals(data))
    // 64 messages of 64 KiB, nearly all split: they went to node:crypto as lists, not joined
    assert.ok(splitDecrypts > 50, `${splitDecrypts} messages decrypted from their pieces`)
  })

  it('small messages arrive whole, and a read ending on a message boundary builds no error for it', async () => {
    const { sender, receiver } = await pair()
    const got: number[] = []
    const done = new Promise<void>((resolve) =>
      receiver.addEventListener('message', (evt) => {
        for (const b of evt.data instanceof Uint8Array ? [evt.data] : evt.data) got.push(...b)
        if (got.length >= 200 * 3) resolve()
      }),
    )
    // the library's decoder asks for the next length and stops on a RangeError; count the ones
    // made (each captured a stack trace through the whole receive path)
    const original = globalThis.RangeError
    let made = 0
    globalThis.RangeError = new Proxy(original, {
      apply: (target, self, args) => {
        made++
        return Reflect.apply(target, self, args)
      },
      construct: (target, args, newTarget) => {
        made++
        return Reflect.construct(target, args, newTarget)
      },
    })
    try {
      // each message its own read, as a reply or an ack arrives
      for (let i = 0; i < 200; i++) sender.send(Uint8Array.of(i, i, i))
      await done
    } finally {
      globalThis.RangeError = original
    }
    assert.deepEqual(
      got,
      Array.from({ length: 600 }, (_, k) => Math.floor(k / 3)),
    )
    assert.equal(made, 0)
  })

  it('one flipped ciphertext byte in a split message ends the connection with an error', async () => {
    // the flip lands well inside the bulk data, after the handshake's few hundred bytes
    const { sender, receiver } = await pair(3 * READ + 5)
    const closed = new Promise<Error | undefined>((resolve) =>
      receiver.addEventListener('close', (evt) => resolve((evt as Event & { error?: Error }).error)),
    )
    let received = 0
    receiver.addEventListener('message', (evt) => {
      received += evt.data.byteLength
    })
    const data = randomBytes(1 << 20)
    for (let i = 0; i < data.byteLength; i += 200_000) sender.send(data.subarray(i, i + 200_000))
    const err = await closed
    assert.ok(err !== undefined, 'the connection closed with an error')
    assert.ok(received < 3 * READ, `only what came before the flipped message was delivered (${received})`)
  })
})
