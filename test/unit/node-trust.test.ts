import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Certificate, Statement } from '../../protocols/trust.js'
import { dataPaths } from '../../src/kernel/datadir.js'
import { TrustStore } from '../../src/node/trust.js'

// Who is a member: founding admins, signed admin grants and revocations, certificates signed by
// an admin. Real Ed25519 keys; every refusal says why.

const CLUSTER = '00112233445566778899aabbccddeeff'
const OTHER_CLUSTER = 'ffeeddccbbaa99887766554433221100'
const { GRANT_ADMIN, REVOKE } = Statement.Kind

interface Who {
  key: PrivateKey
  id: string
}
async function who(): Promise<Who> {
  const key = await generateKeyPair('Ed25519')
  return { key, id: peerIdFromPrivateKey(key).toString() }
}

/** A certificate signed the way an admin signs one (the signed bytes are part of the wire format). */
function certificate(by: Who, fields: Omit<Certificate, 'sig' | 'issuer'>): Certificate {
  const body = { ...fields, issuer: by.id }
  const bytes = `mesh-cert-v1\n${body.clusterId}\n${body.peerId}\n${body.issuer}\n${body.issued}\n${body.expires}`
  return { ...body, sig: new Uint8Array(by.key.sign(new TextEncoder().encode(bytes)) as Uint8Array) }
}

