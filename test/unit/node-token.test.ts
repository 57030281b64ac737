import assert from 'node:assert/strict'
import { JoinToken } from '../../protocols/token.js'
import { type Cluster, newCluster } from '../../src/node/cluster.js'
import { makeToken, parseToken, TOKEN_PREFIX, TokenError } from '../../src/node/token.js'

// The join token `mesh invite` prints and `mesh join` reads: every way a copied token can be
// wrong must say what went wrong, never join some other cluster or a half-decoded one.

const ADMIN = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'
const ADDR = `/ip4/127.0.0.1/tcp/4001/p2p/${ADMIN}`
const cluster = (): Cluster => ({ ...newCluster('lab'), admins: [ADMIN] })

/** A token with the given JoinToken fields replaced (what an old or foreign mesh could print). */
function tokenWith(fields: Partial<JoinToken>): string {
  const c = cluster()
  const base: JoinToken = {
    version: 1,
    clusterName: c.name,
    clusterId: Buffer.from(c.id, 'hex'),
    clusterKey: new Uint8Array(c.key),
    addrs: [ADDR],
    expires: BigInt(Date.now() + 60_000),
    inviteId: new Uint8Array(16),
    admins: [ADMIN],
  }
  return TOKEN_PREFIX + Buffer.from(JoinToken.encode({ ...base, ...fields })).toString('base64url')
}

const refused = (token: string, re: RegExp, now?: number) =>
  assert.throws(
    () => parseToken(token, now),
    (e: unknown) => e instanceof TokenError && re.test(e.message),
  )

describe('join tokens', () => {
  it('round trip: the joiner gets the cluster, its key, the admins, the addresses and the expiry', () => {
    const c = cluster()
    const now = 1_700_000_000_000
    const { token, invite } = makeToken(c, [ADDR], 3_600_000, now)
    assert.ok(token.startsWith('mesh1'))
    const got = parseToken(`  ${token}\n`, now)
    assert.equal(got.cluster.name, 'lab')
    assert.equal(got.cluster.id, c.id)
    assert.deepEqual(Buffer.from(got.cluster.key), Buffer.from(c.key))
    assert.deepEqual(got.cluster.admins, [ADMIN])
    assert.deepEqual(got.addrs, [ADDR])
    assert.equal(got.expires, now + 3_600_000)
    assert.deepEqual(Buffer.from(got.inviteId), Buffer.from(invite.inviteId))
    assert.equal(invite.inviteId.length, 16)
  })

  it('each invite has its own id', () => {
    const c = cluster()
    const a = makeToken(c, [ADDR], 60_000).invite.inviteId
    const b = makeToken(c, [ADDR], 60_000).invite.inviteId
    assert.notDeepEqual(Buffer.from(a), Buffer.from(b))
  })

  it('expired: refused from the expiry on, with the time it expired', () => {
    const now = 1_700_000_000_000
    const { token } = makeToken(cluster(), [ADDR], 1000, now)
    assert.equal(parseToken(token, now + 999).expires, now + 1000)
    refused(token, /expired at 2023-11-14T22:13:21.000Z.*mesh invite/, now + 1000)
  })

  it('not a token, cut, wrapped or damaged: a message for each', () => {
    const { token } = makeToken(cluster(), [ADDR], 60_000)
    refused('hello', /not a mesh join token: it should start with 'mesh1'/)
    refused('', /not a mesh join token/)
    refused(`${token.slice(0, 40)}\n${token.slice(40)}`, /characters that do not belong/)
    refused(`${token.slice(0, 40)}=`, /characters that do not belong/)
    refused(token.slice(0, token.length - 20), /damaged/)
    refused(TOKEN_PREFIX, /characters that do not belong|damaged/)
  })

  it('a token with any one character changed is refused with a TokenError or still decodes whole', () => {
    // protobuf has no checksum: a changed character may change a field (the key, an address);
    // what must not happen is a crash with another error or a half-decoded invite
    const { token } = makeToken(cluster(), [ADDR], 60_000)
    const good = parseToken(token)
    let refusedCount = 0
    for (let i = TOKEN_PREFIX.length; i < token.length; i++) {
      const ch = token[i] === 'A' ? 'B' : 'A'
      try {
        const got = parseToken(token.slice(0, i) + ch + token.slice(i + 1))
        // decodes: it must still be a well-formed invite
        assert.equal(got.cluster.id.length, 32)
        assert.equal(got.cluster.key.length, 32)
        assert.ok(got.addrs.length > 0 && got.cluster.admins!.length > 0)
      } catch (e) {
        assert.ok(e instanceof TokenError, `position ${i}: ${(e as Error).message}`)
        refusedCount++
      }
    }
    assert.ok(refusedCount > 0)
    assert.equal(good.cluster.name, 'lab')
  })

  it('fields the joiner cannot do without', () => {
    refused(tokenWith({ version: 0 }), /damaged \(no version\)/)
    refused(tokenWith({ version: 2 }), /version 2 is not supported.*upgrade mesh/)
    refused(tokenWith({ clusterId: new Uint8Array(15) }), /wrong field sizes/)
    refused(tokenWith({ clusterKey: new Uint8Array(31) }), /wrong field sizes/)
    refused(tokenWith({ inviteId: new Uint8Array(0) }), /wrong field sizes/)
    refused(tokenWith({ admins: [] }), /names no admin.*older mesh/)
    refused(tokenWith({ addrs: [] }), /names no address/)
    refused(
      tokenWith({ addrs: [ADDR, '/ip4/999.1.1.1/tcp/1'] }),
      /invalid address '\/ip4\/999.1.1.1\/tcp\/1'/,
    )
    assert.equal(parseToken(tokenWith({})).cluster.name, 'lab')
  })
})
