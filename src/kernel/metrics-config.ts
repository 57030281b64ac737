import { z } from 'zod'

/** `metrics:` in the agent's config. */
export const MetricsConfigSchema = z
  .object({
    listen: z
      .string()
      .regex(
        /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$/,
        'expected a loopback HOST:PORT such as 127.0.0.1:9464',
      )
      .optional(),
  })
  .strict()
