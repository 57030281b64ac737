/**
 * What kind of failure a user-facing error is. Domain code says what went wrong
 * with a code; the control API (src/api/errors.ts) decides the HTTP status.
 */
export type ErrorCode =
  /** the input is wrong: fix it and retry */
  | 'bad-request'
  /** this member may not do that (not an admin, not allowed by the cluster) */
  | 'forbidden'
  | 'not-found'
  /** the request conflicts with this machine's state (cannot run here, already exists) */
  | 'conflict'
  /** something outside the agent failed: a plugin's command, a container, a remote */
  | 'upstream'
  | 'not-a-dataset'
  | 'bad-manifest'
  | 'refused'
  | 'no-space'
  | 'quorum'
  | 'unavailable'
  | 'interrupted'

/** A user-facing error: its message says what went wrong and what to do next. */
export class MeshError extends Error {
  override name = 'MeshError'
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message)
  }
}
