import { spawn } from 'node:child_process'
import { realpathSync } from 'node:fs'
import type { Command } from 'commander'
import type { MembersReply, MemberView } from '../api/contract.js'
import { action, client, dataDirOf, EXIT, type GlobalOpts, printJson, UsageError } from './common.js'

export interface ExecResult {
  name: string
  peerId: string
  overlay: string
  /** the remote command's exit code; 255 is ssh's own failure; null: not run (see error) */
  exitCode: number | null
  stdout: string
  stderr: string
  ms: number
  error?: string
}

/** A shell-style glob (`*`, `?`) matched against the whole name. */
export function globMatch(glob: string, name: string): boolean {
  const re = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.')
  return new RegExp(`^${re}$`).test(name)
}

/** The members a selection names: every tag must match, and any of the globs (if given). */
export function selectMembers(
  members: MemberView[],
  sel: { tags: Array<[string, string]>; names: string[]; all: boolean },
): MemberView[] {
  return members.filter(
    (m) =>
      m.status !== 'left' &&
      sel.tags.every(([k, v]) => m.tags[k] === v) &&
      (sel.names.length === 0 || sel.names.some((g) => globMatch(g, m.name))),
  )
}

/** Prefix each complete line with the member's name; keep a partial line for the next chunk. */
function linePrefixer(prefix: string, out: NodeJS.WritableStream): { write(s: string): void; end(): void } {
  let partial = ''
  return {
    write(s: string) {
      const lines = (partial + s).split('\n')
      partial = lines.pop() ?? ''
      for (const l of lines) out.write(`${prefix}${l}\n`)
    },
    end() {
      if (partial !== '') out.write(`${prefix}${partial}\n`)
      partial = ''
    },
  }
}

/** Run `worker` on every item, at most `limit` at once, keeping the input order in the results. */
async function pool<T, R>(items: T[], limit: number, worker: (t: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await worker(items[i])
    }
  })
  await Promise.all(lanes)
  return results
}

const collect = (v: string, prev: string[] = []) => [...prev, v]

