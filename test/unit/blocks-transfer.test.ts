import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { Blockstore } from '../../src/blocks/blockstore.js'
import { type CID, cidOf } from '../../src/blocks/cid.js'
import { BlocksError } from '../../src/blocks/errors.js'
import { CorruptBlockError, ProviderGoneError, type Session } from '../../src/blocks/exchange.js'
import { type Need, Transfer, type TransferDeps } from '../../src/blocks/transfer.js'

const IDS = [
  '12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9M4xUL3ohsFbf',
  '12D3KooWJ1bSe7yN4ueHkMC9WwRjgcwnRP3cNQJNUhxWhDjkYWTE',
  '12D3KooWQ2KxQ5Z4CK7Tu6NpyXgxm6LXz3XHxgH6rwqkUEovUXTE',
  '12D3KooWLGHrnGkC3Wm8zLuS8SxkSj3d8oW3wMHd7P2Rz9MHvW4E',
]

type Behaviour = 'all' | 'none' | 'corrupt' | 'dies-after-3' | 'half' | 'silent'

/**
 * A provider without a network: answers wants from a map of blocks with a little latency,
 * the way the exchange's Session would (a corrupt block rejects with CorruptBlockError, as
 * the real Session does after hashing it).
 */
class FakeSession {
  served = 0
  wants = 0
  onFailure: ((err: Error) => void) | undefined
  private closed = false
  private readonly started: number[] = []

  constructor(
    readonly peer: PeerId,
    private readonly blocks: Map<string, Uint8Array>,
    private readonly how: Behaviour,
    private readonly onDeath: () => void = () => {},
  ) {}

  oldestWant(): number | undefined {
    return this.how === 'silent' && this.started.length > 0 ? this.started[0] : undefined
  }

  async wantHave(): Promise<boolean> {
    return this.how !== 'none'
  }

  async wantBlock(cid: CID): Promise<Uint8Array | null> {
    this.wants++
    if (this.closed) throw new ProviderGoneError('closed')
    if (this.how === 'silent') {
      this.started.push(performance.now() - 60_000)
      return new Promise(() => {})
    }
    await new Promise((r) => setTimeout(r, 2))
    if (this.how === 'dies-after-3' && this.served >= 3) {
      this.closed = true
      this.onDeath()
      this.onFailure?.(new ProviderGoneError('died'))
      throw new ProviderGoneError('died')
    }
    const b = this.blocks.get(cid.toString())
    if (b === undefined || this.how === 'none') return null
    if (this.how === 'half' && (this.served + this.wants) % 2 === 0) return null
    if (this.how === 'corrupt') throw new CorruptBlockError(`${this.peer} sent a bad block`)
    this.served++
    return b
  }

  async close(): Promise<void> {
    this.closed = true
  }

  abort(): void {
    this.closed = true
  }
}

