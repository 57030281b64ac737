import { z } from 'zod'

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
