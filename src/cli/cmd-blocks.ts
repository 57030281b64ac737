import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { rename, unlink } from 'node:fs/promises'
import { request } from 'node:http'
import { basename, dirname, join, resolve } from 'node:path'
import cliProgress from 'cli-progress'
import type { Command } from 'commander'
import { AgentNotRunningError, ApiCallError } from '../api/client.js'
import { dataPaths } from '../kernel/datadir.js'
import {
  action,
  CancelledError,
  client,
  dataDirOf,
  fmtBytes,
  type GlobalOpts,
  printJson,
  shortId,
  table,
  UsageError,
} from './common.js'

// ---- talking to the agent: streams ---------------------------------------------------------------

function socketOf(g: GlobalOpts): { socketPath: string; dir: string } {
  const dir = dataDirOf(g)
  return { socketPath: dataPaths(dir).socket, dir }
}

function notRunning(dir: string): AgentNotRunningError {
  return new AgentNotRunningError(
    `no mesh agent is running on data dir ${dir}. Start one with 'mesh agent' ` +
      `(or point --data-dir / MESH_DATA_DIR at the agent's data dir).`,
  )
}

/** POST a body and read NDJSON lines until `done` (resolves) or `error` (throws ApiCallError). */
function ndjsonCall<T>(
  g: GlobalOpts,
  path: string,
  body: unknown,
  onProgress: (p: any) => void,
  signal?: AbortSignal,
): Promise<T> {
  const { socketPath, dir } = socketOf(g)
  const payload = JSON.stringify(body)
  return new Promise<T>((resolvePromise, rejectPromise) => {
    // once aborted, whatever the connection says next, the reason is the abort's
    const reject = (err: unknown) => rejectPromise(signal?.aborted ? signal.reason : err)
    const req = request(
      // aborting closes the connection: the agent sees the client go and stops the operation
      { socketPath, method: 'POST', path, headers: { 'content-type': 'application/json' }, signal },
      (res) => {
        let buf = ''
        let settled = false
        res.setEncoding('utf8')
        if ((res.statusCode ?? 500) >= 400) {
          res.on('data', (d: string) => (buf += d))
          res.on('end', () => {
            let msg = buf
            try {
              msg = JSON.parse(buf).error ?? buf
            } catch {}
            reject(new ApiCallError(res.statusCode ?? 500, msg))
          })
          return
        }
        res.on('data', (d: string) => {
          buf += d
          let i = buf.indexOf('\n')
          while (i >= 0) {
            const line = buf.slice(0, i)
            buf = buf.slice(i + 1)
            i = buf.indexOf('\n')
            if (line.trim() === '') continue
            const m = JSON.parse(line)
            if (m.type === 'progress') onProgress(m)
            else if (m.type === 'done') {
              settled = true
              resolvePromise(m.result as T)
            } else if (m.type === 'error') {
              settled = true
              reject(new ApiCallError(m.status ?? 500, m.error))
            }
          }
        })
        res.on('end', () => {
          if (!settled) reject(new Error('the agent closed the connection before finishing (did it stop?)'))
        })
        res.on('error', (err) => {
          if (!settled) reject(err)
        })
      },
    )
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(notRunning(dir))
      else reject(err)
    })
    req.end(payload)
  })
}

/** GET a binary body into `sink` (a file or stdout); an HTTP error is an ApiCallError. */
function binaryCall(g: GlobalOpts, path: string, sink: NodeJS.WritableStream): Promise<number> {
  const { socketPath, dir } = socketOf(g)
  return new Promise<number>((resolvePromise, reject) => {
    const req = request({ socketPath, method: 'GET', path }, (res) => {
      if ((res.statusCode ?? 500) >= 400) {
        let buf = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (buf += d))
        res.on('end', () => {
          let msg = buf
          try {
            msg = JSON.parse(buf).error ?? buf
          } catch {}
          reject(new ApiCallError(res.statusCode ?? 500, msg))
        })
        return
      }
      let n = 0
      res.on('data', (d: Buffer) => {
        n += d.length
        if (!sink.write(d)) {
          res.pause()
          sink.once('drain', () => res.resume())
        }
      })
      res.on('end', () => {
        if (!res.complete)
          reject(new Error('the transfer was cut short (the agent reported an error or stopped)'))
        else resolvePromise(n)
      })
      res.on('error', reject)
      res.on('aborted', () =>
        reject(new Error('the transfer was cut short (the agent reported an error or stopped)')),
      )
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(notRunning(dir))
      else reject(err)
    })
    req.end()
  })
}

