import { spawn } from 'node:child_process'
import { realpathSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import type { Command } from 'commander'
import type { MembersReply, MemberView, TunnelsReply } from '../api/contract.js'
import {
  action,
  client,
  dataDirOf,
  EXIT,
  fail,
  fmtDuration,
  type GlobalOpts,
  printJson,
  shortId,
  table,
  UsageError,
} from './common.js'

// the tunnel modules are loaded when a command runs: `mesh proxy` starts on every ssh connection

function parsePort(text: string, what = 'port'): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new UsageError(`invalid ${what} '${text}': expected a number from 1 to 65535`)
  }
  return Number(text)
}

/** 'MEMBER:PORT', with an overlay address as '[fd..]:PORT' or 'fd..:PORT'. */
export function parseMemberPort(text: string): { member: string; port: number } {
  const bracket = /^\[([^\]]+)\]:(\d+)$/.exec(text)
  if (bracket !== null) return { member: bracket[1], port: parsePort(bracket[2]) }
  const i = text.lastIndexOf(':')
  if (i <= 0) throw new UsageError(`invalid target '${text}': expected MEMBER:PORT, e.g. node-b:5432`)
  return { member: text.slice(0, i), port: parsePort(text.slice(i + 1)) }
}

/** argv that runs this very CLI against the same data dir (for ssh's ProxyCommand). */
function selfArgv(g: GlobalOpts): string[] {
  let script = process.argv[1]
  try {
    script = realpathSync(script)
  } catch {}
  return [process.execPath, script, '--data-dir', realDir(dataDirOf(g))]
}

function realDir(dir: string): string {
  try {
    return realpathSync(dir)
  } catch {
    return dir
  }
}

async function tunnelTo(g: GlobalOpts, member: string, port: number) {
  return client(g).tunnel(member, port)
}

async function resolveMember(g: GlobalOpts, query: string): Promise<MemberView> {
  return client(g).call<MemberView>('GET', `/v1/members/resolve?q=${encodeURIComponent(query)}`)
}

