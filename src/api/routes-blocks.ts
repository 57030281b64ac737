import { open } from 'node:fs/promises'
import { isAbsolute } from 'node:path'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { MAX_BLOCK } from '../blocks/blockstore.js'
import { parseCid } from '../blocks/cid.js'
import type { BlocksComponent } from '../blocks/component.js'
import type {
  BlockPutReply,
  BlockStatReply,
  DatasetsReply,
  GetRequest,
  LsReply,
  PinsReply,
  PutRequest,
  UnpinReply,
} from './contract.js'
import { ApiError, httpStatus } from './errors.js'

const PROGRESS_EVERY_MS = 250

function absolute(p: unknown, what: string): string {
  if (typeof p !== 'string' || p === '') throw new ApiError(400, `no ${what} given`)
  if (!isAbsolute(p))
    throw new ApiError(400, `${what} must be an absolute path (the CLI resolves it): '${p}'`)
  return p
}

/** Write with backpressure; rejects if the client goes away meanwhile. */
function send(res: FastifyReply['raw'], chunk: Uint8Array, signal: AbortSignal): Promise<void> {
  if (res.write(chunk)) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      res.off('drain', onDrain)
      signal.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onDrain = () => done()
    const onAbort = () => done(new Error('the client went away'))
    if (signal.aborted) return onAbort()
    res.once('drain', onDrain)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * A long operation as NDJSON: `{"type":"progress",...}` lines (at most 4 a second), then one
 * `{"type":"done","result":...}` or `{"type":"error","error":...,"status":...}`. The client
 * going away aborts the operation (a get resumes when run again).
 */
async function ndjson<T>(
  req: FastifyRequest,
  reply: FastifyReply,
  run: (signal: AbortSignal, progress: (p: Record<string, unknown>) => void) => Promise<T>,
): Promise<void> {
  const ac = new AbortController()
  reply.hijack()
  const res = reply.raw
  res.on('close', () => {
    if (!res.writableFinished) ac.abort(new Error('the client went away'))
  })
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' })
  let last = 0
  let phase: unknown
  const progress = (p: Record<string, unknown>) => {
    const now = performance.now()
    // a new phase is always reported; within one, at most 4 lines a second
    if (now - last < PROGRESS_EVERY_MS && p.phase === phase) return
    last = now
    phase = p.phase
    res.write(`${JSON.stringify({ type: 'progress', ...p })}\n`)
  }
  try {
    const result = await run(ac.signal, progress)
    res.end(`${JSON.stringify({ type: 'done', result })}\n`)
  } catch (err) {
    const status = httpStatus(err)
    res.end(`${JSON.stringify({ type: 'error', error: (err as Error).message, status })}\n`)
  }
  void req
}

/**
 * Blocks and datasets: /v1/blocks (put, get, stat), /v1/put, /v1/get (NDJSON progress),
 * /v1/cat, /v1/ls, /v1/datasets, /v1/pin, /v1/unpin, /v1/pins, /v1/replicate, /v1/dht/providers.
 */
export function blockRoutes(deps: { blocks: BlocksComponent }) {
  const b = deps.blocks
  return (app: FastifyInstance) => {
    app.post<{ Body: { path?: string } }>('/v1/blocks', async (req): Promise<BlockPutReply> => {
      const path = absolute(req.body?.path, 'file path')
      let fh: Awaited<ReturnType<typeof open>>
      try {
        fh = await open(path, 'r')
      } catch (err) {
        throw new ApiError(400, `cannot read ${path}: ${(err as Error).message}`)
      }
      try {
        const st = await fh.stat()
        if (!st.isFile()) throw new ApiError(400, `${path} is not a regular file`)
        if (st.size > MAX_BLOCK) {
          throw new ApiError(
            400,
            `${path} is ${st.size} bytes; a block is at most ${MAX_BLOCK} (2 MiB): use 'mesh put' for files of any size`,
          )
        }
        return await b.exchange.blockPut(new Uint8Array(await fh.readFile()))
      } finally {
        await fh.close()
      }
    })

    app.get<{ Params: { cid: string } }>('/v1/blocks/:cid', async (req, reply) => {
      const cid = parseCid(req.params.cid)
      const ac = new AbortController()
      reply.raw.on('close', () => ac.abort())
      const { bytes } = await b.exchange.blockGet(cid, ac.signal)
      return reply
        .type('application/octet-stream')
        .header('x-mesh-cid', cid.toString())
        .send(Buffer.from(bytes))
    })

    app.get<{ Params: { cid: string } }>(
      '/v1/blocks/:cid/stat',
      async (req): Promise<BlockStatReply> => b.exchange.blockStat(parseCid(req.params.cid)),
    )

    // providers through the DHT only (diagnostics, and the test that the DHT carries records)
    app.get<{ Params: { cid: string }; Querystring: { timeoutMs?: string } }>(
      '/v1/dht/providers/:cid',
      async (req) => {
        const t = Number(req.query.timeoutMs ?? 8000)
        if (!Number.isInteger(t) || t < 1 || t > 60_000)
          throw new ApiError(
            400,
            `timeoutMs must be a whole number from 1 to 60000, not ${req.query.timeoutMs}`,
          )
        return b.exchange.dhtProviders(parseCid(req.params.cid), t)
      },
    )

    app.post<{ Body: Partial<PutRequest> }>('/v1/put', async (req, reply) => {
      const path = absolute(req.body?.path, 'path to put')
      const { tag, replicas } = req.body
      if (replicas !== undefined && (!Number.isInteger(replicas) || replicas < 1 || replicas > 64)) {
        throw new ApiError(400, `--replicas must be a whole number from 1 to 64, not ${replicas}`)
      }
      await ndjson(req, reply, (signal, progress) =>
        b.datasets.put(path, { tag, replicas, signal, onProgress: progress }),
      )
    })

    app.post<{ Body: Partial<GetRequest> }>('/v1/get', async (req, reply) => {
      const { ref, dest, cwd } = req.body ?? {}
      if (typeof ref !== 'string' || ref === '') throw new ApiError(400, 'no CID or DATASET:TAG given')
      if (dest !== undefined) absolute(dest, 'destination')
      if (cwd !== undefined) absolute(cwd, 'working directory')
      await ndjson(req, reply, (signal, progress) =>
        b.datasets.get(ref, dest, {
          signal,
          cwd,
          onProgress: (p) => progress(p as unknown as Record<string, unknown>),
        }),
      )
    })

    app.get<{ Querystring: { ref?: string } }>('/v1/cat', async (req, reply) => {
      const ref = req.query.ref ?? ''
      const ac = new AbortController()
      const res = reply.raw
      res.on('close', () => {
        if (!res.writableFinished) ac.abort()
      })
      const it = b.datasets.cat(ref, ac.signal)[Symbol.asyncIterator]()
      // errors before the first byte are ordinary API errors
      const first = await it.next()
      reply.hijack()
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      try {
        let n = first
        while (n.done !== true) {
          await send(res, n.value, ac.signal)
          n = await it.next()
        }
        res.end()
      } catch (err) {
        // the status is sent already: cut the body so the client sees a short read
        res.destroy(err as Error)
        await it.return?.(undefined).catch(() => {})
      }
    })

    app.get<{ Querystring: { ref?: string } }>(
      '/v1/ls',
      async (req): Promise<LsReply> => b.datasets.ls(req.query.ref ?? ''),
    )

    app.get('/v1/datasets', async (): Promise<DatasetsReply> => ({ datasets: b.datasets.list() }))

    app.post<{ Body: { ref?: string } }>('/v1/pin', async (req, reply) => {
      const ref = req.body?.ref ?? ''
      await ndjson(req, reply, (signal) => b.cache.pin(ref, signal))
    })

    app.post<{ Body: { ref?: string } }>(
      '/v1/unpin',
      async (req): Promise<UnpinReply> => b.cache.unpin(req.body?.ref ?? ''),
    )

    app.get('/v1/pins', async (): Promise<PinsReply> => ({ pins: b.cache.pinList() }))

    app.post('/v1/blocks/repair', async () => ({ placed: await b.replicas.repair() }))

    app.post('/v1/blocks/gc', async () => {
      await b.cache.gc()
      return { blocks: b.store.count, bytes: b.store.totalBytes }
    })
  }
}
