import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../../src/agent/config.js'
import { readConfig } from '../../src/agent/read-config.js'
import { ConfigError } from '../../src/kernel/config-error.js'
import { MembershipConfigSchema } from '../../src/membership/config.js'
import { MEMBERSHIP_DEFAULTS } from '../../src/membership/defaults.js'
import { OVERLAY_DEFAULTS, OverlayConfigSchema } from '../../src/overlay/config.js'
import { Registry } from '../../src/plugins/registry.js'
import { parseManifest } from '../../src/plugins/schema.js'

const dist = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** Every module a file imports statically, transitively: relative paths and package names. */
function staticImports(entry: string): { files: Set<string>; packages: Map<string, string> } {
  const files = new Set<string>()
  const packages = new Map<string, string>()
  const visit = (file: string) => {
    if (files.has(file)) return
    files.add(file)
    const text = readFileSync(file, 'utf8')
    // static `import ... from 'x'`, `export ... from 'x'` and `import 'x'`; not `import('x')`
    for (const m of text.matchAll(/^\s*(?:import|export)\s(?:[^'"();]*?\sfrom\s)?\s*['"]([^'"]+)['"]/gm)) {
      const spec = m[1]
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec))
      else if (!spec.startsWith('node:')) packages.set(spec, file)
    }
  }
  visit(entry)
  return { files, packages }
}

describe('zod stays out of an idle agent (sim/PROFILE.md)', () => {
  it('nothing an agent imports at start imports zod; the schemas run in worker threads', () => {
    // what `mesh agent` loads: the CLI, then agent.ts (cmd-agent.ts imports it, and heap.ts,
    // which imports node's modules only)
    for (const entry of ['src/cli/main.js', 'src/agent/agent.js']) {
      const { files, packages } = staticImports(join(dist, entry))
      assert.ok(files.size > 20, `${entry}: the import walk found ${files.size} modules`)
      const zodFrom = packages.get('zod')
      assert.equal(zodFrom, undefined, `${entry} reaches zod through ${zodFrom}`)
    }
  })

  it('the zod-free defaults are the schemas own', () => {
    assert.deepEqual(MembershipConfigSchema.parse({}), MEMBERSHIP_DEFAULTS)
    assert.deepEqual(OverlayConfigSchema.parse(undefined), { ...OVERLAY_DEFAULTS, allow: [] })
  })

  describe('the config read in a worker thread', () => {
    let dir: string
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'mesh-offthread-'))
    })
    afterEach(() => rmSync(dir, { recursive: true, force: true }))

    it('is what loadConfig reads, warnings included', async () => {
      writeFileSync(join(dir, 'config.yaml'), 'name: alpha\nmembership:\n  probeIntervalMs: 700\n')
      const opts = {
        dataDir: dir,
        env: { MESH_TAGS__ROLE: 'web', MESH_LOG_LEVL: 'debug', MESH_BLOCKS__CACHE_BYTES: '1GiB' },
        flags: { listen: ['/ip4/127.0.0.1/tcp/0'], name: undefined },
      }
      const warnings: string[] = []
      const here = loadConfig({ ...opts, warn: (w) => warnings.push(w) })
      const there = await readConfig(opts)
      assert.deepEqual(there.config, here)
      assert.deepEqual(there.warnings, warnings)
      assert.equal(warnings.length, 1)
      assert.equal(there.config.membership.probeIntervalMs, 700)
    })

    it('fails with the same ConfigError and message', async () => {
      writeFileSync(join(dir, 'config.yaml'), 'membership:\n  probeIntervalMs: 5\n  probeIntervalMS: 9\n')
      let expected = ''
      try {
        loadConfig({ dataDir: dir, env: {} })
      } catch (err) {
        expected = (err as Error).message
      }
      assert.match(expected, /probeIntervalMs/)
      await assert.rejects(
        readConfig({ dataDir: dir, env: {} }),
        (e: unknown) => e instanceof ConfigError && e.message === expected,
      )
      await assert.rejects(
        readConfig({ dataDir: dir, configFile: join(dir, 'nope.yaml'), env: {} }),
        (e: unknown) => e instanceof ConfigError && /cannot read config file .*nope\.yaml/.test(e.message),
      )
    })
  })

  it('plugin manifests validated in a worker thread: the same manifests and messages', async () => {
    const data = mkdtempSync(join(tmpdir(), 'mesh-offthread-'))
    const builtin = join(data, 'builtin')
    try {
      const good =
        '{"mesh_plugin_api":1,"compute_types":{"vm":{"available":"true","start_instance":"s","detect_stale_instance":"d","clean_up_instance":"c"}}}'
      const bad = '{"mesh_plugin_api":2,"hooks":{"after_nothing":[]}}'
      for (const [name, text] of [
        ['a', good],
        ['b', bad],
        ['c', '{nope'],
      ] as const) {
        mkdirSync(join(builtin, name), { recursive: true })
        writeFileSync(join(builtin, name, 'mesh.json'), text)
      }
      const { plugins, errors } = await new Registry(data, builtin).load()
      assert.deepEqual(
        plugins.map((p) => p.name),
        ['a'],
      )
      assert.deepEqual(plugins[0].manifest, parseManifest(good, 'x'))
      const message = (text: string, label: string) => {
        try {
          parseManifest(text, label)
        } catch (err) {
          return (err as Error).message
        }
        return ''
      }
      assert.deepEqual(errors, [
        message(bad, join(builtin, 'b', 'mesh.json')),
        message('{nope', join(builtin, 'c', 'mesh.json')),
      ])
    } finally {
      rmSync(data, { recursive: true, force: true })
    }
  })
})
