import prettyBytes from 'pretty-bytes'
import { AgentNotRunningError, ApiCallError, ApiClient } from '../api/client.js'
import type { MembersReply } from '../api/contract.js'
import { ConfigError } from '../kernel/config-error.js'
import { DataDirError, dataPaths, defaultDataDir } from '../kernel/datadir.js'
import { TokenError } from '../node/token.js'

/** Exit codes scripts can rely on (documented in the README). */
export const EXIT = { ok: 0, error: 1, usage: 2, noAgent: 3, revoked: 4 } as const

export interface GlobalOpts {
  dataDir?: string
  json?: boolean
}

export function dataDirOf(opts: GlobalOpts): string {
  return opts.dataDir ?? defaultDataDir()
}

export function client(opts: GlobalOpts): ApiClient {
  const dir = dataDirOf(opts)
  return new ApiClient(dataPaths(dir).socket, dir)
}

/** Print an error the way every command does and pick the exit code. */
export function fail(err: unknown): never {
  const e = err as Error
  let code: number = EXIT.error
  if (e instanceof AgentNotRunningError) code = EXIT.noAgent
  else if (e instanceof ConfigError || e instanceof TokenError || e instanceof UsageError) code = EXIT.usage
  else if (e instanceof ApiCallError && e.status >= 400 && e.status < 500) code = EXIT.usage
  else if (e instanceof DataDirError) code = EXIT.error
  else if (e?.name === 'RevokedError') code = EXIT.revoked
  else if (e instanceof CancelledError) code = 130
  process.stderr.write(`mesh: ${e.message}\n`)
  process.exit(code)
}

export class UsageError extends Error {
  override name = 'UsageError'
}

/** Ctrl-C on a long command: the message says what was kept; exit 130 as for any SIGINT. */
export class CancelledError extends Error {
  override name = 'CancelledError'
}

/** Run a command body; errors become a message and an exit code. */
export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args)
    } catch (err) {
      fail(err)
    }
  }
}

/** A plain aligned table, for humans; `--json` prints the data instead. */
export function table(headers: string[], rows: Array<Array<string | number | undefined>>): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === undefined || c === '' ? '-' : String(c))))]
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)))
  return `${cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n')}\n`
}

export function printJson(data: unknown): void {
  process.stdout.write(`${JSON.stringify(data, null, 2)}\n`)
}

/**
 * Member names by peer ID (as `mesh members` shows them), for output that would print peer IDs;
 * `nameOf` falls back to a short peer ID for a peer that is not (or no longer) a member.
 */
export async function memberNames(
  api: ApiClient,
): Promise<{ names: Map<string, string>; nameOf: (peerId: string) => string }> {
  const { members } = await api.call<MembersReply>('GET', '/v1/members')
  const names = new Map(members.map((m) => [m.peerId, m.name]))
  return { names, nameOf: (peerId) => names.get(peerId) ?? shortId(peerId) }
}

/** Sizes and rates for people: 791 B, 1.5 MiB (binary units, one decimal at most). */
export function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return '-'
  return prettyBytes(n < 1024 ? Math.round(n) : n, { binary: true, maximumFractionDigits: 1 })
}

export function shortId(peerId: string): string {
  return peerId.length > 16 ? `${peerId.slice(0, 8)}…${peerId.slice(-6)}` : peerId
}

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined) return '-'
  return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`
}

export function fmtDuration(ms: number): string {
  const s = Math.floor(ms / 1000)
  const d = Math.floor(s / 86400)
  const h = Math.floor((s % 86400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  return d > 0 ? `${d}d${h}h` : h > 0 ? `${h}h${m}m` : m > 0 ? `${m}m${s % 60}s` : `${s}s`
}
