import { readFileSync } from 'node:fs'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { Certificate, Statement } from '../../protocols/trust.js'
import { dataPaths, writePrivateFile } from '../kernel/datadir.js'

const enc = new TextEncoder()

/** The bytes an admin signs for a certificate: domain line + canonical fields. */
function certBytes(c: Omit<Certificate, 'sig'>): Uint8Array {
  return enc.encode(`mesh-cert-v1\n${c.clusterId}\n${c.peerId}\n${c.issuer}\n${c.issued}\n${c.expires}`)
}

function statementBytes(s: Omit<Statement, 'sig'>): Uint8Array {
  const kind = s.kind === Statement.Kind.REVOKE ? 'revoke' : 'grant-admin'
  return enc.encode(`mesh-statement-v1\n${kind}\n${s.clusterId}\n${s.peerId}\n${s.issuer}\n${s.issued}`)
}

function verifyBy(peerId: string, bytes: Uint8Array, sig: Uint8Array): boolean {
  try {
    const id = peerIdFromString(peerId)
    return id.publicKey !== undefined && id.publicKey.verify(bytes, sig) === true
  } catch {
    return false
  }
}

function signWith(key: PrivateKey, bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const sig = key.sign(bytes)
  if (!(sig instanceof Uint8Array)) throw new Error('expected a synchronous Ed25519 signature')
  return new Uint8Array(sig)
}

export type Standing =
  | { kind: 'member' }
  | { kind: 'joiner' }
  /** `revocation`: the signed statement, when the peer is refused because it was revoked */
  | { kind: 'refused'; why: string; revocation?: Uint8Array<ArrayBuffer> }

interface TrustFile {
  admins: string[]
  statements: string[] // base64 Statement
  certificate?: string // base64 Certificate: ours
}

/**
 * Who is a member: the founding admins, admin grants and revocations (signed statements,
 * gossiped and persisted), and certificates issued by admins. Answers the admission
 * question for every connection.
 */
export class TrustStore {
  private readonly genesis: Set<string>
  private readonly admins = new Set<string>()
  private readonly revoked = new Map<string, Statement>()
  private readonly statements = new Map<string, Statement>() // kind/peer -> statement
  private cert: Certificate | undefined
  private readonly listeners: Array<(s: Statement) => void> = []

  constructor(
    private readonly dataDir: string,
    readonly clusterId: string,
    genesisAdmins: string[],
  ) {
    this.genesis = new Set(genesisAdmins)
    for (const a of genesisAdmins) this.admins.add(a)
  }

  static load(dataDir: string, clusterId: string, fallbackAdmins: string[] = []): TrustStore {
    let file: TrustFile | undefined
    try {
      file = JSON.parse(readFileSync(dataPaths(dataDir).trust, 'utf8')) as TrustFile
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new Error(`${dataPaths(dataDir).trust} is damaged: ${(err as Error).message}`)
    }
    const store = new TrustStore(dataDir, clusterId, file?.admins ?? fallbackAdmins)
    for (const s of file?.statements ?? []) store.add(Statement.decode(Buffer.from(s, 'base64')), false)
    if (file?.certificate !== undefined)
      store.cert = Certificate.decode(Buffer.from(file.certificate, 'base64'))
    return store
  }

  save(): void {
    const file: TrustFile = {
      admins: [...this.genesis],
      statements: [...this.statements.values()].map((s) =>
        Buffer.from(Statement.encode(s)).toString('base64'),
      ),
      certificate:
        this.cert === undefined ? undefined : Buffer.from(Certificate.encode(this.cert)).toString('base64'),
    }
    writePrivateFile(dataPaths(this.dataDir).trust, `${JSON.stringify(file, null, 2)}\n`)
  }

  get genesisAdmins(): string[] {
    return [...this.genesis]
  }

  get certificate(): Certificate | undefined {
    return this.cert
  }

  setCertificate(c: Certificate, selfPeerId: string): void {
    const why = this.checkCertificate(c, selfPeerId)
    if (why !== undefined) throw new Error(`the certificate we were given is not valid: ${why}`)
    this.cert = c
    this.save()
  }

  isAdmin(peerId: string): boolean {
    return this.admins.has(peerId) && !this.revoked.has(peerId)
  }

  isRevoked(peerId: string): boolean {
    return this.revoked.has(peerId)
  }

