// A starting agent queues its own record to piggyback (issue 18, item 4: join storms), on a real
// libp2p node on 127.0.0.1 with the membership component the agent runs, in this process.
//
// Why not the epidemic itself between agent processes (a joiner C known to a member B it never
// met, by piggyback alone): in a small cluster every member C connects to syncs with it on that
// connection (sync-on-connect.ts: it holds C unknown) before C's first probe or fan-out reaches
// it, and what a sync brings is not passed on; C dials up to 8 members at once after its first
// sync. So only members beyond that first batch can hear C first on a probe, which takes 10+
// agents and a race to arrange. The simulator, which models those rules, tests the epidemic
// (test/unit/sim-join-announce.test.ts); this tests that the agent does what it models.
import '../../src/shim.js'
import assert from 'node:assert/strict'
import { ConfigSchema } from '../../src/agent/config.js'
import { prepareDataDir } from '../../src/agent/setup.js'
import { EventBus } from '../../src/kernel/events.js'
import { Reporter } from '../../src/kernel/reporter.js'
import type { MembershipCore } from '../../src/membership/core.js'
import { MembershipComponent } from '../../src/membership/service.js'
import { NodeComponent } from '../../src/node/node-component.js'
import { Fixture } from './cluster-harness.js'

describe('membership: a starting agent spreads its own record (in process, 127.0.0.1)', function () {
  this.timeout(60_000)
  const fx = new Fixture()
  let running: { node: NodeComponent; membership: MembershipComponent } | undefined

  async function start(dir: string, cluster: Awaited<ReturnType<typeof prepareDataDir>>['cluster']) {
    const config = ConfigSchema.parse({
      name: 'solo',
      listen: ['/ip4/127.0.0.1/tcp/0'],
      logLevel: 'silent',
      relay: { server: false, reservations: 0 },
      webrtc: { enabled: false, iceServers: [] },
      dht: { enabled: false },
    })
    const reporter = new Reporter({ level: 'silent' })
    const node = new NodeComponent({
      config,
      cluster,
      dataDir: dir,
      seeds: [],
      reporter: reporter.forComponent('node'),
    })
    await node.start()
    const membership = new MembershipComponent({
      node,
      cluster,
      config: config.membership,
      name: config.name,
      tags: {},
      dialTimeoutMs: config.dialTimeoutMs,
      dataDir: dir,
      events: new EventBus(),
      reporter: reporter.forComponent('membership'),
      maintenance: () => false,
    })
    running = { node, membership }
    await membership.start()
    return (membership as unknown as { core: MembershipCore }).core
  }

  async function stop(): Promise<void> {
    const r = running
    running = undefined
    if (r === undefined) return
    await r.membership.stop()
    // closes the data dir's store too, so the next start here can open it again
    await r.node.stop()
  }

  after(async () => {
    await stop()
    await fx.cleanup()
  })

  it('on start and on a restart on its data dir: its record is queued at the first incarnation, no second bump', async () => {
    const dir = fx.tempDir()
    const { cluster } = await prepareDataDir(dir, { init: 'lab' })
    const other = '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'

    const before = Date.now()
    const core = await start(dir, cluster)
    const first = core.signed.info.incarnation
    // the incarnation the agent started with (the wall clock), not one more
    assert.equal(first, core.swim.incarnation)
    assert.ok(first >= before && first <= Date.now(), `incarnation ${first} is the wall clock at start`)
    assert.equal(core.queued, 1, 'our record waits in the piggyback queue')
    assert.ok(core.hasNewsFor(other), 'for any member we will probe or fan out to')
    const news = core.take(4000, other)
    assert.deepEqual(
      news.map((x) => ('info' in x ? `${x.info.peerId} ${x.info.incarnation}` : 'a claim')),
      [`${core.self} ${first}`],
    )
    await stop()

    // a restart on the same data dir: same peer ID, a higher incarnation, spread again
    const again = await start(dir, cluster)
    assert.equal(again.self, core.self)
    const second = again.signed.info.incarnation
    assert.ok(second > first, `${second} outranks the record from before the restart (${first})`)
    assert.equal(second, again.swim.incarnation)
    assert.equal(again.queued, 1)
    assert.ok(again.hasNewsFor(other))
  })
})
