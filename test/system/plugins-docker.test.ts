// The docker compute type end to end, with a real dockerd (started by .ci/run, its bridge in
// 198.19.0.0/16) and an image built offline from this machine's runtime (docker/build-offline.sh):
// spawn three containers that join by themselves, ssh into one through the overlay, firewall
// the direct path between two, destroy one, prune one removed behind our back, and provision
// over SSH with a server type from a git plugin. Containers, the image and agents are removed
// whatever happens.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Fixture, mesh, meshJson, waitFor } from '../integration/cluster-harness.js'
import { requireSystem } from './harness.js'

const ROOT = resolve(import.meta.dirname, '../../..')

/** Run a program to completion, bounded; never throws. */
function run(cmd: string, args: string[], timeoutMs = 60_000, env: NodeJS.ProcessEnv = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((res) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (e) => {
      clearTimeout(t)
      res({ code: null, stdout, stderr: stderr + e.message })
    })
    child.on('close', (code) => {
      clearTimeout(t)
      res({ code, stdout, stderr })
    })
  })
}

const inContainer = (name: string, ...args: string[]) =>
  run('docker', ['exec', name, 'mesh', '--data-dir', '/var/lib/mesh', ...args])

async function containerMembers(name: string): Promise<any[]> {
  const r = await inContainer(name, '--json', 'members')
  if (r.code !== 0) throw new Error(`mesh members in ${name}: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

describe('plugins: docker compute type (system)', function () {
  this.timeout(600_000)
  const fx = new Fixture()
  const cluster = `pl${process.pid}`
  const image = `mesh-test:${process.pid}`
  let a: string
  let home: string
  let env: NodeJS.ProcessEnv
  let names: string[] = []
  const m = (...args: string[]) => mesh(['--data-dir', a, ...args], { timeoutMs: 300_000, env })

  before(async function () {
    requireSystem.call(this, ['root', 'docker', 'sshd'])
    const build = await run(join(ROOT, 'docker', 'build-offline.sh'), [image], 300_000)
    assert.equal(build.code, 0, `building the offline image failed: ${build.stderr}`)
    const gw = execFileSync(
      'docker',
      ['network', 'inspect', 'bridge', '-f', '{{(index .IPAM.Config 0).Gateway}}'],
      {
        encoding: 'utf8',
      },
    ).trim()
    assert.match(
      gw,
      /^198\.1[89]\./,
      `the docker bridge (${gw}) must be in 198.18.0.0/15: start dockerd with --bip`,
    )
    // the user: a home with an ssh key, which spawned containers authorize
    home = fx.tempDir('mesh-pd-home-')
    mkdirSync(join(home, '.ssh'), { mode: 0o700 })
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(home, '.ssh', 'id_ed25519')])
    writeFileSync(
      join(home, '.ssh', 'config'),
      'Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n',
    )
    env = { HOME: home, SSH_AUTH_SOCK: '', MESH_DOCKER_IMAGE: image, MESH_LOG_LEVEL: 'warn' }
    a = fx.tempDir('mesh-pd-a-')
    await fx
      .agent(a, ['--init', cluster, '--name', 'node-a', '--listen', `/ip4/${gw}/tcp/0`])
      .start([], env)
      .ready()
  })

  after(async () => {
    const ids = await run('docker', ['ps', '-aq', '--filter', `label=mesh.cluster=${cluster}`])
    const list = ids.stdout.split('\n').filter((s) => s !== '')
    if (list.length > 0) await run('docker', ['rm', '-f', ...list])
    await run('docker', ['rmi', '-f', image])
    await fx.cleanup()
  })

  it('offers docker here, and three spawned containers make four alive members', async () => {
    const res = await meshJson(a, ['plugins'])
    const docker = res.plugins.find((p: any) => p.name === 'docker')
    assert.deepEqual(docker.computeTypes, [{ name: 'docker', available: true }])
    const r = await m('--json', 'spawn', '--compute-type', 'docker', '--count', '3')
    assert.equal(r.code, 0, r.stderr)
    const spawned = JSON.parse(r.stdout)
    names = spawned.map((i: any) => i.name)
    assert.equal(names.length, 3)
    for (const i of spawned) assert.match(i.host, /^198\.1[89]\./)
    const members = await meshJson(a, ['members'])
    assert.deepEqual(
      members
        .filter((x: any) => x.status === 'alive')
        .map((x: any) => x.name)
        .sort(),
      ['node-a', ...names].sort(),
    )
    // every container sees the same four alive members
    for (const n of names) {
      await waitFor(
        `${n} to see four alive members`,
        async () => {
          const theirs = await containerMembers(n)
          return theirs.filter((x) => x.status === 'alive').length === 4
        },
        60_000,
        1000,
      )
    }
  })

  it('mesh ssh into a container runs hostname there', async () => {
    // ssh reads ~/.ssh from the passwd entry, not $HOME: a wrapper hands it the test user's files
    const wrapper = join(home, 'ssh')
    writeFileSync(wrapper, `#!/bin/sh\nexec ssh -F ${home}/.ssh/config -i ${home}/.ssh/id_ed25519 "$@"\n`, {
      mode: 0o755,
    })
    const r = await run(
      process.execPath,
      [
        join(ROOT, 'dist/src/cli/main.js'),
        '--data-dir',
        a,
        'ssh',
        '--ssh',
        wrapper,
        `root@${names[0]}`,
        '--',
        'hostname',
      ],
      60_000,
      env,
    )
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), names[0])
  })

  it('with the direct path between two containers firewalled, they still reach each other', async () => {
    const [x, y] = names
    const ip = (n: string) =>
      execFileSync(
        'docker',
        ['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', n],
        {
          encoding: 'utf8',
        },
      ).trim()
    const pid = (n: string) =>
      execFileSync('docker', ['inspect', '-f', '{{.State.Pid}}', n], { encoding: 'utf8' }).trim()
    // drop everything between x and y, in x's network namespace (the host's iptables, x's rules)
    for (const [chain, flag] of [
      ['INPUT', '-s'],
      ['OUTPUT', '-d'],
    ]) {
      execFileSync('nsenter', ['-t', pid(x), '-n', 'iptables', '-I', chain, flag, ip(y), '-j', 'DROP'])
    }
    // the open direct connection dies with the firewall; reconnect through the others
    await inContainer(x, 'members', '--rejoin')
    const seen = await waitFor(
      `${x} to reach ${y} around the firewall`,
      async () => {
        const r = await run(
          'docker',
          ['exec', x, 'sh', '-c', `sleep 2 | mesh --data-dir /var/lib/mesh proxy ${y} 22 | head -c 7`],
          30_000,
        )
        return r.stdout === 'SSH-2.0' ? r : false
      },
      120_000,
      2000,
    )
    assert.equal(seen.stdout, 'SSH-2.0')
    const theirs = await containerMembers(x)
    assert.equal(theirs.find((m2) => m2.name === y)?.status, 'alive')
  })

  it('mesh destroy removes an instance everywhere', async () => {
    const gone = names[2]
    const r = await m('destroy', gone)
    assert.equal(r.code, 0, r.stderr)
    const ps = await run('docker', ['ps', '-aq', '--filter', `name=^${gone}$`])
    assert.equal(ps.stdout.trim(), '')
    await waitFor(
      `${gone} to have left, as seen from node-a and ${names[0]}`,
      async () => {
        const mine = (await meshJson(a, ['members'])).find((x: any) => x.name === gone)
        const theirs = (await containerMembers(names[0])).find((x) => x.name === gone)
        return mine?.status === 'left' && theirs?.status === 'left'
      },
      60_000,
      1000,
    )
    assert.deepEqual(
      (await meshJson(a, ['instances'])).map((i: any) => i.name).sort(),
      names.slice(0, 2).sort(),
    )
  })

  it('mesh prune cleans the record of a container removed out of band', async () => {
    const victim = names[1]
    await run('docker', ['rm', '-f', victim])
    // mesh instances asks the compute type, so it shows the truth before any prune
    const listed = await meshJson(a, ['instances'])
    assert.equal(listed.find((i: any) => i.name === victim)?.status, 'gone')
    assert.equal(listed.find((i: any) => i.name === names[0])?.status, 'running')
    const r = await meshJson(a, ['prune'])
    assert.deepEqual(r.pruned, [victim])
    assert.deepEqual(
      (await meshJson(a, ['instances'])).map((i: any) => i.name),
      [names[0]],
    )
  })

  it('a server type from a git plugin provisions a container over SSH', async () => {
    const src = join(fx.tempDir('mesh-pd-repo-'), 'mesh-plugin-marker')
    mkdirSync(src)
    writeFileSync(
      join(src, 'mesh.json'),
      JSON.stringify({
        mesh_plugin_api: 1,
        server_types: { marker: { bootstrap: 'echo "$MESH_SERVER_TYPE $MESH_INSTANCE_ID" > /root/marker' } },
      }),
    )
    const git = (...args: string[]) =>
      execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: src })
    git('init', '-q')
    git('add', '-A')
    git('commit', '-qm', 'marker')
    assert.equal((await m('install', src)).code, 0)
    const r = await m('--json', 'spawn', '--compute-type', 'docker', '--server-type', 'marker')
    assert.equal(r.code, 0, r.stderr)
    const [inst] = JSON.parse(r.stdout)
    const marker = await run('docker', ['exec', inst.name, 'cat', '/root/marker'])
    assert.equal(marker.stdout.trim(), `marker ${inst.name}`)
    assert.equal((await m('destroy', inst.name)).code, 0)
    assert.equal((await m('uninstall', 'marker')).code, 0)
  })
})
