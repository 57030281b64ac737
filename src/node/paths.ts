import type { Multiaddr } from '@multiformats/multiaddr'
import { Circuit, WebRTC, WebRTCDirect } from '@multiformats/multiaddr-matcher'

/** How traffic reaches a peer, decided from the whole remote address (see NAT-LAB.md). */
export type PathKind = 'direct' | 'webrtc' | 'webrtc-direct' | 'relayed'

export function pathKind(remoteAddr: Multiaddr): PathKind {
  // a WebRTC connection signalled through a relay still has /p2p-circuit in its
  // address, but its traffic flows peer to peer: test WebRTC before Circuit
  if (WebRTC.matches(remoteAddr)) return 'webrtc'
  if (WebRTCDirect.matches(remoteAddr)) return 'webrtc-direct'
  if (Circuit.matches(remoteAddr)) return 'relayed'
  return 'direct'
}
