import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { PluginsComponent } from '../plugins/component.js'
import { PluginError } from '../plugins/plugin-error.js'
import type { InstancesReply, PluginsReply } from './contract.js'
import { ApiError } from './errors.js'

const Install = z
  .object({
    source: z.string().min(1).max(2048),
    ref: z.string().min(1).max(256).optional(),
    name: z.string().max(63).optional(),
  })
  .strict()
const Update = z.object({ ref: z.string().min(1).max(256).optional() }).strict()
const Spawn = z
  .object({
    computeType: z.string().min(1).max(64),
    serverType: z.string().min(1).max(64).optional(),
    count: z.number().int().min(1).max(64).default(1),
    provision: z.boolean().default(true),
    afterHooks: z.boolean().default(true),
    joinTimeoutMs: z.number().int().min(1000).max(3_600_000).optional(),
  })
  .strict()
const Slave = z
  .object({
    host: z.string().min(1).max(255),
    port: z.number().int().min(1).max(65535).optional(),
    user: z.string().min(1).max(64).optional(),
    serverType: z.string().min(1).max(64).optional(),
    provision: z.boolean().default(true),
    afterHooks: z.boolean().default(true),
  })
  .strict()

function body<T>(schema: z.ZodType<T>, raw: unknown, what: string): T {
  const r = schema.safeParse(raw ?? {})
  if (!r.success) {
    const i = r.error.issues[0]
    throw new ApiError(400, `bad ${what} request: ${i?.path.join('.') || 'body'}: ${i?.message}`)
  }
  return r.data
}

/** A plugin error is the user's to fix (400); anything else is ours. */
async function wrap<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof PluginError) throw new ApiError(400, err.message)
    throw err
  }
}

/**
 * /v1/plugins, /v1/instances, /v1/spawn, /v1/slave, /v1/prune. Only on the local control
 * socket: nothing here is reachable from another member, so plugins are installed and run
 * only on the local admin's command.
 */
export function pluginRoutes(deps: { plugins: PluginsComponent }) {
  return (app: FastifyInstance) => {
    const p = deps.plugins
    app.get('/v1/plugins', async (): Promise<PluginsReply> => {
      await p.recheck()
      return p.list()
    })
    app.post('/v1/plugins/install', async (req) => {
      const b = body(Install, req.body, 'install')
      return wrap(() => p.install(b.source, b.ref, b.name))
    })
    app.post<{ Params: { name: string } }>('/v1/plugins/:name/update', async (req) => {
      const b = body(Update, req.body, 'update')
      return wrap(() => p.update(req.params.name, b.ref))
    })
    app.delete<{ Params: { name: string } }>('/v1/plugins/:name', async (req) =>
      wrap(() => p.uninstall(req.params.name)),
    )
    app.get(
      '/v1/instances',
      async (): Promise<InstancesReply> => ({ instances: await p.checkedInstanceViews() }),
    )
    app.post('/v1/spawn', async (req) => wrap(() => p.spawn(body(Spawn, req.body, 'spawn'))))
    app.post('/v1/slave', async (req) => wrap(() => p.slave(body(Slave, req.body, 'slave'))))
    app.delete<{ Params: { name: string }; Querystring: { force?: string } }>(
      '/v1/instances/:name',
      async (req) => wrap(() => p.destroy(req.params.name, { force: req.query.force === '1' })),
    )
    app.post('/v1/prune', async () => wrap(() => p.prune()))
  }
}
