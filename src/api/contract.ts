/**
 * The control API's contract: what each call takes and returns, in one place. The agent's
 * routes answer with these shapes and the CLI reads them from here, never from a component's
 * own module. Long calls answer NDJSON (`{type: 'progress'|'done'|'error'}` lines), see
 * ApiClient.stream; downloads are raw bytes (ApiClient.download); /v1/tunnel is an HTTP
 * Upgrade (ApiClient.tunnel); /v1/events is server-sent events (ApiClient.events).
 */
import type { DatasetView, GetProgress, GetResult, PutResult } from '../blocks/datasets.js'
import type { BlockStat } from '../blocks/exchange-service.js'
import type { Entry, Root } from '../blocks/manifest.js'
import type { Pin } from '../blocks/pins.js'
import type { RequestSummary } from '../election/component.js'
import type { MetricSample } from '../kernel/metric-samples.js'
import type { NatStatus } from '../nat/component.js'
import type { ConnectionInfo } from '../node/node-component.js'
import type { OverlayStatus } from '../overlay/component.js'
import type { InstanceRecord, PluginView, SpawnedInstance } from '../plugins/component.js'
import type { TunnelInfo } from '../tunnel/component.js'
import type { MemberView } from './routes-members.js'

export type {
  ConnectionInfo,
  DatasetView,
  Entry,
  GetProgress,
  GetResult,
  InstanceRecord,
  MemberView,
  NatStatus,
  OverlayStatus,
  PluginView,
  PutResult,
  RequestSummary,
  SpawnedInstance,
  TunnelInfo,
}

// ---- core ---------------------------------------------------------------------------------------

/** GET /v1/metrics: every metric sample as a value (GET /metrics has the Prometheus text) */
export interface MetricsView {
  samples: MetricSample[]
}

/** GET /v1/status */
export interface AgentStatus {
  peerId: string
  name: string
  overlay: string
  cluster: { name: string; id: string }
  listen: string[]
  observed: string[]
  connections: ConnectionInfo[]
  nat?: NatStatus
  overlayInterface?: OverlayStatus
  uptimeMs: number
  version: string
  dataDir: string
  pid: number
  tunnel: { allowPorts: number[] }
  /** set when an admin revoked this member (an agent told to stay: exitWhenRevoked false) */
  revoked?: { by: string; at: string; message: string }
}

/** GET /v1/peers */
export interface PeersReply {
  connections: ConnectionInfo[]
}

/** POST /v1/invite */
export interface InviteReply {
  token: string
  expires: number
  addrs: string[]
}

// ---- members and trust --------------------------------------------------------------------------

/** GET /v1/members */
export interface MembersReply {
  members: MemberView[]
}

/**
 * GET /v1/traffic: bytes exchanged with each member since this agent started, over all its
 * connections to it (a relayed connection's bytes count toward the relay too). `at` is the
 * agent's clock (ms), so two readings give a rate.
 */
export interface TrafficReply {
  at: number
  peers: Array<{ peerId: string; name: string; bytesIn: number; bytesOut: number }>
}

/** POST /v1/rejoin */
export interface RejoinReply {
  tried: number
  connected: number
}

/** POST /v1/revoke, POST /v1/admin/grant */
export interface TrustChangeReply {
  peerId: string
  already?: boolean
}

// ---- blocks and datasets ------------------------------------------------------------------------

/** POST /v1/blocks {path} */
export interface BlockPutReply {
  cid: string
  size: number
  added: boolean
}

/** GET /v1/blocks/:cid/stat */
export type BlockStatReply = BlockStat

/** POST /v1/put (NDJSON): progress lines, then a PutResult */
export interface PutRequest {
  path: string
  tag?: string
  replicas?: number
}
export interface PutProgress {
  phase: 'chunking' | 'replicating'
  bytes: number
  totalBytes: number
  files: number
  totalFiles: number
}

/** POST /v1/get (NDJSON): GetProgress lines, then a GetResult */
export interface GetRequest {
  ref: string
  dest?: string
  cwd?: string
}

/** GET /v1/ls?ref= */
export interface LsReply {
  root: string
  info: Root
  entries: Entry[]
}

/** GET /v1/datasets */
export interface DatasetsReply {
  datasets: DatasetView[]
}

/** POST /v1/pin (NDJSON): then this */
export interface PinReply {
  root: string
  bytes: number
  fetched: number
}

/** POST /v1/unpin */
export interface UnpinReply {
  root: string
  unpinned: boolean
}

/** GET /v1/pins */
export interface PinsReply {
  pins: Array<{ root: string } & Pin>
}

// ---- elections, plugins, tunnels ----------------------------------------------------------------

/** GET /v1/requests/:id: a request with its rounds */
export interface RequestDetail extends RequestSummary {
  decidedMs?: number
  allocatedMs?: number
  message?: string
  rounds: Array<{
    round: number
    votes: Array<{ name: string; yes: boolean; score: number; reasons: string[]; note: string }>
    reports: Array<{ name: string; state: string; instance: string; note: string }>
  }>
}

/** GET /v1/requests */
export interface RequestsReply {
  requests: RequestSummary[]
}

/** POST /v1/requests */
export interface RequestCreated {
  id: string
  voters: number
}

/** GET/POST /v1/maintenance */
export interface MaintenanceReply {
  on: boolean
}

/** GET /v1/plugins */
export interface PluginsReply {
  plugins: PluginView[]
  errors: string[]
}

/** POST /v1/plugins/install */
export interface PluginInstallReply {
  plugin: PluginView
  record: { name: string; commit: string }
}

/** POST /v1/plugins/:name/update */
export interface PluginUpdateReply {
  from: string
  to: string
}

/** POST /v1/spawn, POST /v1/slave */
export interface SpawnReply {
  instances: SpawnedInstance[]
}

/** GET /v1/instances: each record (without its env) and its member's status */
export interface InstancesReply {
  /** status: the record's, or 'gone' when the plugin's detect_stale_instance says so */
  instances: Array<Omit<InstanceRecord, 'status' | 'env'> & { status: string; member: string }>
}

/** GET /v1/tunnels */
export interface TunnelsReply {
  tunnels: TunnelInfo[]
}

/** DELETE /v1/instances/:name */
export interface DestroyReply {
  /** with ?force=1: the plugin's clean-up failed and the instance was forgotten anyway */
  cleanUp?: string
}

/** POST /v1/prune */
export interface PruneReply {
  checked: number
  pruned: string[]
  failed: Array<{ name: string; error: string }>
}

/** GET /v1/admin */
export interface AdminReply {
  admins: string[]
  revoked: Array<{ peerId: string; issuer: string; issued: number }>
  self: string
}

/** POST /v1/ui: the dashboard's address with its one-time token */
export interface UiReply {
  url: string
}