/** `mesh cat x | head`: a closed stdout ends the command quietly, as for cat(1). */
function quietEpipe(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0)
    throw err
  })
}

// ---- progress ------------------------------------------------------------------------------------

const { SingleBar } = cliProgress
type SingleBar = InstanceType<typeof cliProgress.SingleBar>

/** A one-line progress bar on stderr (cli-progress), redrawn in place; only when stderr is a terminal. */
class Bar {
  private readonly bar: SingleBar | undefined
  private started = false
  constructor(enabled: boolean) {
    if (!enabled || process.stderr.isTTY !== true) return
    this.bar = new SingleBar({
      stream: process.stderr,
      format: '{label} [{bar}] {percentage}%  {doneBytes} / {totalBytes}  {extra}',
      barsize: 24,
      hideCursor: true,
      clearOnComplete: true,
      linewrap: false,
      fps: 4,
      barCompleteChar: '=',
      barIncompleteChar: ' ',
    })
  }

  draw(label: string, done: number, total: number, extra: string): void {
    if (this.bar === undefined) return
    const payload = { label, doneBytes: fmtBytes(done), totalBytes: fmtBytes(total), extra }
    if (!this.started) {
      this.bar.start(Math.max(total, 1), done, payload)
      this.started = true
      return
    }
    this.bar.setTotal(Math.max(total, 1))
    this.bar.update(done, payload)
  }

  clear(): void {
    if (this.started) this.bar?.stop()
    this.started = false
  }
}

function getExtra(p: any): string {
  const prov = `${p.providers} provider${p.providers === 1 ? '' : 's'}`
  return `${fmtBytes(p.rate)}/s  ${prov}  ${p.files}/${p.totalFiles} files`
}

// ---- commands ------------------------------------------------------------------------------------

const fmtTime = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19)

function parseReplicas(v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 64)
    throw new UsageError(`--replicas must be a whole number from 1 to 64, not '${v}'`)
  return Number(v)
}

