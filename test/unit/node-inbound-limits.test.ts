import { strict as assert } from 'node:assert'
import type { Connection, MultiaddrConnection } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { INBOUND_LIMITS, JoinRate, PendingInbound } from '../../src/node/inbound-limits.js'

/** The parts of a raw inbound connection PendingInbound looks at. */
function rawConn(ip: string) {
  const listeners: Array<() => void> = []
  const c = {
    remoteAddr: multiaddr(`/ip4/${ip}/tcp/40000`),
    status: 'open' as string,
    timeline: { open: Date.now() },
    addEventListener: (_: string, fn: () => void) => listeners.push(fn),
    close() {
      c.status = 'closed'
      for (const fn of listeners) fn()
    },
  }
  return c
}
const asMa = (c: ReturnType<typeof rawConn>) => c as unknown as MultiaddrConnection

describe('node: inbound limits', () => {
  it('one address cannot hold more than its share of pending connections; others still can', () => {
    const pending = new PendingInbound(3)
    const fromA = [1, 2, 3].map(() => rawConn('127.0.0.2'))
    for (const c of fromA) assert.equal(pending.deny(asMa(c)), false)
    assert.equal(pending.deny(asMa(rawConn('127.0.0.2'))), true, 'a fourth from the same address is refused')
    assert.equal(pending.deny(asMa(rawConn('127.0.0.1'))), false, 'another address is not affected')
    // a closed one frees its slot
    fromA[0].close()
    assert.equal(pending.deny(asMa(rawConn('127.0.0.2'))), false)
    // an upgraded one too (the Connection shares the raw connection's timeline)
    pending.upgraded({
      direction: 'inbound',
      remoteAddr: fromA[1].remoteAddr,
      timeline: fromA[1].timeline,
    } as unknown as Connection)
    assert.equal(pending.pending('127.0.0.2'), 2)
    assert.equal(pending.deny(asMa(rawConn('127.0.0.2'))), false)
    assert.equal(pending.deny(asMa(rawConn('127.0.0.2'))), true)
  })

  it('joiner connections are rate-limited per address', () => {
    const rate = new JoinRate()
    const a = multiaddr('/ip4/127.0.0.2/tcp/1/p2p/12D3KooWCW2NrKv3QLU4pb3qdRmVQY2MtnhEB1XKT9fjGqh4cHfq')
    for (let i = 0; i < INBOUND_LIMITS.joinsPerHostPerMinute; i++) assert.equal(rate.take(a), true)
    assert.equal(rate.take(a), false, 'one more from the same address within the minute is refused')
    // the same address with another port (a fresh identity) is the same address
    assert.equal(rate.take(multiaddr('/ip4/127.0.0.2/tcp/2')), false)
    assert.equal(rate.take(multiaddr('/ip4/127.0.0.3/tcp/1')), true)
  })
})
