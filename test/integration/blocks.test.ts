// Blocks and datasets with real agent processes on 127.0.0.1, driven through the CLI (and the
// control API where a test must watch a transfer's progress): a mixed dataset round-trips byte
// for byte with modes and mtimes; a get uses every provider; a provider killed mid-transfer, a
// fetcher restarted mid-get, a member serving corrupt blocks; version 2 moves only the changed
// chunks; tags converge; quorum writes and repair; bad input.
//
// Providers are rate-limited (blocks.serveBytesPerSec) so that transfers last long enough to
// interrupt; timing bounds are generous (2 cores, other suites running at once).
import '../../src/shim.js'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { ConfigSchema } from '../../src/agent/config.js'
import { prepareDataDir } from '../../src/agent/setup.js'
import { Blockstore } from '../../src/blocks/blockstore.js'
import { putPath } from '../../src/blocks/dataset.js'
import { RateLimiter, serveExchange } from '../../src/blocks/exchange.js'
import { rank } from '../../src/blocks/replication.js'
import { Reporter } from '../../src/kernel/reporter.js'
import { protocolPrefix } from '../../src/node/cluster.js'
import { NodeComponent } from '../../src/node/node-component.js'
import {
  type AgentProcess,
  seededBytes as bytes,
  Fixture,
  mesh,
  meshJson,
  type RunResult,
  waitFor,
} from './cluster-harness.js'

// WebRTC off: it plays no part here, and restarts are cheaper without it
const ENV = { MESH_WEBRTC__ENABLED: 'false', MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn' }

// ---- helpers ---------------------------------------------------------------------------------

function run(a: AgentProcess, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return mesh(['--data-dir', a.dataDir, ...args], { timeoutMs })
}

async function runJson<T = any>(a: AgentProcess, args: string[], timeoutMs = 120_000): Promise<T> {
  const r = await run(a, ['--json', ...args], timeoutMs)
  if (r.code !== 0) throw new Error(`mesh ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as T
}

/** GET a JSON endpoint of the control API. */
function apiGet(a: AgentProcess, path: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: join(a.dataDir, 'mesh.sock'), path, timeout: 60_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () =>
        res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${res.statusCode}: ${body}`)),
      )
    })
    req.on('timeout', () => req.destroy(new Error(`${path} did not answer`)))
    req.on('error', reject)
    req.end()
  })
}

/** POST to an NDJSON endpoint of the control API, with every progress line; resolves with `done`. */
function apiStream(a: AgentProcess, path: string, body: unknown, onProgress: (p: any) => void): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: join(a.dataDir, 'mesh.sock'),
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let buf = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => {
          buf += d
          for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
            const m = JSON.parse(buf.slice(0, i))
            buf = buf.slice(i + 1)
            if (m.type === 'progress') onProgress(m)
            else if (m.type === 'done') resolve(m.result)
            else reject(new Error(m.error ?? JSON.stringify(m)))
          }
        })
        res.on('end', () => reject(new Error(`stream ended: ${buf}`)))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

/**
 * A new member joining with a fresh invite; one at a time (concurrent joins to one inviter
 * were seen to fail with 'Remote closed connection during opening' on a loaded machine), and
 * retried once with a new token and data dir if the join itself fails.
 */
async function joinMember(
  fx: Fixture,
  inviter: AgentProcess,
  name: string,
  env: NodeJS.ProcessEnv,
): Promise<AgentProcess> {
  let last: Error | undefined
  for (let attempt = 0; attempt < 2; attempt++) {
    const token = (await meshJson<{ token: string }>(inviter.dataDir, ['invite'])).token
    const a = fx.agent(fx.tempDir(), ['--name', name]).start(['--join', token], env)
    try {
      await a.ready(45_000)
      return a
    } catch (err) {
      last = err as Error
      await a.kill('SIGKILL')
      if (!/could not reach any member named in the join token/.test(a.stderr)) break
    }
  }
  throw last
}

/** Start `names.length` agents: the first founds the cluster, the rest join; all see each other alive. */
async function cluster(
  fx: Fixture,
  names: string[],
  env: (name: string) => NodeJS.ProcessEnv = () => ({}),
): Promise<AgentProcess[]> {
  const dirA = fx.tempDir()
  assert.equal((await mesh(['--data-dir', dirA, 'init', '--cluster', 'lab'])).code, 0)
  const agents: AgentProcess[] = []
  const first = fx.agent(dirA, ['--name', names[0]]).start([], { ...ENV, ...env(names[0]) })
  await first.ready(30_000)
  agents.push(first)
  for (const name of names.slice(1)) agents.push(await joinMember(fx, first, name, { ...ENV, ...env(name) }))
  await waitFor(
    `${names.join(', ')} to see each other alive`,
    async () => {
      for (const a of agents) {
        const rows = await meshJson<any[]>(a.dataDir, ['members'])
        if (rows.filter((r) => r.status === 'alive').length !== names.length) return false
      }
      return true
    },
    60_000,
    500,
  )
  return agents
}

