// `mesh put --replicas 2 --tag` with kill -9 at the worst moments, on real agent processes:
// a replica holder killed mid-replication and the publisher killed mid-replication leave no tag
// anywhere (also after the killed one is back); an acknowledged put survives the publisher
// killed right after the answer, and then one of its two holders as well.
//
// The publisher serves slowly (blocks.serveBytesPerSec) so that a replication lasts long enough
// to kill someone in the middle of it; "mid-replication" is seen on the target itself (its pin
// of the root is there but not complete). Bounds are generous: 2 cores, other suites at once.
import '../../src/shim.js'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ApiClient } from '../../src/api/client.js'
import { Blockstore } from '../../src/blocks/blockstore.js'
import { putPath } from '../../src/blocks/dataset.js'
import { rank } from '../../src/blocks/replication.js'
import {
  type AgentProcess,
  allAlive as allAliveOf,
  seededBytes as bytes,
  Fixture,
  mesh,
  meshJson,
  type RunResult,
  startCluster,
  waitFor,
} from './cluster-harness.js'

const ENV = {
  MESH_WEBRTC__ENABLED: 'false',
  MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn',
  MESH_BLOCKS__SERVE_BYTES_PER_SEC: '1MiB',
  MESH_BLOCKS__WINDOW_BYTES: '1MiB',
  MESH_BLOCKS__TAG_SYNC_INTERVAL_MS: '2000',
}
const SIZE = 12 << 20

const api = (a: AgentProcess) => new ApiClient(join(a.dataDir, 'mesh.sock'), a.dataDir)
const run = (a: AgentProcess, args: string[], timeoutMs = 180_000): Promise<RunResult> =>
  mesh(['--data-dir', a.dataDir, ...args], { timeoutMs })

