import type { Command } from 'commander'
import type { UiReply } from '../api/contract.js'
import { action, client, type GlobalOpts, printJson } from './common.js'

/** `mesh ui`: have the agent serve its dashboard and print the URL to open (it holds the token). */
export function uiCommand(program: Command): void {
  program
    .command('ui')
    .description(
      'serve the web dashboard from the agent (ui.listen, loopback by default) and print its URL with the access token',
    )
    .action(
      action(async () => {
        const opts = program.opts<GlobalOpts>()
        const { url } = await client(opts).call<UiReply>('POST', '/v1/ui')
        if (opts.json) printJson({ url })
        else
          process.stdout.write(
            `${url}\nOpen it in a browser on this machine. The token in it is a secret: whoever has it reads the cluster.\n`,
          )
      }),
    )
}
