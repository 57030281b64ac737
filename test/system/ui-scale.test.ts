// The web dashboard at 1,000 members: a fixture control API (the agent's routes and event
// stream, in its shape) behind the real UI server, the real page in real Chromium.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type ServerResponse } from 'node:http'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { Reporter } from '../../src/kernel/reporter.js'
import { UiComponent } from '../../src/ui/server.js'
import { waitFor } from '../integration/cluster-harness.js'
import { launchBrowser, requireChromium, screenshotDir } from './browser.js'

// the functions passed to page.evaluate run in the page; tsc here has no DOM types
declare const window: any
declare const document: any
declare const location: any

/**
 * A control API with 1,000 members, on a unix socket, in the shape the agent serves (the
 * routes the dashboard reads, and the event stream), so that the real UI server and the
 * real page can be measured at a size one machine cannot run as agents.
 */
class ThousandMembersApi {
  readonly members: Array<Record<string, unknown>>
  private readonly streams = new Set<ServerResponse>()
  private readonly server: Server
  /** how many of the next member reads fail (503), as an agent that is still starting answers */
  failReads = 0
  /** false: the event stream is refused, so only the page's own reads bring the members */
  eventsUp = true

  constructor(readonly socketPath: string) {
    const paths = ['direct', 'direct', 'direct', 'webrtc', 'relayed']
    this.members = Array.from({ length: 1000 }, (_, i) => ({
      name: `m${String(i).padStart(4, '0')}`,
      peerId: `12D3KooWSim${String(i).padStart(41, '0')}`,
      overlay: `fd00:1:2:0::${i.toString(16)}`,
      status: 'alive',
      path: i === 0 ? 'self' : paths[i % paths.length],
      rttMs: i === 0 ? undefined : 1 + ((i * 37) % 200),
      version: '0.1.0',
      tags: { dc: `dc${i % 5}`, role: i % 10 === 0 ? 'relay' : 'worker' },
      addrs: [`/ip4/198.18.${i >> 8}.${i & 255}/tcp/4701`],
      incarnation: 1,
      maintenance: i % 97 === 0,
      computeTypes: [],
      resources: { cpus: 2, memoryBytes: 2 ** 31, diskFreeBytes: 2 ** 34 },
      self: i === 0,
      since: Date.now(),
    }))
    const json = (res: ServerResponse, body: unknown) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    this.server = createServer((req, res) => {
      switch (req.url) {
        case '/v1/members':
          if (this.failReads > 0) {
            this.failReads--
            res.writeHead(503, { 'content-type': 'application/json' })
            return res.end(JSON.stringify({ error: 'the agent is starting' }))
          }
          return json(res, { members: this.members })
        case '/v1/status':
          return json(res, {
            name: 'm0000',
            cluster: { name: 'sim', id: 'x' },
            version: '0.1.0',
            connections: [],
          })
        case '/v1/datasets':
          return json(res, { datasets: [] })
        case '/v1/requests':
          return json(res, { requests: [] })
        case '/v1/instances':
          return json(res, { instances: [] })
        case '/metrics':
          res.writeHead(200, { 'content-type': 'text/plain' })
          return res.end('mesh_membership_members{status="alive"} 1000\n')
        case '/v1/events':
          if (!this.eventsUp) return res.writeHead(503).end()
          res.writeHead(200, { 'content-type': 'text/event-stream' })
          res.write(': connected\n\n')
          this.streams.add(res)
          res.on('close', () => this.streams.delete(res))
          return
        default:
          res.writeHead(404).end()
      }
    })
  }

  listen(): Promise<void> {
    return new Promise((r) => this.server.listen(this.socketPath, () => r()))
  }

  get watchers(): number {
    return this.streams.size
  }

  /** One member's status changes: the record and a cluster_change event, as the agent does. */
  setStatus(i: number, status: string): void {
    const m = this.members[i]
    const before = m.status
    m.status = status
    m.incarnation = (m.incarnation as number) + 1
    const e = {
      type: 'cluster_change',
      time: Date.now(),
      data: {
        peerId: m.peerId,
        name: m.name,
        overlay: m.overlay,
        before,
        after: status,
        incarnation: m.incarnation,
      },
    }
    for (const s of this.streams) s.write(`event: cluster_change\ndata: ${JSON.stringify(e)}\n\n`)
  }

