import { readFileSync } from 'node:fs'

/** Whether a process with this pid runs (EPERM: it does, as another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Whether this pid is a running mesh agent, not just any process: pids and thread ids share one
 * space (32,768 by default on Linux), and on a busy machine the pid of an agent killed minutes
 * ago is soon another process's or thread's. Where /proc says so, the pid must lead its own
 * process and run `... agent ...`; elsewhere a live pid counts.
 */
export function agentAlive(pid: number): boolean {
  if (!pidAlive(pid)) return false
  let status: string
  let cmdline: string
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return true // no /proc here (or not readable): the pid check is all there is
  }
  const tgid = /^Tgid:\s*(\d+)/m.exec(status)?.[1]
  if (tgid !== undefined && Number(tgid) !== pid) return false // a thread of another process
  return cmdline.split('\0').includes('agent')
}

/**
 * When the process with this pid started (clock ticks since boot, /proc/PID/stat field 22), or
 * undefined where /proc does not say. A pid plus its start time names one process for good:
 * a later process given the same pid starts later.
 */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name (field 2) is in parentheses and may hold spaces: count after the last ')'
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

/** Whether the process recorded as (pid, start) still runs; without a recorded start, a live pid counts. */
export function processAlive(pid: number, start: string | undefined): boolean {
  if (!pidAlive(pid)) return false
  if (start === undefined) return true
  const now = processStart(pid)
  return now === undefined || now === start
}

/**
 * Whether the agent recorded as (pid, start) still runs. With a start time the record names one
 * process for good; records written before start times were kept fall back to agentAlive.
 */
export function recordedAgentAlive(pid: number, start: string | undefined): boolean {
  return start === undefined ? agentAlive(pid) : processAlive(pid, start)
}
