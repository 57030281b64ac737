// Typing mesh as a person does: near misses of commands, options and config keys get a "did you
// mean" (not the 100-line help), and bash completes commands and options from mesh's own tree.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
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

  it('zsh completes the same when a person presses Tab in an interactive zsh', function () {
    if (spawnSync('zsh', ['-f', '-c', 'zmodload zsh/zpty'], { timeout: 10_000 }).status !== 0) {
      const why = 'zsh (with zsh/zpty) is missing; apt-get install zsh'
      if (process.env.MESH_REQUIRE_SYSTEM === '1') throw new Error(`MESH_REQUIRE_SYSTEM=1: ${why}`)
      console.log(`      skipped: ${why}`)
      this.skip()
    }
    const home = fx.tempDir()
    mkdirSync(join(home, 'bin'))
    writeFileSync(join(home, 'bin', 'mesh'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, {
      mode: 0o755,
    })
    // a zsh on a pseudo-terminal (zpty) as a person has it: compinit, the completion sourced as
    // the README says, then each line typed with Tab; Ctrl-A/Ctrl-E wrap the completed line in
    // a print, so zsh itself reports what Tab made of it
    const script = `
      zmodload zsh/zpty
      zpty z "env -i PATH=${home}/bin:/usr/bin:/bin HOME=${home} TERM=dumb zsh -f -i"
      zpty -w z 'unset zle_bracketed_paste; bindkey -e; PS1="> "; autoload -U compinit && compinit -u; source <(mesh completion zsh)'
      for line in "mesh memb" "mesh service ins" "mesh service install --us" "mesh --json adm" "mesh exec --pa"; do
        zpty -n -w z "$line"$'\t\x01'"print -r -- 'RESULT:"$'\x05'"'"$'\n'
      done
      zpty -w z 'print -r -- DONE:'
      integer deadline=$(( SECONDS + 40 ))
      out=""
      while (( SECONDS < deadline )); do
        if zpty -r -t z chunk; then out+=$chunk; else sleep 0.1; fi
        [[ $out == *$'\nDONE:'* ]] && break
      done
      zpty -d z
      print -r -- "\${out//$'\r'/}" | grep -a '^RESULT:'`
    const r = spawnSync('zsh', ['-f', '-c', script], { encoding: 'utf8', timeout: 50_000 })
    assert.deepEqual(
      r.stdout.split('\n').filter(Boolean),
      [
        'RESULT:mesh members',
        'RESULT:mesh service install',
        'RESULT:mesh service install --user',
        'RESULT:mesh --json admin',
        'RESULT:mesh exec --parallel',
      ],
      r.stderr,
    )
  })

  it('another shell is a clear error', async () => {
    const f = await mesh(['completion', 'fish'])
    assert.equal(f.code, 2)
    assert.match(f.stderr, /no completion for 'fish': use bash or zsh/)
  })
})
