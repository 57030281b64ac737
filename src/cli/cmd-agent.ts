import type { Command } from 'commander'
import type { RunningAgent } from '../agent/agent.js'
import { action, dataDirOf, type GlobalOpts } from './common.js'

const collect = (v: string, prev: string[] = []) => [...prev, v]

export function agentCommand(program: Command): void {
  program
    .command('agent')
    .description('run the agent in the foreground (systemd units and the docker image run the same)')
    .option('--join <token>', 'join the cluster a member invited this machine to (mesh invite)')
    .option('--init [cluster]', 'start a new cluster if the data dir holds none')
    .option('--config <file>', 'YAML config file (default: <data dir>/config.yaml)')
    .option('--listen <multiaddr>', 'listen address, repeatable (default /ip4/0.0.0.0/tcp/4701)', collect)
    .option(
      '--announce <multiaddr>',
      'address to announce instead of the listen addresses, repeatable',
      collect,
    )
    .option(
      '--reachable <cidr>',
      'a network other members can reach although it is private (a lab, a WAN), repeatable',
      collect,
    )
    .option('--name <name>', "this member's name (default: the hostname)")
    .option('--log-level <level>', 'trace, debug, info, warn, error')
    .option('--log-format <format>', 'auto (readable on a terminal, JSON lines otherwise), pretty or json')
    .action(
      action(
        async (opts: {
          join?: string
          init?: string | boolean
          config?: string
          listen?: string[]
          announce?: string[]
          reachable?: string[]
          name?: string
          logLevel?: string
          logFormat?: string
        }) => {
          const dir = dataDirOf(program.opts<GlobalOpts>())
          // before the agent allocates: without it full GCs run back to back while bytes flow, an
          // idle agent's heap fills with promoted garbage, and freed native memory stays resident
          const { manageHeap } = await import('../agent/heap.js')
          manageHeap()
          // the handlers come first: a SIGTERM during start-up (systemd stopping a unit that is
          // still starting, a test's cleanup) stops what has started, the overlay's NAME.mesh
          // lines and device included, instead of killing the process with them left behind
          let agent: RunningAgent | undefined
          const startup = new AbortController()
          let signals = 0
          const onSignal = (sig: string) => {
            if (++signals > 1) process.exit(130) // a second ^C: do not wait
            const why = `${sig === 'SIGINT' ? 'SIGINT (Ctrl-C)' : sig} received`
            if (agent === undefined) {
              startup.abort(why)
              return
            }
            // a graceful stop tells the cluster first, so nobody has to detect a failure
            const leaves = agent.config.membership.leaveOnTerm
            agent.reporter.root.info(
              { signal: sig },
              leaves
                ? `${why}: telling the cluster this member leaves`
                : `${why} (membership.leaveOnTerm is off)`,
            )
            const running = agent
            const leave = leaves
              ? Promise.race([running.membership.leave(), new Promise((r) => setTimeout(r, 3000))])
              : Promise.resolve()
            void leave.catch(() => {}).then(() => running.shutdown(why))
          }
          process.on('SIGINT', () => onSignal('SIGINT'))
          process.on('SIGTERM', () => onSignal('SIGTERM'))
          const flags = {
            listen: opts.listen,
            announce: opts.announce,
            'nat.reachableNetworks': opts.reachable,
            name: opts.name,
            logLevel: opts.logLevel,
            logFormat: opts.logFormat,
          }
          // the config is validated in a worker thread (read-config.ts) while this one loads the
          // agent's modules; startAgent awaits it first (the catch only keeps a bad config from
          // counting as an unhandled rejection until then)
          const { readConfig } = await import('../agent/read-config.js')
          const configRead = readConfig({ dataDir: dir, configFile: opts.config, flags })
          configRead.catch(() => {})
          // loaded here, not at the top: every other command stays fast to start
          const { startAgent } = await import('../agent/agent.js')
          agent = await startAgent({
            dataDir: dir,
            configFile: opts.config,
            configRead,
            join: opts.join ?? process.env.MESH_JOIN,
            init: typeof opts.init === 'string' ? opts.init : opts.init === true ? 'mesh' : undefined,
            flags,
            signal: startup.signal,
          })
          const n = agent.node.node
          if (!startup.signal.aborted)
            process.stdout.write(
              `mesh agent ${n.peerId} running (data dir ${dir})\n` +
                `listening on ${n.getMultiaddrs().map(String).join(' ') || '(no address yet)'}\n`,
            )
          const err = await agent.daemon.stopped
          agent.reporter.root.info(err === undefined ? 'agent stopped' : `agent stopped: ${err.message}`)
          agent.reporter.root.flush()
          if (err !== undefined) process.stderr.write(`mesh: ${err.message}\n`)
          process.exit(err === undefined ? 0 : ((err as { exitCode?: number }).exitCode ?? 1))
        },
      ),
    )
}