export function execCommand(program: Command): void {
  program
    .command('exec')
    .description(
      "run a command on many members at once over ssh through the overlay (each member's own sshd and your keys decide); output prefixed by member name, an exit code per member",
    )
    .option('--tag <key=value>', 'members with this tag, repeatable (all must match)', collect)
    .option('--name <glob>', 'members whose name matches (web-*), repeatable (any may match)', collect)
    .option('--all', 'every member (this one too)')
    .option('-l, --user <user>', 'remote user (default: ssh decides, as for ssh)')
    .option('-p, --port <port>', 'sshd port on the members', '22')
    .option('-i, --identity <file>', 'ssh private key (ssh -i)')
    .option(
      '-o, --ssh-option <option>',
      'an ssh -o option, repeatable (e.g. UserKnownHostsFile=...)',
      collect,
    )
    .option('--parallel <n>', 'members at once', '8')
    .option(
      '--timeout <seconds>',
      'give up on a member after this long (exit code null, error timeout)',
      '300',
    )
    .option('--ssh <path>', 'the ssh program', 'ssh')
    .argument('<command...>', 'the command, after --')
    .action(
      action(
        async (
          command: string[],
          opts: {
            tag?: string[]
            name?: string[]
            all?: boolean
            user?: string
            port: string
            identity?: string
            sshOption?: string[]
            parallel: string
            timeout: string
            ssh: string
          },
        ) => {
          const g = program.opts<GlobalOpts>()
          const tags = (opts.tag ?? []).map((t): [string, string] => {
            const i = t.indexOf('=')
            if (i <= 0) throw new UsageError(`invalid --tag '${t}': use key=value`)
            return [t.slice(0, i), t.slice(i + 1)]
          })
          const names = opts.name ?? []
          if (tags.length === 0 && names.length === 0 && opts.all !== true)
            throw new UsageError('say which members: --tag k=v, --name GLOB or --all (then -- COMMAND)')
          const parallel = Number(opts.parallel)
          if (!Number.isInteger(parallel) || parallel < 1 || parallel > 256)
            throw new UsageError(`--parallel must be a whole number from 1 to 256, not '${opts.parallel}'`)
          const timeoutS = Number(opts.timeout)
          if (!Number.isFinite(timeoutS) || timeoutS <= 0)
            throw new UsageError(`--timeout must be a number of seconds, not '${opts.timeout}'`)
          const port = Number(opts.port)
          if (!Number.isInteger(port) || port < 1 || port > 65535)
            throw new UsageError(`--port must be a TCP port, not '${opts.port}'`)

          const { members } = await client(g).call<MembersReply>('GET', '/v1/members')
          const chosen = selectMembers(members, { tags, names, all: opts.all === true })
          if (chosen.length === 0)
            throw new UsageError("no member matches that selection: 'mesh members' shows names and tags")

          const { proxyOptions } = await import('../tunnel/ssh-config.js')
          const fdpass = await (await import('../api/tunnel-fd.js')).canPassFd()
          const { knownHostsPath } = await import('../tunnel/host-keys.js')
          const cli = [
            process.execPath,
            realpathSync(process.argv[1]),
            '--data-dir',
            realpathSync(dataDirOf(g)),
          ]
          const width = Math.max(...chosen.map((m) => m.name.length))
          const runOne = (m: MemberView): Promise<ExecResult> => {
            const t0 = performance.now()
            const base = { name: m.name, peerId: m.peerId, overlay: m.overlay, stdout: '', stderr: '' }
            if (m.status !== 'alive')
              return Promise.resolve({
                ...base,
                exitCode: null,
                ms: 0,
                error: `not run: the member is ${m.status}`,
              })
            const argv = [
              ...proxyOptions(cli, { fdpass }),
              '-o',
              `HostKeyAlias=${m.overlay}`,
              '-o',
              `GlobalKnownHostsFile=${knownHostsPath(cli[3])}`,
              // no prompt can be answered here: keys the members signed are in GlobalKnownHostsFile;
              // for a member that published none, the tunnel already authenticated its peer ID, so
              // its first key is accepted and pinned; a changed key is refused either way
              '-o',
              'BatchMode=yes',
              '-o',
              'StrictHostKeyChecking=accept-new',
              '-o',
              'ConnectTimeout=20',
              ...(opts.identity !== undefined ? ['-i', opts.identity] : []),
              ...(opts.sshOption ?? []).flatMap((o) => ['-o', o]),
              ...(port === 22 ? [] : ['-p', String(port)]),
              opts.user === undefined ? m.overlay : `${opts.user}@${m.overlay}`,
              '--',
              ...command,
            ]
            return new Promise((resolve) => {
              const child = spawn(opts.ssh, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
              const prefix = `${m.name.padEnd(width)} | `
              const out = linePrefixer(prefix, process.stdout)
              const err = linePrefixer(prefix, process.stderr)
              const r: ExecResult = { ...base, exitCode: null, ms: 0 }
              child.stdout.setEncoding('utf8').on('data', (d: string) => {
                r.stdout += d
                if (!g.json) out.write(d)
              })
              child.stderr.setEncoding('utf8').on('data', (d: string) => {
                r.stderr += d
                if (!g.json) err.write(d)
              })
              const timer = setTimeout(() => {
                r.error = `timed out after ${timeoutS} s`
                child.kill('SIGTERM')
              }, timeoutS * 1000)
              child.on('error', (e) => {
                r.error = `cannot run ${opts.ssh}: ${e.message}`
              })
              child.on('close', (code) => {
                clearTimeout(timer)
                out.end()
                err.end()
                r.exitCode = r.error === undefined ? code : null
                r.ms = Math.round(performance.now() - t0)
                resolve(r)
              })
            })
          }

          const results = await pool(chosen, parallel, runOne)
          if (g.json) printJson(results)
          else {
            const bad = results.filter((r) => r.exitCode !== 0)
            for (const r of bad)
              process.stderr.write(
                `${r.name.padEnd(width)} ! ${r.error ?? (r.exitCode === 255 ? 'ssh failed (exit 255): see its message above' : `exit ${r.exitCode}`)}\n`,
              )
            process.stderr.write(
              `${results.length} member${results.length === 1 ? '' : 's'}: ${results.length - bad.length} ok, ${bad.length} failed\n`,
            )
          }
          if (results.some((r) => r.exitCode !== 0)) process.exit(EXIT.error)
        },
      ),
    )
}
