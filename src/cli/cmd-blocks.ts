import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { rename, unlink } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import cliProgress from 'cli-progress'
import type { Command } from 'commander'
import type {
  BlockPutReply,
  BlockStatReply,
  DatasetsReply,
  GetProgress,
  GetRequest,
  GetResult,
  LsReply,
  PinReply,
  PinsReply,
  PutProgress,
  PutRequest,
  PutResult,
  UnpinReply,
} from '../api/contract.js'
import {
  action,
  CancelledError,
  client,
  fmtBytes,
  type GlobalOpts,
  printJson,
  shortId,
  table,
  UsageError,
} from './common.js'

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

function getExtra(p: GetProgress): string {
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
        const r = await client(g()).call<BlockPutReply>('POST', '/v1/blocks', { path: resolve(file) })
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
          await client(g()).download(path, process.stdout)
          return
        }
        const out = resolve(opts.output)
        const tmp = join(dirname(out), `.${basename(out)}.mesh-${randomBytes(4).toString('hex')}`)
        const ws = createWriteStream(tmp, { mode: 0o644 })
        try {
          const n = await client(g()).download(path, ws)
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
        const s = await client(g()).call<BlockStatReply>(
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
          `providers: ${s.providers.length === 0 ? '-' : s.providers.map((p) => p.name).join(', ')}`,
        ]
        if (s.dataset !== undefined) {
          lines.push(
            `dataset:   ${s.dataset.name} (${s.dataset.type}): ${s.dataset.files} files, ${s.dataset.dirs} dirs, ${fmtBytes(s.dataset.bytes ?? 0)}`,
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
        let r: PutResult
        try {
          const body: PutRequest = { path: resolve(path), tag: opts.tag, replicas }
          r = await client(g()).stream<PutResult, PutProgress>('/v1/put', body, (p) => {
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
          const ok = r.replication.targets.filter((t) => t.ok).map((t) => t.name)
          const bad = r.replication.targets.filter((t) => !t.ok).map((t) => `${t.name}: ${t.error}`)
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
        let r: GetResult
        try {
          const body: GetRequest = {
            ref,
            dest: dest === undefined ? undefined : resolve(dest),
            cwd: process.cwd(),
          }
          r = await client(g()).stream<GetResult, GetProgress>(
            '/v1/get',
            body,
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
        const from = r.providers.filter((p) => p.bytes > 0).map((p) => `${p.name} ${fmtBytes(p.bytes)}`)
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
        await client(g()).download(`/v1/cat?ref=${encodeURIComponent(ref)}`, process.stdout)
      }),
    )

  program
    .command('ls')
    .description('list the files of a dataset')
    .argument('<ref>', 'a root CID or DATASET:TAG')
    .action(
      action(async (ref: string) => {
        const r = await client(g()).call<LsReply>(
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
            r.entries.map((e) => [
              modeString(e.type, e.type === 'symlink' ? 0o777 : e.mode),
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
        const r = await client(g()).call<DatasetsReply>('GET', '/v1/datasets')
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
        const r = await client(g()).stream<PinReply>('/v1/pin', { ref }, () => {})
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
        const r = await client(g()).call<UnpinReply>('POST', '/v1/unpin', { ref })
        if (g().json) return printJson(r)
        process.stdout.write(`unpinned ${r.root}\n`)
      }),
    )

  program
    .command('pins')
    .description('what this member pins')
    .action(
      action(async () => {
        const r = await client(g()).call<PinsReply>('GET', '/v1/pins')
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
