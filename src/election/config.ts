import { z } from 'zod'

/** `elections:` what this member can run when it wins, and how long rounds and results last. */
export const ElectionsConfigSchema = z
  .object({
    // the winner gives up (ERROR, next round) when not allocated within this
    roundTimeoutMs: z.number().int().min(500).max(600_000).default(30_000),
    // compute types this member can run: name -> shell command started on allocate, killed on deallocate
    commands: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/), z.string().min(1)).default({}),
    // finished requests stay listed this long
    keepMs: z.number().int().min(1000).max(86_400_000).default(600_000),
    maintenance: z.boolean().default(false),
  })
  .strict()

export type ElectionsConfig = z.infer<typeof ElectionsConfigSchema>
