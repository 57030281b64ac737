import { EventEmitter } from 'node:events'

/** An event on the control API's stream (`GET /v1/events`, server-sent events). */
export interface MeshEvent {
  type: string
  time: number
  data: Record<string, unknown>
}

/** In-process bus: components publish, SSE clients and hooks subscribe. */
export class EventBus {
  private readonly emitter = new EventEmitter()
  constructor() {
    this.emitter.setMaxListeners(1000)
  }
  publish(type: string, data: Record<string, unknown>): void {
    this.emitter.emit('event', { type, time: Date.now(), data } satisfies MeshEvent)
  }
  subscribe(fn: (e: MeshEvent) => void): () => void {
    this.emitter.on('event', fn)
    return () => this.emitter.off('event', fn)
  }
}
