// Idle memory of agents nobody queries (sim/PROFILE.md, 'What an idle agent's heap holds'): per build
// one cluster, a founder (asked for tokens and members) and --agents - 1 joiners that only run;
// /proc/PID/smaps_rollup of every joiner after --idle-s (--samples: see below); --query 1 asks each
// joiner 'mesh status' once first; --snap 1 writes a heap snapshot of one joiner (read it with
// sim/heap-by-module.mjs); --metrics 1 serves each agent's /metrics on a loopback port (plain
// node:http, nothing of the control API loads) and reports the joiners' V8 heap from it, and their
// private dirty memory by mapping: anonymous (V8's heap, malloc's mmapped arenas), [heap], the rest.
// Builds run side by side: node sim/idle-unqueried.mjs main=/tmp/rssmain/dist/src/cli/main.js,branch=dist/src/cli/main.js
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { loadavg } from 'node:os'

const args = process.argv.slice(2)
const flag = (n, d) => {
  const i = args.indexOf(n)
  return i < 0 ? d : Number(args[i + 1])
}
const builds = args[0].split(',').map((s) => s.split('='))
const N = flag('--agents', 5),
  IDLE = flag('--idle-s', 90),
  SNAP = flag('--snap', 1),
  METRICS = flag('--metrics', 0)
let nextPort = 19_400
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const procs = []
const kill = () => {
  for (const p of procs)
    try {
      p.kill('SIGKILL')
    } catch {}
}
process.on('exit', kill)
process.on('SIGINT', () => process.exit(130))
const ENV = {
  ...process.env,
  MESH_OVERLAY__INTERFACE: 'false',
  NODE_OPTIONS: '--heapsnapshot-signal=SIGUSR2',
}
const cli = (CLI, dir, ...a) =>
  execFileSync('nice', ['-n', '19', process.execPath, CLI, '--data-dir', dir, ...a], {
    env: ENV,
    encoding: 'utf8',
    timeout: 60_000,
  })
function start(CLI, dir, name, extra = []) {
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
      name,
      ...extra,
    ],
    {
      env: METRICS ? { ...ENV, MESH_METRICS__LISTEN: `127.0.0.1:${nextPort}` } : ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: dir,
    },
  )
  p.metricsPort = nextPort++
  p.stdout.resume()
  p.stderr.resume()
  procs.push(p)
  return p
}
const kb = (pid) => {
  const o = {}
  for (const l of readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(l)
    if (m) o[m[1]] = +m[2] / 1024
  }
  return o
}
// `nice` execs node in place: a child's pid is the agent's
const med = (a) => {
  const s = [...a].sort((x, y) => x - y)
  const n = s.length
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}
const clusters = []
const base = `/tmp/rssrun-${Date.now()}`
for (const [label, CLI] of builds) {
  const dirs = Array.from({ length: N }, (_, i) => `${base}/${label}/a${i}`)
  for (const d of dirs) mkdirSync(d, { recursive: true })
  cli(CLI, dirs[0], 'init', '--cluster', 'lab')
  const founder = start(CLI, dirs[0], `${label}0`)
  clusters.push({ label, CLI, dirs, founder, joiners: [] })
}
for (const c of clusters) {
  for (let t = 0; t < 120 && !existsSync(`${c.dirs[0]}/mesh.sock`); t++) await sleep(500)
}
await sleep(2000)
for (const c of clusters)
  for (let i = 1; i < N; i++)
    c.tokens = [
      ...(c.tokens ?? []),
      cli(c.CLI, c.dirs[0], 'invite')
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('mesh1'))
        .pop(),
    ]
for (let i = 1; i < N; i++)
  for (const c of clusters) {
    c.joiners.push(start(c.CLI, c.dirs[i], `${c.label}${i}`, ['--join', c.tokens[i - 1].trim()]))
    await sleep(1000)
  }
const t0 = Date.now()
for (const c of clusters) {
  for (;;) {
    let alive = 0
    try {
      alive = JSON.parse(cli(c.CLI, c.dirs[0], '--json', 'members')).filter(
        (m) => m.status === 'alive',
      ).length
    } catch (_e) {}
    if (alive === N) break
    if (Date.now() - t0 > 240_000) {
      console.error(c.label, 'not all alive:', alive)
      break
    }
    await sleep(5000)
  }
  console.error(c.label, 'all alive after', ((Date.now() - t0) / 1000).toFixed(0), 's')
}
if (flag('--query', 0))
  for (const c of clusters) for (let i = 1; i < N; i++) cli(c.CLI, c.dirs[i], '--json', 'status')