export function blockCommands(program: Command): void {
  const g = () => program.opts<GlobalOpts>()

  // -- single blocks
  const block = program.command('block').description('single blocks by CID (at most 2 MiB each)')

  block
    .command('put')
    .description('store FILE (at most 2 MiB) as one block; prints its CID')
    .argument('<file>', 'a file of at most 2 MiB')
    .action(
      action(async (file: string) => {
        const r = await client(g()).call<{ cid: string; size: number; added: boolean }>(
          'POST',
          '/v1/blocks',
          { path: resolve(file) },
        )
        if (g().json) printJson(r)
        else process.stdout.write(`${r.cid}\n`)
      }),
    )

  block
    .command('get')
    .description('fetch a block by CID (from the local store or from members) to stdout or -o FILE')
    .argument('<cid>', 'the block CID (bafkrei…)')
    .option('-o, --output <file>', 'write to FILE instead of stdout')
    .action(
      action(async (cid: string, opts: { output?: string }) => {
        if (cid.includes('/') || cid.includes('?')) throw new UsageError(`'${cid}' is not a CID`)
        const path = `/v1/blocks/${encodeURIComponent(cid)}`
        if (opts.output === undefined) {
          quietEpipe()
          await binaryCall(g(), path, process.stdout)
          return
        }
        const out = resolve(opts.output)
        const tmp = join(dirname(out), `.${basename(out)}.mesh-${randomBytes(4).toString('hex')}`)
        const ws = createWriteStream(tmp, { mode: 0o644 })
        try {
          const n = await binaryCall(g(), path, ws)
          await new Promise<void>((r, j) => ws.end((err?: Error | null) => (err ? j(err) : r())))
          await rename(tmp, out)
          if (g().json) printJson({ cid, size: n, output: out })
        } catch (err) {
          ws.destroy()
          await unlink(tmp).catch(() => {})
          throw err
        }
      }),
    )

  block
    .command('stat')
    .description(
      'what is known of a block: size, whether it is local and pinned, who has it, and if it is a dataset root',
    )
    .argument('<cid>', 'the block CID')
    .action(
      action(async (cid: string) => {
        if (cid.includes('/') || cid.includes('?')) throw new UsageError(`'${cid}' is not a CID`)
        const s = await client(g()).call<any>(
          'GET',
          `/v1/blocks/${encodeURIComponent(cid)}/stat`,
          undefined,
          60_000,
        )
        if (g().json) return printJson(s)
        const lines = [
          `cid:       ${s.cid}`,
          `size:      ${s.size === undefined ? '- (not local)' : `${s.size} bytes`}`,
          `local:     ${s.local ? 'yes' : 'no'}${s.pinned ? ', pinned' : ''}`,
          `providers: ${s.providers.length === 0 ? '-' : s.providers.map((p: any) => p.name).join(', ')}`,
        ]
        if (s.dataset !== undefined) {
          lines.push(
            `dataset:   ${s.dataset.name} (${s.dataset.type}): ${s.dataset.files} files, ${s.dataset.dirs} dirs, ${fmtBytes(s.dataset.bytes)}`,
          )
        }
        process.stdout.write(`${lines.join('\n')}\n`)
      }),
    )

  // -- datasets
  program
    .command('put')
    .description('store a file or directory as a dataset (content-defined chunks); prints the root CID')
    .argument('<path>', 'a file or a directory')
    .option('--tag <dataset:tag>', 'publish the root as DATASET:TAG (moving the tag publishes a new version)')
    .option(
      '--replicas <n>',
      'place copies on N members (rendezvous hashing); succeed only once N/2+1 confirm',
    )
    .action(
      action(async (path: string, opts: { tag?: string; replicas?: string }) => {
        const replicas = parseReplicas(opts.replicas)
        if (opts.tag !== undefined && !opts.tag.includes(':'))
          throw new UsageError(`--tag '${opts.tag}' must be DATASET:TAG, e.g. maps:v2`)
        const bar = new Bar(!g().json)
        let r: any
        try {
          r = await ndjsonCall<any>(g(), '/v1/put', { path: resolve(path), tag: opts.tag, replicas }, (p) => {
            if (p.phase === 'replicating') bar.draw('replicating', p.bytes, p.totalBytes, '')
            else bar.draw('hashing', p.bytes, p.totalBytes, `${p.files}/${p.totalFiles} files`)
          })
        } finally {
          bar.clear()
        }
        if (g().json) return printJson(r)
        process.stdout.write(`${r.root}\n`)
        const notes = [
          `${r.files} files, ${r.dirs} dirs, ${fmtBytes(r.bytes)} in ${r.blocks} blocks (${r.newBlocks} new, ${fmtBytes(r.newBytes)})`,
        ]
        if (r.replication !== undefined) {
          const ok = r.replication.targets.filter((t: any) => t.ok).map((t: any) => t.name)
          const bad = r.replication.targets.filter((t: any) => !t.ok).map((t: any) => `${t.name}: ${t.error}`)
          notes.push(
            `replicas: ${r.replication.confirmed} of ${r.replication.replicas} confirmed (${ok.join(', ')})${bad.length > 0 ? `; not yet: ${bad.join('; ')}` : ''}`,
          )
        }
        if (r.tag !== undefined) notes.push(`tagged ${r.tag.dataset}:${r.tag.tag} (seq ${r.tag.seq})`)
        if (process.stderr.isTTY) process.stderr.write(`${notes.join('\n')}\n`)
      }),
    )

  program
    .command('get')
    .description(
      'fetch a dataset from every member that has it, verified block by block, into DEST (resumes)',
    )
    .argument('<ref>', 'a root CID or DATASET:TAG')
    .argument('[dest]', 'where to write (default ./NAME)')
    .action(
      action(async (ref: string, dest: string | undefined) => {
        const bar = new Bar(!g().json)
        // Ctrl-C stops the agent's fetch too, not just this command; what arrived is kept
        const ctl = new AbortController()
        const cancel = () =>
          ctl.abort(
            new CancelledError(
              'cancelled: the agent stopped fetching; the blocks it has are kept, run the same command again to resume',
            ),
          )
        process.once('SIGINT', cancel)
        process.once('SIGTERM', cancel)
        let r: any
        try {
          r = await ndjsonCall<any>(
            g(),
            '/v1/get',
            { ref, dest: dest === undefined ? undefined : resolve(dest), cwd: process.cwd() },
            (p) =>
              bar.draw(
                p.phase === 'files' ? 'get' : p.phase,
                p.bytes + p.localBytes,
                p.totalBytes,
                getExtra(p),
              ),
            ctl.signal,
          )
        } finally {
          bar.clear()
        }
        if (g().json) return printJson(r)
        const from = r.providers
          .filter((p: any) => p.bytes > 0)
          .map((p: any) => `${p.name} ${fmtBytes(p.bytes)}`)
        process.stdout.write(
          `${r.dest}: ${r.files} files, ${fmtBytes(r.bytes)}; fetched ${fmtBytes(r.fetchedBytes)} in ${(r.ms / 1000).toFixed(1)} s` +
            `${from.length > 0 ? ` from ${from.join(', ')}` : ''}` +
            `${r.localBytes > 0 ? `; ${fmtBytes(r.localBytes)} already local` : ''}` +
            `${r.skippedFiles > 0 ? `; ${r.skippedFiles} files already up to date` : ''}` +
            `${r.corrupt > 0 ? `; ${r.corrupt} corrupt blocks dropped` : ''}\n`,
        )
      }),
    )

  program
    .command('cat')
    .description('write one file of a dataset to stdout')
    .argument('<ref>', 'CID or DATASET:TAG, then /PATH for a file inside a directory dataset')
    .action(
      action(async (ref: string) => {
        quietEpipe()
        await binaryCall(g(), `/v1/cat?ref=${encodeURIComponent(ref)}`, process.stdout)
      }),
    )

  program
    .command('ls')
    .description('list the files of a dataset')
    .argument('<ref>', 'a root CID or DATASET:TAG')
    .action(
      action(async (ref: string) => {
        const r = await client(g()).call<any>(
          'GET',
          `/v1/ls?ref=${encodeURIComponent(ref)}`,
          undefined,
          120_000,
        )
        if (g().json) return printJson(r)
        const { modeString } = await import('../blocks/manifest.js')
        process.stdout.write(
          `# ${r.root}: ${r.info.name} (${r.info.type}), ${r.info.files} files, ${fmtBytes(r.info.bytes)}\n`,
        )
        process.stdout.write(
          table(
            ['MODE', 'SIZE', 'MTIME', 'PATH'],
            r.entries.map((e: any) => [
              modeString(e.type, e.mode ?? 0o777),
              e.type === 'file' ? e.size : '',
              fmtTime(e.mtime),
              e.type === 'symlink' ? `${e.path} -> ${e.target}` : e.type === 'dir' ? `${e.path}/` : e.path,
            ]),
          ),
        )
      }),
    )

  program
    .command('datasets')
    .description('datasets and their tags, as every member agrees (newest record per DATASET:TAG)')
    .action(
      action(async () => {
        const r = await client(g()).call<{ datasets: any[] }>('GET', '/v1/datasets')
        if (g().json) return printJson(r.datasets)
        process.stdout.write(
          table(
            ['DATASET:TAG', 'ROOT', 'SEQ', 'PUBLISHER', 'TIME', 'REPLICAS', 'LOCAL'],
            r.datasets.map((d) => [
              `${d.dataset}:${d.tag}`,
              d.root,
              d.seq,
              d.publisherName ?? shortId(d.publisher),
              fmtTime(d.time),
              d.replicas > 0 ? d.replicas : '',
              d.pinned ? 'pinned' : d.local ? 'root' : '',
            ]),
          ),
        )
      }),
    )

  program
    .command('pin')
    .description('fetch a whole dataset into the local store and keep it (pinned blocks are never evicted)')
    .argument('<ref>', 'a root CID or DATASET:TAG')
    .action(
      action(async (ref: string) => {
        const r = await ndjsonCall<any>(g(), '/v1/pin', { ref }, () => {})
        if (g().json) return printJson(r)
        process.stdout.write(`pinned ${r.root} (${fmtBytes(r.bytes)}, fetched ${fmtBytes(r.fetched)})\n`)
      }),
    )

  program
    .command('unpin')
    .description('stop keeping a dataset: its blocks become cache, evicted under blocks.cacheBytes')
    .argument('<ref>', 'a root CID or DATASET:TAG')
    .action(
      action(async (ref: string) => {
        const r = await client(g()).call<any>('POST', '/v1/unpin', { ref })
        if (g().json) return printJson(r)
        process.stdout.write(`unpinned ${r.root}\n`)
      }),
    )

  program
    .command('pins')
    .description('what this member pins')
    .action(
      action(async () => {
        const r = await client(g()).call<{ pins: any[] }>('GET', '/v1/pins')
        if (g().json) return printJson(r.pins)
        process.stdout.write(
          table(
            ['ROOT', 'KIND', 'REPLICAS', 'COMPLETE', 'SINCE'],
            r.pins.map((p) => [
              p.root,
              p.kind,
              p.replicas > 0 ? p.replicas : '',
              p.complete ? 'yes' : 'no',
              fmtTime(p.since),
            ]),
          ),
        )
      }),
    )
}
