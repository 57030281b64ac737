import assert from 'node:assert/strict'
import { systemdUnit } from '../../src/cli/service-unit.js'

describe('systemd unit for mesh service install', () => {
  const base = { node: '/usr/bin/node', cli: '/opt/mesh/dist/src/cli/main.js', dataDir: '/var/lib/mesh' }

  it('runs mesh agent on the data dir, writable only there, restarted on failure but not when revoked or misconfigured', () => {
    const u = systemdUnit(base).split('\n')
    assert.ok(
      u.includes('ExecStart=/usr/bin/node /opt/mesh/dist/src/cli/main.js --data-dir /var/lib/mesh agent'),
    )
    assert.ok(u.includes('ReadWritePaths=/var/lib/mesh'))
    assert.ok(u.includes('Restart=on-failure'))
    assert.ok(u.includes('RestartPreventExitStatus=2 4'))
    assert.ok(!u.some((l) => l.startsWith('User=')), 'root unless asked')
    assert.ok(!u.some((l) => l.startsWith('PrivateDevices=')), 'the overlay needs /dev/net/tun')
    assert.ok(u.includes('Environment=GLIBC_TUNABLES=glibc.malloc.hugetlb=1'), 'malloc heap on huge pages')
  })

  it('quotes words with spaces, quotes and %, and adds User and agent arguments', () => {
    const u = systemdUnit({
      ...base,
      dataDir: '/srv/my "mesh" 100%',
      user: 'mesh',
      agentArgs: ['--name', 'web 1'],
    })
    const lines = u.split('\n')
    assert.ok(
      lines.includes(
        'ExecStart=/usr/bin/node /opt/mesh/dist/src/cli/main.js --data-dir "/srv/my \\"mesh\\" 100%%" agent --name "web 1"',
      ),
      u,
    )
    assert.ok(lines.includes('ReadWritePaths="/srv/my \\"mesh\\" 100%%"'))
    assert.ok(lines.includes('User=mesh'))
  })
})
