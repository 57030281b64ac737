import { createHmac, hkdfSync, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { z } from 'zod'
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

const ClusterFile = z.object({
  name: z.string().min(1),
  id: z.string().regex(/^[0-9a-f]{32}$/),
  key: z.string().regex(/^[0-9a-f]{64}$/),
  seeds: z.array(z.string()).optional(),
  admins: z.array(z.string()).optional(),
  invite: z
    .string()
    .regex(/^[0-9a-f]{32}$/)
    .optional(),
})

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
  let parsed: z.infer<typeof ClusterFile>
  try {
    parsed = ClusterFile.parse(JSON.parse(text))
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
