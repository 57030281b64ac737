// The worker thread of callInWorker (worker-call.ts): for each call, import the module, call the
// function with the input and post back the result, or the name and message of what it threw.
import { parentPort } from 'node:worker_threads'
import type { WorkerCall, WorkerReply } from './worker-call.js'

parentPort?.on('message', async (call: WorkerCall) => {
  let reply: WorkerReply
  try {
    const m = (await import(call.module)) as Record<string, (input: unknown) => unknown>
    reply = { id: call.id, ok: true, value: await m[call.fn](call.input) }
  } catch (err) {
    const e = err as Error
    reply = { id: call.id, ok: false, name: e?.name ?? 'Error', message: e?.message ?? String(err) }
  }
  parentPort?.postMessage(reply)
})
