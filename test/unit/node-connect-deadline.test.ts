import assert from 'node:assert/strict'
import type { Transport } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { connectDeadline } from '../../src/node/connect-deadline.js'

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => {
      clearTimeout(t)
      reject(signal.reason)
    })
  })

/** A transport that takes connectMs to connect and upgradeMs to upgrade, honouring the signal as @libp2p/tcp does. */
function slowTransport(connectMs: number, upgradeMs: number): (c: unknown) => Transport {
  return () =>
    ({
      dial: async (_ma: unknown, options: { signal: AbortSignal; onProgress?: (e: unknown) => void }) => {
        options.onProgress?.({ type: 'tcp:open-connection' })
        await sleep(connectMs, options.signal)
        options.onProgress?.({ type: 'upgrader:encrypt-outbound-connection' })
        await sleep(upgradeMs, options.signal)
        return 'connection'
      },
    }) as unknown as Transport
}

const ma = multiaddr('/ip4/127.0.0.1/tcp/1')
const dial = (t: Transport, signal: AbortSignal, onProgress?: (e: unknown) => void) =>
  t.dial(ma, { signal, onProgress, upgrader: undefined as never })

describe('connectDeadline: a TCP connect has its own deadline, the upgrade the rest of the dial budget', () => {
  it('a connect that takes longer than its deadline is given up, saying so', async () => {
    const t = connectDeadline(slowTransport(400, 0), () => 100)(undefined)
    // (without the deadline this dial would connect after 400 ms and return a connection)
    await assert.rejects(
      dial(t, AbortSignal.timeout(5_000)),
      /TCP connect to \/ip4\/127\.0\.0\.1\/tcp\/1 took over 100 ms/,
    )
  })

  it('an upgrade that takes several connect deadlines still completes within the dial budget', async () => {
    const seen: string[] = []
    const t = connectDeadline(slowTransport(10, 400), () => 100)(undefined)
    assert.equal(
      await dial(t, AbortSignal.timeout(5_000), (e) => seen.push((e as { type: string }).type)),
      'connection',
    )
    assert.deepEqual(
      seen,
      ['tcp:open-connection', 'upgrader:encrypt-outbound-connection'],
      'progress still reaches the caller',
    )
  })

  it('the dial budget still ends a slow upgrade', async () => {
    const t = connectDeadline(slowTransport(10, 2_000), () => 100)(undefined)
    await assert.rejects(dial(t, AbortSignal.timeout(300)))
  })
})
