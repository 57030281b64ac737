import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dataPaths } from '../../src/kernel/datadir.js'
import { InviteError, InviteStore } from '../../src/node/invites.js'

// Invites the inviter issued: single use, expiring, and remembered across a restart so that a
// used token is not usable again.

const id = (n: number) => new Uint8Array(16).fill(n)
const PEER_B = '12D3KooWB'
const PEER_C = '12D3KooWC'
const T0 = 1_700_000_000_000

describe('invite store', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-invites-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  const refused = (fn: () => void, re: RegExp) =>
    assert.throws(fn, (e: unknown) => e instanceof InviteError && re.test(e.message))

  it('an invite works once: the same peer may retry, another peer is told who used it', () => {
    const s = new InviteStore(dir)
    s.add(id(1), T0 + 60_000, T0)
    assert.equal(s.usedBy(id(1)), undefined)
    s.redeem(id(1), PEER_B, T0 + 1000)
    assert.equal(s.usedBy(id(1)), PEER_B)
    s.redeem(id(1), PEER_B, T0 + 2000) // a retried join of the same peer
    refused(
      () => s.redeem(id(1), PEER_C, T0 + 3000),
      /already used \(by 12D3KooWB at 2023-11-14T22:13:22.000Z\)/,
    )
  })

  it('unknown and expired invites are refused with what to do', () => {
    const s = new InviteStore(dir)
    refused(() => s.redeem(id(9), PEER_B, T0), /unknown to the member that was asked.*mesh invite/)
    s.add(id(2), T0 + 1000, T0)
    refused(() => s.redeem(id(2), PEER_B, T0 + 1000), /expired at 2023-11-14T22:13:21.000Z/)
    assert.equal(s.usedBy(id(2)), undefined)
  })

  it('a restart remembers issued and used invites (file mode 0600)', () => {
    const s = new InviteStore(dir)
    s.add(id(1), T0 + 60_000, T0)
    s.add(id(2), T0 + 60_000, T0)
    s.redeem(id(1), PEER_B, T0)
    assert.equal(statSync(dataPaths(dir).invites).mode & 0o777, 0o600)
    const again = new InviteStore(dir)
    refused(() => again.redeem(id(1), PEER_C, T0), /already used/)
    again.redeem(id(2), PEER_C, T0)
    assert.equal(new InviteStore(dir).usedBy(id(2)), PEER_C)
  })

  it('invites expired for more than a day are forgotten when a new one is added; younger ones are kept', () => {
    const s = new InviteStore(dir)
    s.add(id(1), T0, T0 - 1000)
    s.add(id(2), T0, T0 - 1000)
    s.redeem(id(2), PEER_B, T0 - 500)
    s.add(id(3), T0 + 86_400_000 + 60_000, T0 + 86_400_000) // exactly a day after: kept
    refused(() => s.redeem(id(2), PEER_C, T0 + 86_400_000), /already used/)
    s.add(id(4), T0 + 200_000_000, T0 + 86_400_001)
    const saved = JSON.parse(readFileSync(dataPaths(dir).invites, 'utf8')) as Record<string, unknown>
    assert.deepEqual(Object.keys(saved).sort(), [
      Buffer.from(id(3)).toString('hex'),
      Buffer.from(id(4)).toString('hex'),
    ])
    refused(() => s.redeem(id(2), PEER_C, T0 + 86_400_001), /unknown/)
  })

  it('a damaged invites file starts an empty store rather than failing the agent', () => {
    writeFileSync(dataPaths(dir).invites, '{not json')
    const s = new InviteStore(dir)
    refused(() => s.redeem(id(1), PEER_B, T0), /unknown/)
    s.add(id(1), T0 + 1000, T0)
    s.redeem(id(1), PEER_B, T0)
  })
})
