// The reference side of the blocks benchmark: a Helia 7 node with @helia/bitswap, run by
// Node >= 22.19 from a directory outside the product where Helia is installed (blocks.ts copies
// this file there and runs it; see README "Benchmarks"). Plain JavaScript because mesh itself
// does not depend on Helia. Only 127.0.0.1, no routers, no HTTP gateways, no bootstrap peers:
// bitswap asks exactly the peers this process was told to dial.
//
//   node helia-peer.mjs provide DIR FILE     import FILE (256 KiB raw leaves, CIDv1), serve it;
//                                             prints {"ready":true,"addrs":[...],"cid":"..."},
//                                             runs until stdin closes
//   node helia-peer.mjs fetch DIR CID OUT ADDR...
//                                             dial ADDRs, cat CID into OUT; prints {"bytes","ms","cpuS"}

import { once } from 'node:events'
import { createReadStream, createWriteStream } from 'node:fs'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { FsBlockstore } from 'blockstore-fs'
import { MemoryDatastore } from 'datastore-core'
import { createHeliaLight } from 'helia'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { CID } from 'multiformats/cid'

const [role, dir, ...rest] = process.argv.slice(2)

async function node() {
  const blockstore = new FsBlockstore(dir)
  await blockstore.open()
  const light = createHeliaLight({ blockstore, datastore: new MemoryDatastore() })
  const h = withBitswap(
    withLibp2pLight(light, {
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
    }),
  )
  await h.start()
  return h
}

async function provide(file) {
  const h = await node()
  const fs = unixfs(h)
  const cid = await fs.addByteStream(createReadStream(file, { highWaterMark: 1 << 20 }), {
    chunker: fixedSize({ chunkSize: 256 * 1024 }),
    rawLeaves: true,
    cidVersion: 1,
  })
  const addrs = h.libp2p.getMultiaddrs().map(String)
  process.stdout.write(`${JSON.stringify({ ready: true, addrs, cid: cid.toString() })}\n`)
  process.stdin.resume()
  await once(process.stdin, 'end')
  await h.stop()
}

async function fetch(cidStr, out, addrs) {
  const h = await node()
  const signal = AbortSignal.timeout(1_800_000)
  await Promise.all(addrs.map((a) => h.libp2p.dial(multiaddr(a), { signal })))
  const fs = unixfs(h)
  const sink = createWriteStream(out)
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  let bytes = 0
  for await (const buf of fs.cat(CID.parse(cidStr), { signal })) {
    bytes += buf.byteLength
    if (!sink.write(buf)) await once(sink, 'drain')
  }
  sink.end()
  await once(sink, 'finish')
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  process.stdout.write(`${JSON.stringify({ bytes, ms, cpuS: (cpu.user + cpu.system) / 1e6 })}\n`)
  await h.stop()
}

try {
  if (role === 'provide') await provide(rest[0])
  else if (role === 'fetch') await fetch(rest[0], rest[1], rest.slice(2))
  else throw new Error(`unknown role ${role}: provide DIR FILE | fetch DIR CID OUT ADDR...`)
  process.exit(0)
} catch (err) {
  process.stderr.write(`${err?.stack ?? err}\n`)
  process.exit(1)
}
