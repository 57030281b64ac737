// Typing mesh as a person does: near misses of commands, options and config keys get a "did you
// mean" (not the 100-line help), and bash completes commands and options from mesh's own tree.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, Fixture, mesh } from './cluster-harness.js'

describe('did you mean, and shell completion (integration)', function () {
  this.timeout(60_000)
  const fx = new Fixture()
  after(() => fx.cleanup())

  it('an unknown command or option: the near miss and where the list is, in a few lines', async () => {
    const r = await mesh(['membrs'])
    assert.equal(r.code, 2)
    assert.match(
      r.stderr,
      /unknown command 'membrs'\n\(Did you mean members\?\)\n\(mesh --help lists every command/,
    )
    assert.ok(r.stderr.trim().split('\n').length <= 3, r.stderr)
    const o = await mesh(['members', '--stauts', 'alive'])
    assert.equal(o.code, 2)
    assert.match(o.stderr, /Did you mean --status\?/)
    assert.ok(o.stderr.trim().split('\n').length <= 3, o.stderr)
  })

  it('a config key with a typo: the agent names the key it probably meant', async () => {
    const dir = fx.tempDir()
    writeFileSync(join(dir, 'config.yaml'), 'listn: [/ip4/127.0.0.1/tcp/0]\ntunnel:\n  allowPort: [22]\n')
    const r = await mesh(['--data-dir', dir, 'agent', '--init'])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /unknown key 'listn' \(did you mean 'listen'\?\); allowed keys: /)
    assert.match(r.stderr, /unknown key 'tunnel\.allowPort' \(did you mean 'tunnel\.allowPorts'\?\)/)
  })

  it('bash completes commands, subcommands and options from mesh completion bash', () => {
    const script = `
      source <("${process.execPath}" "${CLI}" completion bash)
      for line in "mesh memb" "mesh service " "mesh service install --us" "mesh --json adm" "mesh exec --pa"; do
        read -ra COMP_WORDS <<< "$line"
        [[ "$line" == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$((\${#COMP_WORDS[@]} - 1))
        _mesh
        echo "$line=\${COMPREPLY[*]}"
      done`
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n'), [
      'mesh memb=members',
      'mesh service =install remove --help',
      'mesh service install --us=--user',
      'mesh --json adm=admin',
      'mesh exec --pa=--parallel',
    ])
  })

  it('zsh gets the same through bashcompinit; another shell is a clear error', async () => {
    const z = await mesh(['completion', 'zsh'])
    assert.equal(z.code, 0)
    assert.match(z.stdout, /^# mesh completion for zsh.*\nautoload -U \+X bashcompinit && bashcompinit\n/)
    assert.match(z.stdout, /complete -o default -F _mesh mesh/)
    const f = await mesh(['completion', 'fish'])
    assert.equal(f.code, 2)
    assert.match(f.stderr, /no completion for 'fish': use bash or zsh/)
  })
})
