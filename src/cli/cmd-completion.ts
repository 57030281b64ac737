import type { Command } from 'commander'
import { action, UsageError } from './common.js'

/** Every command path with its subcommands and options, read from the program itself. */
function tree(cmd: Command, path: string[] = []): Array<{ path: string[]; words: string[] }> {
  const subs = cmd.commands.filter((c) => c.name() !== 'help')
  const words = [
    ...subs.map((c) => c.name()),
    ...cmd.options.flatMap((o) => [o.long, o.short].filter((x): x is string => x !== undefined)),
    '--help',
  ]
  return [{ path, words }, ...subs.flatMap((c) => tree(c, [...path, c.name()]))]
}

/**
 * A bash completion script: the words after `mesh` pick a command path (options skipped), and
 * the next word is completed from that path's subcommands and options. zsh loads the same
 * function through bashcompinit.
 */
export function bashCompletion(program: Command): string {
  const cases = tree(program)
    .map(({ path, words }) => `    '${path.join(' ')}') words='${[...new Set(words)].join(' ')}' ;;`)
    .join('\n')
  return `# mesh completion for bash: source <(mesh completion bash), or save it in
# /etc/bash_completion.d/mesh. Generated from this mesh's own commands.
_mesh() {
  local cur path="" w i words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in
    -*) ;;
    *) case " $(_mesh_words "$path") " in *" $w "*) path="\${path:+$path }$w" ;; esac ;;
    esac
  done
  words="$(_mesh_words "$path")"
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
_mesh_words() {
  local words=""
  case "$1" in
${cases}
  esac
  printf '%s' "$words"
}
complete -o default -F _mesh mesh
`
}

export function completionCommand(program: Command): void {
  program
    .command('completion')
    .description(
      'print a shell completion script: source <(mesh completion bash), or for zsh: source <(mesh completion zsh)',
    )
    .argument('<shell>', 'bash or zsh')
    .action(
      action(async (shell: string) => {
        if (shell === 'bash') process.stdout.write(bashCompletion(program))
        else if (shell === 'zsh')
          process.stdout.write(
            `# mesh completion for zsh (bash's, through bashcompinit)\nautoload -U +X bashcompinit && bashcompinit\n${bashCompletion(program)}`,
          )
        else throw new UsageError(`no completion for '${shell}': use bash or zsh`)
      }),
    )
}
