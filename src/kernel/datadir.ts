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
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { processStart, recordedAgentAlive } from './pid.js'

/**
 * The whole data-dir layout: every file and folder the agent keeps, named here
 * only. The directory is 0700 and its secrets 0600 (writePrivateFile).
 */
export const dataPaths = (dir: string) => ({
  dir,
  /** this member's libp2p private key (node/identity.ts) */
  identity: join(dir, 'identity.key'),
  /** cluster id, name, key and seeds (node/cluster.ts) */
  cluster: join(dir, 'cluster.json'),
  /** the agent's config file, when --config and MESH_CONFIG say nothing else */
  config: join(dir, 'config.yaml'),
  /** libp2p's datastore: peer store, DHT records */
  datastore: join(dir, 'datastore'),
  /** pid and start time of the agent that owns this data dir (lockDataDir) */
  lock: join(dir, 'agent.lock'),
  /** the control API's unix socket (api/server.ts) */
  socket: join(dir, 'mesh.sock'),
  /** admin grants and revocations (node/trust.ts) */
  trust: join(dir, 'trust.json'),
  /** single-use invites issued here and not yet redeemed (node/invites.ts) */
  invites: join(dir, 'invites.json'),
  /** every member's sshd host keys, for ssh's UserKnownHostsFile (tunnel/host-keys.ts) */
  knownHosts: join(dir, 'ssh_known_hosts'),
  /** content-addressed blocks (blocks/blockstore.ts; tmp/ holds writes in progress) */
  blocks: join(dir, 'blocks'),
  /** dataset tags known here (blocks/tags.ts) */
  blockTags: join(dir, 'blocks', 'tags.json'),
  /** pinned roots (blocks/pins.ts) */
  blockPins: join(dir, 'blocks', 'pins.json'),
  /** elections this member takes part in (election/component.ts) */
  elections: join(dir, 'elections.json'),
  /** whether this member is in maintenance (mesh maintenance on|off) */
  maintenance: join(dir, 'maintenance.json'),
  /** instances started for elections won here, to stop them after a restart */
  electionInstances: join(dir, 'elections-instances.json'),
  /** one working folder per instance (elections.commands and plugins) */
  instancesDir: join(dir, 'instances'),
  /** plugin instances spawned from here (plugins/component.ts) */
  pluginInstances: join(dir, 'instances.json'),
  /** installed plugins, one folder each, and their registry.json */
  plugins: join(dir, 'plugins'),
  pluginRegistry: join(dir, 'plugins', 'registry.json'),
  /** the web dashboard's access token, 0600 (ui/server.ts; `mesh ui` prints it in the URL) */
  uiToken: join(dir, 'ui-token'),
})

export type DataPaths = ReturnType<typeof dataPaths>

/** --data-dir, else MESH_DATA_DIR, else ~/.mesh */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.MESH_DATA_DIR ?? join(homedir(), '.mesh'))
}

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

/**
 * One agent per data dir: an exclusive lock file holding the agent's pid and start time. A lock
 * left by a killed agent is taken over, even when its pid now runs another agent (pids are
 * reused within seconds on a busy machine); a live one is refused with what to do.
 */
export function lockDataDir(dir: string): () => void {
  const path = dataPaths(dir).lock
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600)
      const start = processStart(process.pid)
      writeFileSync(fd, start === undefined ? `${process.pid}\n` : `${process.pid} ${start}\n`)
      closeSync(fd)
      return () => {
        try {
          if (readLock(path).pid === process.pid) unlinkSync(path)
        } catch {}
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new DataDirError(`cannot lock data dir ${dir}: ${(err as Error).message}`)
      }
      const { pid, start } = readLock(path)
      if (Number.isInteger(pid) && pid !== process.pid && recordedAgentAlive(pid, start)) {
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

/** A lock file's `PID [START]` (locks of older versions hold the pid alone). */
function readLock(path: string): { pid: number; start: string | undefined } {
  const [pid, start] = readFileSync(path, 'utf8').trim().split(/\s+/)
  return { pid: Number.parseInt(pid ?? '', 10), start }
}
