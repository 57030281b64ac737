import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PluginError } from '../../src/plugins/plugin-error.js'
import { BUILTIN_DIR, resolveSource } from '../../src/plugins/registry.js'
import { parseManifest } from '../../src/plugins/schema.js'

const ok = {
  mesh_plugin_api: 1,
  compute_types: {
    vm: {
      available: 'true',
      start_instance: './start',
      detect_stale_instance: 'false',
      clean_up_instance: 'true',
    },
  },
  server_types: { web: { bootstrap: 'touch /marker' } },
  hooks: { cluster_change: [{ predicate: 'true', command: 'echo hi' }] },
}

function problem(doc: unknown): string {
  try {
    parseManifest(JSON.stringify(doc), 'x/mesh.json')
  } catch (err) {
    assert.ok(err instanceof PluginError)
    return (err as Error).message
  }
  assert.fail('expected the manifest to be rejected')
}

describe('plugins: mesh.json schema', () => {
  it('accepts a full manifest and fills defaults', () => {
    const m = parseManifest(JSON.stringify(ok), 'x/mesh.json')
    assert.equal(m.compute_types.vm.start_instance, './start')
    assert.deepEqual(parseManifest('{"mesh_plugin_api":1}', 'f').compute_types, {})
  })

  it('every built-in plugin validates', () => {
    for (const name of ['docker', 'process', 'ssh']) {
      const file = join(BUILTIN_DIR, name, 'mesh.json')
      const m = parseManifest(readFileSync(file, 'utf8'), file)
      assert.ok(name in m.compute_types, name)
    }
  })

  it('names the file, the key and the problem', () => {
    const missing = structuredClone(ok) as any
    delete missing.compute_types.vm.start_instance
    const msg = problem(missing)
    assert.match(msg, /x\/mesh\.json/)
    assert.match(msg, /compute_types\.vm\.start_instance': missing/)

    assert.match(problem({ ...ok, mesh_plugin_api: 2 }), /mesh_plugin_api': expected 1/)
    assert.match(problem({ ...ok, extra: 1 }), /unknown key 'extra'/)
    assert.match(problem({ ...ok, hooks: { on_boot: [] } }), /unknown key 'hooks\.on_boot'/)
    assert.match(
      problem({ ...ok, compute_types: { 'Bad Name': ok.compute_types.vm } }),
      /compute_types\.Bad Name'.*a-z, 0-9/,
    )
    assert.match(
      problem({ ...ok, server_types: { web: { bootstrap: '  ' } } }),
      /server_types\.web\.bootstrap'/,
    )
    assert.match(
      problem({ ...ok, hooks: { after_join: [{ predicate: 'true' }] } }),
      /hooks\.after_join\.0\.command/,
    )
  })

  it('rejects text that is not JSON, saying so', () => {
    assert.throws(() => parseManifest('{nope', 'p/mesh.json'), /p\/mesh\.json: not valid JSON/)
  })

  it('resolves install sources', () => {
    assert.deepEqual(resolveSource('acme/mesh-plugin-vagrant'), {
      url: 'https://github.com/acme/mesh-plugin-vagrant.git',
      name: 'vagrant',
    })
    assert.equal(resolveSource('https://git.example/x/mesh-lxc.git').name, 'lxc')
    assert.equal(resolveSource('git@host:team/thing.git').name, 'thing')
    assert.equal(resolveSource('/tmp').url, '/tmp')
    assert.throws(() => resolveSource('what is this'), /give a git URL, owner\/repo/)
  })
})
