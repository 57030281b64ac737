/**
 * The end of a request or a reply: close our writing side, and if even that fails (a write
 * that never drains, a deadline passed), abort, so the stream cannot stay half-open at both
 * ends for good. An unanswered election sync once did, and held a pair's second connection
 * open (one-connection.ts waits for such streams).
 */
export async function closeOrAbort(
  stream: { close(options?: { signal?: AbortSignal }): Promise<void>; abort(err: Error): void },
  signal: AbortSignal,
): Promise<void> {
  await stream.close({ signal }).catch((err: Error) => stream.abort(err))
}
