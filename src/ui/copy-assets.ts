// Run by `npm run build` after tsc: puts the dashboard's page and the libraries it loads
// (from node_modules, so nothing comes from a CDN and users run no build step) beside
// dist/src/ui/server.js. No bundler: the browser loads ES modules through an import map.
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'

const here = import.meta.dirname // dist/src/ui
const source = resolve(here, '../../../src/ui/web')
const target = join(here, 'web')
const require = createRequire(import.meta.url)
// some packages do not export their package.json: look where node would look
const pkgDir = (name: string): string => {
  for (const dir of require.resolve.paths(name) ?? [])
    if (existsSync(join(dir, name, 'package.json'))) return join(dir, name)
  throw new Error(`${name} is not installed: run npm ci`)
}

/** served name -> file in node_modules */
export const VENDOR: Record<string, string> = {
  'preact.js': join(pkgDir('preact'), 'dist/preact.module.js'),
  'preact-hooks.js': join(pkgDir('preact'), 'hooks/dist/hooks.module.js'),
  'htm.js': join(pkgDir('htm'), 'dist/htm.module.js'),
  'cytoscape.js': join(pkgDir('cytoscape'), 'dist/cytoscape.esm.min.mjs'),
  'uplot.js': join(pkgDir('uplot'), 'dist/uPlot.esm.js'),
  'uplot.css': join(pkgDir('uplot'), 'dist/uPlot.min.css'),
}

mkdirSync(join(target, 'vendor'), { recursive: true })
for (const f of readdirSync(source)) copyFileSync(join(source, f), join(target, f))
for (const [name, file] of Object.entries(VENDOR)) copyFileSync(file, join(target, 'vendor', name))
