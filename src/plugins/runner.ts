import { spawn } from 'node:child_process'

export interface RunOptions {
  /** the directory the command runs in (the plugin's directory) */
  cwd: string
  /** extra environment, on top of the agent's own */
  env: Record<string, string | undefined>
  timeoutMs: number
  /** bytes of stdout and of stderr kept (the rest is dropped, and counted) */
  maxOutput?: number
  /** written to the command's stdin, then closed */
  stdin?: string
  signal?: AbortSignal
}

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  timedOut: boolean
  ms: number
}

const DEFAULT_MAX_OUTPUT = 64 * 1024

/**
 * Run a plugin command: `/bin/sh -c COMMAND` in `cwd`, in its own process group. On timeout
 * (or abort) the whole group gets SIGTERM, then SIGKILL 2 s later, so a hung command never
 * leaves a request stuck nor a child behind. Output is captured up to `maxOutput` bytes each.
 */
export function runCommand(command: string, opts: RunOptions): Promise<RunResult> {
  const max = opts.maxOutput ?? DEFAULT_MAX_OUTPUT
  const t0 = performance.now()
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true, // its own process group, killed as a whole
    })
    const out = { stdout: '', stderr: '', dropped: 0 }
    const take = (which: 'stdout' | 'stderr') => (d: Buffer) => {
      const room = max - out[which].length
      if (room > 0) out[which] += d.toString('utf8', 0, Math.min(room, d.length))
      if (d.length > room) out.dropped += d.length - Math.max(room, 0)
    }
    child.stdout.on('data', take('stdout'))
    child.stderr.on('data', take('stderr'))
    child.stdin.on('error', () => {})
    child.stdin.end(opts.stdin ?? '')
    let timedOut = false
    let killTimer: NodeJS.Timeout | undefined
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig)
      } catch {}
    }
    const stop = () => {
      if (timedOut) return
      timedOut = true
      killGroup('SIGTERM')
      killTimer = setTimeout(() => killGroup('SIGKILL'), 2000)
    }
    const timer = setTimeout(stop, opts.timeoutMs)
    opts.signal?.addEventListener('abort', stop, { once: true })
    let done = false
    const finish = (code: number | null, signal: NodeJS.Signals | null, err?: Error) => {
      if (done) return
      done = true
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', stop)
      // whatever the command left in its group goes with it
      killGroup('SIGKILL')
      if (killTimer !== undefined) clearTimeout(killTimer)
      if (out.dropped > 0) out.stderr += `\n[mesh: ${out.dropped} bytes of output dropped]`
      if (err !== undefined) out.stderr += `\n[mesh: ${err.message}]`
      resolve({ code, signal, stdout: out.stdout, stderr: out.stderr, timedOut, ms: performance.now() - t0 })
    }
    child.on('error', (err) => finish(null, null, err))
    // 'close' waits for the pipes: a background child holding them would keep us waiting, so
    // end on 'exit' and give the pipes a moment to drain
    child.on('exit', (code, signal) => setTimeout(() => finish(code, signal), 50))
  })
}

/** One line saying how a command ended, for errors and logs. */
export function describeResult(r: RunResult, timeoutMs: number): string {
  if (r.timedOut) return `timed out after ${Math.round(timeoutMs / 1000)} s and was killed`
  if (r.signal !== null) return `was killed by ${r.signal}`
  return `exited with ${r.code}`
}

/** The last lines of a command's output, for an error message. */
export function tail(r: RunResult, lines = 8): string {
  const text = `${r.stderr.trim()}\n${r.stdout.trim()}`.trim()
  if (text === '') return ''
  return `\n    ${text.split('\n').slice(-lines).join('\n    ')}`
}
