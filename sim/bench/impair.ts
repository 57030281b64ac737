/**
 * An impaired link in the netns lab: hosts on two segments, `a` side and `b` side, joined by a
 * router namespace whose forwarding goes through impair-link.js (a userspace netem: delay,
 * jitter, seeded loss, reordering), because this kernel has no sch_netem.
 *
 *   segment A (x.x.A.0/24) -- eth0 [router: ip rule iif eth0/eth1 -> table 100: dev imp0] eth1 -- segment B
 *
 * Every packet the router forwards (and every packet addressed to it) goes out on the TUN device
 * imp0, is read by the process, and written back into imp0 after its delay; the kernel then
 * routes it by the main table to the other segment. rp_filter is off (the packets come back on
 * imp0 with sources that the main table routes elsewhere).
 */

import type { ChildProcess } from 'node:child_process'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import type { Host, Lab, Segment } from '../../test/system/harness.js'
import type { Impairment, ImpairStats } from './impair-link.js'

export type { Impairment, ImpairStats }

const DEV = 'imp0'

export interface ImpairedLink {
  router: Host
  /** the two segments; hosts on either use the router as their default gateway */
  sideA: Segment
  sideB: Segment
  /** replace the impairment (takes effect for the next packet read) */
  set(imp: Impairment): Promise<void>
  /** the process's counters, as of its latest report (at most 250 ms old) */
  stats(): Promise<ImpairStats>
}

/** Builds the router between two new segments and starts the impairer (no impairment yet). */
export async function impairedLink(lab: Lab, name = 'imp'): Promise<ImpairedLink> {
  const sideA = lab.segment(`${name}-a`)
  const sideB = lab.segment(`${name}-b`)
  const router = lab.host(name, sideA, { ip: `${sideA.net}.1` })
  sideA.gateway = router.ip
  // the second leg, made as Lab.plug makes the first (the lab has no two-legged plain router)
  const bIp = `${sideB.net}.1`
  const port = `p${sideB.ports++}`
  ip(['link', 'add', 'eth1', 'netns', router.ns, 'type', 'veth', 'peer', 'name', port, 'netns', sideB.ns])
  ip(['-n', sideB.ns, 'link', 'set', port, 'master', 'br0'])
  ip(['-n', sideB.ns, 'link', 'set', port, 'up'])
  ip(['-n', router.ns, 'addr', 'add', `${bIp}/24`, 'dev', 'eth1'])
  ip(['-n', router.ns, 'link', 'set', 'eth1', 'up'])
  sideB.gateway = bIp
  for (const s of [
    'net.ipv4.ip_forward=1',
    'net.ipv4.conf.all.rp_filter=0',
    'net.ipv4.conf.default.rp_filter=0',
    'net.ipv4.conf.all.send_redirects=0',
  ])
    inNs(router.ns, ['sysctl', '-qw', s])

  const child = lab.spawn(router, [process.execPath, join(import.meta.dirname, 'impair-link.js'), DEV])
  let last: ImpairStats | undefined
  let out = ''
  let err = ''
  let ready: () => void
  const isReady = new Promise<void>((r) => {
    ready = r
  })
  let waiters: Array<(s: ImpairStats) => void> = []
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d
    let nl = out.indexOf('\n')
    while (nl >= 0) {
      const line = out.slice(0, nl)
      out = out.slice(nl + 1)
      if (line === 'ready') ready()
      else if (line.startsWith('{"in"')) {
        last = JSON.parse(line) as ImpairStats
        for (const w of waiters) w(last)
        waiters = []
      }
      nl = out.indexOf('\n')
    }
  })
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d
  })
  // one promise for the process's end, raced by every wait (a crash is an error, not a hang)
  const dead = exited(child, () => err)
  dead.catch(() => {})
  await Promise.race([isReady, dead])
  inNs(router.ns, ['sysctl', '-qw', `net.ipv4.conf.${DEV}.rp_filter=0`])
  // a queue as deep as the impairer's own (4096): a process descheduled for 100 ms on a loaded
  // machine must not turn into drops the configuration did not ask for (the default is 500)
  ip(['-n', router.ns, 'link', 'set', DEV, 'mtu', '1500', 'txqueuelen', '4096', 'up'])
  ip(['-n', router.ns, 'route', 'add', 'default', 'dev', DEV, 'table', '100'])
  for (const dev of ['eth0', 'eth1']) ip(['-n', router.ns, 'rule', 'add', 'iif', dev, 'lookup', '100'])

  const next = () => Promise.race([new Promise<ImpairStats>((r) => waiters.push(r)), dead])
  return {
    router,
    sideA,
    sideB,
    async set(imp) {
      child.stdin!.write(`${JSON.stringify(imp)}\n`)
      await next() // a report after the line: it was read
    },
    async stats() {
      // the next report, so that what happened before this call is in it
      await next()
      return { ...(last as ImpairStats) }
    },
  }
}

function exited(child: ChildProcess, stderr: () => string): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () =>
      reject(new Error(`impair-link exited ${child.exitCode ?? child.signalCode}: ${stderr()}`))
    if (child.exitCode !== null || child.signalCode !== null) fail()
    else child.once('exit', fail)
  })
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 })
}

function inNs(ns: string, argv: string[]): void {
  execFileSync('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 })
}
