// Which members a restarted agent's kad-dht dials before its membership service starts: the
// routing-table refresh and the self-query that @libp2p/kad-dht runs when it starts, read from
// node_modules/@libp2p/kad-dht (16.4.5):
//
// - src/routing-table/index.ts start(): the table is filled from the peer store (peers tagged as
//   DHT peers that speak its protocol, at most POPULATE_FROM_DATASTORE_LIMIT = 1000);
// - src/routing-table/refresh.ts afterStart() -> refreshTable(true): one getClosestPeers query
//   per common prefix length (CPL) 0 .. _maxCommonPrefix() (at most MAX_COMMON_PREFIX_LENGTH =
//   15), each for a random key whose CPL with our kad ID is exactly that many BITS
//   (_makePeerId). _maxCommonPrefix() takes the largest _prefixLengths() over the table, and
//   _prefixLengths() counts leading zero BYTES of the XOR distance, not bits: with N random
//   kad IDs it is 0 while no peer shares our first byte (N = 50: 83% of members), 1 at N =
//   1,000 (98%), so the refresh asks one or two keys, not 16. Its extra refreshes up to
//   2 x (cpl + 1) run only when no peer has the largest prefix length, which cannot happen for
//   a non-empty table (the largest is some peer's);
// - src/query-self.ts start(): a getClosestPeers query for our own key after
//   QUERY_SELF_INITIAL_INTERVAL (1 s), K = 20 (src/constants.ts).
//
// A getClosestPeers query dials (queries) the K = 20 closest peers to the key it knows and then
// the closer ones they name; every member of a formed cluster knows every other, so the query
// ends at the K closest members to the key. The model: for each of those keys, the K closest
// known members by XOR distance; the union is dialled at once. Kad IDs are the sha256 of the
// peer ID in the agent; here the top 64 bits, drawn per member from the run's seed.
import { mix3, type Rng } from './rng.js'

/** kad-dht's K (src/constants.ts) and the refresh's largest CPL (src/routing-table/refresh.ts) */
export const KAD = { K: 20, maxCpl: 15 } as const

/** The top 64 bits of a member's kad ID, as two unsigned 32-bit words. */
export interface KadId {
  hi: number
  lo: number
}

/** A member's kad ID: a pure function of the seed and its number (no draw from the run's streams). */
export function kadIdOf(seed: number, idx: number): KadId {
  return { hi: mix3(seed, idx, 0x4ad1) >>> 0, lo: mix3(seed, idx, 0x4ad2) >>> 0 }
}

/** Leading zero bytes of a XOR b, as refresh.ts _prefixLengths() counts them (bytes, not bits). */
export function leadingZeroBytes(a: KadId, b: KadId): number {
  let n = 0
  for (const w of [(a.hi ^ b.hi) >>> 0, (a.lo ^ b.lo) >>> 0]) {
    for (let shift = 24; shift >= 0; shift -= 8) {
      if (((w >>> shift) & 0xff) !== 0) return n
      n++
    }
  }
  return n
}

/** A random key whose common prefix with `self` is exactly `cpl` bits (refresh.ts _makePeerId). */
export function keyWithCpl(self: KadId, cpl: number, rng: Rng): KadId {
  if (cpl < 0 || cpl > KAD.maxCpl) throw new Error(`cpl ${cpl} out of 0..${KAD.maxCpl}`)
  const mask = ~(0xffffffff >>> (cpl + 1)) >>> 0
  const flipped = (self.hi ^ (0x80000000 >>> cpl)) >>> 0
  const hi = ((flipped & mask) | (Math.floor(rng() * 4294967296) & ~mask)) >>> 0
  return { hi, lo: Math.floor(rng() * 4294967296) >>> 0 }
}

/** The `k` members of `known` closest to `key` by XOR distance. */
export function closest(
  key: KadId,
  known: readonly number[],
  idOf: (j: number) => KadId,
  k: number,
): number[] {
  const scored = known.map((j) => {
    const id = idOf(j)
    return { j, hi: (id.hi ^ key.hi) >>> 0, lo: (id.lo ^ key.lo) >>> 0 }
  })
  scored.sort((a, b) => a.hi - b.hi || a.lo - b.lo || a.j - b.j)
  return scored.slice(0, k).map((s) => s.j)
}

/** The CPLs the start-up refresh asks: 0 .. the largest leading-zero-byte count over the table. */
export function refreshCpls(self: KadId, known: readonly number[], idOf: (j: number) => KadId): number {
  let max = 0
  for (const j of known) max = Math.max(max, leadingZeroBytes(self, idOf(j)))
  return Math.min(max, KAD.maxCpl) + 1
}

/**
 * The members a starting kad-dht dials: the union of the K closest known members to one random
 * key per refreshed CPL and to our own key (the self-query), in that order, without repeats.
 */
export function kadStartDials(
  self: KadId,
  known: readonly number[],
  idOf: (j: number) => KadId,
  rng: Rng,
): number[] {
  const out: number[] = []
  const seen = new Set<number>()
  const add = (js: number[]) => {
    for (const j of js)
      if (!seen.has(j)) {
        seen.add(j)
        out.push(j)
      }
  }
  const cpls = refreshCpls(self, known, idOf)
  for (let cpl = 0; cpl < cpls; cpl++) add(closest(keyWithCpl(self, cpl, rng), known, idOf, KAD.K))
  add(closest(self, known, idOf, KAD.K))
  return out
}
