import assert from 'node:assert/strict'
import { OVERLAY_PREFIX, parseIPv6 } from '../../src/membership/overlay.js'
import {
  formatEndpoint,
  noIPv6,
  plainAddress,
  reachable,
  socketAddress,
  udpEndpointOf,
} from '../../src/overlay/udp-address.js'

describe('overlay: the direct UDP carrier addresses (dual-stack socket, endpoint choice)', () => {
  const prefix = OVERLAY_PREFIX('00112233445566778899aabbccddeeff')
  const cluster = parseIPv6(prefix.replace(/\/48$/, ''))!
  const inCluster = prefix.replace(/::\/48$/, ':1234::5')
  const ip6 = (value: string, ...rest: string[]) => [
    { name: 'ip6', value },
    ...rest.map((name) => ({ name })),
  ]

  it('keeps an address plain: IPv4 dotted whatever the socket reported, IPv6 in RFC 5952 form', () => {
    assert.equal(plainAddress('198.18.1.10'), '198.18.1.10')
    assert.equal(plainAddress('::ffff:198.18.1.10'), '198.18.1.10')
    assert.equal(plainAddress('::FFFF:198.18.1.10'), '198.18.1.10')
    assert.equal(plainAddress('::ffff:c612:10a'), '198.18.1.10')
    assert.equal(plainAddress('2001:2:0:0:0:0:0:A'), '2001:2::a')
    assert.equal(plainAddress('fe80::1%eth0'), 'fe80::1%eth0')
    assert.equal(plainAddress('fe80::1%'), undefined)
    assert.equal(plainAddress('example.com'), undefined)
  })

  it('hands the socket IPv4-mapped addresses on a dual-stack socket only, and says what it reaches', () => {
    assert.equal(socketAddress('198.18.1.10', 'dual'), '::ffff:198.18.1.10')
    assert.equal(socketAddress('198.18.1.10', 'ipv4'), '198.18.1.10')
    assert.equal(socketAddress('2001:2::a', 'dual'), '2001:2::a')
    assert.equal(reachable('2001:2::a', 'ipv4'), false)
    assert.equal(reachable('198.18.1.10', 'ipv4'), true)
    assert.equal(reachable('2001:2::a', 'dual'), true)
    assert.equal(formatEndpoint({ address: '2001:2::a', port: 4711 }), '[2001:2::a]:4711')
    assert.equal(formatEndpoint({ address: '198.18.1.10', port: 4711 }), '198.18.1.10:4711')
  })

  it('falls back to udp4 only when the error says the host has no IPv6, not for a taken port', () => {
    const err = (code: string) => Object.assign(new Error(code), { code })
    assert.equal(noIPv6(err('EAFNOSUPPORT')), true)
    assert.equal(noIPv6(err('EADDRNOTAVAIL')), true)
    assert.equal(noIPv6(err('EADDRINUSE')), false)
    assert.equal(noIPv6(err('EACCES')), false)
    assert.equal(noIPv6(undefined), false)
  })

  it("takes a direct connection's IPv4 or global/ULA IPv6 address as the member's endpoint", () => {
    assert.equal(
      udpEndpointOf([{ name: 'ip4', value: '198.18.1.10' }, { name: 'tcp' }], cluster),
      '198.18.1.10',
    )
    assert.equal(udpEndpointOf(ip6('2001:2::a', 'tcp'), cluster), '2001:2::a')
    assert.equal(udpEndpointOf(ip6('2001:2:0::0:b', 'tcp'), cluster), '2001:2::b')
    // a ULA of the underlay, not ours
    assert.equal(udpEndpointOf(ip6('fd00:1::7', 'tcp'), cluster), 'fd00:1::7')
    assert.equal(udpEndpointOf(ip6('::1', 'tcp'), cluster), '::1')
    // IPv4 written as IPv6 is IPv4
    assert.equal(udpEndpointOf(ip6('::ffff:198.18.1.10', 'tcp'), cluster), '198.18.1.10')
  })

  it("never an address inside the cluster's own /48, nor link-local without a zone, nor unspecified or multicast", () => {
    assert.equal(udpEndpointOf(ip6(inCluster, 'tcp'), cluster), undefined)
    // any subnet of the /48, not only the members' subnet 0
    assert.equal(udpEndpointOf(ip6(prefix.replace(/::\/48$/, ':ffff::1'), 'tcp'), cluster), undefined)
    assert.equal(udpEndpointOf(ip6('fe80::1', 'tcp'), cluster), undefined)
    assert.equal(
      udpEndpointOf([{ name: 'ip6zone', value: 'eth0' }, ...ip6('fe80::1', 'tcp')], cluster),
      'fe80::1%eth0',
    )
    assert.equal(udpEndpointOf(ip6('fe80::1%eth1', 'tcp'), cluster), 'fe80::1%eth1')
    assert.equal(udpEndpointOf(ip6('::', 'tcp'), cluster), undefined)
    assert.equal(udpEndpointOf(ip6('ff02::1', 'tcp'), cluster), undefined)
    assert.equal(udpEndpointOf([{ name: 'ip4', value: '0.0.0.0' }], cluster), undefined)
    assert.equal(udpEndpointOf([{ name: 'dns4', value: 'example.com' }], cluster), undefined)
    assert.equal(udpEndpointOf([], cluster), undefined)
  })
})
