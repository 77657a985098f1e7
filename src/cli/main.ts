/**
 * The `omega` command line: a thin shell over the programmatic API. `main()` returns an
 * exit code and touches no process globals, so tests call it directly.
 */
import { Command, CommanderError } from 'commander'
import type { AbortOptions } from '../interfaces/index.ts'
import { byErrorName, type OmegaErrorName } from '../errors.ts'
import { defaultHome } from '../identity/lite.ts'
import { validateCommand } from './commands/validate.ts'
import { grantsCommand } from './commands/grants.ts'
import { runCommand } from './commands/run.ts'
import { authoringCommands } from './commands/authoring.ts'
import { planCommand } from './commands/plan.ts'
import { schemaCommand } from './commands/schema.ts'
import { idCommand } from './commands/id.ts'
import { imageCommands } from './commands/image.ts'
import { biomeCommands } from './commands/biome.ts'
import { upCommand } from './commands/up.ts'
import { gaiaCommands, logsCommand, opsCommands, profileCommand, reloadCommand } from './commands/ops.ts'
import { eventCommands, queueCommands } from './commands/events.ts'
import { snapshotCommand, snapshotCommands } from './commands/snapshot.ts'
import { guestCommands } from './commands/guest.ts'
import { tokenCommands } from './commands/token.ts'
import { settleCommands } from './commands/settle.ts'
import type { CliContext } from './context.ts'

export type { CliContext } from './context.ts'

/**
 * Error name → exit code, for every error Omega defines (a missing one does not compile),
 * failed writes for want of space and interruptions. Anything else is 70 (EX_SOFTWARE).
 */
export const EXIT_CODES: Readonly<Record<OmegaErrorName | 'DiskFull' | 'AbortError', number>> = {
  UsageError: 2,
  ManifestError: 3,
  ImageNotFoundError: 4,
  InvalidImageRefError: 2,
  CapabilityDeniedError: 5,
  ComponentLoadError: 6,
  UnsupportedError: 7,
  NodeKeyError: 8,
  ImageStoreError: 9,
  DaemonNotRunningError: 10,
  AdminRequestError: 11,
  TokenError: 11,
  CapabilityTokenError: 14,
  SettlementVerificationError: 15,
  TraceVerificationError: 12,
  SnapshotError: 13,
  DeploymentError: 16,
  QueueError: 17,
  /** not an error class: any write that failed for want of space (ENOSPC, EDQUOT, SQLITE_FULL) */
  DiskFull: 19,
  BuildError: 20,
  PlacementError: 7,
  GuestImageNotFoundError: 4,
  GuestImageError: 6,
  BraneNotFoundError: 4,
  // the mesh: a peer, a dial, a channel or discovery failed
  MeshError: 18,
  MeshDialError: 18,
  MeshChannelError: 18,
  DiscoveryError: 18,
  PeerUnavailableError: 18,
  TargetUnavailableError: 18,
  FrameTooLargeError: 18,
  RemoteError: 18,
  // what a brane's caller gets (HTTP statuses, event retries): plain errors if they reach here
  GuestError: 1,
  MemoryLimitError: 1,
  DeadlineExceededError: 1,
  RetryableEventError: 1,
  RejectedEventError: 1,
  BraneClosedError: 1,
  RouteNotFoundError: 1,
  UnknownTopicError: 1,
  SkippedEventError: 1,
  OverloadedError: 1,
  PayloadTooLargeError: 1,
  UnauthorizedError: 1,
  VmmError: 1,
  OmegaError: 1,
  AbortError: 130
}

export function exitCodeFor (err: unknown): number {
  if (diskFull(err) !== undefined) {
    return EXIT_CODES.DiskFull
  }
  const name = err instanceof Error ? err.name : ''
  // the daemon refused the operation itself: exit as its error would here
  const remote = err as { status?: unknown, remoteName?: unknown } | null
  if (name === 'AdminRequestError' && remote?.status === 422 && typeof remote.remoteName === 'string' && byErrorName(EXIT_CODES, remote.remoteName) !== undefined) {
    return byErrorName(EXIT_CODES, remote.remoteName) ?? 70
  }
  return byErrorName(EXIT_CODES, name) ?? 70
}

