import { type ErrorCode, MeshError } from '../kernel/errors.js'

/** The HTTP status the control API answers for each error code. */
const STATUS: Record<ErrorCode, number> = {
  'bad-request': 400,
  forbidden: 403,
  'not-found': 404,
  conflict: 409,
  upstream: 502,
  'not-a-dataset': 400,
  'bad-manifest': 422,
  refused: 400,
  'no-space': 507,
  quorum: 503,
  unavailable: 503,
  interrupted: 499,
}

/** An error raised by a route itself, with its HTTP status; the CLI prints the message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/** The status to answer for an error thrown while serving a request. */
export function httpStatus(err: unknown): number {
  if (err instanceof ApiError) return err.status
  if (err instanceof MeshError) return STATUS[err.code]
  const e = err as { statusCode?: unknown }
  // fastify's own errors (bad JSON body, body too large) carry a statusCode
  return typeof e?.statusCode === 'number' ? e.statusCode : 500
}