describe('blocks: transfer scheduling over many providers (no network)', function () {
  this.timeout(30_000)
  const dirs: string[] = []
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  async function setup(behaviours: Behaviour[], n = 40) {
    const dir = mkdtempSync(join(tmpdir(), 'mesh-tr-'))
    dirs.push(dir)
    const store = new Blockstore(join(dir, 'blocks'))
    await store.open()
    const blocks = new Map<string, Uint8Array>()
    const needs: Need[] = []
    for (let i = 0; i < n; i++) {
      const b = new TextEncoder().encode(`block ${i} `.repeat(1000))
      const cid = cidOf(b)
      blocks.set(cid.toString(), b)
      needs.push({ cid, size: b.byteLength })
    }
    const sessions = new Map<string, FakeSession>()
    const dead = new Set<string>()
    const corrupt: string[] = []
    const deps: TransferDeps = {
      self: IDS[3],
      store,
      open: async (peer) => {
        // a provider that died stays dead: it cannot be dialed again
        if (dead.has(peer.toString())) throw new Error('connection refused')
        const s = new FakeSession(peer, blocks, behaviours[IDS.indexOf(peer.toString())], () =>
          dead.add(peer.toString()),
        )
        sessions.set(peer.toString(), s)
        return s as unknown as Session
      },
      async *candidates() {
        for (let i = 0; i < behaviours.length; i++) yield peerIdFromString(IDS[i])
      },
      windowBytes: 40_000,
      maxWants: 4,
      providerTimeoutMs: 1_000,
      stallTimeoutMs: 3_000,
      onCorrupt: (p) => corrupt.push(p),
    }
    return { store, needs, sessions, corrupt, deps, key: needs[0].cid }
  }

  it('spreads wants over every provider and stores every block', async () => {
    const s = await setup(['all', 'all', 'all'])
    const t = new Transfer(s.key, s.deps)
    await t.fetch(s.needs)
    await t.close()
    for (const n of s.needs) assert.ok(s.store.has(n.cid))
    const served = [...s.sessions.values()].map((x) => x.served)
    assert.equal(
      served.reduce((a, b) => a + b, 0),
      40,
    )
    assert.ok(
      served.every((x) => x > 0),
      `every provider served: ${served}`,
    )
  })

  it('a corrupt provider is banned after one block and never asked again; others fill in', async () => {
    const s = await setup(['corrupt', 'all'])
    const t = new Transfer(s.key, s.deps)
    await t.fetch(s.needs)
    await t.close()
    const bad = t.providerViews().find((p) => p.peerId === IDS[0])!
    assert.equal(bad.state, 'banned')
    assert.equal(bad.corrupt, 1)
    assert.deepEqual(s.corrupt, [IDS[0]])
    const wantsBefore = s.sessions.get(IDS[0])!.wants
    assert.ok(wantsBefore <= 4, `at most one window of wants went to it (${wantsBefore})`)
    for (const n of s.needs) assert.ok(s.store.has(n.cid))
  })

  it('dont-have moves a block to another provider; a provider that dies mid-transfer is replaced', async () => {
    const s = await setup(['half', 'dies-after-3', 'all'])
    const t = new Transfer(s.key, s.deps)
    await t.fetch(s.needs)
    await t.close()
    for (const n of s.needs) assert.ok(s.store.has(n.cid))
    const v = new Map(t.providerViews().map((p) => [p.peerId, p]))
    assert.ok(v.get(IDS[0])!.dontHave > 0)
    assert.equal(v.get(IDS[1])!.state, 'gone')
    assert.equal(v.get(IDS[1])!.blocks, 3)
  })

  it('a provider that stops answering is dropped after providerTimeoutMs', async () => {
    const s = await setup(['silent', 'all'])
    const t = new Transfer(s.key, s.deps)
    await t.fetch(s.needs)
    await t.close()
    assert.equal(t.providerViews().find((p) => p.peerId === IDS[0])?.state, 'gone')
    for (const n of s.needs) assert.ok(s.store.has(n.cid))
  })

  it('blocks already in the store are not fetched', async () => {
    const s = await setup(['all'])
    for (const n of s.needs.slice(0, 30)) await s.store.put(n.cid, (await blockOf(s, n))!)
    const t = new Transfer(s.key, s.deps)
    await t.fetch(s.needs)
    await t.close()
    assert.equal(t.progress.blocks, 10)
    assert.ok(t.progress.localBytes > 0)
  })

  it('nobody has the key block: a clear error at once, not after the stall timeout', async () => {
    const s = await setup(['none', 'none'])
    const t = new Transfer(s.key, s.deps)
    const t0 = performance.now()
    await assert.rejects(
      t.fetch(s.needs),
      (err: unknown) => err instanceof BlocksError && err.code === 'unavailable',
    )
    assert.ok(performance.now() - t0 < 2_500)
    await t.close()
  })

  it('providers that lose the blocks: the transfer fails after stallTimeoutMs, naming whom it asked', async () => {
    const s = await setup(['dies-after-3'])
    const t = new Transfer(s.key, s.deps)
    await assert.rejects(
      t.fetch(s.needs),
      /could not fetch 37 blocks of \S+: no reachable member has them \(asked L3ohsFbf \(gone\)\)/,
    )
    await t.close()
  })
})

async function blockOf(s: { needs: Need[] }, n: Need): Promise<Uint8Array | undefined> {
  const i = s.needs.indexOf(n)
  return new TextEncoder().encode(`block ${i} `.repeat(1000))
}
