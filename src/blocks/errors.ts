import { type ErrorCode, MeshError } from '../kernel/errors.js'

export type BlocksErrorCode = Extract<
  ErrorCode,
  | 'bad-request'
  | 'not-found'
  | 'not-a-dataset'
  | 'bad-manifest'
  | 'refused'
  | 'no-space'
  | 'quorum'
  | 'unavailable'
  | 'interrupted'
>

/** A user-facing blocks error; the control API maps its code to an HTTP status (api/errors.ts). */
export class BlocksError extends MeshError {
  override name = 'BlocksError'
  constructor(
    override readonly code: BlocksErrorCode,
    message: string,
  ) {
    super(code, message)
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
