import type { Command } from 'commander'

/** What a command needs from the outside world; `bin.ts` fills it from `process` */
export interface CliContext {
  readonly stdout: { write: (text: string) => unknown }
  readonly stderr: { write: (text: string) => unknown }
  readonly env: Readonly<Record<string, string | undefined>>
  readonly cwd: string
  readonly isTTY: boolean
  readonly signal?: AbortSignal
  /** the process's standard descriptors, which `omega run` hands to the command (absent: it cannot run one) */
  readonly stdio?: { readonly stdin: number, readonly stdout: number, readonly stderr: number }
  /** the data directory: `--home`, else `$OMEGA_HOME`, else `~/.omega` */
  home: (explicit: string | undefined) => string
  /** raise the exit code (the highest wins) */
  setExitCode: (code: number) => void
}

/** The global `--home` option, seen from a subcommand */
export function homeOption (command: Command): string | undefined {
  let current: Command | null = command
  while (current !== null) {
    const home = current.opts<{ home?: string }>().home
    if (home !== undefined) {
      return home
    }
    current = current.parent
  }
  return undefined
}
