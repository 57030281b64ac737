import '../../src/shim.js'
import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import { streamPair } from '@libp2p/utils'
import { ProbeLinks, SILENT_PROBES_BEFORE_REOPEN, serveProbeLink } from '../../src/membership/probe-links.js'

const PROTO = '/test/probe/2.0.0'
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Probe links whose open is a dial slower than a probe's timeout, as on a busy machine: the
 * probe gives up, the dial does not.
 */
describe('membership probe links', () => {
  const served: Stream[] = []
  afterEach(() => {
    for (const s of served.splice(0)) s.abort(new Error('test over'))
  })

  /** an open that takes `delayMs` and honours its signal, as libp2p's dial does */
  function slowOpen(delayMs: number, answerMs = 0) {
    const calls: AbortSignal[] = []
    const open = async (_peer: string, signal: AbortSignal): Promise<Stream> => {
      calls.push(signal)
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, delayMs)
        signal.addEventListener('abort', () => {
          clearTimeout(t)
          reject(signal.reason)
        })
      })
      const [mine, theirs] = await streamPair()
      mine.protocol = PROTO
      served.push(theirs, mine)
      void serveProbeLink(
        theirs,
        async () => {
          await sleep(answerMs)
          return true
        },
        () => {},
      )
      return mine
    }
    return { open, calls }
  }

  it('a probe that times out while its link opens leaves the open going: the next probe uses that link', async () => {
    const { open, calls } = slowOpen(200)
    const links = new ProbeLinks({ open, persistentProtocol: PROTO, count: () => {}, openTimeoutMs: 5_000 })
    try {
      const first = await links.ask('peer-a', { seq: 1, target: '' }, 20)
      assert.equal(first, undefined, 'the first probe times out before the link is open')
      await sleep(400)
      assert.equal(calls.length, 1)
      assert.equal(calls[0].aborted, false, 'the open was not cut off by the probe that asked for it')
      const second = await links.ask('peer-a', { seq: 2, target: '' }, 2_000)
      assert.equal(second?.ack, true)
      assert.equal(calls.length, 1, 'no second dial: the link opened for the first probe is used')
    } finally {
      links.closeAll()
    }
  })

  it('probes to a member whose link is being opened wait on that one open', async () => {
    const { open, calls } = slowOpen(100)
    const links = new ProbeLinks({ open, persistentProtocol: PROTO, count: () => {} })
    try {
      const replies = await Promise.all(
        [1, 2, 3].map((seq) => links.ask('peer-b', { seq, target: '' }, 2_000)),
      )
      assert.deepEqual(
        replies.map((r) => r?.ack),
        [true, true, true],
      )
      assert.equal(calls.length, 1)
    } finally {
      links.closeAll()
    }
  })

  it('a member slow to answer keeps its link; only probes unanswered several times in a row open a new one', async () => {
    // a timed-out probe is mostly a loaded member, not a broken stream: reopening at once cost
    // a stream negotiation on both sides per timeout in a join storm
    const { open, calls } = slowOpen(0, 100)
    const links = new ProbeLinks({ open, persistentProtocol: PROTO, count: () => {} })
    try {
      let seq = 0
      for (let i = 1; i < SILENT_PROBES_BEFORE_REOPEN; i++) {
        assert.equal(await links.ask('peer-c', { seq: ++seq, target: '' }, 20), undefined)
        assert.equal(links.size, 1, `the link stays after ${i} unanswered probe(s)`)
      }
      assert.equal((await links.ask('peer-c', { seq: ++seq, target: '' }, 1_000))?.ack, true)
      assert.equal(calls.length, 1, 'an answer in time, on the same link')
      for (let i = 1; i <= SILENT_PROBES_BEFORE_REOPEN; i++)
        assert.equal(await links.ask('peer-c', { seq: ++seq, target: '' }, 20), undefined)
      assert.equal(links.size, 0, `dropped after ${SILENT_PROBES_BEFORE_REOPEN} unanswered in a row`)
      assert.equal((await links.ask('peer-c', { seq: ++seq, target: '' }, 2_000))?.ack, true)
      assert.equal(calls.length, 2, 'the next probe opened a new link')
    } finally {
      links.closeAll()
    }
  })
})
