import { ApiComponent, lazyRoutes } from '../api/server.js'
import { BlocksComponent } from '../blocks/component.js'
import { ElectionsComponent } from '../election/component.js'
import { CommandExecutor } from '../election/executor.js'
import { PluginsExecutor } from '../election/plugins-executor.js'
import type { Component } from '../kernel/component.js'
import { dataPaths, ensureDataDir, lockDataDir } from '../kernel/datadir.js'
import { EventBus } from '../kernel/events.js'
import { MetricsServer } from '../kernel/metrics-server.js'
import { Reporter } from '../kernel/reporter.js'
import { displayNames } from '../membership/names.js'
import { isOverlayAddress } from '../membership/overlay.js'
import type { MemberInfo } from '../membership/record.js'
import { MembershipComponent } from '../membership/service.js'
import { NatComponent } from '../nat/component.js'
import { NodeComponent } from '../node/node-component.js'
import { makeToken } from '../node/token.js'
import { OverlayComponent } from '../overlay/component.js'
import { PluginsComponent } from '../plugins/component.js'
import { TunnelComponent } from '../tunnel/component.js'
import { hostKeyTags, writeKnownHosts } from '../tunnel/host-keys.js'
import { UiComponent } from '../ui/server.js'
import type { Config } from './config.js'
import { Daemon } from './daemon.js'
import { type ConfigRead, readConfig } from './read-config.js'
import { prepareDataDir } from './setup.js'

export interface AgentOptions {
  dataDir: string
  configFile?: string
  flags?: Record<string, unknown>
  /** readConfig of configFile and flags, already started (cmd-agent.ts); absent: startAgent starts it */
  configRead?: Promise<ConfigRead>
  join?: string
  init?: string
  /**
   * Aborted (a SIGTERM or ^C during start-up): the agent stops as soon as the component that is
   * starting has started, stopping it too (startAgent then resolves with a stopped daemon)
   */
  signal?: AbortSignal
}

export interface RunningAgent {
  daemon: Daemon
  node: NodeComponent
  membership: MembershipComponent
  blocks: BlocksComponent
  plugins: PluginsComponent
  reporter: Reporter
  config: Config
  /** Stop the agent, saying why in the log and on the event stream (`mesh monitor`). */
  shutdown(why: string): Promise<void>
}

/**
 * Assemble the agent: lock the data dir, read config, prepare the cluster, and start
 * the components in dependency order (node, then the control API).
 */
