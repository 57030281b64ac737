/**
 * Member names. Every command accepts NAME, NAME.mesh, the overlay address (any IPv6 spelling)
 * or the peer ID. Names are asserted by members and may clash: the member with the smallest
 * peer ID keeps the name, the others are shown (and resolved) as NAME-<last 6 characters of
 * their peer ID, lowercased>, longer if that is taken. Every member computes the same answer.
 */

import { editDistance } from '../kernel/edit-distance.js'
import { canonicalIPv6, overlayAddress } from './overlay.js'

/** What name resolution needs of a member; MemberInfo fits. */
export interface Named {
  peerId: string
  name: string
}

export type ResolveErrorCode = 'empty' | 'not-found'

export class ResolveError extends Error {
  override name = 'ResolveError'
  constructor(
    readonly code: ResolveErrorCode,
    readonly query: string,
    /** display names close to the query, best first */
    readonly suggestions: readonly string[],
  ) {
    super(
      code === 'empty'
        ? 'no member given'
        : `no member '${query}'${suggestions.length > 0 ? `; did you mean ${suggestions.join(', ')}?` : ''}`,
    )
  }
}

const SUFFIX = 6

/**
 * The name each member is shown as. Deterministic for any order of `members`: unique names are
 * kept, a clash goes to the smallest peer ID, the rest get a peer ID suffix.
 */
export function displayNames(members: Iterable<Named>): Map<string, string> {
  const byName = new Map<string, string[]>()
  for (const m of members) {
    const ids = byName.get(m.name)
    if (ids === undefined) byName.set(m.name, [m.peerId])
    else if (!ids.includes(m.peerId)) ids.push(m.peerId)
  }
  const out = new Map<string, string>()
  // every asserted name is reserved for its winner first, so a suffixed name never takes one
  const taken = new Set<string>(byName.keys())
  const losers: Array<[name: string, peerId: string]> = []
  for (const [name, ids] of byName) {
    ids.sort(cmp)
    out.set(ids[0], name)
    for (let i = 1; i < ids.length; i++) losers.push([name, ids[i]])
  }
  losers.sort((a, b) => cmp(a[0], b[0]) || cmp(a[1], b[1]))
  for (const [name, peerId] of losers) {
    let shown = ''
    for (let n = SUFFIX; n <= peerId.length + 1; n += 2) {
      shown = `${name}-${peerId.slice(-n).toLowerCase()}`
      if (!taken.has(shown)) break
    }
    taken.add(shown)
    out.set(peerId, shown)
  }
  return out
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/** NAME, NAME.mesh or NAME.mesh. as the bare lowercase name. */
function bareName(q: string): string {
  let s = q.toLowerCase()
  if (s.endsWith('.')) s = s.slice(0, -1)
  if (s.endsWith('.mesh')) s = s.slice(0, -5)
  return s
}

/**
 * The member `query` names, or a ResolveError with close matches. `members` should be the
 * whole table (tombstones too), so that clash suffixes are the same as `mesh members` shows.
 */
export function resolveMember<T extends Named>(
  query: string,
  members: readonly T[],
  clusterIdHex: string,
): T | ResolveError {
  const q = query.trim()
  if (q === '') return new ResolveError('empty', query, [])
  for (const m of members) if (m.peerId === q) return m
  // OpenSSH lowercases %h, so `ssh -o ProxyCommand='mesh proxy %h %p' root@<peer ID>` asks for a
  // lowercased peer ID; base58 peer IDs that differ only in case are not a practical risk, but an
  // ambiguous match is refused rather than guessed. Before names: a member may call itself the
  // lowercase spelling of another's peer ID, and must not win that way.
  const lower = q.toLowerCase()
  const byCase = members.filter((m) => m.peerId.toLowerCase() === lower)
  if (byCase.length === 1) return byCase[0]

  const ip = canonicalIPv6(q)
  if (ip !== undefined) {
    // derived, not taken from the record: the address is a function of the peer ID
    for (const m of members) if (overlayAddress(clusterIdHex, m.peerId) === ip) return m
    return new ResolveError('not-found', q, [])
  }

  const shown = displayNames(members)
  const name = bareName(q)
  for (const m of members) if (shown.get(m.peerId) === name) return m
  return new ResolveError('not-found', q, suggest(name, q, members, shown))
}

/** Display names a typo or two away or starting with the query, and peer IDs containing it. */
function suggest(name: string, raw: string, members: readonly Named[], shown: Map<string, string>): string[] {
  // short names tolerate one edit, longer ones two
  const max = name.length <= 3 ? 1 : 2
  const scored: Array<[number, string]> = []
  for (const m of members) {
    const d = shown.get(m.peerId)!
    const dist = d.startsWith(name) ? 1 : editDistance(name, d, max)
    if (dist <= max) scored.push([dist, d])
    else if (raw.length >= 4 && m.peerId.includes(raw)) scored.push([3, m.peerId])
  }
  scored.sort((a, b) => a[0] - b[0] || cmp(a[1], b[1]))
  return scored.slice(0, 5).map((s) => s[1])
}