describe('replicas: kill -9 during mesh put --replicas 2', function () {
  this.timeout(600_000)
  const fx = new Fixture()
  const names = ['k1', 'k2', 'k3', 'k4']
  const agents: AgentProcess[] = []
  const byPeer = new Map<string, AgentProcess>()
  const scratch = new Blockstore(join(fx.tempDir('mesh-scratch-'), 'blocks'))

  before(async () => {
    await scratch.open()
    agents.push(...(await startCluster(fx, names, { env: ENV, prefix: 'mesh-rc-', aliveMs: 90_000 })))
    for (const a of agents) byPeer.set((await a.status()).peerId, a)
  })

  after(() => fx.cleanup())

  const allAlive = () => allAliveOf(agents, 90_000, 'all four members alive everywhere')

  /** A dataset dir and its root; the publisher is the lowest-ranked member, so both targets are others. */
  async function dataset(seed: number) {
    const src = join(fx.tempDir('mesh-src-'), `ds${seed}`)
    mkdirSync(src)
    writeFileSync(join(src, 'data.bin'), bytes(SIZE, seed))
    const root = (await putPath(scratch, src)).root.toString()
    const ranked = rank(root, [...byPeer.keys()])
    return {
      src,
      root,
      publisher: byPeer.get(ranked[3]) as AgentProcess,
      targets: [byPeer.get(ranked[0]), byPeer.get(ranked[1])] as AgentProcess[],
      others: [byPeer.get(ranked[2])] as AgentProcess[],
    }
  }

  const pinOf = async (a: AgentProcess, root: string) =>
    (
      await api(a).call<{ pins: Array<{ root: string; complete: boolean }> }>(
        'GET',
        '/v1/pins',
        undefined,
        10_000,
      )
    ).pins.find((p) => p.root === root)

  /**
   * A member's pin of `root` as its disk has it: a pin changes in memory (what the API shows)
   * before it is saved, and the member answers the replication only after the save, so a test
   * that stops a member "once it has answered" waits for this, not for the API
   */
  const pinOnDisk = (a: AgentProcess, root: string): { complete: boolean; replicas: number } | undefined => {
    try {
      return JSON.parse(readFileSync(join(a.dataDir, 'blocks', 'pins.json'), 'utf8')).pins[root]
    } catch {
      return undefined
    }
  }

  const tagsOf = async (a: AgentProcess): Promise<string[]> =>
    (await meshJson<Array<{ dataset: string; tag: string }>>(a.dataDir, ['datasets'])).map(
      (d) => `${d.dataset}:${d.tag}`,
    )

  /** Wait until `target` is part way through its copy of `root`. */
  const midReplication = (target: AgentProcess, root: string) =>
    waitFor(
      'the target to be part way through its copy',
      async () => (await pinOf(target, root))?.complete === false,
      90_000,
      100,
    )

  /**
   * After a fault: publish a marker tag and wait until every member holds it (tags have
   * converged, the restarted member included); only then is "nobody holds `tag`" meaningful.
   */
  async function assertNowhere(tag: string, marker: string): Promise<void> {
    const m = join(fx.tempDir('mesh-src-'), 'marker')
    mkdirSync(m)
    writeFileSync(join(m, 'x'), marker)
    const put = await run(agents[0], ['put', m, '--tag', marker])
    assert.equal(put.code, 0, put.stderr)
    await waitFor(
      `every member to hold ${marker}`,
      async () => {
        for (const a of agents) if (!(await tagsOf(a)).includes(marker)) return false
        return true
      },
      90_000,
      500,
    )
    for (const a of agents) assert.ok(!(await tagsOf(a)).includes(tag), `${a.args[1]} holds ${tag}`)
  }

  async function restart(a: AgentProcess): Promise<void> {
    a.start([], ENV)
    await a.ready(60_000)
    await allAlive()
  }

  it('a replica holder killed mid-replication: the put fails naming it, and no member ever holds the tag', async () => {
    const d = await dataset(1)
    const put = run(d.publisher, ['put', d.src, '--replicas', '2', '--tag', 'crash:holder'])
    await midReplication(d.targets[0], d.root)
    await d.targets[0].kill('SIGKILL')
    const r = await put
    console.log(`      put: exit ${r.code}: ${r.stderr.trim().split('\n').at(-1)}`)
    assert.notEqual(r.code, 0, 'a put that lost one of its two copies is not acknowledged')
    assert.match(r.stderr, /replicas confirmed a verified copy, a write needs 2/)
    assert.match(r.stderr, /No tag was published/)
    await restart(d.targets[0])
    await assertNowhere('crash:holder', 'marker:one')
  })

  it('a holder that does not take the tag in hand (SIGSTOPped after its answer): the put fails saying how many took it, and the publisher keeps the data and the tag', async () => {
    const d = await dataset(5)
    const [stalled, other] = d.targets
    // `stalled` holds the data already, so it answers the replication at once while `other`
    // copies it (12 MiB at 1 MiB/s, so at least 6 s for its second half): `stalled` is stopped
    // once its answer is out (it follows the save of its pin's new replica count) and `other` is
    // half way, well after that answer and before the publisher signs the tag and hands it over
    const pre = await run(stalled, ['put', d.src])
    assert.equal(pre.code, 0, pre.stderr)
    const received = () => other.metric('mesh_blocks_received_bytes_total')
    const from = await received()
    const put = run(d.publisher, ['put', d.src, '--replicas', '2', '--tag', 'hand:stalled'])
    await waitFor(
      'the holder that has the data to answer, and the other half way through its copy',
      async () => (pinOnDisk(stalled, d.root)?.replicas ?? 0) >= 2 && (await received()) - from >= SIZE / 2,
      90_000,
      20,
    )
    console.log(
      `      stalled ${stalled.args[1]}, copying ${other.args[1]}, publisher ${d.publisher.args[1]}`,
    )
    stalled.child?.kill('SIGSTOP')
    let r: RunResult
    try {
      const early = (await tagsOf(d.publisher)).includes('hand:stalled')
      assert.ok(!early, 'no tag signed before the holder stopped (the other copy still runs)')
      r = await put
    } finally {
      stalled.child?.kill('SIGCONT')
    }
    console.log(`      put: exit ${r.code}: ${r.stderr.trim().split('\n').at(-1)}`)
    assert.notEqual(r.code, 0, 'a tag only one of two holders took is not acknowledged')
    assert.match(
      r.stderr,
      /tag hand:stalled was taken by 1 of 2 replica holders within 10 s, a write needs 2/,
    )
    assert.match(r.stderr, /Retry the put once they answer .*or put with --replicas 1/)
    // nothing lost on the publisher: its copy and the tag stay
    assert.equal((await pinOf(d.publisher, d.root))?.complete, true, 'the publisher keeps its copy')
    assert.ok((await tagsOf(d.publisher)).includes('hand:stalled'), 'the publisher keeps the tag')
    await allAlive()
  })

  it('the publisher killed mid-replication: the put is not acknowledged, and no member ever holds the tag', async () => {
    const d = await dataset(2)
    const put = run(d.publisher, ['put', d.src, '--replicas', '2', '--tag', 'crash:publisher'])
    await midReplication(d.targets[0], d.root)
    await d.publisher.kill('SIGKILL')
    const r = await put
    assert.notEqual(r.code, 0, 'the CLI saw no answer')
    await restart(d.publisher)
    await assertNowhere('crash:publisher', 'marker:two')
  })

  it('the publisher killed after signing the tag, before a holder took it: the put is not acknowledged, and the tag that got out points only at data its holders have whole', async () => {
    // An answer can only follow the tag leaving the publisher, so "unacknowledged leaves no tag"
    // cannot hold in this window; what must hold is that no tag points at data nobody has whole.
    // One holder is stopped (SIGSTOP) once it has answered: the publisher signs and gossips the
    // tag when the other has its copy too, then waits for the stopped holder to take it (control
    // timeout, 10 s), and is killed while it waits: the CLI gets no answer.
    // As in the test above, `stalled` holds the data already, so it answers at once while `other`
    // still copies (at least 6 s for its second half): stopped when its answer is long out. (Stopped
    // the moment its own copy was whole, it could be stopped between the save and the answer on a
    // busy machine: then no tag was ever signed, seen once with two CI runs and a fleet at once.)
    const d = await dataset(4)
    const [stalled, other] = d.targets
    const pre = await run(stalled, ['put', d.src])
    assert.equal(pre.code, 0, pre.stderr)
    const received = () => other.metric('mesh_blocks_received_bytes_total')
    const from = await received()
    const put = run(d.publisher, ['put', d.src, '--replicas', '2', '--tag', 'crash:signed'])
    await waitFor(
      'the holder that has the data to answer, and the other half way through its copy',
      async () => (pinOnDisk(stalled, d.root)?.replicas ?? 0) >= 2 && (await received()) - from >= SIZE / 2,
      90_000,
      20,
    )
    stalled.child?.kill('SIGSTOP')
    try {
      await waitFor(
        'the tag signed and gossiped to the other holder',
        async () =>
          (
            await api(other).call<{ datasets: Array<{ tag: string }> }>(
              'GET',
              '/v1/datasets',
              undefined,
              10_000,
            )
          ).datasets.some((x) => x.tag === 'signed'),
        90_000,
        50,
      )
      await d.publisher.kill('SIGKILL')
    } finally {
      stalled.child?.kill('SIGCONT')
    }
    const r = await put
    assert.notEqual(r.code, 0, 'the publisher died before the answer: not acknowledged')
    // with the publisher down, a member that never had it gets every byte by the tag
    const dest = join(fx.tempDir('mesh-out-'), 'out')
    const g = await run(d.others[0], ['get', 'crash:signed', dest])
    assert.equal(g.code, 0, g.stderr)
    assert.ok(readFileSync(join(dest, 'data.bin')).equals(bytes(SIZE, 4)), 'every byte')
    await restart(d.publisher)
  })

  it('acknowledged: the publisher killed right after the answer, then one holder too: a member that never had it gets every byte from the last', async () => {
    const d = await dataset(3)
    const r = await run(d.publisher, ['--json', 'put', d.src, '--replicas', '2', '--tag', 'crash:acked'])
    assert.equal(r.code, 0, r.stderr)
    await d.publisher.kill('SIGKILL')
    await d.targets[0].kill('SIGKILL')
    const dest = join(fx.tempDir('mesh-out-'), 'out')
    const g = await run(d.others[0], ['get', 'crash:acked', dest])
    assert.equal(g.code, 0, g.stderr)
    assert.ok(readFileSync(join(dest, 'data.bin')).equals(bytes(SIZE, 3)), 'every byte')
  })
})
