import { z } from 'zod'
import { byteSize } from '../kernel/config.js'

/** `blocks:` cache size, transfer windows and timings, replication and repair. */
export const BlocksConfigSchema = z
  .object({
    // unpinned cached blocks are evicted (least recently used first) above this many bytes
    cacheBytes: byteSize.default(10 * 2 ** 30),
    // outstanding wants per provider: bytes and count
    windowBytes: byteSize.default(8 * 2 ** 20),
    maxWants: z.number().int().min(1).max(1024).default(32),
    // 0: unlimited; otherwise what this member serves to others, in bytes per second
    serveBytesPerSec: byteSize.default(0),
    // a provider that answers no want for this long is dropped from a transfer
    providerTimeoutMs: z.number().int().min(500).max(600_000).default(20_000),
    // a provider closes an exchange stream that asked for nothing for this long
    idleStreamMs: z.number().int().min(1000).max(3_600_000).default(30_000),
    // a transfer that gets no block from anyone for this long fails
    stallTimeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
    // a target must confirm a verified, pinned copy within this
    replicateTimeoutMs: z.number().int().min(1000).max(86_400_000).default(600_000),
    repairIntervalMs: z.number().int().min(500).max(86_400_000).default(30_000),
    tagSyncIntervalMs: z.number().int().min(500).max(86_400_000).default(30_000),
  })
  .strict()

export type BlocksConfig = z.infer<typeof BlocksConfigSchema>
