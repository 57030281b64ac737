import type { Transport } from '@libp2p/interface'
import { TimeoutError } from '@libp2p/interface'

/**
 * A TCP dial gets `connectMs` to connect; the upgrade after it (Noise, yamux) gets what is left
 * of the dial's own budget. libp2p has one deadline per address (addressDialTimeout) covering
 * both, and it was 1.5 s so that an unreachable address (a NATed member's private one, silently
 * dropped) does not eat the whole dial budget. On a busy machine the upgrade alone can take
 * longer than that: 20 agents on 2 cores beside other work aborted dials half way through Noise,
 * redialled, and raised 14-19 false suspicions in 30 idle seconds; with the upgrade given the
 * dial budget, none (sim/bench/fleet.ts, README "A fleet on one machine").
 *
 * The connect phase ends at the upgrader's first progress event (it starts only once the socket
 * is connected).
 */
export function connectDeadline<C>(
  factory: (components: C) => Transport,
  /** read at each dial (it stretches while the event loop runs late: local-lag.ts) */
  connectMs: () => number,
): (components: C) => Transport {
  return (components) => {
    const inner = factory(components)
    const dial = inner.dial.bind(inner)
    inner.dial = async (ma, options) => {
      const connecting = new AbortController()
      const ms = connectMs()
      const timer = setTimeout(
        () => connecting.abort(new TimeoutError(`TCP connect to ${ma} took over ${ms} ms`)),
        ms,
      )
      const onProgress: typeof options.onProgress = (evt) => {
        if (evt.type.startsWith('upgrader:')) clearTimeout(timer)
        options.onProgress?.(evt)
      }
      try {
        return await dial(ma, {
          ...options,
          signal: AbortSignal.any([options.signal, connecting.signal]),
          onProgress,
        })
      } finally {
        clearTimeout(timer)
      }
    }
    return inner
  }
}
