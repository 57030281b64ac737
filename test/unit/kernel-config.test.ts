import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../../src/agent/config.js'
import { envName, plainScalar } from '../../src/kernel/config.js'
import { ConfigError } from '../../src/kernel/config-error.js'

describe('config loader', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-config-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('names a variable after its schema path', () => {
    assert.equal(envName(['logLevel']), 'MESH_LOG_LEVEL')
    assert.equal(envName(['membership', 'probeIntervalMs']), 'MESH_MEMBERSHIP__PROBE_INTERVAL_MS')
  })

  it('reads MESH_* variables for schema paths: scalars, lists, records', () => {
    const c = loadConfig({
      dataDir: dir,
      env: {
        MESH_LOG_LEVEL: 'debug',
        MESH_RELAY__SERVER: 'false',
        MESH_LISTEN: '/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2',
        MESH_TUNNEL__ALLOW_PORTS: '22,2222',
        MESH_TAGS__ROLE: 'web',
        MESH_MEMBERSHIP__PROBE_INTERVAL_MS: '250',
      },
    })
    assert.equal(c.logLevel, 'debug')
    assert.equal(c.relay.server, false)
    assert.deepEqual(c.listen, ['/ip4/127.0.0.1/tcp/1', '/ip4/127.0.0.1/tcp/2'])
    assert.deepEqual(c.tunnel.allowPorts, [22, 2222])
    assert.deepEqual(c.tags, { role: 'web' })
    assert.equal(c.membership.probeIntervalMs, 250)
  })

  it('reads the common values without the YAML parser, as YAML reads them, and leaves the rest to it', async () => {
    const YAML = await import('yaml')
    const fast = [
      'true',
      'false',
      '0',
      '-0',
      '250',
      '-5',
      'debug',
      'info',
      'web',
      'a-b_c',
      'Yes',
      'no',
      'Infinity',
      '/ip4/127.0.0.1/tcp/1',
      '/etc/hosts',
    ]
    for (const raw of fast) {
      assert.notEqual(plainScalar(raw), undefined, raw)
      assert.ok(Object.is(plainScalar(raw), YAML.parse(raw)), raw)
    }
    for (const raw of [
      'null',
      'NULL',
      'True',
      '~',
      '007',
      '0x1F',
      '1e3',
      '1.5',
      '.inf',
      'a b',
      "'x'",
      '127.0.0.1:9100',
      '',
    ])
      assert.equal(plainScalar(raw), undefined, raw)
  })

  it('reads a list of records as a YAML flow sequence (MESH_OVERLAY__ALLOW)', () => {
    const c = loadConfig({
      dataDir: dir,
      env: { MESH_OVERLAY__ALLOW: '[{from: a, proto: tcp, ports: [7000]}, {from: "*", proto: icmp}]' },
    })
    assert.equal(c.overlay.allow.length, 2)
    assert.deepEqual(c.overlay.allow[0].ports, [7000])
    assert.equal(c.overlay.allow[1].proto, 'icmp')
  })

  it('leaves other MESH_* variables alone (a plugin command passes its own on)', () => {
    const warnings: string[] = []
    const c = loadConfig({
      dataDir: dir,
      env: { MESH_INSTANCE_ID: 'x1', MESH_SOMETHING_ELSE: 'y', MESH_DATA_DIR: dir },
      warn: (w) => warnings.push(w),
    })
    assert.equal(c.logLevel, 'info')
    assert.deepEqual(warnings, [])
  })

  it('warns about a mistyped variable with the real name', () => {
    const warnings: string[] = []
    const c = loadConfig({ dataDir: dir, env: { MESH_LOG_LEVL: 'debug' }, warn: (w) => warnings.push(w) })
    assert.equal(c.logLevel, 'info')
    assert.deepEqual(warnings, [
      'environment variable MESH_LOG_LEVL is not a config variable; did you mean MESH_LOG_LEVEL?',
    ])
  })

  it("warns about a misspelt variable of a known section, naming the section's variables", () => {
    const warnings: string[] = []
    const c = loadConfig({
      dataDir: dir,
      env: { MESH_MEMBERSHIP__PROBE_INTERVAL: '200' },
      warn: (w) => warnings.push(w),
    })
    assert.equal(c.membership.probeIntervalMs, 1000)
    assert.equal(warnings.length, 1)
    assert.match(
      warnings[0],
      /^environment variable MESH_MEMBERSHIP__PROBE_INTERVAL is not a config variable and is ignored; did you mean MESH_MEMBERSHIP__PROBE_INTERVAL_MS\? \(MESH_MEMBERSHIP has .*MESH_MEMBERSHIP__PROBE_TIMEOUT_MS/,
    )
  })

  it('flags beat variables, which beat the file', () => {
    writeFileSync(join(dir, 'config.yaml'), 'name: from-file\nlogLevel: warn\ndialTimeoutMs: 700\n')
    const c = loadConfig({
      dataDir: dir,
      env: { MESH_NAME: 'from-env', MESH_LOG_LEVEL: 'error' },
      flags: { name: 'from-flag' },
    })
    assert.deepEqual([c.name, c.logLevel, c.dialTimeoutMs], ['from-flag', 'error', 700])
  })

  it('says which source a bad value came from, and the nearest key for an unknown one', () => {
    assert.throws(
      () => loadConfig({ dataDir: dir, env: { MESH_MEMBERSHIP__PROBE_INTERVAL_MS: '5' } }),
      (e: unknown) =>
        e instanceof ConfigError &&
        /MESH_MEMBERSHIP__PROBE_INTERVAL_MS: key 'membership.probeIntervalMs'/.test(e.message),
    )
    writeFileSync(join(dir, 'config.yaml'), 'membership:\n  probeIntervalMS: 500\n')
    assert.throws(
      () => loadConfig({ dataDir: dir, env: {} }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message.includes(
          "unknown key 'membership.probeIntervalMS' (did you mean 'membership.probeIntervalMs'?)",
        ),
    )
  })

  it('a named config file must exist; the default one may be absent', () => {
    assert.equal(loadConfig({ dataDir: dir, env: {} }).logLevel, 'info')
    assert.throws(
      () => loadConfig({ dataDir: dir, env: { MESH_CONFIG: join(dir, 'nope.yaml') } }),
      /cannot read config file .*nope\.yaml/,
    )
  })

  it('a bad value names its variable, key and what was expected, whatever its type', () => {
    const fails = (env: Record<string, string>, re: RegExp) =>
      assert.throws(
        () => loadConfig({ dataDir: dir, env }),
        (e: unknown) => e instanceof ConfigError && re.test(e.message),
      )
    fails({ MESH_DIAL_TIMEOUT_MS: 'soon' }, /MESH_DIAL_TIMEOUT_MS: key 'dialTimeoutMs': .*expected number/)
    fails({ MESH_RELAY__SERVER: 'maybe' }, /MESH_RELAY__SERVER: key 'relay.server': .*expected boolean/)
    fails({ MESH_TUNNEL__ALLOW_PORTS: '22,x' }, /MESH_TUNNEL__ALLOW_PORTS: key 'tunnel.allowPorts.1'/)
    fails({ MESH_MEMBERSHIP: '300' }, /MESH_MEMBERSHIP: key 'membership': .*expected object/)
  })

  it('a bad value in the file names the file; a bad flag names the flag', () => {
    writeFileSync(join(dir, 'config.yaml'), 'dialTimeoutMs: soon\n')
    assert.throws(
      () => loadConfig({ dataDir: dir, env: {} }),
      (e: unknown) =>
        e instanceof ConfigError && e.message.includes(`${join(dir, 'config.yaml')}: key 'dialTimeoutMs'`),
    )
    writeFileSync(join(dir, 'config.yaml'), '')
    assert.throws(
      () => loadConfig({ dataDir: dir, env: {}, flags: { dialTimeoutMs: -5 } }),
      /--dial-timeout-ms: key 'dialTimeoutMs': Too small/,
    )
  })

  it('a config file that is not YAML, or not a mapping, is an error that says so; an empty one is no config', () => {
    const file = join(dir, 'config.yaml')
    writeFileSync(file, 'name: [unclosed\n')
    assert.throws(() => loadConfig({ dataDir: dir, env: {} }), /config file .*config\.yaml is not valid YAML/)
    writeFileSync(file, '- a\n- b\n')
    assert.throws(
      () => loadConfig({ dataDir: dir, env: {} }),
      /config\.yaml must be a YAML mapping of keys to values/,
    )
    writeFileSync(file, '')
    assert.equal(loadConfig({ dataDir: dir, env: {} }).logLevel, 'info')
  })

  it('an unknown top-level key lists the allowed keys', () => {
    writeFileSync(join(dir, 'config.yaml'), 'nmae: x\n')
    assert.throws(
      () => loadConfig({ dataDir: dir, env: {} }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message.includes("unknown key 'nmae' (did you mean 'name'?); allowed keys: name, listen,"),
    )
  })
})
