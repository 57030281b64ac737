// Plugins with real agents on 127.0.0.1 and real git repos made by the test: install from git,
// spawn through a plugin's compute type and server type, hooks, update, uninstall, destroy,
// prune, and the ways it can go wrong (broken plugin, hung start, unavailable type).
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Fixture, mesh, meshJson, waitFor } from './cluster-harness.js'

function git(dir: string, ...args: string[]): string {
  return execFileSync(
    'git',
    ['-c', 'user.name=t', '-c', 'user.email=t@t', '-c', 'init.defaultBranch=main', ...args],
    {
      cwd: dir,
      encoding: 'utf8',
    },
  ).trim()
}

function repo(dir: string, files: Record<string, string>, message = 'plugin'): string {
  mkdirSync(dir, { recursive: true })
  if (!existsSync(join(dir, '.git'))) git(dir, 'init', '-q')
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text, { mode: 0o755 })
  git(dir, 'add', '-A')
  git(dir, 'commit', '-qm', message)
  return git(dir, 'rev-parse', 'HEAD')
}

// a compute type that starts a local agent (like the built-in process type), a server type
// whose bootstrap leaves a marker in the new instance's data dir, and hooks that leave files
const START = `#!/bin/sh
set -eu
mkdir -p "$MESH_INSTANCE_DIR"
MESH_JOIN="$MESH_JOIN_TOKEN" setsid "$MESH_NODE" "$MESH_CLI" --data-dir "$MESH_INSTANCE_DIR/data" agent \\
  --name "$MESH_INSTANCE_ID" --listen /ip4/127.0.0.1/tcp/0 </dev/null >"$MESH_INSTANCE_DIR/agent.log" 2>&1 &
echo $! >"$MESH_INSTANCE_DIR/pid"
`
const manifest = (hooksDir: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    mesh_plugin_api: 1,
    description: 'test plugin',
    compute_types: {
      local: {
        available: 'true',
        start_instance: './start.sh',
        detect_stale_instance: 'kill -0 "$(cat "$MESH_INSTANCE_DIR/pid")" 2>/dev/null && exit 1 || exit 0',
        clean_up_instance:
          'kill -TERM "$(cat "$MESH_INSTANCE_DIR/pid" 2>/dev/null)" 2>/dev/null; sleep 1; rm -rf "$MESH_INSTANCE_DIR"',
      },
    },
    server_types: {
      marker: {
        bootstrap:
          'mkdir -p "$MESH_INSTANCE_DIR" && echo "$MESH_SERVER_TYPE $MESH_INSTANCE_ID" > "$MESH_INSTANCE_DIR/marker"',
      },
    },
    hooks: {
      after_start_instance: [{ command: `echo "$MESH_INSTANCE_ID" >> ${hooksDir}/after_start_instance` }],
      after_join: [{ command: `echo "$MESH_INSTANCE_ID $MESH_INSTANCE_OVERLAY" >> ${hooksDir}/after_join` }],
      cluster_change: [
        {
          // only changes that made a member alive
          predicate: 'echo "$MESH_EVENT_DATA" | grep -q \'"after":"alive"\'',
          // members.json is replaced whole (a later run must not leave the test a half-written file)
          command: `echo "$MESH_EVENT_DATA" >> ${hooksDir}/cluster_change; echo "$MESH_MEMBERS" > ${hooksDir}/members.tmp && mv ${hooksDir}/members.tmp ${hooksDir}/members.json`,
        },
      ],
    },
    ...extra,
  })

