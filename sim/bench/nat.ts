// NAT traversal benchmark (not a test; root, network namespaces in 198.18.0.0/16): how often,
// and how fast, two members behind NAT get a direct WebRTC path through the cluster's own STUN,
// over N fresh attempts, for home-router NATs and for symmetric NATs; and what that path is
// worth: scp of the same file A -> B over it and over the relay, in the same run.
//
//   npm run build && node dist/sim/bench/nat.js [--attempts 20] [--mib 50] [--only home|symmetric]
//
// Each attempt restarts B's agent (same identity: no new token); its relayed connection to A
// comes back through the hub and is then upgraded, or not. Success: A and B hold a WebRTC
// connection within 20 s. Time: from B answering its control API to A's path reading webrtc.

import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Agent, natLab, ok, waitFor } from '../../test/system/world.js'
import { parseFlags, positive } from './args.js'
import { fmt, fmtStats, machineInfo, machineMarkdown, markdownTable, stats, writeReport } from './report.js'

interface Options {
  attempts: number
  mib: number
  only?: 'home' | 'symmetric'
}

function parseArgs(argv: string[]): Options {
  const o: Options = { attempts: 20, mib: 50 }
  parseFlags(
    argv,
    {
      '--attempts': (next) => {
        o.attempts = Math.max(1, Math.min(500, Math.round(positive('--attempts', next()))))
      },
      '--mib': (next) => {
        o.mib = Math.max(1, Math.min(2048, positive('--mib', next())))
      },
      '--only': (next) => {
        const v = next()
        if (v !== 'home' && v !== 'symmetric') throw new Error('--only needs home or symmetric')
        o.only = v
      },
    },
    'use --attempts N --mib N --only home|symmetric',
  )
  return o
}

interface KindResult {
  kind: 'home-router NAT' | 'symmetric NAT'
  attempts: number
  direct: number
  upgradeMs: number[]
  scpMiBs?: number
  scpPath?: string
}

async function runKind(symmetric: boolean, o: Options): Promise<KindResult> {
  const L = await natLab(symmetric)
  const { w, a } = L
  let b: Agent = L.b
  const r: KindResult = {
    kind: symmetric ? 'symmetric NAT' : 'home-router NAT',
    attempts: 0,
    direct: 0,
    upgradeMs: [],
  }
  try {
    for (let i = 0; i < o.attempts; i++) {
      // restart B: its connections go, it comes back through the hub with the same identity
      b.child.kill('SIGTERM')
      await waitFor(
        'B to exit',
        async () => b.child.exitCode !== null || b.child.signalCode !== null,
        20_000,
        100,
      )
      // and A no longer counts the old path (a stale WebRTC connection would read as success)
      await waitFor(
        'A to drop its path to B',
        async () => (await w.member(a, 'b'))?.path !== 'webrtc',
        30_000,
        200,
      )
      b = w.agent('b', L.bHost)
      await w.ready(b)
      const t0 = Date.now()
      r.attempts++
      try {
        await waitFor(
          'a WebRTC path A <-> B',
          async () =>
            (await w.member(a, 'b'))?.path === 'webrtc' && (await w.member(a, 'b'))?.status === 'alive',
          20_000,
          100,
        )
        r.direct++
        r.upgradeMs.push(Date.now() - t0)
      } catch {
        // stayed relayed: the failure this benchmark counts
      }
    }
    // what the path is worth: the same scp over whatever path the pair has now
    const cfg = join(w.tmp, 'ssh_config')
    writeFileSync(cfg, ok(await w.mesh(a, ['ssh-config']), 'mesh ssh-config'))
    const src = join(w.tmp, 'bench.bin')
    writeFileSync(src, randomBytes(o.mib << 20))
    const t0 = Date.now()
    ok(
      await w.lab.exec(
        a.host,
        ['scp', '-F', cfg, ...w.sshOpts(), src, `root@b.mesh:${join(w.tmp, 'got.bin')}`],
        {
          timeoutMs: 600_000,
        },
      ),
      'scp',
    )
    r.scpMiBs = o.mib / ((Date.now() - t0) / 1000)
    r.scpPath = (await w.member(a, 'b'))?.path
    return r
  } finally {
    await w.cleanup()
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  if (process.getuid?.() !== 0) {
    process.stdout.write('nat bench: skipped: needs root for network namespaces\n')
    writeReport('nat', { skipped: 'needs root' })
    process.exit(0)
  }
  const machine = machineInfo()
  const results: KindResult[] = []
  for (const symmetric of [false, true]) {
    if (o.only === undefined || o.only === (symmetric ? 'symmetric' : 'home'))
      results.push(await runKind(symmetric, o))
  }
  const out = [
    '## NAT traversal: direct WebRTC paths through the cluster STUN (netns lab)',
    '',
    machineMarkdown(machine),
    '',
    markdownTable(
      [
        'NATs',
        'direct (WebRTC) / attempts',
        'B back -> path webrtc, ms median (min-max)',
        `scp ${o.mib} MiB A -> B, MiB/s`,
        'path of that scp',
      ],
      results.map((r) => [
        r.kind,
        `${r.direct} / ${r.attempts}`,
        r.upgradeMs.length > 0 ? fmtStats(stats(r.upgradeMs), 0) : '-',
        fmt(r.scpMiBs, 1),
        r.scpPath ?? '-',
      ]),
      ['l', 'r', 'r', 'r', 'l'],
    ),
    '',
  ]
  const cone = results.find((r) => r.kind === 'home-router NAT')
  const sym = results.find((r) => r.kind === 'symmetric NAT')
  if (cone?.scpMiBs !== undefined && sym?.scpMiBs !== undefined)
    out.push(`direct (WebRTC) / relayed scp throughput: ${fmt(cone.scpMiBs / sym.scpMiBs, 2)}`, '')
  const path = writeReport('nat', { machine, options: o, results })
  process.stdout.write(`${out.join('\n')}\nJSON: ${path}\n`)
  process.exit(0)
}

main().catch((err) => {
  console.error(`nat bench: ${(err as Error)?.stack ?? String(err)}`)
  process.exit(1)
})
