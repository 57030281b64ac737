import type { FastifyInstance } from 'fastify'
import type { UiComponent } from './server.js'

/** POST /v1/ui on the control API: start the dashboard if needed, answer its URL (token included). */
export function uiRoutes(deps: { ui: UiComponent }) {
  return (app: FastifyInstance) => {
    app.post('/v1/ui', async () => ({ url: await deps.ui.open() }))
  }
}
