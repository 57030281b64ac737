import { createHmac, hkdfSync, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { DataDirError, dataPaths, writePrivateFile } from '../kernel/datadir.js'

/** What a node knows about the cluster it belongs to. */
export interface Cluster {
  name: string
  /** 16 random bytes, hex */
  id: string
  /** 32 random bytes: the shared secret behind the Noise prologue and member auth */
  key: Uint8Array
  /** addresses of members to dial at start (from the join token), besides every member met before */
  seeds?: string[]
  /** the founding admins' peer IDs (trust.json grows the set with signed grants) */
  admins?: string[]
  /** the invite this node joined with, until it has been redeemed for a certificate (hex) */
  invite?: string
}

/** cluster.json as saveCluster writes it. */
interface ClusterFile {
  name: string
  id: string
  key: string
  seeds?: string[]
  admins?: string[]
  invite?: string
}

const HEX32 = /^[0-9a-f]{32}$/
const HEX64 = /^[0-9a-f]{64}$/

/**
 * cluster.json's fields, checked by hand as token.ts checks a join token's: every protocol imports
 * this module (protocolPrefix), and a schema library imported here would stay in every agent's
 * heap for one read at start. Throws an Error saying which key is wrong; other keys are ignored.
 */
function checkClusterFile(doc: unknown): ClusterFile {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('not a JSON object')
  const d = doc as Record<string, unknown>
  const bad = (key: string, expected: string) => new Error(`key '${key}': expected ${expected}`)
  if (typeof d.name !== 'string' || d.name.length === 0) throw bad('name', 'a non-empty string')
  if (typeof d.id !== 'string' || !HEX32.test(d.id)) throw bad('id', '32 lowercase hex digits')
  if (typeof d.key !== 'string' || !HEX64.test(d.key)) throw bad('key', '64 lowercase hex digits')
  for (const k of ['seeds', 'admins'] as const) {
    const v = d[k]
    if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'string')))
      throw bad(k, 'a list of strings')
  }
  if (d.invite !== undefined && (typeof d.invite !== 'string' || !HEX32.test(d.invite)))
    throw bad('invite', '32 lowercase hex digits')
  return d as unknown as ClusterFile
}

export const CLUSTER_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

export function newCluster(name: string): Cluster {
  if (!CLUSTER_NAME_RE.test(name)) {
    throw new DataDirError(`invalid cluster name '${name}': use a-z, 0-9 and -, at most 63 characters`)
  }
  return { name, id: randomBytes(16).toString('hex'), key: new Uint8Array(randomBytes(32)) }
}

export function saveCluster(dir: string, c: Cluster): void {
  const body = {
    name: c.name,
    id: c.id,
    key: Buffer.from(c.key).toString('hex'),
    seeds: c.seeds ?? [],
    admins: c.admins ?? [],
    invite: c.invite,
  }
  writePrivateFile(dataPaths(dir).cluster, `${JSON.stringify(body, null, 2)}\n`)
}

export function loadCluster(dir: string): Cluster | undefined {
  const path = dataPaths(dir).cluster
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new DataDirError(`cannot read ${path}: ${(err as Error).message}`)
  }
  let parsed: ClusterFile
  try {
    parsed = checkClusterFile(JSON.parse(text))
  } catch (err) {
    throw new DataDirError(
      `${path} is damaged (${(err as Error).message.split('\n')[0]}); restore it from a backup or another member`,
    )
  }
  return {
    name: parsed.name,
    id: parsed.id,
    key: new Uint8Array(Buffer.from(parsed.key, 'hex')),
    seeds: parsed.seeds ?? [],
    admins: parsed.admins ?? [],
    invite: parsed.invite,
  }
}

/** Independent keys for each use of the cluster secret, so no two layers share key material. */
export function deriveKey(c: Cluster, purpose: string, length = 32): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', c.key, Buffer.from(c.id, 'hex'), `mesh ${purpose}`, length))
}

export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const h = createHmac('sha256', key)
  for (const p of parts) {
    // length-prefix every part so that no two different sequences hash alike
    const len = Buffer.alloc(4)
    len.writeUInt32BE(p.length)
    h.update(len)
    h.update(p)
  }
  return new Uint8Array(h.digest())
}

/** Protocol ids carry the cluster id so that two clusters never speak to each other by accident. */
export const protocolPrefix = (c: Cluster) => `/mesh/${c.id.slice(0, 16)}`
