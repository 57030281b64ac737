import assert from 'node:assert/strict'
import { libp2pLogger, silentLogger } from '../../src/node/silent-logger.js'

describe('the logger libp2p gets', () => {
  it('is silent unless DEBUG names something; then libp2p keeps its own (DEBUG=libp2p:* still works)', () => {
    assert.equal(libp2pLogger(undefined), silentLogger)
    assert.equal(libp2pLogger(' '), silentLogger)
    assert.equal(libp2pLogger('libp2p:*'), undefined)
  })

  it('every scope below a silent logger is the same disabled logger, so a stream makes none', () => {
    const log = silentLogger.forComponent('libp2p:yamux')
    const scoped = log.newScope('inbound:7').newScope('multistream')
    assert.equal(scoped, log)
    assert.equal(log.enabled, false)
    log('x %s', 1)
    log.error('y')
    log.trace('z')
  })
})
