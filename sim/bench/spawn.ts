// Spawn benchmark (not a test): time from `mesh spawn --compute-type docker` until the new
// member is alive everywhere (on the spawning agent, which `mesh spawn` waits for, and on two
// witness containers spawned beforehand), median of N; the process compute type side by side
// (alive at the spawner and at one witness process).
//
//   npm run build && node dist/sim/bench/spawn.js [--runs 5] [--image TAG] [--skip-docker]
//
// Needs root and a dockerd whose bridge is in 198.18.0.0/15 (.ci/run starts one); builds the
// image offline with docker/build-offline.sh unless --image is given. Traffic stays on 127.0.0.1
// and the docker bridge. Every container, image and process it starts is removed, also on failure.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MeshAgent } from './agents.js'
import { parseFlags } from './args.js'
import {
  fmtStats,
  machineInfo,
  machineMarkdown,
  markdownTable,
  ROOT,
  runBounded,
  type Stats,
  sleep,
  stats,
  writeReport,
} from './report.js'

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js')

function parseArgs(argv: string[]) {
  const o = { runs: 5, image: undefined as string | undefined, skipDocker: false, skipProcess: false }
  parseFlags(
    argv,
    {
      '--runs': (next) => (o.runs = Math.max(1, Math.min(50, Number(next())))),
      '--image': (next) => (o.image = next()),
      '--skip-docker': () => (o.skipDocker = true),
      '--skip-process': () => (o.skipProcess = true),
    },
    'use --runs N, --image TAG, --skip-docker, --skip-process',
  )
  return o
}

async function meshJson(dataDir: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 300_000) {
  const r = await runBounded(process.execPath, [CLI, '--data-dir', dataDir, '--json', ...args], {
    timeoutMs,
    env: { ...process.env, ...env },
  })
  if (r.code !== 0) throw new Error(`mesh ${args.join(' ')}: ${r.stderr.trim()}`)
  return JSON.parse(r.stdout)
}

/** Poll `seesAlive` for every witness until all say yes; bounded. Returns ms since t0. */
async function aliveEverywhere(t0: number, witnesses: Array<() => Promise<boolean>>, timeoutMs = 120_000) {
  const pending = new Set(witnesses)
  const deadline = Date.now() + timeoutMs
  while (pending.size > 0) {
    if (Date.now() > deadline) throw new Error('not alive everywhere within the time limit')
    await Promise.all(
      [...pending].map(async (w) => {
        if (await w().catch(() => false)) pending.delete(w)
      }),
    )
    if (pending.size > 0) await sleep(100)
  }
  return performance.now() - t0
}

