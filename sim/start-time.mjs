// Start-up time of `mesh agent` per build (sim/PROFILE.md, 'An idle agent without zod'): for each
// build, --rounds starts of one agent from an initialised data dir, builds alternating; per start
// the ms until its 'running' line (startAgent resolved), until GET /v1/status over the control
// socket answers (the first request loads fastify and the routes), and the CPU ms it used by then
// (all threads, and the main thread alone at 'running').
// node sim/start-time.mjs main=/tmp/zbase/dist/src/cli/main.js,branch=dist/src/cli/main.js --rounds 10
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { loadavg } from 'node:os'

const args = process.argv.slice(2)
const builds = args[0].split(',').map((s) => s.split('='))
const ri = args.indexOf('--rounds')
const ROUNDS = ri < 0 ? 10 : Number(args[ri + 1])
const ENV = { ...process.env, MESH_OVERLAY__INTERFACE: 'false' }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const base = `/tmp/starttime-${Date.now()}`
const TICK = 100 // clock ticks per second of /proc/PID/stat
// the process's CPU ms (every thread); with main, its main thread's only
const cpuMs = (pid, main = false) => {
  const f = readFileSync(main ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8')
    .split(') ')[1]
    .split(' ')
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICK
}
const status = (sock) =>
  new Promise((resolve) => {
    const req = request({ socketPath: sock, path: '/v1/status' }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode === 200))
    })
    req.on('error', () => resolve(false))
    req.end()
  })
const med = (a) => {
  const s = [...a].sort((x, y) => x - y)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function once(CLI, dir) {
  const t0 = performance.now()
  const p = spawn(
    'nice',
    [
      '-n',
      '19',
      process.execPath,
      CLI,
      '--data-dir',
      dir,
      'agent',
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--name',
      'timed',
    ],
    {
      env: ENV,
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  )
  let out = ''
  let running
  let cpuRunning
  let mainCpuRunning
  p.stdout.on('data', (b) => {
    out += b
    if (running === undefined && out.includes(' running ')) {
      running = performance.now() - t0
      cpuRunning = cpuMs(p.pid)
      mainCpuRunning = cpuMs(p.pid, true)
    }
  })
  const sock = `${dir}/mesh.sock`
  let answered
  while (answered === undefined && performance.now() - t0 < 60_000) {
    if (running !== undefined && existsSync(sock) && (await status(sock))) answered = performance.now() - t0
    else await sleep(5)
  }
  const cpu = cpuMs(p.pid)
  p.kill('SIGTERM')
  await new Promise((r) => p.once('exit', r))
  return { running, answered, cpuRunning, mainCpuRunning, cpu }
}

const rows = Object.fromEntries(builds.map(([l]) => [l, []]))
for (const [label, CLI] of builds) {
  mkdirSync(`${base}/${label}`, { recursive: true })
  execFileSync(process.execPath, [CLI, '--data-dir', `${base}/${label}`, 'init', '--cluster', 'lab'], {
    env: ENV,
  })
}
for (let r = 0; r < ROUNDS; r++)
  for (const [label, CLI] of r % 2 ? [...builds].reverse() : builds)
    rows[label].push(await once(CLI, `${base}/${label}`))
const la = loadavg()
  .map((x) => x.toFixed(2))
  .join(' ')
for (const [label] of builds) {
  const f = (k) => med(rows[label].map((x) => x[k])).toFixed(0)
  console.log(
    `${label}: ${ROUNDS} starts, load ${la}: 'running' after ${f('running')} ms (CPU ${f('cpuRunning')} ms, main thread ${f('mainCpuRunning')}), /v1/status answered after ${f('answered')} ms (CPU ${f('cpu')} ms); running: ${rows[label].map((x) => x.running.toFixed(0)).join(' ')}`,
  )
}
rmSync(base, { recursive: true, force: true })
