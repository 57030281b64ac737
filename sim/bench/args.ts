// Argument parsing shared by the benchmarks: each flag names a handler that reads its value
// (if it takes one) with next(); an unknown flag is an error, so a typo never runs a long
// benchmark with the defaults.

export type FlagHandlers = Record<string, (next: () => string) => void>

export function parseFlags(argv: string[], handlers: FlagHandlers, usage?: string): void {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const h = Object.hasOwn(handlers, a) ? handlers[a] : undefined
    if (h === undefined) throw new Error(`unknown argument ${a}${usage === undefined ? '' : `: ${usage}`}`)
    h(() => argv[++i] ?? '')
  }
}

/** A positive number, or an error naming the flag. */
export function positive(flag: string, value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number`)
  return n
}

/** A comma-separated list of integers in [min, max]; the ones outside are left out. */
export function intList(value: string, min: number, max: number): number[] {
  return value
    .split(',')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n >= min && n <= max)
}
