// Election benchmark (not a test): five real agents on 127.0.0.1, two of them able to run the
// compute type (a shell command that starts a real `sleep` process). A requester without it asks
// N times; for each request we time, on the requester's control API event stream, request ->
// decided (every voter voted, winner known) and request -> allocated (the winner's ALLOCATED
// report arrived back), then cancel it and wait for the process to be stopped.
//
//   npm run build && node dist/sim/bench/election.js [--requests 20]
//
// Prints a markdown table and writes sim/out/election-<time>.json. Traffic stays on 127.0.0.1;
// every wait is bounded; every agent and instance is stopped at the end, also on failure.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ApiClient } from '../../src/api/client.js'
import type { MeshEvent } from '../../src/kernel/events.js'
import {
  type AgentProcess,
  Fixture,
  mesh,
  meshJson,
  waitFor,
} from '../../test/integration/cluster-harness.js'
import { parseFlags, positive } from './args.js'
import { fmtStats, machineInfo, machineMarkdown, markdownTable, stats, writeReport } from './report.js'

function parseArgs(argv: string[]): { requests: number } {
  const o = { requests: 20 }
  parseFlags(
    argv,
    {
      '--requests': (next) => {
        const n = positive('--requests', next())
        if (!Number.isInteger(n)) throw new Error('--requests needs a positive integer')
        o.requests = Math.min(500, n)
      },
    },
    'use --requests N',
  )
  return o
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  const machine = machineInfo()
  const fx = new Fixture()
  const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo']
  const agents: AgentProcess[] = []
  const ctl = new AbortController()
  try {
    const dirs = names.map(() => fx.tempDir('mesh-elbench-'))
    for (const [i, n] of names.entries()) {
      const cmd = 'sleep 300 & wait'
      writeFileSync(
        join(dirs[i], 'config.yaml'),
        n === 'bravo' || n === 'charlie'
          ? `elections:\n  commands:\n    sleeper: ${JSON.stringify(cmd)}\n`
          : '',
      )
    }
    const init = await mesh(['--data-dir', dirs[0], 'init', '--cluster', 'bench'])
    if (init.code !== 0) throw new Error(init.stderr)
    agents.push(fx.agent(dirs[0], ['--name', names[0]]).start([], { MESH_LOG_LEVEL: 'warn' }))
    await agents[0].ready()
    for (let i = 1; i < names.length; i++) {
      const { token } = await meshJson<{ token: string }>(dirs[0], ['invite'])
      agents.push(
        fx.agent(dirs[i], ['--name', names[i]]).start(['--join', token], { MESH_LOG_LEVEL: 'warn' }),
      )
    }
    for (const a of agents) await a.ready()
    await waitFor(
      'five members alive on every member',
      async () => {
        for (const a of agents) {
          const ms = await meshJson<Array<{ status: string }>>(a.dataDir, ['members'])
          if (ms.filter((m) => m.status === 'alive').length !== 5) return false
        }
        return true
      },
      60_000,
    )
    const api = new ApiClient(join(dirs[0], 'mesh.sock'), dirs[0])
    const events: MeshEvent[] = []
    const waiters: Array<() => void> = []
    void api
      .events((e) => {
        events.push({ ...(e as MeshEvent), time: performance.now() })
        for (const w of waiters.splice(0)) w()
      }, ctl.signal)
      .catch(() => {})
    const waitEvent = async (pred: (e: MeshEvent) => boolean, what: string): Promise<MeshEvent> => {
      const deadline = Date.now() + 30_000
      for (;;) {
        const hit = events.find(pred)
        if (hit !== undefined) return hit
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
        await new Promise<void>((r) => {
          waiters.push(r)
          setTimeout(r, 500).unref()
        })
      }
    }
    await new Promise((r) => setTimeout(r, 500))
    const decided: number[] = []
    const allocated: number[] = []
    for (let i = 0; i < opts.requests; i++) {
      const t0 = performance.now()
      const { id } = await api.call<{ id: string }>('POST', '/v1/requests', { computeType: 'sleeper' })
      const d = await waitEvent((e) => e.type === 'request_decided' && e.data.id === id, `decision of ${id}`)
      const a = await waitEvent(
        (e) => e.type === 'request_change' && e.data.id === id && e.data.status === 'allocated',
        `allocation of ${id}`,
      )
      decided.push(d.time - t0)
      allocated.push(a.time - t0)
      await api.call('POST', `/v1/requests/${id}/cancel`)
      await waitEvent(
        (e) => e.type === 'request_change' && e.data.id === id && e.data.report === 'DEALLOCATED',
        `deallocation of ${id}`,
      )
    }
    const ds = stats(decided)
    const as = stats(allocated)
    const table = markdownTable(
      [`measure (5 agents, loopback, N = ${opts.requests})`, 'ms'],
      [
        ['request -> decided (all 5 voted, winner known on the requester)', fmtStats(ds)],
        ['request -> allocated (winner started the process, report back)', fmtStats(as)],
        ['Aquarium Fish, for comparison (votes checked every 5 s, 30 s rounds)', '≥ 5,000 per round'],
      ],
      ['l', 'r'],
    )
    console.log(`\n${machineMarkdown(machine)}\n\n${table}`)
    const path = writeReport('election', {
      machine,
      requests: opts.requests,
      decidedMs: ds,
      allocatedMs: as,
      raw: { decided, allocated },
    })
    console.log(`wrote ${path}`)
  } finally {
    ctl.abort()
    await fx.cleanup()
  }
}

await main()
