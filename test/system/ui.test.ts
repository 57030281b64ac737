// The web dashboard in a real browser: Chromium from the distribution driven by playwright-core.
// Five real agents on 127.0.0.1; the page must follow the cluster live (no reloads).
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { type AgentProcess, Fixture, mesh, meshJson, waitFor } from '../integration/cluster-harness.js'
import { launchBrowser, requireChromium, screenshotDir } from './browser.js'

// the functions passed to page.evaluate run in the page; tsc here has no DOM types
declare const window: any
declare const document: any
declare const location: any

describe('system: web dashboard, five agents, real Chromium', function () {
  this.timeout(300_000)
  const fx = new Fixture()
  const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo']
  const agents: Record<string, AgentProcess> = {}
  const peerIds: Record<string, string> = {}
  let context: BrowserContext | undefined
  let page: Page
  let url = ''
  let base = ''
  let shots = ''
  const errors: string[] = []

  before(async function () {
    requireChromium(this)
    shots = screenshotDir()
    const dirs = names.map(() => fx.tempDir('mesh-ui-'))
    for (const [i, n] of names.entries()) {
      // bravo and charlie can run compute type `sleeper`: the election has two candidates
      const cmd = 'sleep 300 & wait'
      writeFileSync(
        join(dirs[i], 'config.yaml'),
        ['bravo', 'charlie'].includes(n)
          ? `elections:\n  commands:\n    sleeper: ${JSON.stringify(cmd)}\n`
          : 'elections: {}\n',
      )
    }
    const init = await mesh(['--data-dir', dirs[0], 'init', '--cluster', 'lab'])
    assert.equal(init.code, 0, init.stderr)
    // port 0: the test picks no port that another run could hold
    const env = { MESH_UI__LISTEN: '127.0.0.1:0' }
    agents.alpha = fx.agent(dirs[0], ['--name', 'alpha']).start([], env)
    await agents.alpha.ready(60_000)
    for (const [i, n] of names.entries()) {
      if (i === 0) continue
      const { token } = await meshJson<{ token: string }>(dirs[0], ['invite'])
      agents[n] = fx.agent(dirs[i], ['--name', n]).start(['--join', token], env)
    }
    for (const n of names) peerIds[n] = (await agents[n].ready(60_000)).peerId
    await waitFor(
      'all five members alive at alpha, each on a connection',
      async () => {
        const ms = await meshJson<Array<{ status: string; path: string }>>(agents.alpha.dataDir, ['members'])
        return (
          ms.filter((m) => m.status === 'alive').length === 5 &&
          ms.filter((m) => m.path === 'direct').length === 4
        )
      },
      90_000,
      500,
    )
    const ui = await mesh(['--data-dir', agents.alpha.dataDir, 'ui'])
    assert.equal(ui.code, 0, ui.stderr)
    url = ui.stdout.split('\n')[0]
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{43}$/)
    base = url.slice(0, url.indexOf('/?'))
    context = await launchBrowser(fx.tempDir('mesh-ui-profile-'))
    page = context.pages()[0] ?? (await context.newPage())
    page.on('pageerror', (e) => errors.push(e.message))
    console.log(`      screenshots: ${shots}`)
  })

  after(async () => {
    await context?.close().catch(() => {})
    await fx.cleanup()
  })

  it('without the token every route is 401; the token is traded for an HttpOnly SameSite=Strict cookie', async () => {
    for (const path of [
      '/',
      '/app.js',
      '/vendor/preact.js',
      '/api/v1/members',
      '/api/events',
      '/metrics',
      '/nope',
    ]) {
      const r = await fetch(base + path, { redirect: 'manual' })
      assert.equal(r.status, 401, `${path} without a token`)
    }
    const wrong = await fetch(`${base}/?token=${'x'.repeat(43)}`, { redirect: 'manual' })
    assert.equal(wrong.status, 401, 'a wrong token')
    const login = await fetch(url, { redirect: 'manual' })
    assert.equal(login.status, 303)
    const cookie = login.headers.get('set-cookie') ?? ''
    assert.match(cookie, /HttpOnly/)
    assert.match(cookie, /SameSite=Strict/)
    assert.equal(login.headers.get('location'), '/', 'the token leaves the address bar')
    const jar = cookie.split(';')[0]
    const members = await fetch(`${base}/api/v1/members`, { headers: { cookie: jar } })
    assert.equal(members.status, 200)
    assert.equal(((await members.json()) as { members: unknown[] }).members.length, 5)
    // read-only: nothing that changes state or reads block contents passes
    const post = await fetch(`${base}/api/v1/invite`, { method: 'POST', headers: { cookie: jar } })
    assert.equal(post.status, 405)
    const cat = await fetch(`${base}/api/v1/cat?ref=x`, { headers: { cookie: jar } })
    assert.equal(cat.status, 404)
  })

  it('the graph shows the five members and a direct edge from this agent to each other one', async () => {
    await page.goto(url)
    await page.waitForFunction(
      () => {
        const g = window.meshUi?.graph()
        return g !== undefined && g.nodes === 5 && g.edges.direct === 4
      },
      null,
      { timeout: 30_000 },
    )
    const g = await page.evaluate(() => window.meshUi.graph())
    // five members: cytoscape's labelled graph (the canvas is for large clusters)
    assert.deepEqual(g, { nodes: 5, byStatus: { alive: 5 }, edges: { direct: 4 }, renderer: 'cytoscape' })
    await page.evaluate(() => (window.loadMark = 'first load'))
    await page.waitForTimeout(500) // cytoscape draws on its next frame
    await page.screenshot({ path: join(shots, 'graph.png') })
  })

  it('the members table shows status, tags, version and maintenance', async () => {
    await page.evaluate(() => (location.hash = '#/members'))
    await page.waitForFunction(
      () => document.querySelectorAll('tr[data-status="alive"]').length === 5,
      null,
      {
        timeout: 20_000,
      },
    )
    const text = await page.locator('table.members').innerText()
    for (const n of names) assert.match(text, new RegExp(`\\b${n}\\b`))
    assert.match(text, /0\.1\.0|\d+\.\d+\.\d+/)
    await page.screenshot({ path: join(shots, 'members.png') })
  })

  it('kill -9 a member: the page shows it dead within the detection time, without a reload', async () => {
    const t0 = Date.now()
    await agents.echo.kill('SIGKILL')
    // the membership tests' bound for one kill -9 (probe round, suspicion, unconfirmed retries)
    await page.waitForSelector(`tr[data-peer="${peerIds.echo}"][data-status="dead"]`, { timeout: 60_000 })
    console.log(`      echo shown dead ${Date.now() - t0} ms after kill -9`)
    assert.equal(await page.evaluate(() => window.loadMark), 'first load', 'the page did not reload')
    await page.evaluate(() => (location.hash = '#/graph'))
    await page.waitForFunction(() => window.meshUi.graph()?.byStatus.dead === 1, null, {
      timeout: 10_000,
    })
  })

  it('mesh put --tag appears in the datasets view with its holders', async () => {
    await page.evaluate(() => (location.hash = '#/datasets'))
    const dir = fx.tempDir('mesh-ui-data-')
    writeFileSync(join(dir, 'a.txt'), 'maps of the mesh\n'.repeat(1000))
    const put = await mesh(['--data-dir', agents.bravo.dataDir, 'put', dir, '--tag', 'maps:v1'])
    assert.equal(put.code, 0, put.stderr)
    const row = page.locator('tr[data-dataset="maps:v1"]')
    await row.waitFor({ timeout: 30_000 })
    await waitFor(
      'bravo shown as a holder of maps:v1',
      async () => /bravo/.test(await row.innerText()),
      30_000,
    )
    assert.equal(await page.evaluate(() => window.loadMark), 'first load')
    await page.screenshot({ path: join(shots, 'datasets.png') })
  })

  it("per-member traffic: after alpha gets maps:v1 from bravo, bravo's page shows the bytes and a rate", async () => {
    const size = 'maps of the mesh\n'.length * 1000
    // what alpha's page had counted with bravo before the transfer (membership traffic only)
    const before = await page.evaluate((id) => window.meshUi.trafficOf(id)?.in ?? 0, peerIds.bravo)
    const get = await mesh(['--data-dir', agents.alpha.dataDir, 'get', 'maps:v1', fx.tempDir('mesh-ui-get-')])
    assert.equal(get.code, 0, get.stderr)
    await page.evaluate((id) => (location.hash = `#/member/${id}`), peerIds.bravo)
    // the dataset's bytes came from bravo (the only holder) and show within two samples (5 s each)
    await page.waitForFunction(
      ([id, b, n]) => (window.meshUi.trafficOf(id)?.in ?? 0) - b >= n,
      [peerIds.bravo, before, size] as const,
      { timeout: 30_000 },
    )
    await page.waitForFunction(
      (id) => Math.max(0, ...window.meshUi.trafficColumns(id)[1].map((v: number | null) => v ?? 0)) > 0,
      peerIds.bravo,
      { timeout: 30_000 },
    )
    const total = await page.locator('.detail .traffic-total').innerText()
    assert.match(total, /\d+(\.\d)? (kB|MB) received, \d+(\.\d)? (B|kB|MB) sent/, total)
    assert.equal(
      (await page.locator('.member-traffic canvas').count()) > 0,
      true,
      'the traffic chart is drawn',
    )
    // /metrics has it too, labelled by member name
    const metrics: string = await page.evaluate(() => fetch('/api/metrics').then((r: any) => r.text()))
    const series = /^mesh_node_peer_bytes_total\{peer="bravo",direction="in"\} (\d+)$/m.exec(metrics)
    assert.ok(series !== null && Number(series[1]) >= size, "bravo's bytes in /metrics")
    // and a sparkline in bravo's row of the members table
    await page.evaluate(() => (location.hash = '#/members'))
    await page.locator(`tr[data-peer="${peerIds.bravo}"] .spark polyline`).waitFor({ timeout: 10_000 })
    await page.evaluate((id) => (location.hash = `#/member/${id}`), peerIds.bravo)
    await page.locator('.member-traffic canvas').first().waitFor({ timeout: 10_000 })
    await page.screenshot({ path: join(shots, 'member-traffic.png') })
    assert.equal(await page.evaluate(() => window.loadMark), 'first load')
  })

  it('an election appears with the votes of its round and the winner', async () => {
    await page.evaluate(() => (location.hash = '#/requests'))
    const r = await mesh([
      '--data-dir',
      agents.alpha.dataDir,
      'request',
      'create',
      '--compute-type',
      'sleeper',
      '--wait',
      '--timeout',
      '60000',
    ])
    assert.equal(r.code, 0, r.stderr)
    const winner = /^decided: (bravo|charlie) won/m.exec(r.stdout)?.[1]
    assert.ok(winner, r.stdout)
    const id = r.stdout.trim().split('\n').at(-1) as string
    const row = page.locator(`tr[data-request="${id}"]`)
    await row.waitFor({ timeout: 30_000 })
    await waitFor(
      'the winner in the requests row',
      async () => (await row.innerText()).includes(winner),
      20_000,
    )
    await page.evaluate((rid) => (location.hash = `#/requests/${encodeURIComponent(rid)}`), id)
    const round = page.locator('tr.votes .round').first()
    await round.waitFor({ timeout: 20_000 })
    // four members alive voted (echo is dead): yes from bravo and charlie, no from the others
    await waitFor('four votes shown', async () => (await round.locator('tbody tr').count()) === 4, 20_000)
    const votes = await round.locator('tbody tr').allInnerTexts()
    const yes = votes.filter((v) => /\tyes\t/.test(v)).map((v) => v.split('\t')[0].replace(' (winner)', ''))
    assert.deepEqual(yes.sort(), ['bravo', 'charlie'])
    assert.ok(
      votes.some((v) => v.startsWith(`${winner} (winner)`)),
      votes.join('\n'),
    )
    assert.equal(await page.evaluate(() => window.loadMark), 'first load')
    await page.screenshot({ path: join(shots, 'requests.png') })
  })

  it('the metrics view draws its charts from /metrics, and the member page opens', async () => {
    await page.evaluate(() => (location.hash = '#/metrics'))
    await page.waitForFunction(() => document.querySelectorAll('.chart canvas').length >= 7, null, {
      timeout: 20_000,
    })
    // two samples at least, so that rates have a point
    await page.waitForFunction(() => window.meshUi.state.samples.length >= 2, null, {
      timeout: 30_000,
    })
    await page.screenshot({ path: join(shots, 'metrics.png') })
    await page.evaluate((id) => (location.hash = `#/member/${id}`), peerIds.bravo)
    await page.locator('.detail h2').waitFor({ timeout: 10_000 })
    const detail = await page.locator('.detail').innerText()
    assert.match(detail, /bravo/)
    assert.match(detail, /maps:v1/, 'bravo holds maps:v1')
    await page.screenshot({ path: join(shots, 'member.png') })
    assert.deepEqual(errors, [], 'no script errors on the page')
    console.log(
      `      load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    )
  })
})
