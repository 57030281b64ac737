import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import { isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { dataPaths, writePrivateFile } from '../kernel/datadir.js'
import { PluginError } from './plugin-error.js'
import { parseManifestsOffThread } from './read-manifests.js'
import type { Manifest } from './schema.js'

/** Built-in plugins ship in the package's top-level plugins/ (from dist/src/plugins/ three levels up). */
export const BUILTIN_DIR = fileURLToPath(new URL('../../../plugins/', import.meta.url))

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/

export interface InstalledRecord {
  name: string
  /** what the user gave: a URL, owner/repo or a path */
  source: string
  /** the URL or path git cloned */
  url: string
  ref?: string
  commit: string
  installedAt: number
  updatedAt?: number
}

export interface Plugin {
  name: string
  dir: string
  manifest: Manifest
  builtin: boolean
  record?: InstalledRecord
}

function git(args: string[], cwd?: string, timeoutMs = 120_000): Promise<string> {
  return new Promise((res, rej) => {
    execFile(
      'git',
      args,
      {
        cwd,
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 4 << 20,
        // never prompt: a private repo without credentials fails instead of waiting for a password
        env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true' },
      },
      (err, stdout, stderr) => {
        if (err !== null) {
          const code = (err as NodeJS.ErrnoException).code
          if (code === 'ENOENT')
            rej(new PluginError('git is not installed; install git (apt-get install git)'))
          else
            rej(
              new PluginError(
                `git ${args[0]} failed: ${(stderr || err.message).trim().split('\n').slice(-3).join(' ')}`,
              ),
            )
        } else res(stdout.trim())
      },
    )
  })
}

/** `owner/repo` means GitHub; a URL is used as is; an existing path is a local repo. */
export function resolveSource(source: string, cwd = process.cwd()): { url: string; name: string } {
  const s = source.trim()
  let url: string
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) || /^[^/\s]+@[^/\s]+:/.test(s)) url = s
  else if (isAbsolute(s) || s.startsWith('.') || existsSync(resolve(cwd, s))) url = resolve(cwd, s)
  else if (/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(s)) url = `https://github.com/${s}.git`
  else
    throw new PluginError(
      `cannot tell what '${source}' is: give a git URL, owner/repo (GitHub) or the path of a local git repo`,
    )
  const base = url
    .replace(/[/]+$/, '')
    .split(/[/:]/)
    .pop()!
    .replace(/\.git$/, '')
  let name = base
    .toLowerCase()
    .replace(/^mesh-plugin-|^mesh-/, '')
    .replace(/[^a-z0-9._-]/g, '-')
  if (!NAME_RE.test(name)) name = `plugin-${name.replace(/^[^a-z0-9]+/, '')}`.slice(0, 63)
  return { url, name }
}

/**
 * Installed plugins: `<dataDir>/plugins/NAME` checkouts and `<dataDir>/plugins/registry.json`
 * (source, exact commit, install time). Built-ins are read from the package's plugins/.
 * Changes are made in a temp dir and renamed into place only once the plugin validated, so a
 * broken plugin never replaces a working one.
 */
export class Registry {
  readonly dir: string
  private readonly file: string

  constructor(
    dataDir: string,
    private readonly builtinDir = BUILTIN_DIR,
  ) {
    this.dir = dataPaths(dataDir).plugins
    this.file = dataPaths(dataDir).pluginRegistry
  }

  private records(): Record<string, InstalledRecord> {
    try {
      return JSON.parse(readFileSync(this.file, 'utf8')) as Record<string, InstalledRecord>
    } catch {
      return {}
    }
  }

