import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { defaultCrypto, nodeCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ConnectionEncrypter, MessageStream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { wrapEncrypter } from './wrap-encrypter.js'

/** Noise's longest message (ciphertext and tag) and its tag. */
const NOISE_MSG_MAX = 65535
const TAG = 16

/**
 * Decrypt a Noise message that arrived split over socket reads without joining it first.
 *
 * A Noise message is 65,537 bytes on the wire and a socket read 65,536, so in bulk nearly every
 * message spans two reads. libp2p-noise's stream decrypts it as a list, but first joins the list
 * into a copy (`chunk.subarray()`) only to hand it as an in-place destination that its node:crypto
 * path never uses: a 64 KiB copy and allocation per message, a third of the Buffers a fetcher
 * allocates (sim/PROFILE.md). Here such a message goes, as its list, to node:crypto's decipher
 * (which takes the pieces one by one), with no destination. A message in one buffer, and every
 * message under 1,200 bytes (the library's small-message threshold), takes the library's path.
 *
 * `noiseCrypto` is the crypto to give noise(): the default, except that a decrypt without a
 * destination goes to node:crypto (the small-message WebAssembly path needs one).
 */
export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    if (dst === undefined) return nodeCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
    return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
  },
}

/**
 * The 2-byte length of a Noise message, thrown for as the library's does when fewer than 2
 * bytes are buffered (its LengthPrefixedDecoder stops on a RangeError), but with one error made
 * once: the library's `RangeError(...)` captured a stack trace through the optimised frames of
 * the whole receive path every time a read ended on a message boundary, which every small
 * message does, about 5% of either agent's CPU in a tunnel (sim/PROFILE.md).
 */
const NEED_MORE = new RangeError('Could not decode int16BE')

function lengthWithoutStack(data: Uint8Array | Uint8ArrayList): number {
  if (data.length < 2) throw NEED_MORE
  if (data instanceof Uint8Array) return (data[0] << 8) | data[1]
  return data.getUint16(0)
}

export function decryptInPieces<C, E>(
  factory: (components: C) => ConnectionEncrypter<E>,
): (components: C) => ConnectionEncrypter<E> {
  return wrapEncrypter(factory, { after: piecewise })
}

interface NoiseMessageStream {
  decrypt(chunk: Uint8Array | Uint8ArrayList): Uint8ArrayList
  decoder?: { lengthDecoder?: (data: Uint8Array | Uint8ArrayList) => number }
  handshake: {
    decrypt(ciphertext: Uint8Array | Uint8ArrayList, dst?: Uint8Array): Uint8Array | Uint8ArrayList
  }
  metrics?: { decryptedPackets: { increment(): void }; decryptErrors: { increment(): void } }
}

/** Replace the stream's decrypt for split messages; anything not shaped like libp2p-noise's stream is left alone. */
export function piecewise(connection: MessageStream): void {
  const s = connection as unknown as Partial<NoiseMessageStream>
  const own = s.decrypt
  if (typeof own !== 'function' || typeof s.handshake?.decrypt !== 'function') return
  const stream = s as NoiseMessageStream
  if (typeof stream.decoder?.lengthDecoder === 'function') stream.decoder.lengthDecoder = lengthWithoutStack
  stream.decrypt = (chunk) => {
    if (chunk instanceof Uint8Array || chunk.byteLength < 1200) return own.call(stream, chunk)
    const output = new Uint8ArrayList()
    for (let i = 0; i < chunk.byteLength; i += NOISE_MSG_MAX) {
      const end = Math.min(i + NOISE_MSG_MAX, chunk.byteLength)
      if (end - TAG < i) throw new Error('Invalid chunk')
      try {
        output.append(stream.handshake.decrypt(chunk.sublist(i, end)))
        stream.metrics?.decryptedPackets.increment()
      } catch (e) {
        stream.metrics?.decryptErrors.increment()
        throw e
      }
    }
    return output
  }
}
