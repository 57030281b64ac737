import type { PeerId, Stream } from '@libp2p/interface'
import { pbStream } from '@libp2p/utils'
import { DatasetReply, DatasetRequest } from '../../protocols/blocks.js'
import { closeOrAbort } from '../kernel/streams.js'
import type { BlocksContext } from './context.js'

const MAX_CONTROL = 4 << 20
export const CONTROL_TIMEOUT_MS = 10_000

/**
 * The datasets control protocol (protocols/blocks.md): one request, one reply. Tag sync,
 * replicate and holds ride on it; the component routes an inbound request to the parts.
 */
export async function callControl(
  ctx: BlocksContext,
  peer: PeerId,
  req: DatasetRequest,
  timeoutMs = CONTROL_TIMEOUT_MS,
): Promise<DatasetReply> {
  const signal = AbortSignal.timeout(timeoutMs)
  const stream = await ctx.node.dialProtocol(peer, ctx.controlProtocol, {
    signal,
    runOnLimitedConnection: true,
  })
  // a replication may keep the stream quiet for a long time
  stream.inactivityTimeout = timeoutMs + 5_000
  try {
    const pb = pbStream(stream, { maxDataLength: MAX_CONTROL })
    await pb.write(req, DatasetRequest, { signal })
    const reply = await pb.read(DatasetReply, { signal })
    await closeOrAbort(stream, signal)
    return reply
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/** Read one request from `stream`, answer with what `answer` builds. */
export async function serveControl(
  ctx: BlocksContext,
  stream: Stream,
  answer: (req: DatasetRequest) => Promise<DatasetReply>,
): Promise<void> {
  stream.inactivityTimeout = ctx.config.replicateTimeoutMs + 5_000
  try {
    const pb = pbStream(stream, { maxDataLength: MAX_CONTROL })
    const req = await pb.read(DatasetRequest, {
      signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
      limits: { holds: 1024 },
    } as never)
    const reply = await answer(req)
    await pb.write(reply, DatasetReply, { signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS) })
    await stream.close().catch(() => {})
  } catch (err) {
    stream.abort(err as Error)
  }
}
