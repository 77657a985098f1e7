import { ComponentLoadError } from '../../../errors.ts'
import { importRule, unversioned } from '../link.ts'
import { shim, type ImportInterface } from './shim.ts'
import { MemoryInputStream, type SinkOutputStream } from './streams.ts'

/** Thrown by wasi:cli/exit to unwind the guest; the instance is dead afterwards */
export class GuestExit extends Error {
  readonly ok: boolean
  constructor (ok: boolean) {
    super(`guest called exit (${ok ? 'success' : 'failure'})`)
    this.name = 'GuestExit'
    this.ok = ok
  }
}

/** Per-instance host state the import object is built around */
export interface InstanceHost {
  readonly stdout: SinkOutputStream
  readonly stderr: SinkOutputStream
  /** `wasi:http/types` for this instance (see `httpTypesFor`) */
  readonly httpTypes: ImportInterface
}

type Provider = (host: InstanceHost) => ImportInterface

const EMPTY = new Uint8Array(0)

const PROVIDERS: ReadonlyMap<string, Provider> = new Map<string, Provider>([
  ['wasi:io/error', () => shim.ioError],
  ['wasi:io/poll', () => shim.ioPoll],
  ['wasi:io/streams', () => shim.ioStreams],
  ['wasi:http/types', (host) => host.httpTypes],
  // TODO: wrap with the brane's host allowlist when the manifest carries one
  ['wasi:http/outgoing-handler', () => shim.outgoingHandler],
  ['wasi:cli/stdout', (host) => ({ getStdout: () => host.stdout })],
  ['wasi:cli/stderr', (host) => ({ getStderr: () => host.stderr })],
  ['wasi:cli/stdin', () => ({ getStdin: () => new MemoryInputStream(EMPTY) })],
  ['wasi:cli/exit', () => ({
    exit (status: { tag: string }): never { throw new GuestExit(status.tag === 'ok') },
    exitWithCode (code: number): never { throw new GuestExit(code === 0) }
  })],
  // `env` grants named variables only; the manifest does not name any yet
  ['wasi:cli/environment', () => ({
    getEnvironment: (): Array<[string, string]> => [],
    getArguments: (): string[] => [],
    initialCwd: (): string | undefined => undefined
  })],
  // branes have no terminal: every get-terminal-* answers none
  ['wasi:cli/terminal-input', () => shim.terminalInput],
  ['wasi:cli/terminal-output', () => shim.terminalOutput],
  ['wasi:cli/terminal-stdin', () => ({ getTerminalStdin: () => undefined })],
  ['wasi:cli/terminal-stdout', () => ({ getTerminalStdout: () => undefined })],
  ['wasi:cli/terminal-stderr', () => ({ getTerminalStderr: () => undefined })],
  ['wasi:clocks/monotonic-clock', () => shim.monotonicClock],
  ['wasi:clocks/wall-clock', () => shim.wallClock],
  ['wasi:random/random', () => shim.random],
  ['wasi:random/insecure', () => shim.insecure],
  ['wasi:random/insecure-seed', () => shim.insecureSeed],
  // TODO: fs.tmp is a private preopened directory with a quota; until then the
  // guest gets the filesystem types and no preopens (so it can open nothing)
  ['wasi:filesystem/types', () => shim.filesystemTypes],
  ['wasi:filesystem/preopens', () => ({ getDirectories: (): unknown[] => [] })]
])

/**
 * The import object of one instance: for each required interface, the host
 * implementation, if the brane's grants allow it. Fails closed: an import that is not
 * granted, or that Omega has no implementation for, throws (the main thread checks
 * both before the worker starts, so this is a second line).
 *
 * @param required - the component's imports (versioned or not)
 * @param grants - the brane's capability keys
 * @param host - per-instance state (stdout/stderr sinks, http types)
 */
export function buildImports (
  required: readonly string[], grants: ReadonlySet<string>, host: InstanceHost
): Record<string, ImportInterface> {
  const imports: Record<string, ImportInterface> = {}
  for (const name of required) {
    const iface = unversioned(name)
    const rule = importRule(name)
    const allowed = rule.kind === 'always' || (rule.kind === 'capability' && grants.has(rule.key))
    const provide = allowed ? PROVIDERS.get(iface) : undefined
    if (provide === undefined) {
      throw new ComponentLoadError(`Cannot instantiate component: import "${name}" is not granted or not provided`)
    }
    // jco wants unversioned keys, although its .d.ts files show versions
    imports[iface] = provide(host)
  }
  return imports
}
