import assert from 'node:assert/strict'
import type { MemberView } from '../../src/api/routes-members.js'
import { overlayFindings, skewFinding } from '../../src/cli/cmd-doctor.js'
import { ClockSkew } from '../../src/membership/clock-skew.js'

describe('clock skew from probe replies', () => {
  it('offset is the remote clock minus the midpoint of send and receive', () => {
    const c = new ClockSkew()
    c.add('p', 1_000, 1_010, 6_005) // 10 ms round trip, remote read 6005 at our 1005
    assert.deepEqual(c.of('p'), { offsetMs: 5_000, rttMs: 10, at: 1_010 })
    assert.equal(c.of('q'), undefined)
  })

  it('believes the sample with the shortest round trip of the last eight', () => {
    const c = new ClockSkew()
    c.add('p', 0, 400, 5_300) // slow reply: offset 5100, good to 200 ms
    c.add('p', 1_000, 1_004, 6_002) // fast: offset 5000
    c.add('p', 2_000, 2_300, 7_000) // slow again
    assert.equal(c.of('p')?.offsetMs, 5_000)
    for (let i = 0; i < 8; i++) c.add('p', 10_000 + i * 1000, 10_100 + i * 1000, 15_100 + i * 1000)
    assert.equal(c.of('p')?.rttMs, 100, 'the fast sample aged out')
  })

  it('ignores replies without a clock (older agents) and impossible timings', () => {
    const c = new ClockSkew()
    c.add('p', 0, 10, 0)
    c.add('p', 10, 0, 5_000)
    assert.equal(c.of('p'), undefined)
  })
})

describe('mesh doctor: clock skew line', () => {
  const member = (name: string, clockOffsetMs?: number, extra: Partial<MemberView> = {}): MemberView => ({
    name,
    peerId: `id-${name}`,
    overlay: 'fd00::1',
    status: 'alive',
    path: 'direct',
    version: '0',
    tags: {},
    addrs: [],
    incarnation: 0,
    maintenance: false,
    computeTypes: [],
    resources: { cpus: 1, memoryBytes: 0, diskFreeBytes: 0 },
    self: false,
    since: 0,
    clockOffsetMs,
    ...extra,
  })

  it('ok within a second, naming the largest offset', () => {
    const f = skewFinding([member('me', undefined, { self: true }), member('a', 12), member('b', -340)])
    assert.equal(f.level, 'ok')
    assert.equal(f.message, 'within 340 ms of 2 members (largest: b -340 ms)')
  })

  it('warns past a second and fails past five minutes, saying which member and which way', () => {
    const w = skewFinding([member('a', 3_200)])
    assert.equal(w.level, 'warn')
    assert.match(w.message, /^a is 3\.2 s ahead of this machine/)
    assert.match(w.fix ?? '', /NTP/)
    const f = skewFinding([member('a', 100), member('b', -400_000)])
    assert.equal(f.level, 'fail')
    assert.match(f.message, /^b is 400\.0 s behind this machine/)
  })

  it('skips when no alive member has been measured; dead members do not count', () => {
    assert.equal(skewFinding([member('a')]).level, 'skip')
    assert.equal(skewFinding([member('a', 9_000, { status: 'dead' })]).level, 'skip')
  })
})

describe('mesh doctor: overlay interface and NAME.mesh lines', () => {
  const ov = { interface: 'mesh0', address: 'fd12::1', prefix: 'fd12::/48' }
  const m = (name: string, overlay: string, status = 'alive', self = false) =>
    ({ name, overlay, status, self }) as unknown as MemberView
  const members = [m('me', 'fd12::1', 'alive', true), m('bravo', 'fd12::2'), m('gone', 'fd12::3', 'dead')]
  const hosts: Record<string, string> = { 'bravo.mesh': 'fd12::2' }
  const resolve = async (h: string) => hosts[h]
  const addrs = () => 'inet6 fd12::1/128 scope global'

  it('ok when the device has our address and every alive member name resolves to its address', async () => {
    const f = await overlayFindings(ov, members, resolve, addrs)
    assert.deepEqual(
      f.map((x) => [x.check, x.level]),
      [
        ['overlay', 'ok'],
        ['names', 'ok'],
      ],
    )
    assert.equal(f[1].message, '1 member name resolves as NAME.mesh to its overlay address')
  })

  it('a name that does not resolve, or resolves elsewhere, is a warning naming it', async () => {
    const f = await overlayFindings(ov, [...members, m('charlie', 'fd12::4')], resolve, addrs)
    assert.equal(f[1].level, 'warn')
    assert.match(f[1].message, /charlie\.mesh does not resolve/)
    const moved = await overlayFindings(ov, members, async () => 'fd12::9', addrs)
    assert.match(moved[1].message, /bravo\.mesh resolves to fd12::9/)
  })

  it('no interface: why, and what still works; off by config is a skip; a device without our address fails', async () => {
    const none = await overlayFindings(
      { ...ov, interface: null, reason: 'no CAP_NET_ADMIN' },
      members,
      resolve,
      addrs,
    )
    assert.equal(none[0].level, 'warn')
    assert.match(none[0].fix ?? '', /mesh ssh, proxy, forward and socks work without it/)
    const off = await overlayFindings(
      { ...ov, interface: null, reason: 'disabled by overlay.interface: false' },
      members,
      resolve,
      addrs,
    )
    assert.equal(off[0].level, 'skip')
    const bare = await overlayFindings(ov, members, resolve, () => '')
    assert.equal(bare[0].level, 'fail')
  })
})
