import { readFileSync } from 'node:fs'
import { rename, writeFile } from 'node:fs/promises'

export interface Pin {
  /** 'dataset': the root and every block under it; 'block': one block */
  kind: 'dataset' | 'block'
  /** replica count to keep in the cluster (0: this member's copy only) */
  replicas: number
  /** every block is in the store */
  complete: boolean
  since: number
}

/** Pinned roots, persisted as JSON: their blocks are never evicted, and repair keeps their replicas. */
export class PinStore {
  private readonly pins = new Map<string, Pin>()
  private chain: Promise<void> = Promise.resolve()

  constructor(private readonly file?: string) {}

  load(): void {
    if (this.file === undefined) return
    try {
      const doc = JSON.parse(readFileSync(this.file, 'utf8')) as { pins: Record<string, Pin> }
      for (const [k, v] of Object.entries(doc.pins ?? {})) this.pins.set(k, v)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new Error(
          `${this.file} is damaged (${(err as Error).message}); fix or remove it (pins would be lost)`,
        )
      }
    }
  }

  get(root: string): Pin | undefined {
    return this.pins.get(root)
  }

  has(root: string): boolean {
    return this.pins.has(root)
  }

  entries(): Array<[string, Pin]> {
    return [...this.pins.entries()]
  }

  set(root: string, pin: Pin): Promise<void> {
    this.pins.set(root, pin)
    return this.save()
  }

  delete(root: string): Promise<boolean> {
    const had = this.pins.delete(root)
    return had ? this.save().then(() => true) : Promise.resolve(false)
  }

  /** Saves run one after another; each writes the current set. */
  private save(): Promise<void> {
    if (this.file === undefined) return Promise.resolve()
    const file = this.file
    // a failed save must not stop the next ones
    this.chain = this.chain
      .catch(() => {})
      .then(async () => {
        const tmp = `${file}.tmp-${process.pid}`
        await writeFile(tmp, `${JSON.stringify({ pins: Object.fromEntries(this.pins) }, null, 1)}\n`, {
          mode: 0o600,
        })
        await rename(tmp, file)
      })
    return this.chain
  }
}
