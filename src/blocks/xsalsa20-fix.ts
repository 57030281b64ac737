/**
 * Work around a memory leak in `xsalsa20` 1.2.0 (the cipher of @libp2p/pnet), which crashed
 * agents moving large amounts of data over several connections with
 * "RangeError: WebAssembly.Memory.grow(): Maximum memory size exceeded".
 *
 * All cipher instances share one WebAssembly memory, but each keeps its own Uint8Array view of
 * it. When one instance grows the memory, every other view is detached (length 0); the next
 * update() on such an instance then sees `top >= 0` and grows the memory again by its whole
 * input size, detaching the others in turn. With a few connections taking turns and inputs
 * larger than the memory, it grows by up to megabytes per packet until the 4 GiB cap.
 *
 * The fix: before an instance uses its view, point it at the live memory (the same bytes, so
 * the cipher stream is unchanged). Imported for its side effect; applied once per process.
 * This belongs with the node assembly (src/node), or upstream; it lives here until then.
 */
import { createRequire } from 'node:module'

interface Wasm {
  _memory?: Uint8Array
}

interface XSalsa20Ctor {
  prototype: {
    update(input: Uint8Array, output?: Uint8Array): Uint8Array
    finalize(): void
    final(): void
    _xor?: Wasm | null
    __meshFixed?: boolean
  }
}

function patch(): boolean {
  let X: XSalsa20Ctor
  try {
    // the very module instance @libp2p/pnet uses
    const pnet = import.meta.resolve('@libp2p/pnet')
    X = createRequire(pnet)('xsalsa20') as XSalsa20Ctor
  } catch {
    return false
  }
  const proto = X.prototype
  if (proto.__meshFixed === true) return true
  let live: Uint8Array | undefined
  const refresh = (w: Wasm | null | undefined) => {
    const m = w?._memory
    if (m === undefined || live === undefined) return
    if (m.buffer !== live.buffer && live.byteLength > 0) w!._memory = new Uint8Array(live.buffer)
  }
  const update = proto.update
  proto.update = function (this: XSalsa20Ctor['prototype'], input, output) {
    refresh(this._xor)
    const r = update.call(this, input, output)
    if (this._xor?._memory !== undefined) live = this._xor._memory
    return r
  }
  const finalize = proto.finalize
  proto.finalize = proto.final = function (this: XSalsa20Ctor['prototype']) {
    refresh(this._xor)
    finalize.call(this)
  }
  proto.__meshFixed = true
  return true
}

export const xsalsa20Fixed = patch()
