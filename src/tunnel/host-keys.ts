/**
 * sshd host keys vouched for by the cluster. Each member puts its host public keys in its signed
 * member record (as tags `mesh.ssh.<key type>`); every agent writes them to
 * `<data dir>/ssh_known_hosts` under the member's overlay address, which is the HostKeyAlias
 * `mesh ssh`, `mesh exec` and `mesh ssh-config` use. So the first ssh to a new member needs no
 * prompt, and a key that differs from the one the member signed is refused by ssh itself.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dataPaths } from '../kernel/datadir.js'

export const HOST_KEY_TAG = 'mesh.ssh.'
/** Key types whose base64 fits a tag value (256 characters): RSA keys do not, and are left out. */
const TYPE_RE = /^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com)$/
const KEY_RE = /^[A-Za-z0-9+/]+={0,2}$/

/** Tags for our own record from sshd's *.pub files; unreadable or unusable files are skipped. */
export function hostKeyTags(paths: readonly string[]): Record<string, string> {
  const tags: Record<string, string> = {}
  for (const p of paths) {
    let text: string
    try {
      text = readFileSync(p, 'utf8')
    } catch {
      continue // no sshd here, or not that key type: nothing to vouch for
    }
    const [type, key] = text.trim().split(/\s+/)
    if (
      type === undefined ||
      key === undefined ||
      !TYPE_RE.test(type) ||
      !KEY_RE.test(key) ||
      key.length > 256
    )
      continue
    tags[`${HOST_KEY_TAG}${type}`] = key
  }
  return tags
}

/** known_hosts lines: each member's published keys under its overlay address. */
export function knownHostsText(members: Iterable<{ overlay: string; tags: Record<string, string> }>): string {
  const lines = ['# written by the mesh agent from the signed member records; rewritten on every change']
  for (const m of members) {
    for (const [k, v] of Object.entries(m.tags)) {
      if (!k.startsWith(HOST_KEY_TAG)) continue
      const type = k.slice(HOST_KEY_TAG.length)
      if (TYPE_RE.test(type) && KEY_RE.test(v)) lines.push(`${m.overlay} ${type} ${v}`)
    }
  }
  return `${lines.join('\n')}\n`
}

/** Where the agent keeps that file (read by ssh through GlobalKnownHostsFile). */
export const knownHostsPath = (dataDir: string): string => dataPaths(dataDir).knownHosts

/**
 * Write the file atomically (ssh may be reading it), unless it would say what `previous` (the
 * text last written) says: members' status changes, which trigger this, rarely change a key,
 * and a write + rename per change was 2% of a busy agent's time in a join storm. Returns the
 * text the file now holds.
 */
export function writeKnownHosts(
  dataDir: string,
  members: Iterable<{ overlay: string; tags: Record<string, string> }>,
  previous?: string,
): string {
  const text = knownHostsText(members)
  if (text === previous) return text
  const path = knownHostsPath(dataDir)
  const tmp = `${path}.tmp-${process.pid}`
  writeFileSync(tmp, text, { mode: 0o600 })
  renameSync(tmp, path)
  return text
}
