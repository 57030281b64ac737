/**
 * NAME.mesh for every program: a managed block in /etc/hosts. Every resolver on the machine
 * (glibc, musl, Go, getent, ssh, curl) reads it, it needs no daemon and no change to the host's
 * own resolver setup, and a sysadmin sees exactly what the agent added. The block is marked
 * with the agent's pid and start time; other lines are never touched; blocks left by agents
 * that died are removed; the file is replaced atomically (rename), or rewritten in place where it is a
 * bind mount (containers, `ip netns exec`), where rename cannot replace it.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { processStart, recordedAgentAlive } from '../kernel/pid.js'

const BEGIN = /^# BEGIN mesh agent pid=(\d+)(?: start=(\d+))?/
const END = /^# END mesh agent pid=(\d+)/

export interface HostsEntry {
  name: string
  address: string
}

/**
 * The file's text with our block (pid) set to `entries` (removed when empty), blocks of dead
 * agents removed and every other line as it was. Pure but for `isAlive`. A block records its
 * agent's start time with the pid: two CI runs at once gave a killed agent's pid to another
 * mesh agent within seconds, and a pid-only check kept the dead agent's block.
 */
export function withBlock(
  text: string,
  pid: number,
  entries: HostsEntry[],
  isAlive: (pid: number, start: string | undefined) => boolean = recordedAgentAlive,
  start: string | undefined = undefined,
): string {
  const out: string[] = []
  let skipping: number | undefined
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  for (const line of lines) {
    if (skipping === undefined) {
      const b = BEGIN.exec(line)
      if (b !== null) {
        const owner = Number(b[1])
        if (owner === pid || !isAlive(owner, b[2])) {
          skipping = owner
          continue
        }
      }
      out.push(line)
    } else if (END.exec(line)?.[1] === String(skipping)) skipping = undefined
  }
  if (entries.length > 0) {
    const started = start === undefined ? '' : ` start=${start}`
    out.push(
      `# BEGIN mesh agent pid=${pid}${started} (managed by mesh: NAME.mesh of cluster members; do not edit)`,
    )
    for (const e of entries) out.push(`${e.address}\t${e.name}.mesh`)
    out.push(`# END mesh agent pid=${pid}`)
  }
  return `${out.join('\n')}\n`
}

/** Set our block in `file`; returns false when the file already had that content. */
export function writeHostsBlock(file: string, entries: HostsEntry[], pid = process.pid): boolean {
  const before = readFileSync(file, 'utf8')
  const after = withBlock(before, pid, entries, recordedAgentAlive, processStart(pid))
  if (after === before) return false
  const tmp = join(dirname(file), `.${basename(file)}.mesh-${pid}`)
  try {
    writeFileSync(tmp, after, { mode: 0o644 })
    renameSync(tmp, file)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EBUSY' && code !== 'EXDEV' && code !== 'EPERM') throw err
    rmSync(tmp, { force: true })
    // a bind-mounted file cannot be replaced: rewrite it in place
    writeFileSync(file, after)
  }
  return true
}