  private save(recs: Record<string, InstalledRecord>): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    writePrivateFile(this.file, `${JSON.stringify(recs, null, 2)}\n`)
  }

  /** Every plugin, built-ins first; a plugin whose mesh.json broke is reported in `errors`. */
  async load(): Promise<{ plugins: Plugin[]; errors: string[] }> {
    const found: Omit<Plugin, 'manifest'>[] = []
    let builtins: string[] = []
    try {
      builtins = readdirSync(this.builtinDir).filter((d) => existsSync(join(this.builtinDir, d, 'mesh.json')))
    } catch {}
    for (const name of builtins.sort()) found.push({ name, dir: join(this.builtinDir, name), builtin: true })
    for (const rec of Object.values(this.records()))
      found.push({ name: rec.name, dir: join(this.dir, rec.name), builtin: false, record: rec })
    // read here, validated together in one worker thread
    const texts = found.map((p) => {
      try {
        return { text: readManifestText(p.dir), label: join(p.dir, 'mesh.json') }
      } catch (err) {
        return err as PluginError
      }
    })
    const parsed = await parseManifestsOffThread(
      texts.filter((t): t is { text: string; label: string } => !(t instanceof PluginError)),
    )
    const plugins: Plugin[] = []
    const errors: string[] = []
    let next = 0
    found.forEach((p, i) => {
      const t = texts[i]
      const m = t instanceof PluginError ? t : parsed[next++]
      if (m instanceof PluginError) errors.push(m.message)
      else plugins.push({ ...p, manifest: m })
    })
    return { plugins, errors }
  }

  async install(
    source: string,
    opts: { ref?: string; name?: string; taken: (m: Manifest, name: string) => string | undefined },
  ): Promise<{ plugin: Plugin; record: InstalledRecord }> {
    const { url, name: guessed } = resolveSource(source)
    const name = opts.name ?? guessed
    if (!NAME_RE.test(name)) throw new PluginError(`invalid plugin name '${name}': use a-z, 0-9, ., _ and -`)
    if (this.records()[name] !== undefined || existsSync(join(this.builtinDir, name, 'mesh.json')))
      throw new PluginError(
        `a plugin named '${name}' is already installed; 'mesh update ${name}' moves it to a new commit, 'mesh uninstall ${name}' removes it`,
      )
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const tmp = join(this.dir, `.install-${name}-${process.pid}-${Date.now()}`)
    try {
      await git(['clone', '--quiet', '--no-hardlinks', '--', url, tmp])
      if (opts.ref !== undefined) await checkout(tmp, opts.ref)
      const commit = await git(['rev-parse', 'HEAD'], tmp)
      const manifest = await readManifest(tmp, `${source}${opts.ref ? `@${opts.ref}` : ''}: mesh.json`)
      const clash = opts.taken(manifest, name)
      if (clash !== undefined) throw new PluginError(clash)
      renameSync(tmp, join(this.dir, name))
      const record: InstalledRecord = { name, source, url, ref: opts.ref, commit, installedAt: Date.now() }
      this.save({ ...this.records(), [name]: record })
      return { plugin: { name, dir: join(this.dir, name), manifest, builtin: false, record }, record }
    } finally {
      rmSync(tmp, { recursive: true, force: true })
    }
  }

  /** Fetch and move to `ref` (default: the ref installed, else the remote's default branch). */
  async update(
    name: string,
    opts: { ref?: string; taken: (m: Manifest, name: string) => string | undefined },
  ): Promise<{ from: string; to: string; record: InstalledRecord }> {
    const rec = this.records()[name]
    if (rec === undefined) throw this.unknown(name)
    const live = join(this.dir, name)
    const tmp = join(this.dir, `.update-${name}-${process.pid}-${Date.now()}`)
    try {
      await git(['clone', '--quiet', '--no-hardlinks', '--', rec.url, tmp])
      const ref = opts.ref ?? rec.ref
      if (ref !== undefined) await checkout(tmp, ref)
      const commit = await git(['rev-parse', 'HEAD'], tmp)
      const manifest = await readManifest(tmp, `${rec.source}${ref ? `@${ref}` : ''}: mesh.json`)
      const clash = opts.taken(manifest, name)
      if (clash !== undefined) throw new PluginError(clash)
      const old = `${live}.old-${Date.now()}`
      renameSync(live, old)
      renameSync(tmp, live)
      rmSync(old, { recursive: true, force: true })
      const record: InstalledRecord = { ...rec, ref, commit, updatedAt: Date.now() }
      this.save({ ...this.records(), [name]: record })
      return { from: rec.commit, to: commit, record }
    } finally {
      rmSync(tmp, { recursive: true, force: true })
    }
  }

  uninstall(name: string): InstalledRecord {
    const recs = this.records()
    const rec = recs[name]
    if (rec === undefined) {
      if (existsSync(join(this.builtinDir, name, 'mesh.json')))
        throw new PluginError(`'${name}' is a built-in plugin and cannot be uninstalled`)
      throw this.unknown(name)
    }
    delete recs[name]
    this.save(recs)
    rmSync(join(this.dir, name), { recursive: true, force: true })
    return rec
  }

  private unknown(name: string): PluginError {
    const have = Object.keys(this.records())
    return new PluginError(
      `no installed plugin named '${name}'${have.length > 0 ? ` (installed: ${have.join(', ')})` : ''}; see 'mesh plugins'`,
    )
  }
}

async function checkout(dir: string, ref: string): Promise<void> {
  if (ref.startsWith('-')) throw new PluginError(`invalid ref '${ref}'`)
  try {
    await git(['checkout', '--quiet', '--detach', ref], dir)
  } catch {
    try {
      await git(['checkout', '--quiet', '--detach', `origin/${ref}`], dir)
    } catch {
      throw new PluginError(`no branch, tag or commit '${ref}' in that repository; check --ref`)
    }
  }
}

/** A plugin's mesh.json as text; a PluginError when it has none. */
function readManifestText(dir: string, label = join(dir, 'mesh.json')): string {
  const file = join(dir, 'mesh.json')
  try {
    if (!statSync(file).isFile()) throw new Error('not a file')
    return readFileSync(file, 'utf8')
  } catch {
    throw new PluginError(
      `${label}: no mesh.json at the top of the plugin; a plugin needs one (see the README)`,
    )
  }
}

/** A plugin's validated mesh.json; a PluginError naming `label` when it is missing or broken. */
export async function readManifest(dir: string, label = join(dir, 'mesh.json')): Promise<Manifest> {
  const [m] = await parseManifestsOffThread([{ text: readManifestText(dir, label), label }])
  if (m instanceof PluginError) throw m
  return m
}
