// Preloaded into the bench's agents (NODE_OPTIONS=--import, since --cpu-prof is not allowed in
// NODE_OPTIONS) when MESH_BENCH_PROF=DIR: a CPU profile of the whole run, written to
// DIR/agent-[<name>-]<pid>-<thread>.cpuprofile when the process is told to stop (SIGTERM or exit;
// a SIGKILL leaves none).
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { join } from 'node:path'
import { threadId } from 'node:worker_threads'

const dir = process.env.MESH_BENCH_PROF
// only `mesh agent`: the CLI commands a bench runs beside it (init, invite, members) inherit the
// same environment in a netns lab
const agent = process.argv.includes('agent')
const nameAt = process.argv.indexOf('--name')
const name = nameAt > 0 ? `${process.argv[nameAt + 1]}-` : ''
if (dir !== undefined && agent) {
  const session = new Session()
  session.connect()
  session.post('Profiler.enable')
  session.post('Profiler.setSamplingInterval', { interval: 500 })
  session.post('Profiler.start')
  let written = false
  // an in-process session answers synchronously, so this completes before the exit; at SIGTERM
  // already, since the bench kills an agent that takes long to stop
  const write = () => {
    if (written) return
    written = true
    session.post('Profiler.stop', (err, res) => {
      if (err === null)
        writeFileSync(
          join(dir, `agent-${name}${process.pid}-${threadId}.cpuprofile`),
          JSON.stringify(res.profile),
        )
    })
  }
  process.on('SIGTERM', write)
  process.on('exit', write)
}