async function bench(
  type: string,
  runs: number,
  dataDir: string,
  env: NodeJS.ProcessEnv,
  witnessOf: (name: string) => (target: string) => Promise<boolean>,
) {
  const witnesses = await meshJson(
    dataDir,
    ['spawn', '--compute-type', type, '--count', type === 'docker' ? '2' : '1'],
    env,
  )
  const spawnMs: number[] = []
  const everywhereMs: number[] = []
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    const [inst] = await meshJson(dataDir, ['spawn', '--compute-type', type], env)
    spawnMs.push(performance.now() - t0)
    everywhereMs.push(
      await aliveEverywhere(
        t0,
        witnesses.map((w: any) => () => witnessOf(w.name)(inst.name)),
      ),
    )
    await meshJson(dataDir, ['destroy', inst.name], env)
    process.stderr.write(`${type} run ${i + 1}/${runs}: ${Math.round(everywhereMs[i])} ms\n`)
  }
  for (const w of witnesses) await meshJson(dataDir, ['destroy', w.name], env)
  return { spawn: stats(spawnMs), everywhere: stats(everywhereMs) }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const tmp = mkdtempSync(join(tmpdir(), 'mesh-bench-spawn-'))
  const cluster = `bs${process.pid}`
  const image = o.image ?? `mesh-bench:${process.pid}`
  let agent: MeshAgent | undefined
  const results: Record<string, { spawn: Stats; everywhere: Stats }> = {}
  let docker = !o.skipDocker
  try {
    let gw = '127.0.0.1'
    if (docker) {
      try {
        execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 15_000 })
        gw = execFileSync(
          'docker',
          ['network', 'inspect', 'bridge', '-f', '{{(index .IPAM.Config 0).Gateway}}'],
          {
            encoding: 'utf8',
          },
        ).trim()
        if (!/^198\.1[89]\./.test(gw)) throw new Error(`docker bridge ${gw} is outside 198.18.0.0/15`)
        if (o.image === undefined) {
          process.stderr.write('building the offline image...\n')
          const b = await runBounded(join(ROOT, 'docker', 'build-offline.sh'), [image], {
            timeoutMs: 600_000,
          })
          if (b.code !== 0) throw new Error(`image build failed: ${b.stderr}`)
        }
      } catch (err) {
        process.stderr.write(`docker part skipped: ${(err as Error).message}\n`)
        docker = false
      }
    }
    const dataDir = join(tmp, 'a')
    const env = { MESH_DOCKER_IMAGE: image, MESH_LOG_LEVEL: 'warn' }
    agent = new MeshAgent(dataDir, {
      name: 'bench-a',
      args: ['--init', cluster, ...(docker ? ['--listen', `/ip4/${gw}/tcp/0`] : [])],
      env,
    }).start()
    await agent.ready(30_000)
    if (!o.skipProcess)
      results.process = await bench('process', o.runs, dataDir, env, (w) => async (target) => {
        const ms = await meshJson(join(dataDir, 'instances', w, 'data'), ['members'], {}, 10_000)
        return ms.some((m: any) => m.name === target && m.status === 'alive')
      })
    if (docker) {
      results.docker = await bench('docker', o.runs, dataDir, env, (w) => async (target) => {
        const r = await runBounded(
          'docker',
          ['exec', w, 'mesh', '--data-dir', '/var/lib/mesh', '--json', 'members'],
          {
            timeoutMs: 10_000,
          },
        )
        return (
          r.code === 0 && JSON.parse(r.stdout).some((m: any) => m.name === target && m.status === 'alive')
        )
      })
    }
  } finally {
    if (agent !== undefined) await agent.stop()
    if (docker) {
      try {
        const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=mesh.cluster=${cluster}`], {
          encoding: 'utf8',
        })
          .split('\n')
          .filter((s) => s !== '')
        if (ids.length > 0) execFileSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' })
        if (o.image === undefined) execFileSync('docker', ['rmi', '-f', image], { stdio: 'ignore' })
      } catch {}
    }
    // process instances are detached: stop any a failed run left
    const dir = join(tmp, 'a', 'instances')
    for (const name of existsSync(dir) ? readdirSync(dir) : []) {
      try {
        process.kill(Number(readFileSync(join(dir, name, 'pid'), 'utf8')), 'SIGKILL')
      } catch {}
    }
    rmSync(tmp, { recursive: true, force: true })
  }
  const machine = machineInfo()
  const secs = (x: Stats) => stats(x.samples.map((v) => v / 1000))
  const rows = Object.entries(results).map(([type, r]) => [
    type,
    fmtStats(secs(r.spawn)),
    fmtStats(secs(r.everywhere)),
  ])
  process.stdout.write(
    `## mesh spawn: time to a new member alive everywhere (median of ${o.runs}, seconds, min-max)\n\n` +
      markdownTable(['compute type', '`mesh spawn` returns (alive at spawner)', 'alive everywhere'], rows, [
        'l',
        'r',
        'r',
      ]) +
      `\n${machineMarkdown(machine)}\n`,
  )
  const path = writeReport('spawn', { runs: o.runs, results, machine })
  process.stdout.write(`report: ${path}\n`)
}

await main()
