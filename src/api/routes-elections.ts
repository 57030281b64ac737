import type { FastifyInstance } from 'fastify'
import type { ElectionsComponent } from '../election/component.js'
import { explainRefusals } from '../election/core.js'
import type { MaintenanceReply, RequestsReply } from './contract.js'
import { ApiError } from './errors.js'

/** /v1/requests: create, list, show, cancel election requests. */
export function electionRoutes(deps: { elections: ElectionsComponent }) {
  return (app: FastifyInstance) => {
    const el = deps.elections
    const find = (q: string): string => {
      const id = el.resolve(q)
      if (id === undefined)
        throw new ApiError(404, `no request matches '${q}': list them with 'mesh requests'`)
      return id
    }

    app.get('/v1/requests', async (): Promise<RequestsReply> => ({ requests: el.list() }))

    app.get('/v1/maintenance', async (): Promise<MaintenanceReply> => ({ on: el.maintenance }))
    app.post<{ Body: { on?: unknown } }>('/v1/maintenance', async (req): Promise<MaintenanceReply> => {
      const on = req.body?.on
      if (typeof on !== 'boolean')
        throw new ApiError(400, 'expected {"on": true|false} (mesh maintenance on|off)')
      el.setMaintenance(on)
      return { on }
    })

    app.post<{
      Body: { computeType?: string; serverType?: string; tags?: Record<string, string>; names?: string[] }
    }>('/v1/requests', async (req) => {
      const b = req.body ?? {}
      if (typeof b.computeType !== 'string' || b.computeType === '')
        throw new ApiError(400, 'computeType is required (mesh request create --compute-type T)')
      try {
        const r = el.create({
          computeType: b.computeType,
          serverType: b.serverType,
          tags: b.tags,
          names: b.names,
        })
        return { id: r.id, voters: r.voters.length }
      } catch (err) {
        throw new ApiError(400, (err as Error).message)
      }
    })

    app.get<{ Params: { id: string } }>('/v1/requests/:id', async (req) => {
      const id = find(req.params.id)
      const v = el.view(id)!
      const name = (p: string) => el.nameOf(p)
      return {
        ...el.summary(id),
        ...el.timing(id),
        excluded: v.excluded.map((x) => ({ ...x, name: name(x.peer) })),
        waitingFor: v.waitingFor.map(name),
        message: v.reasons !== undefined ? explainRefusals(v.reasons, name) : undefined,
        rounds: v.rounds.map((r) => ({
          round: r.round,
          votes: r.votes.map((x) => ({
            voter: x.voter,
            name: name(x.voter),
            yes: x.yes,
            score: x.score,
            tiebreak: x.tiebreak,
            reasons: x.reasons,
            note: x.note,
          })),
          reports: r.reports.map((x) => ({
            member: x.member,
            name: name(x.member),
            state: x.state,
            instance: x.instance,
            note: x.note,
          })),
        })),
      }
    })

    app.post<{ Params: { id: string } }>('/v1/requests/:id/cancel', async (req) => {
      const id = find(req.params.id)
      try {
        el.cancel(id)
      } catch (err) {
        throw new ApiError(403, (err as Error).message)
      }
      return el.summary(id)
    })
  }
}
