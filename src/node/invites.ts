import { readFileSync } from 'node:fs'
import { dataPaths, writePrivateFile } from '../kernel/datadir.js'

interface InviteRecord {
  expires: number
  createdAt: number
  usedBy?: string
  usedAt?: number
}

export class InviteError extends Error {
  override name = 'InviteError'
}

/**
 * Invites this member issued: single use, with an expiry. Persisted (0600) so a restart does
 * not make a used token usable again.
 */
export class InviteStore {
  private readonly invites = new Map<string, InviteRecord>()

  constructor(private readonly dataDir: string) {
    try {
      const file = JSON.parse(readFileSync(dataPaths(dataDir).invites, 'utf8')) as Record<
        string,
        InviteRecord
      >
      for (const [k, v] of Object.entries(file)) this.invites.set(k, v)
    } catch {}
  }

  private save(): void {
    writePrivateFile(
      dataPaths(this.dataDir).invites,
      `${JSON.stringify(Object.fromEntries(this.invites), null, 2)}\n`,
    )
  }

  add(id: Uint8Array, expires: number, now = Date.now()): void {
    this.prune(now)
    this.invites.set(Buffer.from(id).toString('hex'), { expires, createdAt: now })
    this.save()
  }

  /** Use an invite once. Throws with what the joiner should do. */
  redeem(id: Uint8Array, peerId: string, now = Date.now()): void {
    const key = Buffer.from(id).toString('hex')
    const inv = this.invites.get(key)
    if (inv === undefined)
      throw new InviteError(
        'this invite is unknown to the member that was asked (it was not issued there, or was cancelled); ask for a new token with mesh invite',
      )
    if (inv.usedBy !== undefined && inv.usedBy !== peerId) {
      throw new InviteError(
        `this invite was already used (by ${inv.usedBy} at ${new Date(inv.usedAt ?? 0).toISOString()}); a token works once: ask for a new one with mesh invite`,
      )
    }
    if (inv.expires <= now)
      throw new InviteError(
        `this invite expired at ${new Date(inv.expires).toISOString()}; ask for a new one with mesh invite`,
      )
    inv.usedBy = peerId
    inv.usedAt = now
    this.save()
  }

  /** The peer ID that redeemed this invite, once it has. */
  usedBy(id: Uint8Array): string | undefined {
    return this.invites.get(Buffer.from(id).toString('hex'))?.usedBy
  }

  /** Forget invites that expired more than a day ago (used ones are kept as long, so reuse is still refused). */
  private prune(now: number): void {
    for (const [k, v] of this.invites) if (v.expires + 86_400_000 < now) this.invites.delete(k)
  }
}