export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const paths = dataPaths(opts.dataDir)
  // config first: a bad config must fail before anything in the data dir is touched
  const { config, warnings } = await (opts.configRead ??
    readConfig({ dataDir: opts.dataDir, configFile: opts.configFile, flags: opts.flags }))
  ensureDataDir(opts.dataDir)
  const unlock = lockDataDir(opts.dataDir)
  try {
    const setup = await prepareDataDir(opts.dataDir, { join: opts.join, init: opts.init })
    const reporter = new Reporter({
      level: config.logLevel,
      pretty: config.logFormat === 'pretty' || (config.logFormat === 'auto' && process.stderr.isTTY === true),
    })
    const log = reporter.root.child({ component: 'agent' })
    for (const w of warnings) log.warn(w)
    if (setup.created)
      log.info({ cluster: setup.cluster.name, dataDir: opts.dataDir }, 'initialised a new cluster')
    if (setup.joined) log.info({ cluster: setup.cluster.name }, 'joining cluster with token')
    const events = new EventBus()
    const startedAt = Date.now()
    // The loops between components, in one place. Each is a component built after the one that
    // asks, and asked only once the agent runs: node <- nat (ICE servers for WebRTC), membership
    // <- nat (the STUN tags of our record), membership <- elections (the maintenance flag),
    // node and the API -> daemon (a revoked member, `mesh leave`: the agent stops).
    const later: {
      nat?: NatComponent
      overlay?: OverlayComponent
      elections?: ElectionsComponent
      daemon?: Daemon
    } = {}
    const shutdown = (why: string): Promise<void> => {
      log.info({ reason: why }, `stopping: ${why}`)
      events.publish('agent_stopping', { reason: why })
      return later.daemon?.stop() ?? Promise.resolve()
    }
    const node = new NodeComponent({
      config,
      cluster: setup.cluster,
      dataDir: opts.dataDir,
      seeds: setup.cluster.seeds ?? [],
      reporter: reporter.forComponent('node'),
      iceServers: () => later.nat?.iceServers() ?? [],
      insideOverlay: (ma) => {
        const first = ma.getComponents()[0]
        return first?.name === 'ip6' && isOverlayAddress(first.value ?? '', setup.cluster.id)
      },
      onRevoked: (err) => {
        if (config.exitWhenRevoked) later.daemon?.fail('node', err)
      },
      peerNames: (): ReadonlyMap<string, string> =>
        displayNames(membership.rows().map((r): MemberInfo => r.entry.signed.info)),
    })
    const executor = new CommandExecutor(config.elections.commands, paths.instancesDir)
    const membership = new MembershipComponent({
      node,
      computeTypes: () => executor.computeTypes(),
      maintenance: () => later.elections?.maintenance ?? config.elections.maintenance,
      // what members need to know of us beyond the config's tags: STUN, sshd host keys
      agentTags: () => ({ ...(later.nat?.tags() ?? {}), ...hostKeyTags(config.tunnel.sshHostKeys) }),
      cluster: setup.cluster,
      config: config.membership,
      name: config.name,
      tags: config.tags,
      dialTimeoutMs: config.dialTimeoutMs,
      dataDir: opts.dataDir,
      events,
      reporter: reporter.forComponent('membership'),
    })
    const nat = new NatComponent({
      node,
      membership,
      config: config.nat,
      webrtc: config.webrtc,
      listen: config.listen,
      // mesh0 traffic keeps a WebRTC path in use; its datagram channels hold libdatachannel too
      lastPacketAt: (peer) => later.overlay?.lastPacketAt(peer),
      nativeInUse: () => later.overlay?.holdsNativeWebrtc() ?? false,
      reporter: reporter.forComponent('nat'),
    })
    later.nat = nat
    const blocks = new BlocksComponent({
      node,
      membership,
      cluster: setup.cluster,
      config: config.blocks,
      dhtEnabled: config.dht.enabled,
      dataDir: opts.dataDir,
      events,
      reporter: reporter.forComponent('blocks'),
    })
    const tunnel = new TunnelComponent({
      node,
      nat,
      membership,
      cluster: setup.cluster,
      config: config.tunnel,
      dialTimeoutMs: config.dialTimeoutMs,
      reporter: reporter.forComponent('tunnel'),
    })
    const overlay = new OverlayComponent({
      node,
      membership,
      cluster: setup.cluster,
      config: config.overlay,
      reporter: reporter.forComponent('overlay'),
      iceServers: () => later.nat?.iceServers() ?? [],
    })
    later.overlay = overlay
    const plugins = new PluginsComponent({
      dataDir: opts.dataDir,
      membership,
      events,
      clusterName: setup.cluster.name,
      reporter: reporter.forComponent('plugins'),
      reachableAddrs: () => node.reachableAddrs(),
      // a spawned instance joins with a fresh single-use token, as from `mesh invite`
      makeInvite: (ttlMs) => {
        if (!node.trust.isAdmin(node.node.peerId.toString()))
          throw new Error(
            'only an admin can invite a new instance: spawn from an admin, or have an admin run mesh admin grant <this member>',
          )
        const addrs = node.reachableAddrs()
        if (addrs.length === 0)
          throw new Error(
            'this agent has no reachable address to put in a join token; set listen or announce addresses',
          )
        const { token, invite } = makeToken(
          { ...setup.cluster, admins: node.trust.genesisAdmins },
          addrs,
          ttlMs,
        )
        node.invites.add(invite.inviteId, invite.expires)
        return { token, redeemedBy: () => node.invites.usedBy(invite.inviteId) }
      },
    })
    // elections run what they win through elections.commands, else through the plugins
    const runner = new PluginsExecutor(executor, plugins, paths.electionInstances, () =>
      node.trust.isAdmin(node.node.peerId.toString()),
    )
    const elections = new ElectionsComponent({
      node,
      membership,
      cluster: setup.cluster,
      config: config.elections,
      name: config.name,
      tags: config.tags,
      dataDir: opts.dataDir,
      events,
      executor: runner,
      reporter: reporter.forComponent('elections'),
    })
    later.elections = elections
    const ui = new UiComponent({
      config: config.ui,
      socketPath: paths.socket,
      tokenFile: paths.uiToken,
      reporter: reporter.forComponent('ui'),
    })
    const api = new ApiComponent({
      socketPath: paths.socket,
      reporter: reporter.forComponent('api'),
      root: reporter,
      events,
      // each route module loads with fastify, on the first request: three of them validate
      // request bodies with zod, which an agent nobody asks anything never needs
      routes: [
        lazyRoutes(
          () => import('../api/routes-core.js'),
          (m) =>
            m.coreRoutes({
              node,
              nat,
              overlay,
              cluster: setup.cluster,
              config,
              dataDir: opts.dataDir,
              startedAt,
              events,
            }),
        ),
        lazyRoutes(
          () => import('../api/routes-members.js'),
          (m) =>
            m.memberRoutes({
              node,
              membership,
              clusterId: setup.cluster.id,
              onLeave: () => void shutdown('this member left the cluster (mesh leave)'),
            }),
        ),
        lazyRoutes(
          () => import('../api/routes-tunnel.js'),
          (m) => m.tunnelRoutes({ tunnel }),
        ),
        lazyRoutes(
          () => import('../api/routes-blocks.js'),
          (m) => m.blockRoutes({ blocks }),
        ),
        lazyRoutes(
          () => import('../api/routes-trust.js'),
          (m) => m.trustRoutes({ node, membership, clusterId: setup.cluster.id }),
        ),
        lazyRoutes(
          () => import('../api/routes-plugins.js'),
          (m) => m.pluginRoutes({ plugins }),
        ),
        lazyRoutes(
          () => import('../api/routes-elections.js'),
          (m) => m.electionRoutes({ elections }),
        ),
        lazyRoutes(
          () => import('../ui/routes.js'),
          (m) => m.uiRoutes({ ui }),
        ),
      ],
    })
    const components: Component[] = [
      node,
      // before membership, so the first record already says whether this member answers STUN
      nat,
      membership,
      blocks,
      tunnel,
      overlay,
      plugins,
      elections,
      api,
      // after the API: the dashboard reads the cluster through the API's socket
      ui,
    ]
    if (config.metrics.listen !== undefined) {
      components.push(new MetricsServer({ listen: config.metrics.listen, reporter }))
    }
    // every member's published sshd host keys, for ssh (mesh ssh, exec, ssh-config): kept current
    let knownHostsTimer: NodeJS.Timeout | undefined
    let knownHostsText: string | undefined
    const updateKnownHosts = () => {
      try {
        knownHostsText = writeKnownHosts(
          opts.dataDir,
          membership
            .rows()
            .map((r) => r.entry.signed.info)
            .filter((i) => i.status !== 'left'),
          knownHostsText,
        )
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'could not write ssh_known_hosts')
      }
    }
    events.subscribe((e) => {
      if (e.type !== 'cluster_change' || knownHostsTimer !== undefined) return
      knownHostsTimer = setTimeout(() => {
        knownHostsTimer = undefined
        updateKnownHosts()
      }, 200)
      knownHostsTimer.unref()
    })
    const daemon = new Daemon(components, log)
    later.daemon = daemon
    void daemon.stopped.then(unlock)
    const onAbort = () => void shutdown(`${opts.signal?.reason ?? 'asked to stop'} during start-up`)
    if (opts.signal?.aborted === true) onAbort()
    else opts.signal?.addEventListener('abort', onAbort, { once: true })
    await daemon.start()
    return { daemon, node, membership, blocks, plugins, reporter, config, shutdown }
  } catch (err) {
    unlock()
    throw err
  }
}