export interface MainOptions extends AbortOptions {
  stdout?: { write: (text: string) => unknown }
  stderr?: { write: (text: string) => unknown }
  env?: Readonly<Record<string, string | undefined>>
  cwd?: string
  /** whether stdout is a terminal (colours and progress) */
  isTTY?: boolean
  /** descriptors `omega run` gives the command as its stdin, stdout and stderr */
  stdio?: { stdin: number, stdout: number, stderr: number }
  /** the name the command was run by, for help and messages: `omega` or `ω`. @default 'omega' */
  name?: string
}

/**
 * Run the CLI with `argv` (without the node and script names).
 *
 * @example
 * ```ts
 * const code = await main(['validate', 'examples/hello/omega.toml'])
 * ```
 */
export async function main (argv: readonly string[], options: MainOptions = {}): Promise<number> {
  const stdout = options.stdout ?? { write: () => true }
  const stderr = options.stderr ?? { write: () => true }
  const env = options.env ?? {}
  let exitCode = 0
  const ctx: CliContext = {
    stdout,
    stderr,
    env,
    cwd: options.cwd ?? '.',
    isTTY: options.isTTY ?? false,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.stdio === undefined ? {} : { stdio: options.stdio }),
    home: (explicit) => explicit ?? defaultHome(env),
    setExitCode: (code) => { exitCode = Math.max(exitCode, code) }
  }
  const name = options.name ?? 'omega'
  const program = new Command(name)
    .description('Omega: run a ZGraph manifest of WASI components and microVMs, on one node or a mesh')
    .version('0.1.0', '-V, --version')
    .configureOutput({
      writeOut: (text) => { stdout.write(text) },
      writeErr: (text) => { stderr.write(text) }
    })
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .option('--home <dir>', 'Omega data directory: keys, images, cache (default: $OMEGA_HOME or ~/.omega)')
  program.addHelpText('after', `
Exit codes: 0 ok, 1 error, 2 usage, 3 invalid manifest, 4 image, guest image or brane not found, 5 capability denied,
6 component load failure, 7 unsupported on this node, 8 node key unusable, 9 image store failure, 10 no daemon running,
11 admin request refused, 12 trace record invalid, 13 snapshot refused, 14 capability token refused,
15 settlement receipts invalid, 16 deployment refused, 17 event queue damaged, 18 mesh or peer unavailable,
19 no space left on the device, 20 brane project did not build, 130 interrupted.

Examples:
  $ omega validate examples/seeds/*.toml
  $ omega plan examples/seeds/biome-pipeline.toml
  $ omega up examples/hello/omega.toml --port 8080
  $ omega run tool.wasm --dir ./data::/data --env LANG -- /data/input.txt`)

  for (const register of [validateCommand, grantsCommand, runCommand, authoringCommands, planCommand, schemaCommand, upCommand, opsCommands, logsCommand, profileCommand, reloadCommand, eventCommands, queueCommands, snapshotCommands, idCommand, imageCommands, guestCommands, tokenCommands, settleCommands, biomeCommands]) {
    register(program, ctx)
  }
  gaiaCommands(program, ctx, snapshotCommand)

  try {
    await program.parseAsync([...argv], { from: 'user' })
    return exitCode
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with code 0; usage errors were already printed
      return err.exitCode === 0 ? 0 : EXIT_CODES.UsageError
    }
    const full = diskFull(err)
    const message = full !== undefined ? full : err instanceof Error ? err.message : String(err)
    stderr.write(`${name}: ${message}\n`)
    return exitCodeFor(err)
  }
}

/** What to say of a write that failed for want of space (a file or SQLite), else undefined */
function diskFull (err: unknown): string | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL') {
      const path = (e as { path?: unknown }).path
      return `No space left on the device${typeof path === 'string' ? ` (writing ${path})` : ''}: free some space (or use another --home) and start again; nothing stored was lost (${e.message})`
    }
  }
  return undefined
}
