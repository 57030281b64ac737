import {
  chmodSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'

/** Files the agent keeps in its data dir. */
export const dataPaths = (dir: string) => ({
  dir,
  identity: join(dir, 'identity.key'),
  cluster: join(dir, 'cluster.json'),
  config: join(dir, 'config.yaml'),
  datastore: join(dir, 'datastore'),
  lock: join(dir, 'agent.lock'),
  socket: join(dir, 'mesh.sock'),
  trust: join(dir, 'trust.json'),
  invites: join(dir, 'invites.json'),
})

export class DataDirError extends Error {
  override name = 'DataDirError'
}

export function ensureDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
}

/** Write a private file atomically (tmp + rename) with mode 0600, never leaving a half-written secret. */
export function writePrivateFile(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`
  writeFileSync(tmp, data, { mode: 0o600 })
  chmodSync(tmp, 0o600)
  renameSync(tmp, path)
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * One agent per data dir: an exclusive pid file. A lock left by a killed agent
 * (its pid no longer runs) is taken over; a live one is refused with what to do.
 */
export function lockDataDir(dir: string): () => void {
  const path = dataPaths(dir).lock
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600)
      writeFileSync(fd, `${process.pid}\n`)
      closeSync(fd)
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path)
        } catch {}
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new DataDirError(`cannot lock data dir ${dir}: ${(err as Error).message}`)
      }
      const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10)
      if (Number.isInteger(pid) && pid !== process.pid && pidAlive(pid)) {
        throw new DataDirError(
          `data dir ${dir} is in use by another mesh agent (pid ${pid}). ` +
            'Stop that agent first, or start this one with a different --data-dir.',
        )
      }
      unlinkSync(path) // stale: its agent is gone
    }
  }
  throw new DataDirError(`cannot lock data dir ${dir}: another agent is starting at the same time`)
}
