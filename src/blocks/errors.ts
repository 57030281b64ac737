export type BlocksErrorCode =
  | 'bad-request'
  | 'not-found'
  | 'not-a-dataset'
  | 'bad-manifest'
  | 'refused'
  | 'no-space'
  | 'quorum'
  | 'unavailable'
  | 'interrupted'

const STATUS: Record<BlocksErrorCode, number> = {
  'bad-request': 400,
  'not-found': 404,
  'not-a-dataset': 400,
  'bad-manifest': 422,
  refused: 400,
  'no-space': 507,
  quorum: 503,
  unavailable: 503,
  interrupted: 499,
}

/** A user-facing blocks error; `statusCode` is what the control API answers (fastify reads it). */
export class BlocksError extends Error {
  override name = 'BlocksError'
  readonly statusCode: number
  constructor(
    readonly code: BlocksErrorCode,
    message: string,
  ) {
    super(message)
    this.statusCode = STATUS[code]
  }
}

/** ENOSPC / EDQUOT as a clear message; anything else unchanged. */
export function explainFsError(err: unknown, what: string): Error {
  const e = err as NodeJS.ErrnoException
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') {
    return new BlocksError(
      'no-space',
      `no space left on the device ${what}: nothing partial was kept. Free some space (mesh unpin lets ` +
        'unpinned blocks be evicted; blocks.cacheBytes bounds the cache) and retry',
    )
  }
  return e instanceof Error ? e : new Error(String(err))
}