describe('plugins (integration)', function () {
  this.timeout(180_000)
  const fx = new Fixture()
  let a: string
  let work: string
  let hooks: string
  const m = (...args: string[]) => mesh(['--data-dir', a, ...args], { timeoutMs: 120_000 })

  before(async () => {
    a = fx.tempDir('mesh-pl-a-')
    work = fx.tempDir('mesh-pl-work-')
    hooks = join(work, 'hooks')
    mkdirSync(hooks)
    await fx.agent(a, ['--init', 'pl', '--name', 'node-a']).start([], { MESH_LOG_LEVEL: 'warn' }).ready()
  })

  after(async () => {
    // instances are detached processes: stop them whatever happened
    for (const dir of [join(a, 'instances')]) {
      for (const name of existsSync(dir) ? readdirSync(dir) : []) {
        try {
          process.kill(Number(readFileSync(join(dir, name, 'pid'), 'utf8')), 'SIGKILL')
        } catch {}
      }
    }
    await fx.cleanup()
  })

  it('lists the built-in compute types, and the member record offers the available ones', async () => {
    const res = await meshJson(a, ['plugins'])
    const proc = res.plugins.find((p: any) => p.name === 'process')
    assert.equal(proc.builtin, true)
    assert.deepEqual(proc.computeTypes, [{ name: 'process', available: true }])
    const me = (await meshJson(a, ['members'])).find((x: any) => x.self)
    assert.ok(me.computeTypes.includes('process'), `member record offers ${me.computeTypes}`)
    const table = await m('plugins')
    assert.match(table.stdout, /compute_type\s+process\s+process\s+built-in\s+yes/)
  })

  it('installs from a local git repo, spawns with a server type, runs hooks, updates, uninstalls', async () => {
    const src = join(work, 'mesh-plugin-local')
    const c1 = repo(src, { 'mesh.json': manifest(hooks), 'start.sh': START })
    const inst = await m('install', src)
    assert.equal(inst.code, 0, inst.stderr)
    assert.match(inst.stdout, new RegExp(`installed plugin 'local' at ${c1}`))
    const listed = (await meshJson(a, ['plugins'])).plugins.find((p: any) => p.name === 'local')
    assert.equal(listed.commit, c1)
    assert.equal(listed.source, src)
    assert.deepEqual(listed.serverTypes, ['marker'])
    assert.match(
      (await m('plugins')).stdout,
      new RegExp(`compute_type\\s+local\\s+local\\s+\\S+@${c1.slice(0, 12)}\\s+yes`),
    )

    const spawned = await meshJson(a, ['spawn', '--compute-type', 'local', '--server-type', 'marker'])
    assert.equal(spawned.length, 1)
    const { name, overlay, peerId } = spawned[0]
    assert.match(name, /^local-[0-9a-f]{6}$/)
    // the server type's bootstrap ran for this instance
    assert.equal(readFileSync(join(a, 'instances', name, 'marker'), 'utf8').trim(), `marker ${name}`)
    // it is a member, alive, with the overlay address spawn printed
    const members = await meshJson(a, ['members'])
    const row = members.find((x: any) => x.name === name)
    assert.equal(row.status, 'alive')
    assert.equal(row.overlay, overlay)
    assert.equal(row.peerId, peerId)
    // the new member sees the cluster too: its own agent answers with both members alive
    await waitFor('the instance to see node-a alive', async () => {
      const theirs = await meshJson(join(a, 'instances', name, 'data'), ['members'])
      return theirs.find((x: any) => x.name === 'node-a')?.status === 'alive'
    })
    assert.equal(readFileSync(join(hooks, 'after_start_instance'), 'utf8').trim(), name)
    assert.equal(readFileSync(join(hooks, 'after_join'), 'utf8').trim(), `${name} ${overlay}`)
    const changes = await waitFor('the cluster_change hook', async () =>
      existsSync(join(hooks, 'cluster_change')) ? readFileSync(join(hooks, 'cluster_change'), 'utf8') : false,
    )
    assert.match(changes, new RegExp(`"name":"${name}"`))
    // the hook writes cluster_change first and members.json after it: wait for the second write
    const seen = await waitFor('the hook to write members.json', async () =>
      existsSync(join(hooks, 'members.json'))
        ? JSON.parse(readFileSync(join(hooks, 'members.json'), 'utf8'))
        : false,
    )
    assert.ok(
      seen.some((x: any) => x.name === 'node-a'),
      JSON.stringify(seen),
    )

    const inst2 = await meshJson(a, ['instances'])
    assert.deepEqual(
      inst2.map((i: any) => [i.name, i.computeType, i.serverType, i.status, i.member]),
      [[name, 'local', 'marker', 'running', 'alive']],
    )

    // update only moves when asked, and says from what to what
    const c2 = repo(src, { README: 'v2\n' }, 'v2')
    assert.equal((await meshJson(a, ['plugins'])).plugins.find((p: any) => p.name === 'local').commit, c1)
    const up = await m('update', 'local')
    assert.equal(up.code, 0, up.stderr)
    assert.equal(up.stdout.trim(), `local: ${c1} -> ${c2}`)

    // a broken new commit: update refuses, and the installed plugin stays as it was
    repo(
      src,
      { 'mesh.json': '{"mesh_plugin_api": 1, "compute_types": {"local": {"available": "true"}}}' },
      'broken',
    )
    const bad = await m('update', 'local')
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /mesh\.json is not a valid plugin manifest/)
    assert.match(bad.stderr, /compute_types\.local\.start_instance': missing/)
    assert.equal((await meshJson(a, ['plugins'])).plugins.find((p: any) => p.name === 'local').commit, c2)

    // destroy: the instance's agent stops and leaves; the record goes
    const d = await m('destroy', name)
    assert.equal(d.code, 0, d.stderr)
    assert.equal(existsSync(join(a, 'instances', name)), false)
    assert.deepEqual(await meshJson(a, ['instances']), [])
    await waitFor('the destroyed instance to have left', async () => {
      const r = (await meshJson(a, ['members'])).find((x: any) => x.name === name)
      return r?.status === 'left'
    })

    const un = await m('uninstall', 'local')
    assert.equal(un.code, 0, un.stderr)
    assert.equal(
      (await meshJson(a, ['plugins'])).plugins.find((p: any) => p.name === 'local'),
      undefined,
    )
    assert.equal(existsSync(join(a, 'plugins', 'local')), false)
    const gone = await m('spawn', '--compute-type', 'local')
    assert.equal(gone.code, 2)
    assert.match(gone.stderr, /no compute type 'local'/)
  })

  it('rejects a broken plugin with the file, key and problem, changing nothing', async () => {
    const before = readdirSync(join(a, 'plugins')).sort()
    const src = join(work, 'broken')
    repo(src, {
      'mesh.json': JSON.stringify({
        mesh_plugin_api: 1,
        compute_types: { vm: { available: 'true', start_instance: 1 } },
      }),
    })
    const r = await m('install', src)
    assert.equal(r.code, 2)
    assert.match(r.stderr, /broken: mesh\.json is not a valid plugin manifest/)
    assert.match(r.stderr, /compute_types\.vm\.start_instance'/)
    assert.match(r.stderr, /compute_types\.vm\.clean_up_instance': missing/)
    assert.deepEqual(readdirSync(join(a, 'plugins')).sort(), before)
    assert.equal(
      (await meshJson(a, ['plugins'])).plugins.find((p: any) => p.name === 'broken'),
      undefined,
    )

    const norepo = await m('install', join(work, 'does-not-exist'))
    assert.notEqual(norepo.code, 0)
    assert.match(norepo.stderr, /git clone failed|cannot tell what/)
  })

  it('a hung start_instance is killed and reported; an unavailable type says so; nothing is left', async () => {
    const src = join(work, 'mesh-plugin-flaky')
    const hungPid = join(work, 'hung.pid')
    repo(src, {
      'mesh.json': JSON.stringify({
        mesh_plugin_api: 1,
        compute_types: {
          hangs: {
            available: 'true',
            start_instance: `echo $$ > ${hungPid}; echo starting; sleep 600`,
            detect_stale_instance: 'true',
            clean_up_instance: `echo cleaned >> ${join(work, 'cleaned')}`,
            timeout_s: 2,
          },
          never: {
            available: 'echo "no hypervisor here" >&2; exit 1',
            start_instance: `touch ${join(work, 'never-started')}`,
            detect_stale_instance: 'true',
            clean_up_instance: 'true',
          },
        },
      }),
    })
    assert.equal((await m('install', src)).code, 0)
    const listed = (await meshJson(a, ['plugins'])).plugins.find((p: any) => p.name === 'flaky')
    assert.deepEqual(
      listed.computeTypes.map((t: any) => [t.name, t.available]),
      [
        ['hangs', true],
        ['never', false],
      ],
    )
    const me = (await meshJson(a, ['members'])).find((x: any) => x.self)
    assert.ok(me.computeTypes.includes('hangs') && !me.computeTypes.includes('never'))

    const t0 = Date.now()
    const hung = await m('spawn', '--compute-type', 'hangs')
    assert.notEqual(hung.code, 0)
    assert.match(hung.stderr, /start_instance of plugin 'flaky' timed out after 2 s and was killed/)
    assert.match(hung.stderr, /starting/)
    assert.match(hung.stderr, /what it had started was cleaned up/)
    assert.ok(Date.now() - t0 < 60_000, 'the request did not stay stuck')
    assert.equal(readFileSync(join(work, 'cleaned'), 'utf8').trim(), 'cleaned')
    const pid = Number(readFileSync(hungPid, 'utf8'))
    assert.throws(() => process.kill(pid, 0), 'the hung command was killed')
    assert.deepEqual(await meshJson(a, ['instances']), [])

    const never = await m('spawn', '--compute-type', 'never')
    assert.equal(never.code, 2)
    assert.match(never.stderr, /compute type 'never' is not available on this machine/)
    assert.match(never.stderr, /no hypervisor here/)
    assert.equal(existsSync(join(work, 'never-started')), false)
    assert.deepEqual(await meshJson(a, ['instances']), [])
    assert.equal((await m('uninstall', 'flaky')).code, 0)
  })

  it('built-in process type: spawn two, prune one killed out of band, destroy the other', async () => {
    // each instance is an agent that joins: two start-ups, which took over 30 s at load (CI).
    // --timeout stays under mocha's, so an instance that never joins fails with spawn's reason
    // (token not redeemed / redeemed but not alive), not a bare test timeout
    const two = await meshJson(
      a,
      ['spawn', '--compute-type', 'process', '--count', '2', '--timeout', '75'],
      170_000,
    )
    assert.equal(two.length, 2)
    const [x, y] = two.map((i: any) => i.name)
    const pid = Number(readFileSync(join(a, 'instances', x, 'pid'), 'utf8'))
    process.kill(pid, 'SIGKILL')
    const pruned = await waitFor('prune to find the killed instance', async () => {
      const r = await meshJson(a, ['prune'])
      return r.pruned.length > 0 ? r : false
    })
    assert.deepEqual(pruned.pruned, [x])
    assert.deepEqual(
      (await meshJson(a, ['instances'])).map((i: any) => i.name),
      [y],
    )
    assert.equal((await m('destroy', y)).code, 0)
    const none = await m('destroy', y)
    assert.equal(none.code, 2)
    assert.match(none.stderr, /no instance named/)
  })
})
