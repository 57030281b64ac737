import { EventEmitter } from 'node:events'

/**
 * Every event the agent publishes, by name: on the control API's stream
 * (`GET /v1/events`, `mesh monitor`) and to plugin hooks (cluster_change).
 */
export const EVENT_TYPES = [
  /** the agent is stopping; data.reason says why */
  'agent_stopping',
  /** a member's record changed (joined, status, address, tags) */
  'cluster_change',
  /** a dataset tag was set here or learned from a member */
  'dataset_tag',
  /** an election round chose a winner */
  'request_decided',
  /** no member could take a request; data.message says why */
  'request_no_candidate',
  /** a request that ended no-candidate was placed again (data.as) among the members alive now */
  'request_placed_again',
  /** a request's status changed (allocated, error, done...) */
  'request_change',
  /** a request starts a new round without the members that failed it */
  'request_new_round',
  /** a libp2p connection to a peer opened (its first) or closed (its last) */
  'peer:connect',
  'peer:disconnect',
] as const

export type EventType = (typeof EVENT_TYPES)[number]

/** An event on the control API's stream (`GET /v1/events`, server-sent events). */
export interface MeshEvent {
  type: EventType
  time: number
  data: Record<string, unknown>
}

/** In-process bus: components publish, SSE clients and hooks subscribe. */
export class EventBus {
  private readonly emitter = new EventEmitter()
  constructor() {
    this.emitter.setMaxListeners(1000)
  }
  publish(type: EventType, data: Record<string, unknown>): void {
    this.emitter.emit('event', { type, time: Date.now(), data } satisfies MeshEvent)
  }
  subscribe(fn: (e: MeshEvent) => void): () => void {
    this.emitter.on('event', fn)
    return () => this.emitter.off('event', fn)
  }
}
