// The idle benchmark's reference: one plain js-libp2p node (TCP + Noise + yamux, identify, ping,
// the connection monitor's defaults) that listens on 127.0.0.1 and, given an address, dials it
// and then does nothing. Two of these, connected, are what an idle pair of libp2p processes
// costs before anything mesh adds (membership, gossip, DHT, relays, metrics).
//
//   node dist/sim/bench/idle-peer.js LIFE_S [ADDR]
//
// Prints one JSON line {"ready":true,"addrs":[...]} once listening (and connected, given ADDR),
// and exits after LIFE_S seconds, when stdin closes, or on SIGTERM.
import '../../src/shim.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const lifeS = Math.max(1, Math.min(3600, Number(process.argv[2] ?? 60)))
const addr = process.argv[3]
const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() },
})
if (addr !== undefined) await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(10_000) })
process.stdout.write(`${JSON.stringify({ ready: true, addrs: node.getMultiaddrs().map(String) })}\n`)
const stop = () => {
  void Promise.resolve(node.stop()).finally(() => process.exit(0))
}
setTimeout(stop, lifeS * 1000).unref()
process.stdin.on('end', stop).resume()
process.on('SIGTERM', stop)
// keep the process alive until one of the above ends it
setInterval(() => {}, 3_600_000)