/**
 * The mixed dataset: an empty file, an empty dir, a few MB of random bytes, many small files,
 * nested dirs, various modes (a read-only file and a read-only dir too), a symlink.
 */
function mixedTree(root: string): void {
  mkdirSync(join(root, 'nested/deeper/deepest'), { recursive: true })
  mkdirSync(join(root, 'empty-dir'))
  mkdirSync(join(root, 'small'))
  mkdirSync(join(root, 'locked'))
  writeFileSync(join(root, 'empty.txt'), '')
  writeFileSync(join(root, 'random.bin'), randomBytes(3 * 1024 * 1024 + 12345))
  for (let i = 0; i < 150; i++)
    writeFileSync(
      join(root, 'small', `f${String(i).padStart(3, '0')}.txt`),
      `small file ${i}\n`.repeat(i % 7),
    )
  writeFileSync(join(root, 'nested/deeper/deepest/leaf.txt'), 'leaf\n')
  writeFileSync(join(root, 'nested/run.sh'), '#!/bin/sh\necho run\n')
  writeFileSync(join(root, 'nested/secret'), 'secret\n')
  writeFileSync(join(root, 'nested/readonly'), 'read only\n')
  writeFileSync(join(root, 'locked/inside'), 'inside a read-only dir\n')
  symlinkSync('nested/run.sh', join(root, 'link-to-run'))
  chmodSync(join(root, 'nested/run.sh'), 0o755)
  chmodSync(join(root, 'nested/secret'), 0o600)
  chmodSync(join(root, 'nested/readonly'), 0o444)
  chmodSync(join(root, 'empty-dir'), 0o700)
  chmodSync(join(root, 'nested/deeper'), 0o750)
  utimesSync(join(root, 'nested/deeper/deepest/leaf.txt'), 1_000_000_000.25, 1_000_000_000.25)
  chmodSync(join(root, 'locked'), 0o555)
}

interface Node {
  type: string
  mode: number
  size: number
  mtime: number
  hash?: string
  target?: string
}

function walk(root: string): Map<string, Node> {
  const out = new Map<string, Node>()
  const visit = (rel: string) => {
    const abs = rel === '' ? root : join(root, rel)
    const st = lstatSync(abs)
    const n: Node = {
      type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other',
      mode: st.mode & 0o7777,
      size: st.isDirectory() ? 0 : st.size,
      mtime: st.mtimeMs,
    }
    if (n.type === 'file') n.hash = createHash('sha256').update(readFileSync(abs)).digest('hex')
    if (n.type === 'symlink') {
      n.target = readlinkSync(abs)
      n.mode = 0
    }
    out.set(rel, n)
    if (n.type === 'dir') for (const c of readdirSync(abs)) visit(rel === '' ? c : `${rel}/${c}`)
  }
  visit('')
  return out
}

/** Every path, type, byte, mode and mtime (to the millisecond) of `a` is in `b`, and nothing else. */
function assertSameTree(a: string, b: string): void {
  const x = walk(a)
  const y = walk(b)
  assert.deepEqual([...y.keys()].sort(), [...x.keys()].sort(), 'the same paths')
  for (const [p, n] of x) {
    const m = y.get(p)!
    assert.equal(m.type, n.type, `type of ${p}`)
    assert.equal(m.hash, n.hash, `bytes of ${p}`)
    assert.equal(m.target, n.target, `symlink target of ${p}`)
    assert.equal(m.mode.toString(8), n.mode.toString(8), `mode of ${p}`)
    assert.ok(Math.abs(m.mtime - n.mtime) < 1, `mtime of ${p}: ${m.mtime} vs ${n.mtime}`)
  }
}

/** Make a tree deletable again (read-only dirs) before the fixture removes it. */
function unlock(dir: string): void {
  try {
    execFileSync('chmod', ['-R', 'u+rwx', dir], { stdio: 'ignore' })
  } catch {}
}

// ---- datasets across members -----------------------------------------------------------------

