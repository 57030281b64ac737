import assert from 'node:assert/strict'
import {
  type MemberInfo,
  MembershipCore,
  MemberTable,
  mulberry32,
  nullCrypto,
  signInfo,
  syncScale,
} from '../../src/membership/index.js'

// Periodic push-pull sync scaled with the cluster (memberlist's pushPullScale): a member of a
// large cluster runs its periodic sync less often, so anti-entropy stops growing with N.

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const peer = (i: number): string => `12D3KooW${B58[i % 58]}${B58[Math.floor(i / 58) % 58].repeat(43)}`

function info(peerId: string, incarnation: number): MemberInfo {
  return {
    peerId,
    name: `n${[...peerId.slice(8, 10)].map((c) => c.charCodeAt(0)).join('-')}`,
    overlay: 'fd00::1',
    addrs: [],
    incarnation,
    status: 'alive',
    version: '0.1.0',
    tags: {},
    computeTypes: [],
    resources: { cpus: 1, memoryBytes: 1, diskFreeBytes: 1 },
    maintenance: false,
  }
}

/** A core holding `members` alive members (itself included). */
function coreOf(members: number, clusterSize?: number, syncRounds?: number): MembershipCore {
  const self = peer(0)
  const core = new MembershipCore({
    signer: nullCrypto.signer(self),
    verifier: nullCrypto.verifier,
    table: new MemberTable(),
    swim: { rng: mulberry32(7), incarnation: 100, probeIntervalMs: 1000, probeTimeoutMs: 500 },
    describe: (inc) => info(self, inc),
    emit: () => {},
    ...(clusterSize !== undefined ? { clusterSize: () => clusterSize } : {}),
    ...(syncRounds !== undefined ? { syncRounds } : {}),
  })
  core.start(0)
  for (let i = 1; i < members; i++) core.apply(signInfo(info(peer(i), 1), nullCrypto.signer(peer(i))), 0)
  return core
}

/** Which of `rounds` calls to syncRound() ran a sync (1-based round numbers). */
function syncedRounds(core: MembershipCore, rounds: number): number[] {
  const out: number[] = []
  for (let r = 1; r <= rounds; r++) if (core.syncRound()) out.push(r)
  return out
}

describe('membership sync scale (pushPullScale)', () => {
  it('keeps the configured interval up to 32 members and stretches it logarithmically above', () => {
    assert.equal(syncScale(1), 1)
    assert.equal(syncScale(32), 1)
    assert.equal(syncScale(33), 2)
    assert.equal(syncScale(64), 2)
    assert.equal(syncScale(65), 3)
    assert.equal(syncScale(1000), 6)
    assert.equal(syncScale(10_000), 10)
  })

  it('a member of a small cluster syncs every round', () => {
    assert.deepEqual(syncedRounds(coreOf(5), 4), [1, 2, 3, 4])
  })

  it('a member of 100 members syncs every third round, and sooner once the cluster shrinks', () => {
    const core = coreOf(100)
    assert.deepEqual(syncedRounds(core, 9), [3, 6, 9])
    // members gone: the detector no longer probes them, and the scale follows
    for (let i = 20; i < 100; i++) core.forget(peer(i))
    assert.deepEqual(syncedRounds(core, 3), [1, 2, 3])
  })

  it('a light member sizes its syncs for the whole cluster, not its sample', () => {
    assert.deepEqual(syncedRounds(coreOf(10, 10_000), 20), [10, 20])
  })

  it('rounds counted at start stagger the first sync', () => {
    const core = coreOf(1, 1000, 4)
    assert.deepEqual(syncedRounds(core, 8), [2, 8])
  })
})
