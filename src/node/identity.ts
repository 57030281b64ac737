import { readFileSync } from 'node:fs'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { DataDirError, dataPaths, writePrivateFile } from '../kernel/datadir.js'

/** Load the node's Ed25519 key, or create it (0600) when `create` is set and there is none. */
export async function loadIdentity(dir: string, opts: { create: boolean }): Promise<PrivateKey> {
  const path = dataPaths(dir).identity
  let bytes: Uint8Array
  try {
    bytes = readFileSync(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && opts.create) {
      const key = await generateKeyPair('Ed25519')
      writePrivateFile(path, privateKeyToProtobuf(key))
      return key
    }
    if (code === 'ENOENT') {
      throw new DataDirError(
        `no node identity in ${dir}. Run 'mesh init' or 'mesh agent --join TOKEN' first.`,
      )
    }
    throw new DataDirError(
      `cannot read the node identity ${path}: ${(err as Error).message}. ` +
        "Fix its permissions (it should be owned by you, mode 0600); do not delete it, it is this node's name.",
    )
  }
  try {
    return privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new DataDirError(
      `the node identity ${path} is damaged (${(err as Error).message}). Restore it from a backup; ` +
        'only if the node must start anew, move it away and run mesh init again (the node gets a new peer ID).',
    )
  }
}
