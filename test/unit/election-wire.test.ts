import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { ElectionSet } from '../../protocols/election.js'
import { ElectionCore } from '../../src/election/core.js'
import { encodeVote, signVote } from '../../src/election/messages.js'
import { fromWire, toWire, WireError } from '../../src/election/wire.js'
import { ed25519Signer, ed25519Verifier, signClaim } from '../../src/membership/record.js'

const enc = new TextEncoder()

async function signer() {
  return ed25519Signer(await generateKeyPair('Ed25519'))
}

describe('election: wire', () => {
  it('every message kind and a death claim survive the round trip byte for byte', async () => {
    const a = await signer()
    const b = await signer()
    const core = new ElectionCore({ signer: a, verifier: ed25519Verifier(), rng: () => 0.5 })
    const { request } = core.create(
      {
        computeType: 'docker',
        filter: { tags: { zone: 'eu' }, names: ['web-*'] },
        voters: [
          { peerId: a.peerId, incarnation: 1 },
          { peerId: b.peerId, incarnation: 2 },
        ],
      },
      Date.now(),
    )
    const vote = signVote(
      {
        request: request.id,
        round: 0,
        history: '',
        yes: true,
        reasons: [],
        score: 3,
        tiebreak: 1,
        note: 'hi',
      },
      b,
    )
    const claim = signClaim({ peerId: b.peerId, incarnation: 2, status: 'dead' }, a)
    const set = ElectionSet.decode(ElectionSet.encode({ messages: [request, vote, claim].map(toWire) }))
    const back = set.messages.map(fromWire)
    assert.equal((back[0] as typeof request).id, request.id)
    const same = (x: ReturnType<typeof toWire>, y: ReturnType<typeof toWire>) =>
      Buffer.from(x.body).equals(Buffer.from(y.body)) && Buffer.from(x.sig).equals(Buffer.from(y.sig))
    assert.ok(same(toWire(back[0]), toWire(request)))
    assert.ok(same(toWire(back[1]), toWire(vote)))
    assert.ok(same(toWire(back[2]), toWire(claim)))
  })

  it('malformed bodies throw WireError (never anything else) with the reason', () => {
    const sig = new Uint8Array(64)
    const bad: Array<[string, string]> = [
      ['no newline at all', 'no domain line'],
      ['mesh-election-nope-v1\n{}', 'unknown domain'],
      ['mesh-election-vote-v1\n{"round":', 'truncated or not JSON'],
      ['mesh-election-vote-v1\n[1,2]', 'not an object'],
      ['mesh-election-vote-v1\n{"kind":"vote"}', 'unexpected fields'],
      ['mesh-election-vote-v1\n{"request":"x"}', 'unexpected fields'],
      ['mesh-election-cancel-v1\n{"request":"zz","requester":"12D3KooWPeerAAAA"}', 'bad request id'],
    ]
    for (const [body, why] of bad) {
      assert.throws(
        () => fromWire({ body: enc.encode(body), sig }),
        (e: unknown) => e instanceof WireError && e.message === why,
        body,
      )
    }
    assert.throws(() => fromWire({ body: new Uint8Array(400 * 1024), sig }), WireError)
  })

  it('a body that is not the canonical encoding is refused (spaces, reordered keys)', async () => {
    const b = await signer()
    const v = signVote(
      {
        request: 'a'.repeat(32),
        round: 0,
        history: '',
        yes: true,
        reasons: [],
        score: 3,
        tiebreak: 1,
        note: '',
      },
      b,
    )
    const text = new TextDecoder().decode(encodeVote(v))
    const spaced = text.replace('{"history"', '{ "history"')
    assert.throws(
      () => fromWire({ body: enc.encode(spaced), sig: v.sig as Uint8Array<ArrayBuffer> }),
      /not canonical/,
    )
  })

  it('forged, replayed and non-voter votes decode but the core drops and counts them', async () => {
    const a = await signer()
    const b = await signer()
    const mallory = await signer()
    const core = new ElectionCore({ signer: a, verifier: ed25519Verifier(), rng: () => 0.5 })
    const { request } = core.create(
      {
        computeType: 'docker',
        voters: [
          { peerId: a.peerId, incarnation: 1 },
          { peerId: b.peerId, incarnation: 1 },
        ],
      },
      Date.now(),
    )
    const now = Date.now()
    const body = {
      request: request.id,
      round: 0,
      history: '',
      yes: true,
      reasons: [],
      score: 3,
      tiebreak: 1,
      note: '',
    }
    // signed by mallory, claiming to be b: the bytes name b, the signature is mallory's
    const real = signVote(body, b)
    const forged = { ...real, sig: signVote(body, mallory).sig }
    const viaWire = (m: Parameters<typeof toWire>[0]) => fromWire(toWire(m))
    assert.equal(core.receive(viaWire(forged), now).outcome, 'bad-signature')
    assert.equal(core.receive(viaWire(signVote(body, mallory)), now).outcome, 'not-voter')
    assert.equal(core.receive(viaWire(real), now).outcome, 'accepted')
    assert.equal(core.receive(viaWire(real), now).outcome, 'duplicate')
    const unknown = signVote({ ...body, request: 'b'.repeat(32) }, b)
    assert.equal(core.receive(viaWire(unknown), now).outcome, 'held')
    core.tick(now + 60_000)
    assert.equal(core.counters['unknown-request'], 1)
    assert.equal(core.counters['bad-signature'], 1)
    assert.equal(core.counters['not-voter'], 1)
  })
})
