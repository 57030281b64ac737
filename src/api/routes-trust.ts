import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { Statement } from '../../protocols/trust.js'
import { ResolveError, resolveMember } from '../membership/names.js'
import type { MembershipComponent } from '../membership/service.js'
import type { NodeComponent } from '../node/node-component.js'
import type { AdminReply } from './contract.js'
import { ApiError } from './errors.js'

const Body = z.object({ member: z.string().min(1) }).strict()

/** /v1/revoke, /v1/admin/grant, /v1/admin: admin statements, signed here and gossiped. */
export function trustRoutes(deps: {
  node: NodeComponent
  membership: MembershipComponent
  clusterId: string
}) {
  const target = (body: unknown): string => {
    const parsed = Body.safeParse(body)
    if (!parsed.success)
      throw new ApiError(400, 'name the member: NAME, NAME.mesh, overlay address or peer ID')
    const q = parsed.data.member
    const infos = deps.membership.rows().map((r) => r.entry.signed.info)
    const m = resolveMember(q, infos, deps.clusterId)
    if (!(m instanceof ResolveError)) return m.peerId
    // a peer ID we never saw in the table can still be revoked (a leaked token, say)
    if (/^12D3Koo[A-Za-z0-9]{40,}$/.test(q)) return q
    throw new ApiError(404, m.message)
  }
  const act = async (kind: Statement.Kind, peer: string) => {
    const { node } = deps
    if (peer === node.node.peerId.toString() && kind === Statement.Kind.REVOKE) {
      throw new ApiError(400, 'a member cannot revoke itself; use mesh leave')
    }
    let st: Statement
    try {
      st = node.trust.state(node.privateKey, kind, peer)
    } catch (err) {
      throw new ApiError(403, (err as Error).message)
    }
    await deps.membership.spreadStatement(st)
    return st
  }

  return (app: FastifyInstance) => {
    app.post('/v1/revoke', async (req) => {
      const peer = target(req.body)
      if (deps.node.trust.isRevoked(peer)) return { peerId: peer, revoked: true, already: true }
      await act(Statement.Kind.REVOKE, peer)
      await deps.node.node.services.admission.cutOff(peer, deps.node.node.getConnections())
      return { peerId: peer, revoked: true }
    })
    app.post('/v1/admin/grant', async (req) => {
      const peer = target(req.body)
      if (deps.node.trust.isAdmin(peer)) return { peerId: peer, admin: true, already: true }
      await act(Statement.Kind.GRANT_ADMIN, peer)
      return { peerId: peer, admin: true }
    })
    app.get(
      '/v1/admin',
      async (): Promise<AdminReply> => ({
        admins: deps.node.trust.adminList(),
        revoked: deps.node.trust.revokedList(),
        self: deps.node.node.peerId.toString(),
      }),
    )
  }
}
