import { Worker } from 'node:worker_threads'

/** What callInWorker sends worker-entry.ts, and what comes back: the result, or what was thrown. */
export interface WorkerCall {
  id: number
  module: string
  fn: string
  input: unknown
}
export type WorkerReply = { id: number } & (
  | { ok: true; value: unknown }
  | { ok: false; name: string; message: string }
)

type ErrorClass = new (message: string) => Error

/**
 * How long the worker waits for another call before it ends: an agent's start makes two (its
 * config, then the plugins' manifests, under a second apart unloaded), and one worker saves the
 * second its start-up and its own import of zod (~80 ms of CPU).
 */
const LINGER_MS = 5_000

/** One worker thread and the calls it has not answered yet. */
class CallWorker {
  private readonly worker = new Worker(new URL('./worker-entry.js', import.meta.url))
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; errors: Record<string, ErrorClass> }
  >()
  private nextId = 0
  private linger: NodeJS.Timeout | undefined

  constructor(private readonly ended: (w: CallWorker) => void) {
    this.worker.on('message', (reply: WorkerReply) => this.answer(reply))
    this.worker.on('error', (err) => this.end(err))
    this.worker.on('exit', (code) =>
      this.end(new Error(`the worker thread exited (code ${code}) before it answered`)),
    )
  }

  call(module: URL, fn: string, input: unknown, errors: Record<string, ErrorClass>): Promise<unknown> {
    clearTimeout(this.linger)
    this.worker.ref()
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, errors })
      this.worker.postMessage({ id, module: module.href, fn, input } satisfies WorkerCall)
    })
  }

  private answer(reply: WorkerReply): void {
    const call = this.pending.get(reply.id)
    if (call === undefined) return
    this.pending.delete(reply.id)
    if (reply.ok) call.resolve(reply.value)
    else {
      const E = call.errors[reply.name]
      call.reject(
        E === undefined
          ? Object.assign(new Error(reply.message), { name: reply.name })
          : new E(reply.message),
      )
    }
    if (this.pending.size > 0) return
    // idle: it must not keep a process alive, and it ends unless another call comes soon
    this.worker.unref()
    this.linger = setTimeout(() => this.end(), LINGER_MS)
    this.linger.unref()
  }

  /** Stop taking calls and end the thread; calls not answered fail with `err`. */
  private end(err?: Error): void {
    clearTimeout(this.linger)
    this.ended(this)
    for (const c of this.pending.values()) c.reject(err ?? new Error('the worker thread ended'))
    this.pending.clear()
    void this.worker.terminate()
  }
}

let current: CallWorker | undefined

/**
 * Call `fn` of the module at `module` in a worker thread with `input`, and resolve with what it
 * returns (both cross as structured clones: plain data only). The thread ends LINGER_MS after its
 * last answer, and its isolate, with every module it imported, is freed, whereas a module the
 * agent imports stays in its heap for good: this is for work done once or rarely with a large
 * library, such as validating the config with zod (~3 MiB of an idle agent's heap, sim/PROFILE.md).
 * An error thrown there is rebuilt here as the class `errors` gives for its name, else an Error.
 */
export function callInWorker<T>(
  module: URL,
  fn: string,
  input: unknown,
  errors: Record<string, ErrorClass> = {},
): Promise<T> {
  current ??= new CallWorker((w) => {
    if (current === w) current = undefined
  })
  return current.call(module, fn, input, errors) as Promise<T>
}