describe('blocks: datasets between real agents', function () {
  this.timeout(300_000)
  const fx = new Fixture()
  const unlockDirs: string[] = []
  let A: AgentProcess
  let B: AgentProcess
  let C: AgentProcess
  let D: AgentProcess
  const ids: Record<string, string> = {}
  let mixed: string
  let mixedRoot: string
  let big: string
  let bigRoot: string
  let clusterId: string
  let mallory: NodeComponent | undefined

  // every member serves at most 4 MiB/s, so a 24 MiB get lasts long enough to watch
  const slow = { MESH_BLOCKS__SERVE_BYTES_PER_SEC: '4MiB', MESH_BLOCKS__WINDOW_BYTES: '2MiB' }

  before(async () => {
    ;[A, B, C, D] = await cluster(fx, ['alpha', 'bravo', 'charlie', 'delta'], () => slow)
    for (const [k, a] of Object.entries({ A, B, C, D })) ids[k] = (await a.status()).peerId
    clusterId = (await A.status()).cluster.id
    mixed = join(fx.tempDir('mesh-src-'), 'mixed')
    mkdirSync(mixed)
    mixedTree(mixed)
    unlockDirs.push(mixed)
    big = join(fx.tempDir('mesh-src-'), 'big')
    mkdirSync(big)
    writeFileSync(join(big, 'data.bin'), bytes(24 << 20, 42))
    writeFileSync(join(big, 'notes.txt'), 'version 1\n')
  })

  after(async () => {
    await mallory?.stop().catch(() => {})
    for (const d of unlockDirs) unlock(d)
    await fx.cleanup()
  })

  it('put prints the root CID; the tag reaches every member', async () => {
    const r = await run(A, ['put', mixed, '--tag', 'mixed:v1'])
    assert.equal(r.code, 0, r.stderr)
    mixedRoot = r.stdout.trim()
    assert.match(mixedRoot, /^bafkrei[a-z2-7]{52}$/)
    // announced on the cluster's DHT (every provide failed while the routing tables stayed
    // empty: protocols/blocks.md, 'The DHT')
    await waitFor(
      'a DHT provider record',
      async () => (await A.metric('mesh_blocks_dht_provides_total', { result: 'ok' })) >= 1,
      60_000,
      1000,
    )
    assert.ok((await D.metric('mesh_blocks_dht_peers')) >= 1, "D's DHT routing table is empty")
    // and D finds alpha as a provider through the DHT alone, from a record that a third member
    // (neither alpha nor D itself) holds and sent back over the DHT
    const found = await waitFor(
      'alpha as a DHT provider of the root, from another member',
      async () => {
        const r = await apiGet(D, `/v1/dht/providers/${mixedRoot}?timeoutMs=8000`)
        const p = r.providers.find((x: any) => x.peerId === ids.A)
        return p?.via.some((v: string) => v !== ids.A && v !== ids.D) ? p : undefined
      },
      60_000,
      1000,
    )
    assert.equal(found.name, 'alpha')
    for (const x of [A, B, C, D]) {
      await waitFor(
        `mixed:v1 on ${x.dataDir}`,
        async () => {
          const ds = await runJson<any[]>(x, ['datasets'])
          return ds.some((d) => d.dataset === 'mixed' && d.tag === 'v1' && d.root === mixedRoot)
        },
        30_000,
        500,
      )
    }
  })

  it('a mixed dataset round-trips on B (by tag) and C (by CID): every byte, mode and mtime', async () => {
    const destB = join(fx.tempDir(), 'out')
    const destC = join(fx.tempDir(), 'out')
    unlockDirs.push(destB, destC)
    const rb = await runJson(B, ['get', 'mixed:v1', destB])
    assert.equal(rb.root, mixedRoot)
    assertSameTree(mixed, destB)
    const rc = await runJson(C, ['get', mixedRoot, destC])
    assert.equal(rc.files, 157)
    assertSameTree(mixed, destC)
    // C had B as well as A to fetch from
    assert.ok(rc.providers.length >= 1)
  })

  it('ls lists, cat streams one file, block stat describes the root', async () => {
    const ls = await runJson(D, ['ls', 'mixed:v1'])
    assert.equal(ls.root, mixedRoot)
    assert.ok(ls.entries.some((e: any) => e.path === 'empty-dir' && e.type === 'dir'))
    assert.ok(
      ls.entries.some(
        (e: any) => e.path === 'link-to-run' && e.type === 'symlink' && e.target === 'nested/run.sh',
      ),
    )
    const human = await run(D, ['ls', mixedRoot])
    assert.match(human.stdout, /-rwxr-xr-x\s+\d+\s+\S+ \S+\s+nested\/run\.sh/)
    const cat = await run(D, ['cat', 'mixed:v1/nested/deeper/deepest/leaf.txt'])
    assert.equal(cat.code, 0, cat.stderr)
    assert.equal(cat.stdout, 'leaf\n')
    const catBig = await mesh(['--data-dir', D.dataDir, 'cat', `${mixedRoot}/random.bin`], {
      timeoutMs: 60_000,
    })
    assert.equal(catBig.code, 0)
    const stat = await runJson(D, ['block', 'stat', mixedRoot])
    assert.equal(stat.dataset.files, 157)
    assert.equal(stat.dataset.symlinks, 1)
  })

  it('single blocks: block put / get -o / stat', async () => {
    const f = join(fx.tempDir(), 'one.bin')
    writeFileSync(f, randomBytes(100_000))
    const put = await run(A, ['block', 'put', f])
    assert.equal(put.code, 0, put.stderr)
    const cid = put.stdout.trim()
    const out = join(fx.tempDir(), 'got.bin')
    const get = await run(C, ['block', 'get', cid, '-o', out])
    assert.equal(get.code, 0, get.stderr)
    assert.deepEqual(readFileSync(out), readFileSync(f))
    const stdout = await run(B, ['block', 'get', cid])
    assert.equal(Buffer.from(stdout.stdout, 'latin1').length > 0, true)
    const stat = await runJson(C, ['block', 'stat', cid])
    assert.equal(stat.size, 100_000)
    assert.equal(stat.local, true)
    const big3 = join(fx.tempDir(), 'big3.bin')
    writeFileSync(big3, Buffer.alloc(3 << 20))
    const tooBig = await run(A, ['block', 'put', big3])
    assert.notEqual(tooBig.code, 0)
    assert.match(tooBig.stderr, /at most 2097152 \(2 MiB\): use 'mesh put'/)
  })

  it('a get from three providers uses all three (per-provider bytes)', async () => {
    // the same directory put on three members gives the same root: three providers at once
    const roots = await Promise.all([A, B, C].map((x) => run(x, ['put', big, '--tag', 'big:v1'])))
    for (const r of roots) assert.equal(r.code, 0, r.stderr)
    bigRoot = roots[0].stdout.trim()
    assert.ok(roots.every((r) => r.stdout.trim() === bigRoot))
    const dest = join(fx.tempDir(), 'big')
    const r = await runJson(D, ['get', bigRoot, dest])
    assert.deepEqual(readFileSync(join(dest, 'data.bin')), readFileSync(join(big, 'data.bin')))
    const used = r.providers.filter((p: any) => p.bytes > 0)
    console.log(
      `      providers: ${r.providers.map((p: any) => `${p.name} ${(p.bytes / 2 ** 20).toFixed(1)} MiB`).join(', ')}; ${r.ms} ms`,
    )
    assert.equal(used.length, 3, `all three providers served: ${JSON.stringify(r.providers)}`)
    assert.deepEqual(used.map((p: any) => p.name).sort(), ['alpha', 'bravo', 'charlie'])
    assert.equal(r.fetchedBytes >= 24 << 20, true)
  })

  it('version 2 with a small edit in the middle of a large file moves only the changed chunks', async () => {
    const v2 = join(fx.tempDir('mesh-src-'), 'big')
    mkdirSync(v2)
    const data = readFileSync(join(big, 'data.bin'))
    const mid = data.length >> 1
    writeFileSync(
      join(v2, 'data.bin'),
      Buffer.concat([data.subarray(0, mid), Buffer.from('an insertion in version 2'), data.subarray(mid)]),
    )
    writeFileSync(join(v2, 'notes.txt'), 'version 1\n')
    const put = await runJson(A, ['put', v2, '--tag', 'big:v2'])
    assert.ok(put.newBytes < 4 << 20, `put stored ${put.newBytes} new bytes`)
    const dest = join(fx.tempDir(), 'v2')
    const r = await runJson(D, ['get', put.root, dest])
    assert.deepEqual(readFileSync(join(dest, 'data.bin')), readFileSync(join(v2, 'data.bin')))
    console.log(`      version 2: fetched ${r.fetchedBytes} bytes of ${r.bytes} (${r.fetchedBlocks} blocks)`)
    assert.ok(r.fetchedBytes < 4 << 20, `fetched ${r.fetchedBytes} bytes for a ${r.bytes}-byte dataset`)
    assert.ok(r.localBytes > 20 << 20, 'the unchanged chunks came from the local store')
  })

  it('a provider killed (kill -9) mid-transfer: the get completes from the others', async () => {
    const E = await joinMember(fx, A, 'echo', { ...ENV, ...slow })
    await waitFor(
      'echo to see bravo',
      async () => (await runJson<any[]>(E, ['members'])).filter((m) => m.status === 'alive').length === 5,
      30_000,
      500,
    )
    // a dataset only alpha and bravo hold: at their serve limit the get takes seconds, so the
    // kill lands mid-transfer even when progress reports reach the test late on a busy machine
    const src = join(fx.tempDir('mesh-src-'), 'two')
    mkdirSync(src)
    writeFileSync(join(src, 'data.bin'), bytes(40 << 20, 7))
    const puts = await Promise.all([A, B].map((x) => run(x, ['put', src])))
    for (const r of puts) assert.equal(r.code, 0, r.stderr)
    const root = puts[0].stdout.trim()
    assert.equal(puts[1].stdout.trim(), root)
    const dest = join(fx.tempDir(), 'two')
    let killed: Promise<void> | undefined
    let killAt = 0
    const result = await apiStream(E, '/v1/get', { ref: root, dest }, (p) => {
      if (killed === undefined && p.phase === 'files' && p.bytes > 2 << 20) {
        killAt = p.bytes
        killed = B.kill('SIGKILL')
      }
    })
    assert.ok(killed !== undefined, 'bravo was killed during the transfer')
    await killed
    assert.ok(
      killAt < result.fetchedBytes - (4 << 20),
      `killed early enough (${killAt} of ${result.fetchedBytes})`,
    )
    assert.deepEqual(readFileSync(join(dest, 'data.bin')), readFileSync(join(src, 'data.bin')))
    const bravo = result.providers.find((p: any) => p.peerId === ids.B)
    console.log(
      `      killed bravo at ${(killAt / 2 ** 20).toFixed(1)} MiB; providers: ${JSON.stringify(result.providers.map((p: any) => [p.name, p.state, p.bytes]))}`,
    )
    assert.ok(bravo !== undefined, 'bravo was a provider')
    // dropped: its wants went to alpha. When the transfer ran short of providers on a busy
    // machine it may be redialing bravo as the get ends ('connecting': lost providers are tried
    // again first); it never became active again, since it is dead
    assert.ok(
      ['gone', 'connecting'].includes(bravo.state),
      `bravo was dropped from the transfer (${bravo.state})`,
    )
    const others = result.providers.filter((p: any) => p.peerId !== ids.B && p.bytes > 0)
    assert.ok(others.length >= 1)
    await E.kill('SIGKILL')
  })

  it('a fetcher restarted mid-get resumes without fetching again what it has', async () => {
    const F = await joinMember(fx, A, 'foxtrot', { ...ENV, ...slow })
    // a new member learns the tags at its first sync: wait for it rather than race it
    await waitFor(
      'foxtrot to know big:v1',
      async () => (await runJson<any[]>(F, ['datasets'])).some((d) => d.dataset === 'big' && d.tag === 'v1'),
      30_000,
      500,
    )
    const dest = join(fx.tempDir(), 'big')
    let killedAt = 0
    let killed: Promise<void> | undefined
    let failure: unknown
    await apiStream(F, '/v1/get', { ref: 'big:v1', dest }, (p) => {
      if (killed === undefined && p.phase === 'files' && p.bytes > 6 << 20) {
        killedAt = p.bytes
        killed = F.kill('SIGKILL')
      }
    }).then(
      () => assert.fail('the get finished before the agent was killed'),
      (err) => {
        failure = err
      },
    )
    assert.ok(killed !== undefined, `the get failed before it was killed: ${String(failure)}`)
    await killed
    assert.equal(existsSync(join(dest, 'data.bin')), false, 'no half-written file under its final name')
    F.start([], { ...ENV, ...slow })
    await F.ready(45_000)
    await waitFor(
      'foxtrot to reconnect',
      async () => (await runJson<any[]>(F, ['members'])).filter((m) => m.status === 'alive').length >= 3,
      30_000,
      500,
    ).catch(async (err) => {
      const table = await runJson<any[]>(F, ['members']).catch((e) => String(e))
      throw new Error(
        `${(err as Error).message}\nits table: ${JSON.stringify(table)}\nexit: ${F.exitCode}\nlog: ${F.stdout.slice(-3000)}${F.stderr.slice(-2000)}`,
      )
    })
    const r = await runJson(F, ['get', 'big:v1', dest])
    assert.deepEqual(readFileSync(join(dest, 'data.bin')), readFileSync(join(big, 'data.bin')))
    console.log(
      `      killed at ${(killedAt / 2 ** 20).toFixed(1)} MiB; after restart: ${(r.localBytes / 2 ** 20).toFixed(1)} MiB local, ${(r.fetchedBytes / 2 ** 20).toFixed(1)} MiB fetched`,
    )
    assert.ok(r.localBytes >= killedAt - (1 << 20), `kept what it had: ${r.localBytes} local`)
    assert.ok(r.fetchedBytes <= r.bytes - killedAt + (2 << 20), `fetched only the rest: ${r.fetchedBytes}`)
    assert.deepEqual(readdirSync(dest).sort(), ['data.bin', 'notes.txt'], 'no temporary file left behind')
    // the second run finds the file in place
    const again = await runJson(F, ['get', 'big:v1', dest])
    assert.equal(again.fetchedBytes, 0)
    assert.equal(again.skippedFiles, 2)
    await F.kill('SIGKILL')
  })

  it('a member serving corrupt blocks: detected, never written, fetched elsewhere, not asked again', async () => {
    // an in-process member (it joins with an invite like any machine) that answers HAVE for
    // everything it holds and flips a byte in every block it sends
    const dir = fx.tempDir()
    const setup = await prepareDataDir(dir, { join: (await meshJson(A.dataDir, ['invite'])).token })
    mallory = new NodeComponent({
      config: ConfigSchema.parse({
        name: 'mallory',
        listen: ['/ip4/127.0.0.1/tcp/0'],
        logLevel: 'silent',
        relay: { server: false, reservations: 0 },
        webrtc: { enabled: false, iceServers: [] },
      }),
      cluster: setup.cluster,
      dataDir: dir,
      seeds: setup.cluster.seeds ?? [],
      reporter: new Reporter({ level: 'silent' }).forComponent('node'),
    })
    await mallory.start()
    const store = new Blockstore(join(dir, 'evil-blocks'))
    await store.open()
    const put = await putPath(store, big)
    assert.equal(put.root.toString(), bigRoot)
    const evil = Object.create(store) as Blockstore
    evil.get = async (cid) => {
      const b = await store.get(cid)
      if (b === undefined) return b
      const c = new Uint8Array(b)
      c[c.length >> 1] ^= 0x5a
      return c
    }
    const proto = `${protocolPrefix(setup.cluster)}/blocks/1.0.0`
    await mallory.node.handle(
      proto,
      (s, c) => void serveExchange(s, c, evil, new RateLimiter(0), { onServed() {}, onMessage() {} }),
      {
        runOnLimitedConnection: true,
      },
    )
    const G = await joinMember(fx, A, 'golf', { ...ENV, MESH_BLOCKS__WINDOW_BYTES: '2MiB' })
    const gAddr = (await G.status()).listen[0]
    await waitFor(
      'mallory to be admitted by golf',
      async () => {
        await mallory!.node.dial(multiaddr(gAddr), { signal: AbortSignal.timeout(5000) })
        return mallory!.node.services.admission.isAdmitted(peerIdFromString((await G.status()).peerId))
      },
      30_000,
      500,
    )
    const dest = join(fx.tempDir(), 'big')
    const r = await runJson(G, ['get', 'big:v1', dest])
    assert.deepEqual(
      readFileSync(join(dest, 'data.bin')),
      readFileSync(join(big, 'data.bin')),
      'byte-exact despite mallory',
    )
    const m = r.providers.find((p: any) => p.peerId === mallory!.node.peerId.toString())
    console.log(
      `      providers: ${JSON.stringify(r.providers.map((p: any) => [p.name, p.state, p.bytes, p.corrupt]))}`,
    )
    assert.ok(m !== undefined, 'mallory was asked')
    assert.equal(m.state, 'banned')
    assert.equal(m.corrupt, 1, 'one corrupt block, then never asked again')
    assert.equal(m.bytes, 0)
    assert.ok(r.corrupt >= 1)
    assert.ok((await G.metric('mesh_blocks_corrupt_blocks_total', { source: 'network' })) >= 1)
    // what G now serves is verified: every block in its store hashes to its name
    await G.kill('SIGKILL')
  })

  it('tags: concurrent publishers, every member agrees on the newest', async () => {
    const one = join(fx.tempDir('mesh-src-'), 'one')
    const two = join(fx.tempDir('mesh-src-'), 'two')
    const three = join(fx.tempDir('mesh-src-'), 'three')
    for (const [d, text] of [
      [one, '1'],
      [two, '2'],
      [three, '3'],
    ]) {
      mkdirSync(d)
      writeFileSync(join(d, 'f'), text)
    }
    const [ra, rc] = await Promise.all([
      runJson(A, ['put', one, '--tag', 'race:latest']),
      runJson(C, ['put', two, '--tag', 'race:latest']),
    ])
    // whoever saw the other's record first published seq 2; if neither did, both are seq 1 and
    // the larger root wins: either way every member ends up with the same newest record
    const newest = [ra, rc].sort(
      (x, y) => Number(x.tag.seq) - Number(y.tag.seq) || (x.root < y.root ? -1 : 1),
    )[1]
    for (const x of [A, C, D]) {
      await waitFor(
        `race:latest -> ${newest.root} on ${x.dataDir}`,
        async () => {
          const ds = await runJson<any[]>(x, ['datasets'])
          return ds.find((d) => d.dataset === 'race')?.root === newest.root
        },
        30_000,
        500,
      )
    }
    const rd = await runJson(D, ['put', three, '--tag', 'race:latest'])
    assert.equal(rd.tag.seq, String(Number(newest.tag.seq) + 1))
    for (const x of [A, C, D]) {
      await waitFor(
        `race:latest moved on ${x.dataDir}`,
        async () => {
          const ds = await runJson<any[]>(x, ['datasets'])
          return ds.find((d) => d.dataset === 'race')?.root === rd.root
        },
        30_000,
        500,
      )
    }
    // persisted: a restart keeps it (the file is written soon after the change)
    await new Promise((r) => setTimeout(r, 500))
    await D.kill('SIGKILL')
    D.start([], ENV)
    await D.ready(45_000)
    const ds = await runJson<any[]>(D, ['datasets'])
    assert.equal(ds.find((d) => d.dataset === 'race')?.root, rd.root)
    assert.equal(clusterId.length, 32)
  })

  it('bad input: unknown CID, malformed CID, unknown tag, special files: clear errors, non-zero exits', async () => {
    const unknown = await run(
      C,
      ['get', 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy', join(fx.tempDir(), 'x')],
      60_000,
    )
    assert.notEqual(unknown.code, 0)
    assert.match(unknown.stderr, /no member has bafkreigh2aki/)
    const malformed = await run(C, ['get', 'not-a-cid'])
    assert.equal(malformed.code, 2)
    assert.match(malformed.stderr, /'not-a-cid' is not a CID/)
    const v0 = await run(C, ['cat', 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG'])
    assert.notEqual(v0.code, 0)
    assert.match(v0.stderr, /CIDv1, raw codec/)
    const tag = await run(C, ['get', 'mixed:v9'])
    assert.equal(tag.code, 2)
    assert.match(tag.stderr, /unknown tag mixed:v9; dataset mixed has mixed:v1/)
    const plain = await run(C, ['get', 'big', '--json'])
    assert.notEqual(plain.code, 0)
    const special = join(fx.tempDir('mesh-src-'), 'special')
    mkdirSync(special)
    writeFileSync(join(special, 'ok'), 'ok')
    execFileSync('mkfifo', [join(special, 'queue')])
    const sp = await run(A, ['put', special])
    assert.notEqual(sp.code, 0)
    assert.match(sp.stderr, /special file .*queue \(a FIFO/)
    const missing = await run(A, ['put', join(special, 'nope')])
    assert.notEqual(missing.code, 0)
    assert.match(missing.stderr, /cannot read .*nope/)
  })

  it('a manifest with paths escaping DEST is refused before anything is written', async () => {
    const work = fx.tempDir()
    const cases: Array<[string, string, RegExp]> = [
      [
        'dotdot',
        `${JSON.stringify({ path: '../evil', type: 'file', mode: 420, mtime: 1, size: 0, chunks: [] })}\n`,
        /escapes the destination/,
      ],
      [
        'absolute',
        `${JSON.stringify({ path: '/tmp/evil', type: 'dir', mode: 493, mtime: 1 })}\n`,
        /is absolute: refused/,
      ],
      [
        'through-symlink',
        `${JSON.stringify({ path: 'l', type: 'symlink', target: '..', mtime: 1 })}\n${JSON.stringify({ path: 'l/evil', type: 'file', mode: 420, mtime: 1, size: 0, chunks: [] })}\n`,
        /lies under the symlink/,
      ],
    ]
    for (const [name, manifest, re] of cases) {
      const mf = join(work, `${name}.ndjson`)
      writeFileSync(mf, manifest)
      const mcid = (await run(A, ['block', 'put', mf])).stdout.trim()
      const root = {
        mesh: 'dataset/1',
        name,
        type: 'dir',
        mode: 0o755,
        mtime: 1,
        files: 1,
        dirs: 0,
        symlinks: 0,
        bytes: 0,
        manifest: [[mcid, Buffer.byteLength(manifest)]],
      }
      const rf = join(work, `${name}.root`)
      writeFileSync(rf, JSON.stringify(root))
      const rcid = (await run(A, ['block', 'put', rf])).stdout.trim()
      const parent = fx.tempDir()
      const r = await run(C, ['get', rcid, join(parent, 'dest')])
      assert.notEqual(r.code, 0, `${name}: refused`)
      assert.match(r.stderr, re, name)
      assert.deepEqual(readdirSync(parent), [], `${name}: nothing written, not even DEST`)
    }
    assert.equal(existsSync(join(work, '..', 'evil')), false)
  })

  it('unpinned cached blocks are evicted under blocks.cacheBytes; pinned ones are kept', async () => {
    const H = await joinMember(fx, A, 'hotel', { ...ENV, MESH_BLOCKS__CACHE_BYTES: '2MiB' })
    const storeBytes = async () => H.metric('mesh_blocks_store_bytes')
    const dest = join(fx.tempDir(), 'mixed')
    unlockDirs.push(dest)
    await runJson(H, ['get', 'mixed:v1', dest])
    assertSameTree(mixed, dest)
    // the get fetched ~3 MiB; what it does not pin is cache, trimmed to the budget
    await waitFor('eviction down to 2 MiB', async () => (await storeBytes()) <= 2 << 20, 20_000, 500)
    const pin = await runJson(H, ['pin', 'mixed:v1'])
    assert.equal(pin.root, mixedRoot)
    assert.ok(pin.fetched > 0, 'pin fetched what eviction had removed')
    await run(H, ['get', 'big:v2', join(fx.tempDir(), 'v2')], 120_000)
    await waitFor('the big cache evicted', async () => (await storeBytes()) < 8 << 20, 30_000, 500)
    assert.ok((await storeBytes()) >= 3 << 20, 'the pinned dataset stays whole')
    const again = await runJson(H, ['get', 'mixed:v1', join(fx.tempDir(), 'again')])
    assert.equal(again.fetchedBytes, 0, 'a pinned dataset is all local')
    unlockDirs.push(join(again.dest))
    const pins = await runJson<any[]>(H, ['pins'])
    assert.ok(pins.some((p) => p.root === mixedRoot && p.complete))
    await runJson(H, ['unpin', 'mixed:v1'])
    await waitFor('unpinned blocks evicted', async () => (await storeBytes()) <= 2 << 20, 20_000, 500)
    const unpinAgain = await run(H, ['unpin', 'mixed:v1'])
    assert.notEqual(unpinAgain.code, 0)
    assert.match(unpinAgain.stderr, /is not pinned here/)
    await H.kill('SIGKILL')
  })

  it('a destination that fills up: a clear error, no partial file, nothing outside DEST', async function () {
    const mnt = fx.tempDir()
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt], { stdio: 'pipe' })
    } catch (err) {
      console.log(
        `      skipped: cannot mount a small tmpfs (${(err as Error).message.split('\n')[0]}); needs root`,
      )
      this.skip()
    }
    try {
      const r = await run(C, ['get', 'big:v1', join(mnt, 'dest')])
      assert.notEqual(r.code, 0)
      assert.match(r.stderr, /no space left on the device holding .*dest/)
      assert.deepEqual(readdirSync(mnt), ['dest'])
      const left = readdirSync(join(mnt, 'dest'))
      assert.ok(
        left.every((f) => !f.includes('.mesh-')),
        `no temporary file left: ${left.join(', ')}`,
      )
      assert.equal(existsSync(join(mnt, 'dest', 'data.bin')), false)
    } finally {
      execFileSync('umount', ['-l', mnt], { stdio: 'ignore' })
    }
  })
})

// ---- replication -------------------------------------------------------------------------------

describe('blocks: quorum replication and repair', function () {
  this.timeout(300_000)
  const fx = new Fixture()
  after(() => fx.cleanup())

  it('N=3 with one target down succeeds; with two down fails naming them and publishes no tag', async () => {
    const [q1, q2, q3] = await cluster(fx, ['q1', 'q2', 'q3'])
    const src = join(fx.tempDir('mesh-src-'), 'ds')
    mkdirSync(src)
    writeFileSync(join(src, 'a.bin'), randomBytes(1 << 20))
    await q3.kill('SIGKILL')
    let t0 = Date.now()
    const ok = await runJson(q1, ['put', src, '--replicas', '3', '--tag', 'q:one-down'])
    console.log(`      one down: ${Date.now() - t0} ms, ${ok.replication.confirmed} of 3 confirmed`)
    assert.equal(ok.replication.quorum, 2)
    assert.ok(ok.replication.confirmed >= 2, JSON.stringify(ok.replication))
    const pins2 = await runJson<any[]>(q2, ['pins'])
    assert.ok(
      pins2.some((p) => p.root === ok.root && p.complete && p.replicas === 3),
      'q2 holds a pinned, complete copy',
    )
    await q2.kill('SIGKILL')
    writeFileSync(join(src, 'b.bin'), randomBytes(1 << 20))
    t0 = Date.now()
    const bad = await run(q1, ['put', src, '--replicas', '3', '--tag', 'q:two-down'], 180_000)
    console.log(`      two down: ${Date.now() - t0} ms: ${bad.stderr.trim()}`)
    assert.notEqual(bad.code, 0)
    assert.match(
      bad.stderr,
      /replication of bafkrei\S+ failed: 1 of 3 replicas confirmed a verified copy, a write needs 2/,
    )
    assert.match(bad.stderr, /q2 \(/)
    assert.match(bad.stderr, /q3 \(/)
    assert.match(bad.stderr, /No tag was published/)
    const ds = await runJson<any[]>(q1, ['datasets'])
    assert.ok(ds.some((d) => d.tag === 'one-down'))
    assert.ok(!ds.some((d) => d.tag === 'two-down'), 'no half-published tag')
  })

  it('repair: after kill -9 of a replica holder, a new member gets the copy', async () => {
    const fast = () => ({ MESH_BLOCKS__REPAIR_INTERVAL_MS: '1000' })
    const agents = await cluster(fx, ['r1', 'r2', 'r3', 'r4'], fast)
    const peer = new Map<string, AgentProcess>()
    for (const a of agents) peer.set((await a.status()).peerId, a)
    const src = join(fx.tempDir('mesh-src-'), 'ds')
    mkdirSync(src)
    writeFileSync(join(src, 'data.bin'), randomBytes(2 << 20))
    // the root is a function of the content: compute it, then pick who puts
    const scratch = new Blockstore(join(fx.tempDir(), 'scratch'))
    await scratch.open()
    const root = (await putPath(scratch, src)).root.toString()
    const ranked = rank(root, [...peer.keys()])
    // the lowest-ranked member puts; the top two hold replicas; killing the top one moves its
    // copy to the third
    const putter = peer.get(ranked[3])!
    const r = await runJson(putter, ['put', src, '--replicas', '2', '--tag', 'rep:v1'])
    assert.equal(r.root, root)
    assert.deepEqual(r.replication.targets.map((t: any) => t.peerId).sort(), [ranked[0], ranked[1]].sort())
    const third = peer.get(ranked[2])!
    assert.ok(
      !(await runJson<any[]>(third, ['pins'])).some((p) => p.root === root),
      'the third has no copy yet',
    )
    await peer.get(ranked[0])!.kill('SIGKILL')
    const t0 = Date.now()
    await waitFor(
      'the third-ranked member to hold a repaired replica',
      async () =>
        (await runJson<any[]>(third, ['pins'])).some(
          (p) => p.root === root && p.complete && p.replicas === 2,
        ),
      90_000,
      1000,
    )
    console.log(`      repaired ${Math.round((Date.now() - t0) / 1000)} s after the kill`)
    const dest = join(fx.tempDir(), 'out')
    await runJson(third, ['get', root, dest])
    assert.deepEqual(readFileSync(join(dest, 'data.bin')), readFileSync(join(src, 'data.bin')))
    assert.ok(rmSync !== undefined)
  })
})
