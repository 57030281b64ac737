/**
 * Tags: `dataset:tag -> root CID`, as records signed by their publisher with a sequence
 * number. Pure: the store keeps, per dataset:tag, the newest valid record, where newer means
 * a higher seq, and for equal seq the larger (root, publisher, time, signature) bytewise, so
 * every member that has seen the same records picks the same one whatever the order.
 */
import { readFileSync } from 'node:fs'
import { rename, writeFile } from 'node:fs/promises'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { TagRecord } from '../../protocols/blocks.js'
import { type CID, parseCid } from './cid.js'
import { BlocksError } from './errors.js'

export const DATASET_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/
export const TAG_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export type Tag = TagRecord

export type Ref =
  | { kind: 'cid'; cid: CID; path?: string }
  | { kind: 'tag'; dataset: string; tag: string; path?: string }

/**
 * CID, DATASET:TAG, and with `allowPath` either followed by /PATH. CIDs never hold ':' or '/',
 * so the forms cannot be confused.
 */
export function parseRef(text: string, allowPath = false): Ref {
  const t = text.trim()
  if (t === '') throw new BlocksError('bad-request', 'no CID or DATASET:TAG given')
  let head = t
  let path: string | undefined
  const slash = t.indexOf('/')
  if (slash >= 0) {
    if (!allowPath)
      throw new BlocksError('bad-request', `'${text}' is not a CID or DATASET:TAG (no /PATH here)`)
    head = t.slice(0, slash)
    path = t.slice(slash + 1).replace(/\/+$/, '')
    if (path === '') path = undefined
  }
  const colon = head.indexOf(':')
  if (colon < 0) return { kind: 'cid', cid: parseCid(head), path }
  const dataset = head.slice(0, colon)
  const tag = head.slice(colon + 1)
  checkTagName(dataset, tag)
  return { kind: 'tag', dataset, tag, path }
}

export function checkTagName(dataset: string, tag: string): void {
  if (!DATASET_RE.test(dataset)) {
    throw new BlocksError(
      'bad-request',
      `invalid dataset name '${dataset}': use a-z, 0-9, '.', '_' and '-', at most 64 characters`,
    )
  }
  if (!TAG_RE.test(tag)) {
    throw new BlocksError(
      'bad-request',
      `invalid tag '${tag}' for dataset ${dataset}: use letters, digits, '.', '_' and '-', at most 64 characters`,
    )
  }
}

const enc = new TextEncoder()

export function tagBytes(clusterId: string, t: Omit<Tag, 'sig'>): Uint8Array {
  return enc.encode(
    `mesh-tag-v1\n${clusterId}\n${t.dataset}\n${t.tag}\n${t.root}\n${t.seq}\n${t.publisher}\n${t.time}\n${t.replicas}`,
  )
}

export function signTag(key: PrivateKey, clusterId: string, t: Omit<Tag, 'sig' | 'publisher'>): Tag {
  const body = { ...t, publisher: peerIdFromPrivateKey(key).toString() }
  const sig = key.sign(tagBytes(clusterId, body))
  if (!(sig instanceof Uint8Array)) throw new Error('expected a synchronous Ed25519 signature')
  return { ...body, sig: new Uint8Array(sig) }
}

export function verifyTag(clusterId: string, t: Tag): boolean {
  try {
    checkTagName(t.dataset, t.tag)
    parseCid(t.root)
    const id = peerIdFromString(t.publisher)
    return id.publicKey !== undefined && id.publicKey.verify(tagBytes(clusterId, t), t.sig) === true
  } catch {
    return false
  }
}

const cmpStr = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

/** > 0 when `a` is newer than `b`. Total: equal only for identical records. */
export function compareTags(a: Tag, b: Tag): number {
  if (a.seq !== b.seq) return a.seq > b.seq ? 1 : -1
  return (
    cmpStr(a.root, b.root) ||
    cmpStr(a.publisher, b.publisher) ||
    (a.time === b.time ? 0 : a.time > b.time ? 1 : -1) ||
    Buffer.compare(Buffer.from(a.sig), Buffer.from(b.sig))
  )
}

export type TagOutcome = 'new' | 'stale' | 'duplicate' | 'invalid' | 'refused'

interface TagFile {
  tags: Array<Omit<Tag, 'sig' | 'seq' | 'time'> & { seq: string; time: string; sig: string }>
}

/** The newest record per dataset:tag; persisted as JSON (tmp + rename). */
export class TagStore {
  private readonly tags = new Map<string, Tag>()
  private saving: Promise<void> | undefined
  private dirty = false

  constructor(
    readonly clusterId: string,
    private readonly file?: string,
    private readonly refuse: (publisher: string) => boolean = () => false,
  ) {}

  load(): void {
    if (this.file === undefined) return
    let doc: TagFile
    try {
      doc = JSON.parse(readFileSync(this.file, 'utf8')) as TagFile
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw new Error(
        `${this.file} is damaged (${(err as Error).message}); remove it and the tags come back from other members`,
      )
    }
    for (const t of doc.tags ?? []) {
      this.apply(
        { ...t, seq: BigInt(t.seq), time: BigInt(t.time), sig: new Uint8Array(Buffer.from(t.sig, 'base64')) },
        false,
      )
    }
  }

  get(dataset: string, tag: string): Tag | undefined {
    return this.tags.get(`${dataset}:${tag}`)
  }

  all(): Tag[] {
    return [...this.tags.values()].sort((a, b) => cmpStr(a.dataset, b.dataset) || cmpStr(a.tag, b.tag))
  }

  /** The seq a new record for dataset:tag must carry to win. */
  nextSeq(dataset: string, tag: string): bigint {
    return (this.get(dataset, tag)?.seq ?? 0n) + 1n
  }

  apply(t: Tag, persist = true): TagOutcome {
    if (!verifyTag(this.clusterId, t)) return 'invalid'
    if (this.refuse(t.publisher)) return 'refused'
    const k = `${t.dataset}:${t.tag}`
    const cur = this.tags.get(k)
    if (cur !== undefined) {
      const c = compareTags(t, cur)
      if (c === 0) return 'duplicate'
      if (c < 0) return 'stale'
    }
    this.tags.set(k, t)
    if (persist) this.save()
    return 'new'
  }

  /** Write soon (coalesced); tags are few, the whole file is rewritten. */
  save(): void {
    if (this.file === undefined) return
    this.dirty = true
    if (this.saving !== undefined) return
    this.saving = (async () => {
      while (this.dirty) {
        this.dirty = false
        const doc: TagFile = {
          tags: this.all().map((t) => ({
            ...t,
            seq: t.seq.toString(),
            time: t.time.toString(),
            sig: Buffer.from(t.sig).toString('base64'),
          })),
        }
        const tmp = `${this.file}.tmp-${process.pid}`
        try {
          await writeFile(tmp, `${JSON.stringify(doc, null, 1)}\n`, { mode: 0o600 })
          await rename(tmp, this.file!)
        } catch {
          // retried with the next change; the records also live on other members
        }
      }
    })().finally(() => {
      this.saving = undefined
    })
  }

  async flush(): Promise<void> {
    await this.saving
  }
}
