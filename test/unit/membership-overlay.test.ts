import assert from 'node:assert/strict'
import { isIPv6 } from 'node:net'
import fc from 'fast-check'
import {
  canonicalIPv6,
  formatIPv6,
  isOverlayAddress,
  OVERLAY_PREFIX,
  overlayAddress,
  parseIPv6,
} from '../../src/membership/index.js'

const CLUSTER = '00112233445566778899aabbccddeeff'
const A = '12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8'
const B = '12D3KooWQsaTkY96Lr9gdkVbXSSKqFZkfCGobXkpD7hkm6UVMRXV'

/** WHATWG URL serialisation compresses IPv6 the RFC 5952 way: an independent oracle. */
const viaUrl = (text: string): string => new URL(`http://[${text}]/`).hostname.slice(1, -1)

describe('membership: overlay addresses', () => {
  it('is a stable ULA in the cluster /48 with subnet 0', () => {
    const a = overlayAddress(CLUSTER, A)
    assert.equal(a, overlayAddress(CLUSTER, A))
    assert.equal(a, overlayAddress(CLUSTER.toUpperCase(), A))
    assert.ok(isIPv6(a))
    const bytes = parseIPv6(a)!
    assert.equal(bytes[0], 0xfd)
    assert.equal(bytes[6], 0)
    assert.equal(bytes[7], 0)
    assert.equal(a, viaUrl(a))
    assert.ok(isOverlayAddress(a, CLUSTER))
    assert.ok(isOverlayAddress(`[${a}]`))
    const prefix = OVERLAY_PREFIX(CLUSTER)
    assert.match(prefix, /^fd[0-9a-f]{0,2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/48$/)
    assert.ok(a.startsWith(prefix.slice(0, -'::/48'.length)))
  })

  it('differs between peers and between clusters', () => {
    assert.notEqual(overlayAddress(CLUSTER, A), overlayAddress(CLUSTER, B))
    const other = 'ffeeddccbbaa99887766554433221100'
    assert.notEqual(overlayAddress(other, A), overlayAddress(CLUSTER, A))
    assert.equal(isOverlayAddress(overlayAddress(other, A), CLUSTER), false)
    assert.equal(isOverlayAddress('fe80::1'), false)
    assert.equal(isOverlayAddress('not an address'), false)
  })

  it('formats and parses any IPv6 spelling canonically (RFC 5952)', () => {
    const cases: Array<[string, string]> = [
      ['FD00:0000:0000:0000:0000:0000:0000:0001', 'fd00::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['::', '::'],
      ['::1', '::1'],
      ['1::', '1::'],
      ['::ffff:192.0.2.1', '::ffff:c000:201'],
      ['[fd12:3456:789a:0:1:2:3:4]', 'fd12:3456:789a:0:1:2:3:4'],
    ]
    for (const [input, want] of cases) assert.equal(canonicalIPv6(input), want, input)
    assert.equal(canonicalIPv6('fe80::1%eth0'), undefined)
    assert.equal(canonicalIPv6('1.2.3.4'), undefined)
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 8 }),
        (b, at, zeros) => {
          // runs of zero groups make compression interesting
          for (let i = at * 2; i < Math.min(16, (at + zeros) * 2); i++) b[i] = 0
          const text = formatIPv6(b)
          assert.equal(text, viaUrl(text))
          assert.deepEqual(parseIPv6(text), b)
        },
      ),
      { numRuns: 2000 },
    )
  })
})
