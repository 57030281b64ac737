import type { ComponentLogger, Logger } from '@libp2p/interface'

/**
 * The logger libp2p gets when its debug output is off. libp2p makes named loggers for every
 * stream (yamux, multistream-select: several per stream), and its default logger checks for
 * each whether stderr is a terminal: in a 15-member join storm that was 2% of a busy agent's
 * time (isatty and createDebug, sim/bench/fleet.ts profiles), for loggers that never print.
 * Here every logger is one shared no-op. `DEBUG=libp2p:*` (libp2p's own switch) still gives
 * libp2p's default logger: see libp2pLogger().
 */
function noop(): void {}
const SILENT = noop as unknown as Logger
Object.assign(noop, { error: noop, trace: noop, enabled: false, newScope: () => SILENT })

export const silentLogger: ComponentLogger = { forComponent: () => SILENT }

/** The silent logger unless DEBUG names something (then undefined: libp2p's default). */
export function libp2pLogger(debug = process.env.DEBUG): ComponentLogger | undefined {
  return debug === undefined || debug.trim() === '' ? silentLogger : undefined
}
