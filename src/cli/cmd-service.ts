import { execFileSync, spawnSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { userInfo } from 'node:os'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { loadCluster } from '../node/cluster.js'
import { action, client, dataDirOf, type GlobalOpts, printJson, UsageError } from './common.js'
import { systemdUnit } from './service-unit.js'

const UNIT_DIR = '/etc/systemd/system'

/** systemd runs here (not merely installed): what `systemctl` needs to do anything. */
const systemdRunning = () => existsSync('/run/systemd/system')

function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

function systemctl(args: string[]): void {
  const r = spawnSync('systemctl', args, { encoding: 'utf8' })
  if (r.status !== 0)
    throw new Error(
      `systemctl ${args.join(' ')} failed: ${(r.stderr || r.stdout || r.error?.message || '').trim()}`,
    )
}

function unitName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]*$/.test(name))
    throw new UsageError(`'${name}' is not a usable unit name: use letters, digits, -, _ and .`)
  return name.endsWith('.service') ? name : `${name}.service`
}

/** The uid of a user name, from the system's own `id` (no parsing of /etc/passwd here). */
function uidOf(user: string): number {
  try {
    return Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim())
  } catch {
    throw new UsageError(`there is no user '${user}' on this machine (id -u ${user} failed)`)
  }
}

export function serviceCommands(program: Command): void {
  const svc = program
    .command('service')
    .description('run the agent as a systemd service: install (write, enable and start the unit) or remove')

  svc
    .command('install')
    .description(
      "write a systemd unit that runs 'mesh agent' on this data dir (restart on failure, hardened, logs in the journal), then enable and start it",
    )
    .option('--name <unit>', 'unit name (several data dirs: one unit each)', 'mesh')
    .option('--user <user>', 'run the agent as this user (it must own the data dir; default: root)')
    .option('--unit-dir <dir>', 'where to write the unit', UNIT_DIR)
    .option('--no-start', 'only write the unit; do not enable or start it')
    .option('--print', 'print the unit instead of writing it')
    .argument(
      '[agent-args...]',
      "extra 'mesh agent' arguments, after --, e.g. -- --listen /ip4/0.0.0.0/tcp/4701",
    )
    .action(
      action(
        async (
          agentArgs: string[],
          opts: { name: string; user?: string; unitDir: string; start: boolean; print?: boolean },
        ) => {
          const g = program.opts<GlobalOpts>()
          const dataDir = resolve(dataDirOf(g))
          const unit = unitName(opts.name)
          if (agentArgs.some((a) => a === '--join' || a.startsWith('--join=')))
            throw new UsageError(
              "a join token does not belong in a unit file (any local user can read it): join once with 'mesh agent --join TOKEN', stop it with Ctrl-C, then install the service",
            )
          if (loadCluster(dataDir) === undefined)
            throw new UsageError(
              `${dataDir} holds no cluster yet, so the service would fail at start: run 'mesh init --cluster NAME' ` +
                "(a new cluster) or 'mesh agent --join TOKEN' once (to join one), then install the service",
            )
          if (opts.user !== undefined && statSync(dataDir).uid !== uidOf(opts.user))
            throw new UsageError(
              `${dataDir} is not owned by ${opts.user}, who could not use it: chown -R ${opts.user} ${dataDir} (or install without --user)`,
            )
          const text = systemdUnit({
            node: process.execPath,
            cli: realpathSync(process.argv[1]),
            dataDir,
            user: opts.user,
            agentArgs,
          })
          if (opts.print === true) {
            process.stdout.write(text)
            return
          }
          const path = join(resolve(opts.unitDir), unit)
          mkdirSync(resolve(opts.unitDir), { recursive: true })
          const existed = existsSync(path)
          const tmp = `${path}.tmp-${process.pid}`
          writeFileSync(tmp, text, { mode: 0o644 })
          renameSync(tmp, path)
          // systemd's own check of the file, where systemd-analyze is installed
          let verified = 'not checked (systemd-analyze is not installed)'
          if (hasCommand('systemd-analyze')) {
            const v = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' })
            if (v.status !== 0) {
              unlinkSync(path)
              throw new Error(
                `systemd-analyze verify rejected the unit, so it was not installed:\n${(v.stderr || v.stdout).trim()}`,
              )
            }
            verified = 'systemd-analyze verify: ok'
          }
          const steps: string[] = []
          let started = false
          let running = false
          if (opts.start) {
            running = await client(g)
              .call('GET', '/v1/status')
              .then(
                () => true,
                () => false,
              )
            if (!systemdRunning()) {
              steps.push(
                `systemd is not running on this machine, so nothing was started; where it runs: systemctl daemon-reload && systemctl enable --now ${unit}`,
              )
            } else {
              systemctl(['daemon-reload'])
              if (running) {
                systemctl(['enable', unit])
                steps.push(
                  `enabled, not started: an agent already runs on ${dataDir} (stop it, then: systemctl start ${unit})`,
                )
              } else {
                systemctl(['enable', '--now', unit])
                started = true
                steps.push(`enabled and started; logs: journalctl -u ${unit} -o cat -f`)
              }
            }
          } else {
            steps.push(`not started (--no-start): systemctl daemon-reload && systemctl enable --now ${unit}`)
          }
          if (g.json)
            return printJson({
              unit,
              path,
              dataDir,
              user: opts.user ?? userInfo().username,
              started,
              existed,
            })
          process.stdout.write(
            `${existed ? 'updated' : 'wrote'} ${path} (agent on ${dataDir}${opts.user !== undefined ? `, as ${opts.user}` : ''}; ${verified})\n${steps.join('\n')}\n`,
          )
        },
      ),
    )

  svc
    .command('remove')
    .description('stop and disable the unit and delete it; the data dir (identity, cluster, data) is kept')
    .option('--name <unit>', 'unit name', 'mesh')
    .option('--unit-dir <dir>', 'where the unit is', UNIT_DIR)
    .action(
      action(async (opts: { name: string; unitDir: string }) => {
        const g = program.opts<GlobalOpts>()
        const unit = unitName(opts.name)
        const path = join(resolve(opts.unitDir), unit)
        if (!existsSync(path)) {
          if (g.json) return printJson({ unit, path, removed: false })
          process.stdout.write(`no unit ${path}: nothing to remove\n`)
          return
        }
        if (!readFileSync(path, 'utf8').startsWith("# written by 'mesh service install'"))
          throw new UsageError(
            `${path} was not written by 'mesh service install'; remove it yourself if it should go`,
          )
        if (systemdRunning()) systemctl(['disable', '--now', unit])
        unlinkSync(path)
        if (systemdRunning()) systemctl(['daemon-reload'])
        if (g.json) return printJson({ unit, path, removed: true })
        process.stdout.write(
          `removed ${path}${systemdRunning() ? ' (stopped and disabled)' : ''}; the data dir is kept (the agent's identity and data)\n`,
        )
      }),
    )
}