  adminList(): string[] {
    return [...this.admins].filter((a) => !this.revoked.has(a))
  }

  revokedList(): Array<{ peerId: string; issuer: string; issued: number }> {
    return [...this.revoked.values()].map((s) => ({
      peerId: s.peerId,
      issuer: s.issuer,
      issued: Number(s.issued),
    }))
  }

  allStatements(): Statement[] {
    return [...this.statements.values()]
  }

  /** The revocation of `peerId`, if an admin revoked it. */
  revocationOf(peerId: string): { issuer: string; issued: number } | undefined {
    const s = this.revoked.get(peerId)
    return s === undefined ? undefined : { issuer: s.issuer, issued: Number(s.issued) }
  }

  /** A statement a peer showed us (a refusal's revocation): taken only if it verifies. */
  learn(bytes: Uint8Array): boolean {
    try {
      return this.add(Statement.decode(bytes))
    } catch {
      return false
    }
  }

  onStatement(fn: (s: Statement) => void): void {
    this.listeners.push(fn)
  }

  /**
   * Take a signed statement (from gossip, a sync or a join reply). Returns true when it was
   * new and valid. A grant's issuer must already be an admin: grants chain from the founders.
   * A revoked admin's statements are refused too, or its key could make a new admin (or revoke
   * the founders) after its revocation. The cost: its statements from before the revocation are
   * refused by a member that hears the revocation first.
   */
  add(s: Statement, persist = true): boolean {
    if (s.clusterId !== this.clusterId) return false
    const key = `${s.kind}/${s.peerId}`
    if (this.statements.has(key)) return false
    if (!this.isAdmin(s.issuer) || !verifyBy(s.issuer, statementBytes(s), s.sig)) return false
    this.statements.set(key, s)
    if (s.kind === Statement.Kind.REVOKE) this.revoked.set(s.peerId, s)
    else this.admins.add(s.peerId)
    if (persist) this.save()
    for (const l of this.listeners) l(s)
    return true
  }

  /** Why a certificate is not acceptable for `peerId`, or undefined when it is. */
  checkCertificate(c: Certificate, peerId: string, now = Date.now()): string | undefined {
    if (c.clusterId !== this.clusterId) return 'it is for another cluster'
    if (c.peerId !== peerId) return 'it names another peer'
    if (!this.isAdmin(c.issuer)) return `its issuer ${c.issuer} is not an admin of this cluster`
    if (c.expires !== 0n && Number(c.expires) < now) return 'it has expired'
    if (!verifyBy(c.issuer, certBytes(c), c.sig)) return 'its signature does not verify'
    return undefined
  }

  /** The admission answer for a peer that proved the cluster key and showed this certificate. */
  standing(peerId: string, certificate: Uint8Array): Standing {
    const revocation = this.revoked.get(peerId)
    if (revocation !== undefined)
      return {
        kind: 'refused',
        why: 'this member has been revoked',
        revocation: Statement.encode(revocation),
      }
    if (certificate.length === 0) return { kind: 'joiner' }
    let c: Certificate
    try {
      c = Certificate.decode(certificate)
    } catch {
      return { kind: 'refused', why: 'malformed certificate' }
    }
    const why = this.checkCertificate(c, peerId)
    return why === undefined ? { kind: 'member' } : { kind: 'refused', why: `certificate refused: ${why}` }
  }

  /** Issue a certificate for `peerId`, as an admin. */
  issue(key: PrivateKey, peerId: string, now = Date.now()): Certificate {
    const issuer = peerIdFromPrivateKey(key).toString()
    if (!this.isAdmin(issuer)) throw new Error('only an admin can issue certificates; see mesh admin grant')
    const body = { clusterId: this.clusterId, peerId, issuer, issued: BigInt(now), expires: 0n }
    return { ...body, sig: signWith(key, certBytes(body)) }
  }

  /** Make and take a statement (grant or revoke), as an admin. */
  state(key: PrivateKey, kind: Statement.Kind, peerId: string, now = Date.now()): Statement {
    const issuer = peerIdFromPrivateKey(key).toString()
    if (!this.isAdmin(issuer))
      throw new Error('only an admin can do this; an admin can make this member one with mesh admin grant')
    const body = { kind, clusterId: this.clusterId, peerId, issuer, issued: BigInt(now) }
    const s = { ...body, sig: signWith(key, statementBytes(body)) }
    this.add(s)
    return s
  }
}