describe('trust store', () => {
  let dir: string
  let founder: Who
  let second: Who
  let member: Who
  let stranger: Who
  before(async () => {
    ;[founder, second, member, stranger] = await Promise.all([who(), who(), who(), who()])
  })
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-trust-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  const store = () => new TrustStore(dir, CLUSTER, [founder.id])
  /** The trust store of another member (its own data dir). */
  const elsewhere = (name: string, admins = [founder.id], cluster = CLUSTER) => {
    mkdirSync(join(dir, name))
    return new TrustStore(join(dir, name), cluster, admins)
  }

  it('a certificate from an admin makes a member; no certificate is a joiner', () => {
    const t = store()
    const c = t.issue(founder.key, member.id)
    assert.deepEqual(t.standing(member.id, Certificate.encode(c)), { kind: 'member' })
    assert.deepEqual(t.standing(member.id, new Uint8Array(0)), { kind: 'joiner' })
  })

  it('a certificate is refused, with the reason, when it is not exactly right', () => {
    const t = store()
    const now = Date.now()
    const why = (c: Certificate, peer = member.id) => {
      const s = t.standing(peer, Certificate.encode(c))
      return s.kind === 'refused' ? s.why : s.kind
    }
    const good = t.issue(founder.key, member.id)
    assert.equal(why(good, stranger.id), 'certificate refused: it names another peer')
    assert.equal(
      why(certificate(founder, { clusterId: OTHER_CLUSTER, peerId: member.id, issued: 1n, expires: 0n })),
      'certificate refused: it is for another cluster',
    )
    assert.equal(
      why(certificate(stranger, { clusterId: CLUSTER, peerId: member.id, issued: 1n, expires: 0n })),
      `certificate refused: its issuer ${stranger.id} is not an admin of this cluster`,
    )
    assert.equal(
      why(
        certificate(founder, {
          clusterId: CLUSTER,
          peerId: member.id,
          issued: 1n,
          expires: BigInt(now - 1000),
        }),
      ),
      'certificate refused: it has expired',
    )
    assert.equal(
      why(
        certificate(founder, {
          clusterId: CLUSTER,
          peerId: member.id,
          issued: 1n,
          expires: BigInt(now + 60_000),
        }),
      ),
      'member',
    )
    // signed by the founder, but over other fields (a stranger edited the issued time)
    assert.equal(
      why({ ...good, issued: good.issued + 1n }),
      'certificate refused: its signature does not verify',
    )
    // the issuer field claims the founder, the signature is the stranger's
    const forged = certificate(stranger, { clusterId: CLUSTER, peerId: member.id, issued: 1n, expires: 0n })
    assert.equal(why({ ...forged, issuer: founder.id }), 'certificate refused: its signature does not verify')
    assert.deepEqual(t.standing(member.id, new Uint8Array([0xff, 0xff, 0xff])), {
      kind: 'refused',
      why: 'malformed certificate',
    })
  })

  it('only an admin issues certificates and statements', () => {
    const t = store()
    assert.throws(() => t.issue(member.key, stranger.id), /only an admin can issue certificates/)
    assert.throws(() => t.state(member.key, REVOKE, stranger.id), /only an admin can do this/)
  })

  it('admin grants chain from the founders; a grant from a non-admin or for another cluster is dropped', () => {
    const t = store()
    const other = elsewhere('other')
    const g = other.state.bind(other)
    // stranger grants itself admin (in a store where it is a founder): dropped here
    const self = elsewhere('stranger', [stranger.id]).state(stranger.key, GRANT_ADMIN, stranger.id)
    assert.equal(t.add(self), false)
    assert.equal(t.isAdmin(stranger.id), false)
    const foreign = elsewhere('foreign', [founder.id], OTHER_CLUSTER).state(
      founder.key,
      GRANT_ADMIN,
      second.id,
    )
    assert.equal(t.add(foreign), false)
    // the founder grants `second`; then `second` can grant and issue
    const grant = g(founder.key, GRANT_ADMIN, second.id)
    assert.equal(t.add(grant), true)
    assert.equal(t.add(grant), false, 'a statement is taken once')
    assert.ok(t.isAdmin(second.id))
    assert.deepEqual(t.adminList().sort(), [founder.id, second.id].sort())
    const c = t.issue(second.key, member.id)
    assert.deepEqual(t.standing(member.id, Certificate.encode(c)), { kind: 'member' })
    // a grant whose signature does not match its fields
    assert.equal(t.add({ ...g(second.key, GRANT_ADMIN, member.id), peerId: stranger.id }), false)
    assert.equal(t.isAdmin(stranger.id), false)
  })

  it('a revoked member is refused with the signed revocation, whatever certificate it shows', () => {
    const t = store()
    const cert = Certificate.encode(t.issue(founder.key, member.id))
    const heard: Statement[] = []
    t.onStatement((s) => heard.push(s))
    const rev = t.state(founder.key, REVOKE, member.id, 1_700_000_000_000)
    assert.deepEqual(heard, [rev])
    const s = t.standing(member.id, cert)
    assert.equal(s.kind, 'refused')
    assert.equal(s.kind === 'refused' && s.why, 'this member has been revoked')
    // the revocation it is shown convinces another member that never heard of it
    const there = elsewhere('there')
    assert.equal(there.isRevoked(member.id), false)
    assert.equal(s.kind === 'refused' && there.learn(s.revocation!), true)
    assert.deepEqual(there.revocationOf(member.id), { issuer: founder.id, issued: 1_700_000_000_000 })
    assert.deepEqual(there.revokedList(), [
      { peerId: member.id, issuer: founder.id, issued: 1_700_000_000_000 },
    ])
    assert.equal(there.learn(new Uint8Array([1, 2, 3])), false)
  })

  it('a revoked admin is no admin: its certificates and its later statements count for nothing', () => {
    const t = store()
    t.state(founder.key, GRANT_ADMIN, second.id)
    const cert = Certificate.encode(t.issue(second.key, member.id))
    // what `second` signs after it was revoked, as another member that had not heard yet would take it
    const unaware = elsewhere('unaware')
    unaware.add(t.allStatements()[0])
    const lateGrant = unaware.state(second.key, GRANT_ADMIN, stranger.id)
    const lateRevoke = unaware.state(second.key, REVOKE, founder.id)
    t.state(founder.key, REVOKE, second.id)
    assert.equal(t.isAdmin(second.id), false)
    assert.deepEqual(t.adminList(), [founder.id])
    assert.match((t.standing(member.id, cert) as { why: string }).why, /issuer .* is not an admin/)
    assert.equal(t.add(lateGrant), false, 'a revoked admin cannot make a new admin')
    assert.equal(t.isAdmin(stranger.id), false)
    assert.equal(t.add(lateRevoke), false, 'a revoked admin cannot revoke the founder')
    assert.ok(t.isAdmin(founder.id))
  })

  it('statements and our certificate survive a restart (trust.json, mode 0600)', () => {
    const t = store()
    t.state(founder.key, GRANT_ADMIN, second.id)
    t.state(second.key, REVOKE, stranger.id)
    t.setCertificate(t.issue(founder.key, member.id), member.id)
    assert.equal(statSync(dataPaths(dir).trust).mode & 0o777, 0o600)
    const again = TrustStore.load(dir, CLUSTER, [])
    assert.deepEqual(again.genesisAdmins, [founder.id])
    assert.ok(again.isAdmin(second.id))
    assert.ok(again.isRevoked(stranger.id))
    assert.equal(again.certificate?.peerId, member.id)
    assert.equal(again.allStatements().length, 2)
  })

  it('a certificate for someone else is not taken as ours', () => {
    const t = store()
    assert.throws(
      () => t.setCertificate(t.issue(founder.key, stranger.id), member.id),
      /the certificate we were given is not valid: it names another peer/,
    )
    assert.equal(t.certificate, undefined)
  })

  it('without trust.json the founders come from the cluster; a damaged trust.json is an error, not an empty store', () => {
    assert.deepEqual(TrustStore.load(dir, CLUSTER, [founder.id]).adminList(), [founder.id])
    writeFileSync(dataPaths(dir).trust, '{"admins": [')
    assert.throws(() => TrustStore.load(dir, CLUSTER, [founder.id]), /trust\.json is damaged/)
  })
})
