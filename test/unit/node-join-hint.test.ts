import assert from 'node:assert/strict'
import { whatToCheck } from '../../src/node/join.js'

/** libp2p's EncryptionFailedError carries the inner error's message and nothing else. */
const encryptionFailed = (message: string) =>
  Object.assign(new Error(message), { name: 'EncryptionFailedError' })

describe('join: what a failed join tells the user to check', () => {
  it('a handshake cut off by the dial timeout is a busy or slow inviter, not a foreign token', () => {
    const hint = whatToCheck(encryptionFailed('The operation was aborted due to timeout'))
    assert.match(hint, /did not finish the handshake in time/)
    assert.doesNotMatch(hint, /another cluster/)
  })

  it('a handshake the inviter refused may be a token of another cluster', () => {
    const hint = whatToCheck(encryptionFailed('Invalid MAC'))
    assert.match(hint, /token is from another cluster/)
  })

  it('anything else: the network and the inviting agent', () => {
    assert.match(whatToCheck(new Error('connect ECONNREFUSED 127.0.0.1:1')), /inviting agent runs/)
  })
})
