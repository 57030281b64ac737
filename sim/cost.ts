// What membership traffic costs on the wire, in bytes of libp2p connection payload (after
// Noise, before TCP/IP headers). Records and claims are counted exactly as the agent encodes
// them (the canonical body from encodeInfo / encodeClaim inside protobuf `Signed` inside a
// `MemberSet`), with 64-byte Ed25519 signatures even though the simulator signs with nullCrypto.
// Everything around them is a fixed overhead stated here.

import { newsBytes } from '../src/membership/core.js'
import type { Entry } from '../src/membership/merge.js'
import type { Claim, SignedInfo } from '../src/membership/record.js'

export const COST = {
  /** per application message: yamux header (12) + Noise length prefix (2) and tag (16) */
  frame: 30,
  /** per request/response stream: yamux SYN/ACK/FIN frames, multistream-select header and protocol id both ways */
  stream: 230,
  /** around one gossipsub message: RPC framing, from (38), seqno (8), topic (~45), signature (64) */
  gossipEnvelope: 170,
  /** one message id (key + seqno, 44 bytes) in an IHAVE, with its share of the control framing */
  ihaveId: 60,
  /** gossipsub advertises a message id in this many heartbeats (GossipsubHistoryGossip) */
  ihaveRounds: 3,
  /** one row of a sync 2.0.0 digest: an 8-byte fingerprint (protocols/membership.md) */
  digestItem: 8,
  /** Probe{seq} for a direct probe, Probe{seq, target} for an indirect one, ProbeReply{seq, ack, now_ms} */
  probe: 7,
  probeReq: 61,
  reply: 17,
  /** a new connection: TCP + Noise XX + multistream + the admission proof, both ways */
  dial: 1200,
} as const

export function varintLen(n: number): number {
  let l = 1
  while (n >= 128) {
    n = Math.floor(n / 128)
    l++
  }
  return l
}

/** A length-delimited protobuf field of `len` bytes. */
export const field = (len: number): number => 1 + varintLen(len) + len

/** One record as a `records` entry of a MemberSet (the queue's own measure). */
export const recordWire = (s: SignedInfo): number => newsBytes(s)

/** One claim as a `claims` entry of a MemberSet. */
export const claimWire = (c: Claim): number => newsBytes(c)

export const entryWire = (e: Entry): number =>
  recordWire(e.signed) + (e.claim === undefined ? 0 : claimWire(e.claim))

export function memberSetBytes(records: readonly SignedInfo[], claims: readonly Claim[]): number {
  let n = 0
  for (const r of records) n += recordWire(r)
  for (const c of claims) n += claimWire(c)
  return n
}

/**
 * Peers a gossipsub node sends IHAVE to per heartbeat: GossipsubGossipFactor (0.25) of its
 * non-mesh peers, at least Dlazy (6), at most all of them.
 */
export function ihaveTargets(connected: number, meshDegree: number): number {
  const nonMesh = Math.max(0, connected - meshDegree)
  return Math.min(nonMesh, Math.max(6, Math.floor(0.25 * nonMesh)))
}