export function tunnelCommands(program: Command): void {
  program
    .command('proxy')
    .description(
      'connect stdin/stdout to PORT on a member, through the overlay (ssh -o ProxyCommand="mesh proxy %h %p")',
    )
    .argument('<host>', 'the member: NAME, NAME.mesh, overlay address or peer ID')
    .argument('<port>', "TCP port on the member (it must be in the member's tunnel.allowPorts)")
    .option(
      '--fdpass',
      "hand the tunnel's socket to ssh and exit (with ssh's -o ProxyUseFdpass=yes): no process copies the bytes",
    )
    .action(
      action(async (host: string, portText: string, opts: { fdpass?: boolean }) => {
        const g = program.opts<GlobalOpts>()
        const port = parsePort(portText)
        if (opts.fdpass === true) {
          const { openRawTunnelFd, passFd } = await import('../api/tunnel-fd.js')
          const api = client(g)
          const t = await openRawTunnelFd(api.socketPath, host, port, () => api.notRunning())
          await passFd(1, t.fd)
          // ssh waits for its ProxyCommand to exit before it uses the descriptor
          process.exit(EXIT.ok)
        }
        const t = await tunnelTo(g, host, port)
        const { socket, output } = t
        process.stdin.on('error', () => socket.end())
        // stdin's end becomes a FIN on the tunnel; replies keep coming until the member ends
        process.stdin.pipe(socket)
        output.pipe(process.stdout, { end: false })
        output.on('end', () => {
          // the member is done: exit once stdout has it all (ssh waits for our stdout to close)
          process.stdout.write('', () => process.exit(EXIT.ok))
        })
        output.on('error', (err) =>
          fail(new Error(`the tunnel to ${t.name}:${port} was reset: ${err.message}`)),
        )
        socket.on('error', (err) => fail(new Error(`the tunnel to ${t.name}:${port} failed: ${err.message}`)))
      }),
    )

  program
    .command('ssh')
    .description(
      'ssh to a member through the overlay; host keys are pinned per overlay address (HostKeyAlias)',
    )
    .argument('<target>', '[USER@]MEMBER: NAME, NAME.mesh, overlay address or peer ID')
    .argument('[sshArgs...]', 'more ssh arguments and the remote command, after --')
    .option('-p, --port <port>', 'sshd port on the member', '22')
    .option('--ssh <path>', 'the ssh program', 'ssh')
    .option('--info-only', 'print the ssh command instead of running it')
    .action(
      action(
        async (
          target: string,
          sshArgs: string[],
          opts: { port: string; ssh: string; infoOnly?: boolean },
        ) => {
          const g = program.opts<GlobalOpts>()
          const port = parsePort(opts.port)
          const at = target.indexOf('@')
          const user = at >= 0 ? target.slice(0, at) : undefined
          const query = at >= 0 ? target.slice(at + 1) : target
          if (query === '') throw new UsageError('no member given: mesh ssh [USER@]MEMBER')
          const m = await resolveMember(g, query)
          const { proxyOptions, shellQuote } = await import('../tunnel/ssh-config.js')
          const { knownHostsPath } = await import('../tunnel/host-keys.js')
          const fdpass = await (await import('../api/tunnel-fd.js')).canPassFd()
          const argv = [
            ...proxyOptions(selfArgv(g), { fdpass }),
            // the host keys members signed (kept current by the agent): no prompt, a changed key refused
            '-o',
            `GlobalKnownHostsFile=${knownHostsPath(realDir(dataDirOf(g)))}`,
            '-o',
            `HostKeyAlias=${m.overlay}`,
            ...(port === 22 ? [] : ['-p', String(port)]),
            user === undefined ? m.overlay : `${user}@${m.overlay}`,
            ...sshArgs,
          ]
          if (opts.infoOnly === true) {
            if (g.json)
              return printJson({
                member: m.name,
                peerId: m.peerId,
                overlay: m.overlay,
                argv: [opts.ssh, ...argv],
              })
            process.stdout.write(`${[opts.ssh, ...argv].map(shellQuote).join(' ')}\n`)
            return
          }
          const child = spawn(opts.ssh, argv, { stdio: 'inherit' })
          // ssh owns the terminal: ^C goes to it, we wait for its exit
          const ignore = () => {}
          process.on('SIGINT', ignore)
          process.on('SIGTERM', () => child.kill('SIGTERM'))
          const code = await new Promise<number>((resolve) => {
            child.on('error', (err) => {
              process.stderr.write(`mesh: cannot run ${opts.ssh}: ${err.message}\n`)
              resolve(EXIT.error)
            })
            child.on('exit', (c, signal) => resolve(c ?? (signal === null ? EXIT.error : 128)))
          })
          process.exit(code)
        },
      ),
    )

  program
    .command('ssh-config')
    .description(
      'print (or --install) an ssh config block so plain ssh, scp, rsync and git reach *.mesh and overlay addresses',
    )
    .option('--install', 'write ~/.ssh/mesh.config and include it from ~/.ssh/config (idempotent)')
    .option('--ssh-dir <dir>', 'the .ssh directory to install into (default ~/.ssh)')
    .action(
      action(async (opts: { install?: boolean; sshDir?: string }) => {
        const g = program.opts<GlobalOpts>()
        const api = client(g)
        const [status, { members }] = await Promise.all([
          api.call<{ cluster: { name: string; id: string } }>('GET', '/v1/status'),
          api.call<MembersReply>('GET', '/v1/members'),
        ])
        const { sshConfigText, installSshConfig } = await import('../tunnel/ssh-config.js')
        const { OVERLAY_PREFIX } = await import('../membership/overlay.js')
        const text = sshConfigText({
          cli: selfArgv(g),
          clusterName: status.cluster.name,
          overlayPrefix: OVERLAY_PREFIX(status.cluster.id),
          knownHosts: (await import('../tunnel/host-keys.js')).knownHostsPath(realDir(dataDirOf(g))),
          fdpass: await (await import('../api/tunnel-fd.js')).canPassFd(),
          members: members
            .filter((m) => m.status !== 'left')
            .map((m) => ({ name: m.name, overlay: m.overlay })),
        })
        if (opts.install !== true) {
          process.stdout.write(text)
          return
        }
        const r = installSshConfig(text, opts.sshDir)
        if (g.json) return printJson(r)
        process.stdout.write(
          `wrote ${r.meshConfig}\n` +
            (r.includeAdded
              ? `added 'Include mesh.config' at the top of ${r.userConfig}\n`
              : `${r.userConfig} already includes it\n`) +
            `try: ssh root@${members.find((m) => !m.self)?.name ?? 'NAME'}.mesh\n`,
        )
      }),
    )

  program
    .command('forward')
    .description('listen on 127.0.0.1:LOCALPORT and forward each connection to PORT on a member')
    .argument('<localPort>', 'port on 127.0.0.1 (0: any free port, printed)')
    .argument('<target>', 'MEMBER:PORT (MEMBER: NAME, NAME.mesh, [overlay address] or peer ID)')
    .action(
      action(async (localText: string, targetText: string) => {
        const g = program.opts<GlobalOpts>()
        const local = localText === '0' ? 0 : parsePort(localText, 'local port')
        const { member, port } = parseMemberPort(targetText)
        const m = await resolveMember(g, member) // fail now, not on the first connection
        const server = createServer({ allowHalfOpen: true }, (conn) => void forwardOne(conn))
        const { splice } = await import('../api/tunnel-client.js')
        async function forwardOne(conn: Socket): Promise<void> {
          conn.pause()
          conn.on('error', () => {})
          try {
            const t = await tunnelTo(g, m.peerId, port)
            if (conn.destroyed) return void t.socket.destroy()
            conn.resume()
            await splice(conn, t)
          } catch (err) {
            process.stderr.write(
              `mesh: forward ${conn.remotePort} -> ${m.name}:${port}: ${(err as Error).message}\n`,
            )
            conn.destroy()
          }
        }
        await listenLocal(server, local)
        const bound = (server.address() as { port: number }).port
        if (g.json) printJson({ listen: `127.0.0.1:${bound}`, member: m.name, peerId: m.peerId, port })
        else process.stdout.write(`forwarding 127.0.0.1:${bound} -> ${m.name}:${port} (ctrl-c to stop)\n`)
        await untilSignal(server)
      }),
    )

  program
    .command('socks')
    .description('a SOCKS5 proxy on 127.0.0.1 that reaches *.mesh names and overlay addresses (nothing else)')
    .option('--port <port>', 'port on 127.0.0.1', '1080')
    .action(
      action(async (opts: { port: string }) => {
        const g = program.opts<GlobalOpts>()
        const local = opts.port === '0' ? 0 : parsePort(opts.port)
        const status = await client(g).call<{ cluster: { id: string } }>('GET', '/v1/status')
        const { socksServer, REP } = await import('../api/socks5.js')
        const { TunnelCallError } = await import('../api/tunnel-client.js')
        const repFor: Record<string, number> = {
          'unknown-member': REP.hostUnreachable,
          unreachable: REP.hostUnreachable,
          'port-not-allowed': REP.notAllowed,
          refused: REP.notAllowed,
          'connect-failed': REP.refused,
        }
        const server = socksServer({
          clusterId: status.cluster.id,
          log: (line) => process.stderr.write(`mesh: ${line}\n`),
          open: async (query, port) => {
            try {
              return await tunnelTo(g, query, port)
            } catch (err) {
              const rep = err instanceof TunnelCallError ? (repFor[err.code] ?? REP.failure) : REP.failure
              throw Object.assign(err as Error, { rep })
            }
          },
        })
        await listenLocal(server, local)
        const bound = (server.address() as { port: number }).port
        if (g.json) printJson({ listen: `127.0.0.1:${bound}` })
        else
          process.stdout.write(
            `SOCKS5 proxy on 127.0.0.1:${bound}: *.mesh names and overlay addresses only (ctrl-c to stop)\n`,
          )
        await untilSignal(server)
      }),
    )

  program
    .command('tunnels')
    .description('open tunnels through this agent: direction, member, port, path, bytes')
    .action(
      action(async () => {
        const g = program.opts<GlobalOpts>()
        const { tunnels } = await client(g).call<TunnelsReply>('GET', '/v1/tunnels')
        if (g.json) return printJson(tunnels)
        if (tunnels.length === 0) return void process.stdout.write('no open tunnels\n')
        process.stdout.write(
          table(
            ['DIR', 'MEMBER', 'PORT', 'PATH', 'SENT', 'RECEIVED', 'AGE'],
            tunnels.map((t) => [
              t.direction,
              t.name === t.peerId ? shortId(t.peerId) : t.name,
              t.port,
              t.path,
              t.sent,
              t.received,
              fmtDuration(Date.now() - t.startedAt),
            ]),
          ),
        )
      }),
    )
}

function listenLocal(server: ReturnType<typeof createServer>, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE')
        reject(new UsageError(`127.0.0.1:${port} is in use; choose another port`))
      else reject(err)
    })
    // loopback only: anything that can reach this port can use the tunnel
    server.listen(port, '127.0.0.1', () => resolve())
  })
}

function untilSignal(server: ReturnType<typeof createServer>): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      server.close()
      resolve()
      setTimeout(() => process.exit(EXIT.ok), 200).unref()
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
}
