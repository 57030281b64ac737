/**
 * Whether a failed dial was refused: some address answered with a TCP reset (ECONNREFUSED), so
 * the host is up and nothing listens where the member said it would; what a kill -9 or a crashed
 * process leaves behind. A busy or starved member never refuses (the kernel still completes its
 * handshakes; a full backlog drops the SYN, which times out), nor does a lost host or link, so
 * unlike a timeout this is no sign of our own or the network's load. libp2p throws the socket's
 * error for a single address and an AggregateError for several (libp2p/dial-queue).
 */
export function dialRefused(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 4) return false
  if ((err as { code?: unknown }).code === 'ECONNREFUSED') return true
  const inner = (err as { errors?: unknown }).errors
  if (Array.isArray(inner)) return inner.some((e) => dialRefused(e, depth + 1))
  const cause = (err as { cause?: unknown }).cause
  return cause !== undefined && dialRefused(cause, depth + 1)
}
