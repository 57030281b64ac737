#!/usr/bin/env node
import '../shim.js'
import { Command } from 'commander'
import { VERSION } from '../version.js'
import { agentCommand } from './cmd-agent.js'
import { blockCommands } from './cmd-blocks.js'
import { completionCommand } from './cmd-completion.js'
import { doctorCommand } from './cmd-doctor.js'
import { execCommand } from './cmd-exec.js'
import { initCommand } from './cmd-init.js'
import { inviteCommand } from './cmd-invite.js'
import { membersCommand } from './cmd-members.js'
import { monitorCommand } from './cmd-monitor.js'
import { pluginCommands } from './cmd-plugins.js'
import { requestCommands } from './cmd-requests.js'
import { serviceCommands } from './cmd-service.js'
import { statusCommand } from './cmd-status.js'
import { trustCommands } from './cmd-trust.js'
import { tunnelCommands } from './cmd-tunnel.js'
import { uiCommand } from './cmd-ui.js'
import { EXIT } from './common.js'

const program = new Command('mesh')
  .description('a peer-to-peer mesh agent: encrypted overlay, membership, blocks by CID and plugins')
  .version(VERSION)
  .option('--data-dir <dir>', "the agent's data dir (default $MESH_DATA_DIR or ~/.mesh)")
  .option('--json', 'machine-readable output')
  // commander says 'Did you mean ...?' for a near miss; a pointer to the list, not all of it
  .showHelpAfterError('(mesh --help lists every command; mesh COMMAND --help tells more)')
  .exitOverride((err) => {
    // commander's own errors are usage errors; --help and --version are not errors
    if (
      err.code === 'commander.helpDisplayed' ||
      err.code === 'commander.version' ||
      err.code === 'commander.help'
    ) {
      process.exit(EXIT.ok)
    }
    process.exit(EXIT.usage)
  })

initCommand(program)
agentCommand(program)
inviteCommand(program)
statusCommand(program)
doctorCommand(program)
membersCommand(program)
monitorCommand(program)
tunnelCommands(program)
execCommand(program)
trustCommands(program)
blockCommands(program)
pluginCommands(program)
requestCommands(program)
serviceCommands(program)
uiCommand(program)
// last: it reads every command above
completionCommand(program)

// libp2p internals sometimes reject promises nobody awaits (aborted dials, closed
// streams); log them instead of crashing the agent.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`mesh: unhandled rejection: ${(reason as Error)?.stack ?? String(reason)}\n`)
})

await program.parseAsync(process.argv)