// --samples K: K reads spread over the idle window's second half, each joiner's median of them
// (one read lands anywhere in a GC cycle: single runs differ by ~2 MiB); 1: one read at its end
const SAMPLES = flag('--samples', 1)
const reads = new Map()
if (SAMPLES > 1) await sleep((IDLE * 1000) / 2)
for (let k = 0; k < SAMPLES; k++) {
  await sleep((IDLE * 1000) / (SAMPLES > 1 ? 2 * SAMPLES : 1))
  for (const c of clusters) for (const p of c.joiners) reads.set(p, [...(reads.get(p) ?? []), kb(p.pid)])
}
const medRead = (p) => {
  const rs = reads.get(p)
  return Object.fromEntries(Object.keys(rs[0]).map((k) => [k, med(rs.map((r) => r[k]))]))
}
const la = loadavg()
  .map((x) => x.toFixed(1))
  .join(' ')
const out = {}
for (const c of clusters) {
  const rows = c.joiners.map(medRead)
  out[c.label] = rows
  const f = (k) => med(rows.map((r) => r[k])).toFixed(1)
  console.log(
    `${c.label}: joiners ${rows.length}, load ${la}: RSS median ${f('Rss')} (${rows.map((r) => r.Rss.toFixed(1)).join(' ')}), PSS ${f('Pss')}, private dirty ${f('Private_Dirty')}, shared clean ${f('Shared_Clean')}; founder RSS ${kb(c.founder.pid).Rss.toFixed(1)}`,
  )
}
// private dirty MiB by mapping: anonymous, [heap], the rest
const dirtyByMapping = (pid) => {
  const o = { anon: 0, brk: 0, other: 0 }
  let kind = 'other'
  for (const l of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(l)
    if (head) kind = head[1] === '' ? 'anon' : head[1] === '[heap]' ? 'brk' : 'other'
    const m = /^Private_Dirty:\s+(\d+) kB/.exec(l)
    if (m) o[kind] += +m[1] / 1024
  }
  return o
}
const heapOf = async (port) => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const get = (n) => Number(new RegExp(`^${n}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20
  return {
    committed: get('mesh_process_nodejs_heap_size_total_bytes'),
    used: get('mesh_process_nodejs_heap_size_used_bytes'),
    external: get('mesh_process_nodejs_external_memory_bytes'),
  }
}
if (METRICS)
  for (const c of clusters) {
    const d = c.joiners.map((p) => dirtyByMapping(p.pid))
    const h = []
    for (const p of c.joiners) h.push(await heapOf(p.metricsPort))
    const f = (rows, k) => med(rows.map((r) => r[k])).toFixed(1)
    console.log(
      `${c.label}: joiners' V8 heap committed ${f(h, 'committed')} (${h.map((x) => x.committed.toFixed(1)).join(' ')}), used ${f(h, 'used')}, external ${f(h, 'external')}; private dirty anonymous ${f(d, 'anon')}, [heap] ${f(d, 'brk')}, other ${f(d, 'other')}`,
    )
  }
if (SNAP)
  for (const c of clusters) {
    const p = c.joiners[0]
    const dir = c.dirs[1]
    p.kill('SIGUSR2')
    for (let t = 0; t < 120; t++) {
      await sleep(1000)
      const f = readdirSync(dir).filter((x) => x.endsWith('.heapsnapshot'))
      if (f.length) {
        let last = -1
        for (;;) {
          // V8 writes nothing until its full GC and the graph are done: an empty file is not finished
          const sz = statSync(`${dir}/${f[0]}`).size
          if (sz > 0 && sz === last) break
          last = sz
          await sleep(3000)
        }
        console.log(c.label, 'snapshot', `${dir}/${f[0]}`)
        break
      }
    }
  }
for (const p of procs)
  try {
    p.kill('SIGTERM')
  } catch {}
await sleep(5000)
kill()
console.log('dirs', base)
