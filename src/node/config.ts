import { z } from 'zod'

/** `relay:` circuit relay for other members, and the reservations this member keeps. */
export const RelayConfigSchema = z
  .object({
    server: z.boolean().default(true),
    reservations: z.number().int().min(0).max(32).default(2),
  })
  .strict()

/** `webrtc:` the WebRTC transport; STUN servers to use instead of the cluster's own. */
export const WebrtcConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    iceServers: z.array(z.string().regex(/^(stun|turn|turns):/, 'expected stun:HOST:PORT')).default([]),
  })
  .strict()

export type WebrtcConfig = z.infer<typeof WebrtcConfigSchema>

/** `dht:` kad-dht on the cluster-private protocol id. */
export const DhtConfigSchema = z.object({ enabled: z.boolean().default(true) }).strict()

/**
 * What the node reads of the agent's config: its own sections and the agent-level keys it needs
 * (the agent's Config has these and more; the node does not import it).
 */
export interface NodeConfig {
  name: string
  listen: string[]
  announce: string[]
  dialTimeoutMs: number
  authTimeoutMs: number
  /** libp2p's connection limit before the cluster outgrows it (connection-limit.ts) */
  maxConnections: number
  exitWhenRevoked: boolean
  relay: z.infer<typeof RelayConfigSchema>
  webrtc: WebrtcConfig
  dht: z.infer<typeof DhtConfigSchema>
}
