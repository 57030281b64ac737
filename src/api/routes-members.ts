import type { FastifyInstance } from 'fastify'
import { displayNames, ResolveError, resolveMember } from '../membership/names.js'
import type { MembershipComponent } from '../membership/service.js'
import type { NodeComponent } from '../node/node-component.js'
import type { MembersReply, RejoinReply, TrafficReply } from './contract.js'
import { ApiError } from './errors.js'

export interface MemberView {
  name: string
  peerId: string
  overlay: string
  status: string
  path: string
  rttMs?: number
  /** its clock minus ours, ms, from probe replies (± half the round trip); absent until measured */
  clockOffsetMs?: number
  version: string
  tags: Record<string, string>
  addrs: string[]
  incarnation: number
  maintenance: boolean
  computeTypes: string[]
  resources: { cpus: number; memoryBytes: number; diskFreeBytes: number }
  self: boolean
  since: number
}

/** /v1/members, /v1/members/resolve, /v1/traffic, /v1/leave, /v1/rejoin. */
export function memberRoutes(deps: {
  node: NodeComponent
  membership: MembershipComponent
  clusterId: string
  onLeave: () => void
}) {
  return (app: FastifyInstance) => {
    const view = (): MemberView[] => {
      const rows = deps.membership.rows()
      const names = displayNames(rows.map((r) => r.entry.signed.info))
      const conns = new Map<string, { path: string; rttMs?: number }>()
      const rank: Record<string, number> = { direct: 0, 'webrtc-direct': 1, webrtc: 1, relayed: 2 }
      for (const c of deps.node.connections()) {
        // only admitted connections carry mesh traffic (a WebRTC attempt whose ICE never
        // completed can sit in libp2p's list until admission gives up on it)
        if (!c.admitted) continue
        const prev = conns.get(c.peerId)
        // the best path shows: direct, then WebRTC, then relayed
        if (prev === undefined || (rank[c.path] ?? 3) < (rank[prev.path] ?? 3))
          conns.set(c.peerId, { path: c.path, rttMs: c.rttMs ?? prev?.rttMs })
      }
      const self = deps.membership.selfPeerId
      return rows
        .map((r) => {
          const i = r.entry.signed.info
          const c = conns.get(r.peerId)
          return {
            name: names.get(r.peerId) ?? i.name,
            peerId: r.peerId,
            overlay: i.overlay,
            status: deps.node.trust.isRevoked(r.peerId) ? 'revoked' : r.status,
            path: r.peerId === self ? 'self' : (c?.path ?? '-'),
            rttMs: r.peerId === self ? undefined : (deps.membership.rttOf(r.peerId) ?? c?.rttMs),
            clockOffsetMs:
              r.peerId === self ? undefined : roundOffset(deps.membership.clockOf(r.peerId)?.offsetMs),
            version: i.version,
            tags: i.tags,
            addrs: [...i.addrs],
            incarnation: i.incarnation,
            maintenance: i.maintenance,
            computeTypes: [...i.computeTypes],
            resources: i.resources,
            self: r.peerId === self,
            since: r.since,
          }
        })
        .sort((a, b) => a.name.localeCompare(b.name))
    }

    app.get('/v1/members', async (): Promise<MembersReply> => ({ members: view() }))

    app.get('/v1/traffic', async (): Promise<TrafficReply> => {
      const names = displayNames(deps.membership.rows().map((r) => r.entry.signed.info))
      const peers: TrafficReply['peers'] = []
      for (const [peerId, t] of deps.node.traffic.snapshot())
        peers.push({ peerId, name: names.get(peerId) ?? peerId, bytesIn: t.in, bytesOut: t.out })
      return { at: Date.now(), peers }
    })

    app.get<{ Querystring: { q?: string } }>('/v1/members/resolve', async (req) => {
      const infos = deps.membership.rows().map((r) => r.entry.signed.info)
      const r = resolveMember(req.query.q ?? '', infos, deps.clusterId)
      if (r instanceof ResolveError) throw new ApiError(404, r.message)
      return view().find((m) => m.peerId === r.peerId)
    })

    app.post('/v1/rejoin', async (): Promise<RejoinReply> => deps.membership.rejoin())

    app.post('/v1/leave', async () => {
      await deps.membership.leave()
      setImmediate(deps.onLeave)
      return { left: true }
    })
  }
}

const roundOffset = (ms: number | undefined) => (ms === undefined ? undefined : Math.round(ms))
