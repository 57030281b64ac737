import type { Multiaddr } from '@multiformats/multiaddr'
import { Circuit, WebRTC, WebRTCDirect } from '@multiformats/multiaddr-matcher'

/** How traffic reaches a peer, decided from the whole remote address (see NAT-LAB.md). */
export type PathKind = 'direct' | 'webrtc' | 'webrtc-direct' | 'relayed'

// A connection's remoteAddr is one object for its whole life, and its kind is asked for every
// second (the NAT upgrade's retry round, probe links, the tunnel's path upgrade): each match
// copies the address's components, 4% of an idle agent's allocations (issue 20)
const kinds = new WeakMap<Multiaddr, PathKind>()

export function pathKind(remoteAddr: Multiaddr): PathKind {
  let kind = kinds.get(remoteAddr)
  if (kind === undefined) {
    kind = matchKind(remoteAddr)
    kinds.set(remoteAddr, kind)
  }
  return kind
}

function matchKind(remoteAddr: Multiaddr): PathKind {
  // a WebRTC connection signalled through a relay still has /p2p-circuit in its
  // address, but its traffic flows peer to peer: test WebRTC before Circuit
  if (WebRTC.matches(remoteAddr)) return 'webrtc'
  if (WebRTCDirect.matches(remoteAddr)) return 'webrtc-direct'
  if (Circuit.matches(remoteAddr)) return 'relayed'
  return 'direct'
}