  close(): Promise<void> {
    for (const s of this.streams) s.end()
    return new Promise((r) => this.server.close(() => r()))
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

describe('system: web dashboard with 1,000 members (fixture API, real UI server, real Chromium)', function () {
  this.timeout(180_000)
  let dir = ''
  let api: ThousandMembersApi
  let ui: UiComponent
  let context: BrowserContext | undefined
  let page: Page
  let url = ''

  before(async function () {
    requireChromium(this)
    dir = mkdtempSync(join(tmpdir(), 'mesh-ui-1k-'))
    api = new ThousandMembersApi(join(dir, 'mesh.sock'))
    await api.listen()
    ui = new UiComponent({
      config: { listen: '127.0.0.1:0', autostart: false },
      socketPath: join(dir, 'mesh.sock'),
      tokenFile: join(dir, 'ui-token'),
      reporter: new Reporter({ level: 'silent' }).forComponent('ui'),
    })
    url = await ui.open()
    context = await launchBrowser(join(dir, 'profile'))
    page = context.pages()[0] ?? (await context.newPage())
  })

  after(async () => {
    await context?.close().catch(() => {})
    await ui?.stop()
    await api?.close()
    if (dir !== '') rmSync(dir, { recursive: true, force: true })
  })

  /** Change `count` members one at a time; each change's apply + render as the page timed it. */
  async function timedUpdates(first: number, count: number): Promise<number[]> {
    const before = await page.evaluate(() => window.meshUi.perf.updates.length)
    for (let k = 0; k < count; k++) {
      const i = first + k
      api.setStatus(i, api.members[i].status === 'alive' ? 'suspect' : 'alive')
      await page.waitForFunction((n) => window.meshUi.perf.updates.length >= n, before + k + 1, {
        timeout: 20_000,
      })
      // the page shows it: the row or the graph node carries the new status
      await page.waitForTimeout(50)
    }
    return page.evaluate((b) => window.meshUi.perf.updates.slice(b), before)
  }

  it("draws 1,000 members by path kind in the page's first frame, applies status changes live (<= 100 ms median of 15, timed in the page), opens a member on a click", async () => {
    const shots = screenshotDir()
    // the page's main-thread CPU time (Chromium's own count, through CDP): the cost of the first
    // paint whatever the machine's load, which the wall-clock figures are not
    const cdp = await context!.newCDPSession(page)
    await cdp.send('Performance.enable', { timeDomain: 'threadTicks' })
    // MESH_UI_PROFILE=FILE: the page's CPU profile up to the graph's first frame (chrome devtools)
    const profile = process.env.MESH_UI_PROFILE
    if (profile !== undefined) {
      await cdp.send('Profiler.enable')
      await cdp.send('Profiler.setSamplingInterval', { interval: 200 })
      await cdp.send('Profiler.start')
    }
    await page.goto(url)
    await page.waitForFunction(() => window.meshUi?.perf.graphDrawn !== undefined, null, { timeout: 60_000 })
    if (process.env.MESH_UI_RT)
      console.log(
        await page.evaluate(() =>
          performance
            .getEntries()
            .map(
              (e: any) =>
                `${e.entryType} ${e.name.slice(-30)} start ${e.startTime.toFixed(0)} ${e.requestStart ? `req ${e.requestStart.toFixed(0)} resp ${e.responseStart.toFixed(0)}` : ''} end ${(e.startTime + e.duration).toFixed(0)}`,
            )
            .join('\n'),
        ),
      )
    if (profile !== undefined)
      writeFileSync(profile, JSON.stringify((await cdp.send('Profiler.stop')).profile))
    const { metrics } = await cdp.send('Performance.getMetrics')
    const metric = (name: string) => (metrics.find((m) => m.name === name)?.value ?? Number.NaN) * 1000
    const cpu = `main thread ${metric('ThreadTime').toFixed(0)} ms CPU (scripts ${metric('ScriptDuration').toFixed(0)} ms)`
    const { firstPaint, graphDrawn, readErrors } = await page.evaluate(() => window.meshUi.perf)
    const steps = await page.evaluate(() => {
      const p = window.meshUi.perf
      return `scripts loaded ${p.started.toFixed(0)} ms, data read ${p.fetched.toFixed(0)} ms, first render took ${p.firstDrawMs.toFixed(0)} ms`
    })
    const g = await page.evaluate(() => window.meshUi.graph())
    assert.equal(g.nodes, 1000)
    assert.deepEqual(g.edges, { direct: 599, webrtc: 200, relayed: 200 })
    await waitFor('the page to watch the event stream', async () => api.watchers === 1, 20_000, 50)
    const onGraph = await timedUpdates(1, 15)
    await page.waitForFunction(() => window.meshUi.graph().byStatus.suspect === 15, null, { timeout: 10_000 })
    await page.screenshot({ path: join(shots, 'graph-1000.png') })
    // a click on a member's node opens its page (the canvas graph hit-tests its own nodes)
    const target = { peerId: String(api.members[500].peerId), name: String(api.members[500].name) }
    const at = await page.evaluate((id) => window.meshUi.graphPoint(id), target.peerId)
    const box = await page.locator('#graph canvas').boundingBox()
    assert.ok(at !== undefined && box !== null, 'the graph has a canvas and the member is on it')
    await page.mouse.click(box.x + at.x, box.y + at.y)
    await page.waitForFunction(
      (id) => location.hash === `#/member/${encodeURIComponent(id)}`,
      target.peerId,
      {
        timeout: 10_000,
      },
    )
    await page.getByRole('heading', { name: target.name }).waitFor({ timeout: 10_000 })
    await page.evaluate(() => (location.hash = '#/members'))
    await page.waitForFunction(() => document.querySelectorAll('tr[data-status]').length === 1000, null, {
      timeout: 20_000,
    })
    const onTable = await timedUpdates(1, 15)
    await page.waitForFunction(
      () => document.querySelectorAll('tr[data-status="suspect"]').length === 0,
      null,
      {
        timeout: 10_000,
      },
    )
    const load = loadavg()[0].toFixed(1)
    const fmt = (xs: number[]) =>
      `median ${median(xs).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms (${xs.map((x) => x.toFixed(0)).join(' ')})`
    console.log(
      `      1,000 members: first paint ${firstPaint.toFixed(0)} ms (${steps}), graph drawn ${graphDrawn.toFixed(0)} ms, ${cpu}; update on the graph ${fmt(onGraph)}; ` +
        `on the table ${fmt(onTable)}; load average ${load}; screenshot ${shots}`,
    )
    // Updates are asserted on their medians (one update delayed by a busy machine does not fail
    // the run; a slow render does). The first frame is asserted by what does not follow the
    // machine's load: the graph is in the page's first frame (not built after it), and the
    // page's main-thread CPU up to that frame is in budget (cytoscape's first frame alone took
    // ~0.7 s of it). Wall-clock first paint is printed, not asserted: on this shared 2-core
    // machine it follows the load (at load 20 the page gets about a seventh of a core).
    assert.ok(
      graphDrawn - firstPaint < 1,
      `the graph came ${(graphDrawn - firstPaint).toFixed(0)} ms after the page's first frame` +
        ` (failed reads before it: ${readErrors.length === 0 ? 'none' : readErrors.join('; ')})`,
    )
    assert.ok(metric('ThreadTime') <= 500, `${cpu} to the graph's first frame > 500 ms (load ${load})`)
    assert.ok(median(onGraph) <= 100, `graph update median ${median(onGraph)} ms > 100 ms (load ${load})`)
    assert.ok(median(onTable) <= 100, `table update median ${median(onTable)} ms > 100 ms (load ${load})`)
  })

  it('a cluster that shrinks to 100 members gets the labelled cytoscape graph, and the canvas again when it grows back', async () => {
    const all = [...api.members]
    await page.evaluate(() => (location.hash = '#/graph'))
    await page.waitForFunction(() => window.meshUi.graph()?.renderer === 'canvas', null, { timeout: 20_000 })
    // the page reads the members again after a status change: then it has 100
    api.members.length = 100
    api.setStatus(1, 'suspect')
    await page.waitForFunction(
      () => window.meshUi.graph()?.renderer === 'cytoscape' && window.meshUi.graph().nodes === 100,
      null,
      { timeout: 30_000 },
    )
    // the canvas graph is gone: only cytoscape's own canvases are in the view
    assert.equal(await page.locator('#graph canvas[data-graph="canvas"]').count(), 0)
    assert.ok((await page.locator('#graph > div canvas').count()) > 0)
    api.members.push(...all.slice(100))
    api.setStatus(1, 'alive')
    await page.waitForFunction(
      () => window.meshUi.graph()?.renderer === 'canvas' && window.meshUi.graph().nodes === 1000,
      null,
      { timeout: 30_000 },
    )
    // one graph in the view, not the old one left beside the new
    assert.equal(await page.locator('#graph canvas[data-graph="canvas"]').count(), 1)
    assert.equal(await page.locator('#graph > div').count(), 0)
  })

  it('a failed first read of the members is read again at once: the graph is there in a second or two, not at the next 15 s round', async () => {
    // last: the page leaves the fixture first, so that only its own fresh start reads the members
    await page.goto('about:blank')
    api.failReads = 2
    api.eventsUp = false // no event stream to bring them either
    try {
      await page.goto(url)
      await page.waitForFunction(() => window.meshUi?.perf.readErrors.length >= 2, null, { timeout: 20_000 })
      const errors: string[] = await page.evaluate(() => window.meshUi.perf.readErrors)
      assert.match(errors[0], /\/v1\/members: 503 .*the agent is starting/)
      // retried after 0.25 s, then 0.5 s: well inside the 15 s round's first tick
      await page.waitForFunction(() => window.meshUi.graph()?.nodes === 1000, null, { timeout: 10_000 })
      assert.equal(api.failReads, 0)
      assert.equal(await page.locator('.error').count(), 0, 'the error line is gone once a read works')
    } finally {
      api.eventsUp = true
      api.failReads = 0
    }
  })
})
