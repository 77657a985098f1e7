import { ComponentLoadError } from '../../../errors.ts'
import { grantKeys } from '../brane-options.ts'
import type { Grants } from '../../../manifest/index.ts'
import { importRule, isGranted, unversioned } from '../link.ts'
import type { InstanceHost } from './instance.ts'
import { shim, type ImportInterface } from './shim.ts'

export type { InstanceHost, InstanceHostInit, DeniedEvent } from './instance.ts'
export { createInstanceHost, disposeInstanceHost } from './instance.ts'
export { braneTmpDir, defaultTmpRoot, sweepTmpDirs } from './tmp-paths.ts'
export { STATE_UNAVAILABLE } from '../protocol.ts'
export { emitError, stateError, type EmitError, type EmitHook, type GuestLogLevel, type StateCall, type StateHook, type StateResult } from './brane.ts'

/** Thrown by wasi:cli/exit to unwind the guest; the instance is dead afterwards */
export class GuestExit extends Error {
  readonly ok: boolean
  /** the exit code: 0 or 1 for `exit`, the guest's for `exit-with-code` */
  readonly code: number
  constructor (code: number) {
    super(`guest called exit (${code === 0 ? 'success' : `code ${code}`})`)
    this.name = 'GuestExit'
    this.ok = code === 0
    this.code = code
  }
}

// `undefined`: the host has no implementation (its grant is missing)
type Provider = (host: InstanceHost) => ImportInterface | undefined

const PROVIDERS: ReadonlyMap<string, Provider> = new Map<string, Provider>([
  ['wasi:io/error', () => shim.ioError],
  ['wasi:io/poll', () => shim.ioPoll],
  ['wasi:io/streams', () => shim.ioStreams],
  ['wasi:http/types', (host) => host.httpTypes],
  ['wasi:http/outgoing-handler', (host) => host.outgoingHandler],
  ['wasi:cli/stdout', (host) => ({ getStdout: () => host.stdout })],
  ['wasi:cli/stderr', (host) => ({ getStderr: () => host.stderr })],
  ['wasi:cli/stdin', (host) => ({ getStdin: () => host.stdin() })],
  ['wasi:cli/exit', () => ({
    exit (status: { tag: string }): never { throw new GuestExit(status.tag === 'ok' ? 0 : 1) },
    exitWithCode (code: number): never { throw new GuestExit(code) }
  })],
  ['wasi:cli/environment', (host) => host.environment],
  // branes have no terminal: every get-terminal-* answers none
  ['wasi:cli/terminal-input', () => shim.terminalInput],
  ['wasi:cli/terminal-output', () => shim.terminalOutput],
  ['wasi:cli/terminal-stdin', () => ({ getTerminalStdin: () => undefined })],
  ['wasi:cli/terminal-stdout', () => ({ getTerminalStdout: () => undefined })],
  ['wasi:cli/terminal-stderr', () => ({ getTerminalStderr: () => undefined })],
  ['wasi:clocks/monotonic-clock', (host) => host.clocks?.monotonic],
  ['wasi:clocks/wall-clock', (host) => host.clocks?.wall],
  ['wasi:random/random', (host) => host.random?.random],
  ['wasi:random/insecure', (host) => host.random?.insecure],
  ['wasi:random/insecure-seed', (host) => host.random?.insecureSeed],
  // fs.tmp: the instance's private directory, preopened as /tmp and nothing else
  ['wasi:filesystem/types', (host) => host.filesystem?.types],
  ['wasi:filesystem/preopens', (host) => host.filesystem?.preopens],
  // omega:brane (wit/brane/brane.wit); `types` has no functions
  ['wasi:config/store', (host) => host.config],
  ['wasi:logging/logging', (host) => host.wasiLogging],
  ['omega:brane/types', () => ({})],
  ['omega:brane/log', (host) => host.braneLog],
  ['omega:brane/emit', (host) => host.braneEmit],
  ['omega:brane/state', (host) => host.braneState],
  ['wasi:keyvalue/store', (host) => host.keyvalue?.store],
  ['wasi:keyvalue/atomics', (host) => host.keyvalue?.atomics],
  ['wasi:keyvalue/batch', (host) => host.keyvalue?.batch]
])

/**
 * The import object of one instance: for each required interface, the host
 * implementation, if the brane's grants allow it. Fails closed: an import that is not
 * granted, or that Omega (or this host) has no implementation for, throws (the main
 * thread checks both before the worker starts, so this is a second line).
 *
 * @param required - the component's imports (versioned or not)
 * @param grants - the plan's grants (keys with their settings)
 * @param host - per-instance state, from `createInstanceHost` with the same grants
 */
export function buildImports (required: readonly string[], grants: Grants, host: InstanceHost): Record<string, ImportInterface> {
  const keys = grantKeys(grants)
  const imports: Record<string, ImportInterface> = {}
  for (const name of required) {
    const iface = unversioned(name)
    const rule = importRule(name)
    const allowed = rule.kind === 'always' || (rule.kind === 'capability' && isGranted(rule, keys))
    const implementation = allowed ? PROVIDERS.get(iface)?.(host) : undefined
    if (implementation === undefined) {
      throw new ComponentLoadError(`Cannot instantiate component: import "${name}" is not granted or not provided`)
    }
    // jco wants unversioned keys, although its .d.ts files show versions
    imports[iface] = implementation
  }
  return imports
}
