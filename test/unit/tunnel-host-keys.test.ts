import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hostKeyTags, knownHostsPath, knownHostsText, writeKnownHosts } from '../../src/tunnel/host-keys.js'

describe('ssh host keys in member records', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-hk-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  const ed = 'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'

  it('reads ed25519/ecdsa .pub files into tags; skips missing, RSA (too long for a tag) and garbage', () => {
    writeFileSync(join(dir, 'ed.pub'), `ssh-ed25519 ${ed} root@host\n`)
    writeFileSync(join(dir, 'rsa.pub'), `ssh-rsa ${'A'.repeat(500)} root@host\n`)
    writeFileSync(join(dir, 'bad.pub'), 'ssh-ed25519 not;base64\n')
    const tags = hostKeyTags(['ed.pub', 'rsa.pub', 'bad.pub', 'missing.pub'].map((f) => join(dir, f)))
    assert.deepEqual(tags, { 'mesh.ssh.ssh-ed25519': ed })
  })

  it('known_hosts lines under each overlay address, only for well-formed host key tags', () => {
    const text = knownHostsText([
      { overlay: 'fd00::1', tags: { 'mesh.ssh.ssh-ed25519': ed, role: 'web' } },
      { overlay: 'fd00::2', tags: { 'mesh.ssh.evil\nline': ed, 'mesh.ssh.ssh-ed25519': 'x y' } },
    ])
    assert.deepEqual(text.split('\n').slice(1), [`fd00::1 ssh-ed25519 ${ed}`, ''])
  })

  it('the file is rewritten when a key changes, not when members change status with the same keys', () => {
    const members = [{ overlay: 'fd00::1', tags: { 'mesh.ssh.ssh-ed25519': ed } }]
    const first = writeKnownHosts(dir, members)
    const path = knownHostsPath(dir)
    const ino = statSync(path).ino
    // a status change: the same text, so no write (the rename would give the file a new inode)
    assert.equal(writeKnownHosts(dir, members, first), first)
    assert.equal(statSync(path).ino, ino)
    const other = 'AAAAC3NzaC1lZDI1NTE5AAAAIBTfW8gyz6ULpEFnK3o1bEzQm6ZlVnQ8kIEVsS3UzYXb'
    const second = writeKnownHosts(
      dir,
      [{ overlay: 'fd00::1', tags: { 'mesh.ssh.ssh-ed25519': other } }],
      first,
    )
    assert.notEqual(statSync(path).ino, ino)
    assert.equal(readFileSync(path, 'utf8'), second)
    assert.match(second, new RegExp(`fd00::1 ssh-ed25519 ${other}`))
  })
})
