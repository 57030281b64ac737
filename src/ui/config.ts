import { z } from 'zod'

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/

/** `ui:` in the agent's config: the web dashboard (`mesh ui`). */
export const UiConfigSchema = z
  .object({
    // HOST:PORT. Loopback by default; another address is a deliberate choice (see README:
    // anyone holding the token there reads the whole cluster picture)
    listen: z
      .string()
      .regex(
        /^(\d+\.\d+\.\d+\.\d+|localhost|\[[0-9a-fA-F:]+\]):\d{1,5}$/,
        'expected HOST:PORT such as 127.0.0.1:4780',
      )
      .default('127.0.0.1:4780'),
    // serve the dashboard as soon as the agent starts, not only after `mesh ui`
    autostart: z.boolean().default(false),
  })
  .strict()

export type UiConfig = z.infer<typeof UiConfigSchema>

/** host and port of a `ui.listen` value, brackets removed from an IPv6 host. */
export function splitListen(listen: string): { host: string; port: number; loopback: boolean } {
  const i = listen.lastIndexOf(':')
  const rawHost = listen.slice(0, i)
  return {
    host: rawHost.replace(/^\[|\]$/g, ''),
    port: Number(listen.slice(i + 1)),
    loopback: LOOPBACK.test(rawHost),
  }
}
