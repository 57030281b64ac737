import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * Only addresses that start at a network address. libp2p also lists a bare `/webrtc/p2p/..`
 * listen address before it has a relay, and such an address, announced by a relay in its
 * reservations or kept in a peer store, crashes the circuit-relay listener of every peer that
 * reserves on it (libp2p 3.3.11 throws from an event handler in
 * AddressManager.confirmObservedAddr: the agent exits).
 */
export function dialable(ma: Multiaddr): boolean {
  const first = ma.getComponents()[0]?.name
  return (
    first === 'ip4' ||
    first === 'ip6' ||
    first === 'dns' ||
    first === 'dns4' ||
    first === 'dns6' ||
    first === 'dnsaddr'
  )
}

/**
 * Whether `ma` reaches its peer through a relay other than `self`: a member's circuit address
 * through us is useless to us (dialling it dials ourselves), and doubled the dials we made to a
 * member that had gone.
 */
export function notThroughSelf(ma: Multiaddr, self: string): boolean {
  const comps = ma.getComponents()
  const circuit = comps.findIndex((c) => c.name === 'p2p-circuit')
  if (circuit < 0) return true
  const relay = comps.slice(0, circuit).findLast((c) => c.name === 'p2p')?.value
  return relay !== self
}
