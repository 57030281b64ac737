// One stream throughput run between two stream-peer processes on 127.0.0.1 (sim/bench/stream-peer.ts):
// mesh (the agent's libp2p stack), bare libp2p, or plain TCP. Shared by the foundation and
// overlay benchmarks (the latter's "bare mesh stream ceiling" row).
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { ROOT, runBounded, stopProcess, waitForLine } from './report.js'

const PEER = join(ROOT, 'dist', 'sim', 'bench', 'stream-peer.js')
const NODE = process.execPath

/** The last 4 KiB a child printed (stdout and stderr), for error messages. */
export function tail(child: ChildProcess): () => string {
  let out = ''
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-4096)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return () => out.trim()
}

export type Kind = 'mesh' | 'bare' | 'tcp'

export interface StreamSample {
  kind: Kind
  bytes: number
  ms: number
  mbps: number
  senderCpuMs: number
  receiverCpuMs: number
  setupMs: number
}

export async function streamRun(
  kind: Kind,
  o: { bytes: number; chunk: number },
  clusterEnv: string,
): Promise<StreamSample> {
  const env = { ...process.env, MESH_BENCH_CLUSTER: clusterEnv, MESH_BENCH_STACK: kind }
  // the bare libp2p reference runs the same peer code with another stack
  const mode = kind === 'bare' ? 'mesh' : kind
  // stdin is a pipe so that the sink also ends if this process dies
  const sink = spawn(NODE, [PEER, `${mode}-sink`], { stdio: ['pipe', 'pipe', 'pipe'], env })
  const sinkOut = tail(sink)
  try {
    const ready = await waitForLine(
      sink,
      (l) => parse<{ ready?: boolean; addrs?: string[]; port?: number }>(l, 'ready'),
      30_000,
      `${kind} sink`,
    )
    const target = mode === 'mesh' ? ready.addrs?.[0] : String(ready.port)
    if (target === undefined) throw new Error(`${kind} sink has no address: ${sinkOut()}`)
    const received = waitForLine(
      sink,
      (l) => parse<{ received: number; cpuMs: number }>(l, 'received'),
      180_000,
      `${kind} sink`,
    )
    received.catch(() => {})
    const src = await runBounded(NODE, [PEER, `${mode}-source`, target, String(o.bytes), String(o.chunk)], {
      env,
      timeoutMs: 180_000,
    })
    const line = src.stdout.trim().split('\n').pop() ?? ''
    const r = parse<{ bytes: number; ms: number; cpuMs: number; setupMs: number }>(line, 'bytes')
    if (src.code !== 0 || r === undefined) {
      throw new Error(
        `${kind} source failed (${src.timedOut ? 'timeout' : src.code}): ${src.stderr.trim() || src.stdout.trim()}`,
      )
    }
    const rx = await received
    return {
      kind,
      bytes: r.bytes,
      ms: r.ms,
      mbps: r.bytes / 1e6 / (r.ms / 1000),
      senderCpuMs: r.cpuMs,
      receiverCpuMs: rx.cpuMs,
      setupMs: r.setupMs,
    }
  } finally {
    sink.stdin?.end()
    await stopProcess(sink, 5_000)
  }
}

function parse<T>(line: string, key: string): T | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    const v = JSON.parse(line) as Record<string, unknown>
    return key in v ? (v as T) : undefined
  } catch {
    return undefined
  }
}
