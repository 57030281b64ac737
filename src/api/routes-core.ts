import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { EventBus } from '../kernel/events.js'
import { overlayAddress } from '../membership/overlay.js'
import type { NatComponent } from '../nat/component.js'
import type { Cluster } from '../node/cluster.js'
import type { NodeComponent, RevokedError } from '../node/node-component.js'
import { makeToken } from '../node/token.js'
import type { OverlayComponent } from '../overlay/component.js'
import type { TunnelConfig } from '../tunnel/config.js'
import { VERSION } from '../version.js'
import type { AgentStatus, InviteReply, PeersReply } from './contract.js'
import { ApiError } from './errors.js'

const InviteBody = z
  .object({
    ttlMs: z
      .number()
      .int()
      .min(1000)
      .max(30 * 24 * 3600_000)
      .default(3600_000),
  })
  .strict()

/** /v1/status, /v1/peers, /v1/invite: what the foundation CLI commands call. */
export function coreRoutes(deps: {
  node: NodeComponent
  nat?: NatComponent
  overlay?: OverlayComponent
  cluster: Cluster
  config: { name: string; tunnel: Pick<TunnelConfig, 'allowPorts'> }
  dataDir: string
  startedAt: number
  events: EventBus
}) {
  return (app: FastifyInstance) => {
    const { node, cluster } = deps
    // wired when the API loads (its first request, api/server.ts): only /v1/events streams
    // take these events, and none is open before then
    node.node.addEventListener('peer:connect', (e) =>
      deps.events.publish('peer:connect', { peerId: e.detail.toString() }),
    )
    node.node.addEventListener('peer:disconnect', (e) =>
      deps.events.publish('peer:disconnect', { peerId: e.detail.toString() }),
    )

    app.get('/v1/status', async (): Promise<AgentStatus> => {
      const n = node.node
      await node.refreshRtt(1000)
      return {
        peerId: n.peerId.toString(),
        name: deps.config.name,
        overlay: overlayAddress(cluster.id, n.peerId.toString()),
        cluster: { name: cluster.name, id: cluster.id },
        listen: n.getMultiaddrs().map(String),
        observed: n.services.addresses.getObservedAddrs().map(String),
        connections: node.connections(),
        nat: deps.nat?.status(),
        overlayInterface: deps.overlay?.status(),
        uptimeMs: Date.now() - deps.startedAt,
        version: VERSION,
        dataDir: deps.dataDir,
        pid: process.pid,
        tunnel: { allowPorts: deps.config.tunnel.allowPorts },
        revoked: revokedInfo(node.revoked),
      }
    })

    app.get('/v1/peers', async (): Promise<PeersReply> => {
      await node.refreshRtt(1000)
      return { connections: node.connections() }
    })

    app.post('/v1/invite', async (req): Promise<InviteReply> => {
      const parsed = InviteBody.safeParse(req.body ?? {})
      if (!parsed.success) throw new ApiError(400, `bad invite request: ${parsed.error.issues[0]?.message}`)
      if (!node.trust.isAdmin(node.node.peerId.toString())) {
        throw new ApiError(
          403,
          'only an admin can invite: run mesh invite on an admin, or have an admin run mesh admin grant <this member>',
        )
      }
      const addrs = node.reachableAddrs()
      if (addrs.length === 0) {
        throw new ApiError(
          409,
          'this agent has no reachable address to put in a token; set listen or announce addresses',
        )
      }
      const { token, invite } = makeToken(
        { ...cluster, admins: node.trust.genesisAdmins },
        addrs,
        parsed.data.ttlMs,
      )
      node.invites.add(invite.inviteId, invite.expires)
      return { token, expires: invite.expires, addrs }
    })
  }
}

function revokedInfo(r: RevokedError | undefined): { by: string; at: string; message: string } | undefined {
  return r === undefined
    ? undefined
    : { by: r.issuer, at: new Date(r.issued).toISOString(), message: r.message }
}
