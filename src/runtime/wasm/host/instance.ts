/**
 * The host side of one component instance: what its grants turn into. Everything
 * here is per instance (a fresh allowlist wrapper, tmp directory, clock and random
 * stream); nothing touches preview2-shim's process-wide settings.
 */
import { mkdirSync, rmdirSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { threadId } from 'node:worker_threads'
import type { Grants } from '../../../manifest/index.ts'
import { configInterface, emitError, emitInterface, logInterface, stateInterface, wasiLoggingInterface, type EmitHook, type GuestLogLevel, type StateHook } from './brane.ts'
import { clocksFor } from './clock.ts'
import { keyvalueInterfaces } from './keyvalue.ts'
import { compileAllowlist, outgoingHandlerFor, type DeniedEvent } from './net.ts'
import { randomFor, type RandomInterfaces } from './random.ts'
import type { ImportInterface } from './shim.ts'
import { MemoryInputStream, type SinkOutputStream } from './streams.ts'
import { hostDirInterfaces } from './dirs.ts'
import { braneTmpDir, checkTmpName } from './tmp-paths.ts'
import { TmpDir } from './tmpfs.ts'

export type { DeniedEvent } from './net.ts'

/**
 * What one run of a `wasi:cli/run` command sees besides its grants: its arguments,
 * the variables added to the `env` grant's (an event's `OMEGA_*`, `omega run --env`)
 * and its stdin
 */
export interface Invocation {
  readonly args: readonly string[]
  /** after the `env` grant's variables; a name in both has this value */
  readonly env: ReadonlyArray<readonly [string, string]>
  /** makes the stream get-stdin answers (once per invocation) */
  readonly stdin: () => object
}

const NO_INPUT = new Uint8Array(0)

/** Per-instance host state the import object is built around */
export interface InstanceHost {
  readonly stdout: SinkOutputStream
  readonly stderr: SinkOutputStream
  /** `wasi:http/types` for this instance (see `httpTypesFor`) */
  readonly httpTypes: ImportInterface
  /** `net.http`: the outgoing handler behind the allowlist */
  readonly outgoingHandler?: ImportInterface
  /** the stream wasi:cli/stdin answers: the invocation's, else an empty one */
  readonly stdin: () => object
  /** `fs.tmp`: wasi:filesystem/types and preopens (`/tmp` only); `fs.dirs`: the host directories granted */
  readonly filesystem?: { readonly types: ImportInterface, readonly preopens: ImportInterface }
  /** `clock` */
  readonly clocks?: { readonly monotonic: ImportInterface, readonly wall: ImportInterface }
  /** `random` */
  readonly random?: RandomInterfaces
  /** wasi:cli/environment: the `env` grant's variables (none without it) */
  readonly environment: ImportInterface
  /** omega:brane/log (every brane) */
  readonly braneLog: ImportInterface
  /** wasi:logging/logging (every brane): records to the same log */
  readonly wasiLogging: ImportInterface
  /** wasi:config/store (every brane): its `[brane.X.config]` table */
  readonly config: ImportInterface
  /** `emit` (the brane has outgoing edges): omega:brane/emit */
  readonly braneEmit?: ImportInterface
  /** `state`: omega:brane/state */
  readonly braneState?: ImportInterface
  /** `state`: wasi:keyvalue store, atomics and batch over the same map */
  readonly keyvalue?: { readonly store: ImportInterface, readonly atomics: ImportInterface, readonly batch: ImportInterface }
  /** the instance's tmp directory on the host, when `fs.tmp` is granted */
  readonly tmpDir?: string
  /**
   * Call after each request the instance served: empties a `request`-lifetime tmp
   * directory (the guest keeps its `/tmp` preopen, now empty)
   */
  endRequest: () => void
  /** Call once when the instance is discarded: removes its tmp directory */
  dispose: () => void
}

/** Options of {@link createInstanceHost} */
export interface InstanceHostInit {
  /** the brane's name: its tmp directories live under `<tmpRoot>/<brane>/` */
  readonly brane: string
  /** the plan's grants with their settings */
  readonly grants: Grants
  /** set for `[brane.X.execution] deterministic = true` */
  readonly deterministic?: { readonly seed: number }
  readonly stdout: SinkOutputStream
  readonly stderr: SinkOutputStream
  readonly httpTypes: ImportInterface
  /**
   * where tmp directories are made (see `tmp-paths.ts`)
   * @default join(os.tmpdir(), 'omega-tmp')
   */
  readonly tmpRoot?: string
  /**
   * this instance's directory name under `<tmpRoot>/<brane>/`: must be unique.
   * Start it with a per-worker prefix so that `sweepTmpDirs` can clean up after a
   * terminated worker.
   * @default `<pid>-<threadId>-<counter>-<random>`
   */
  readonly instance?: string
  /** told about every call a grant's policy refused (e.g. a host not in the allowlist) */
  readonly onDenied?: (event: DeniedEvent) => void
  /** told of every outgoing request once its response (or its failure) is known, as a log line */
  readonly onOutgoing?: (line: string) => void
  /**
   * does the work of omega:brane/emit (when `emit` is granted)
   * @default every emit fails with `unavailable`
   */
  readonly emit?: EmitHook
  /**
   * does the work of omega:brane/state (when `state` is granted)
   * @default every call fails with `unavailable`
   */
  readonly state?: StateHook
  /**
   * receives omega:brane/log records
   * @default they are dropped
   */
  readonly log?: (level: GuestLogLevel, message: string) => void
  /** what wasi:config/store answers. @default {} */
  readonly config?: Readonly<Record<string, string>>
  /**
   * the command run the instance is in now (arguments, more variables, stdin)
   * @default none: no arguments, the `env` grant's variables, an empty stdin
   */
  readonly invocation?: () => Invocation | undefined
}

let counter = 0

/**
 * Builds the host of one instance from the brane's grants. Call {@link
 * InstanceHost.endRequest} after each request and {@link disposeInstanceHost} when
 * the instance is discarded.
 *
 * @example
 * ```ts
 * const host = createInstanceHost({ brane: 'api', grants, stdout, stderr, httpTypes: http.types })
 * try {
 *   const imports = buildImports(component.imports, grants, host)
 *   // instantiate, serve one request …
 *   host.endRequest()
 * } finally {
 *   disposeInstanceHost(host)
 * }
 * ```
 * @throws RangeError for an invalid allowlist entry, quota or name
 */
export function createInstanceHost (init: InstanceHostInit): InstanceHost {
  const { grants } = init
  const seed = init.deterministic?.seed
  const onDenied = init.onDenied ?? (() => {})

  const net = grants['net.http']
  const outgoingHandler = net === undefined ? undefined : outgoingHandlerFor(compileAllowlist(net.allowlist), onDenied, init.onOutgoing)
  const clocks = grants.clock === undefined ? undefined : clocksFor(grants.clock.resolution, { virtual: seed !== undefined })
  const random = grants.random === undefined ? undefined : randomFor(seed)
  const env = Object.entries(grants.env ?? {})
  const invocation = init.invocation ?? ((): undefined => undefined)
  const environment: ImportInterface = {
    getEnvironment: (): Array<[string, string]> => {
      const extra = invocation()?.env ?? []
      const names = new Set(extra.map(([name]) => name))
      return [...env.filter(([name]) => !names.has(name)), ...extra].map(([name, value]): [string, string] => [name, value])
    },
    getArguments: (): string[] => [...invocation()?.args ?? []],
    initialCwd: (): string | undefined => undefined
  }
  let input: { of: Invocation | undefined, stream: object } | undefined
  const stdin = (): object => {
    const current = invocation()
    if (input === undefined || input.of !== current) {
      input = { of: current, stream: current === undefined ? new MemoryInputStream(NO_INPUT) : current.stdin() }
    }
    return input.stream
  }

  const emit = init.emit ?? ((): never => { throw emitError('unavailable', `brane "${init.brane}" has no event dispatcher on this node`) })
  const braneEmit = grants.emit === undefined ? undefined : emitInterface(emit)
  const braneState = grants.state === undefined ? undefined : stateInterface(init.state)
  const keyvalue = grants.state === undefined ? undefined : keyvalueInterfaces(init.state)
  const braneLog = logInterface(init.log ?? (() => {}))
  const wasiLogging = wasiLoggingInterface(init.log ?? (() => {}))
  const config = configInterface(init.config ?? {})

  let tmp: TmpDir | undefined
  const fsTmp = grants['fs.tmp']
  if (fsTmp !== undefined) {
    const instance = init.instance ?? `${process.pid}-${threadId}-${++counter}-${randomBytes(4).toString('hex')}`
    checkTmpName('instance', instance)
    const parent = braneTmpDir(init.brane, init.tmpRoot)
    mkdirSync(parent, { recursive: true, mode: 0o700 })
    tmp = TmpDir.create({ path: join(parent, instance), quotaBytes: fsTmp.quotaBytes })
  }
  const lifetime = fsTmp?.lifetime
  const dirs = grants['fs.dirs']
  if (dirs !== undefined && fsTmp !== undefined) {
    tmp?.remove()
    throw new RangeError('Cannot grant both "fs.tmp" and host directories ("fs.dirs") to one instance')
  }
  const filesystem = dirs === undefined ? tmp?.interfaces() : hostDirInterfaces(dirs)

  let disposed = false
  return {
    stdout: init.stdout,
    stderr: init.stderr,
    httpTypes: init.httpTypes,
    ...(outgoingHandler === undefined ? {} : { outgoingHandler }),
    stdin,
    ...(filesystem === undefined ? {} : { filesystem }),
    ...(tmp === undefined ? {} : { tmpDir: tmp.path }),
    ...(clocks === undefined ? {} : { clocks }),
    ...(random === undefined ? {} : { random }),
    environment,
    braneLog,
    wasiLogging,
    config,
    ...(braneEmit === undefined ? {} : { braneEmit }),
    ...(braneState === undefined ? {} : { braneState }),
    ...(keyvalue === undefined ? {} : { keyvalue }),
    endRequest () {
      if (lifetime === 'request' && !disposed) {
        tmp?.clear()
      }
    },
    dispose () {
      if (disposed) {
        return
      }
      disposed = true
      if (tmp !== undefined) {
        tmp.remove()
        // the brane's directory goes too once its last instance is gone
        try {
          rmdirSync(braneTmpDir(init.brane, init.tmpRoot))
        } catch {
          // other instances still have directories there
        }
      }
    }
  }
}

/** Releases what {@link createInstanceHost} made (idempotent) */
export function disposeInstanceHost (host: InstanceHost): void {
  host.dispose()
}
