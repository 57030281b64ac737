// Chromium from the distribution, driven by playwright-core, for the dashboard's browser tests.
import { existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium } from 'playwright-core'

export const CHROMIUM = process.env.MESH_CHROMIUM ?? '/usr/bin/chromium'
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** Skip with a printed reason without Chromium; fail instead under MESH_REQUIRE_SYSTEM=1 (CI). */
export function requireChromium(ctx: Mocha.Context): void {
  if (existsSync(CHROMIUM)) return
  const why = `no Chromium at ${CHROMIUM} (apt-get install chromium, or set MESH_CHROMIUM)`
  if (process.env.MESH_REQUIRE_SYSTEM === '1') throw new Error(`MESH_REQUIRE_SYSTEM=1: ${why}`)
  console.log(`      skipped (${ctx.test?.parent?.fullTitle()}): ${why}`)
  ctx.skip()
}

/** A fresh browser profile, removed by the caller. */
export function launchBrowser(profile: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 800 },
  })
}

/** Screenshots stay after the run (the temp dirs do not): one folder per run, printed. */
export function screenshotDir(): string {
  const d = join(tmpdir(), 'mesh-ui-screenshots', new Date().toISOString().replace(/[:.]/g, '-'))
  mkdirSync(d, { recursive: true })
  return d
}
