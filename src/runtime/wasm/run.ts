/**
 * `omega run FILE.wasm`: a wasi:cli/run command run once, as `wasmtime run` runs it,
 * with nothing ambient: what it may reach is a {@link Grants} object built from flags,
 * checked by the same link rules as a brane's and provided by the same host code.
 */
import { Worker } from 'node:worker_threads'
import { CapabilityDeniedError, ComponentLoadError, DeadlineExceededError, GuestError, MemoryLimitError, RejectedEventError, RetryableEventError, SkippedEventError, SnapshotError } from '../../errors.ts'
import type { Grants } from '../../manifest/index.ts'
import { grantKeys } from './brane-options.ts'
import { checkImports, findUnprovided, linkGrantKeys, unversioned, type CapabilityKey } from './link.ts'
import { withMemoryCap, type LoadedComponent } from './load.ts'
import type { WorkerErrorName, WorkerInit } from './protocol.ts'

/** The host descriptors the command reads and writes */
export interface CommandStdio {
  readonly stdin: number
  readonly stdout: number
  readonly stderr: number
}

/** Options of {@link runCommand} */
export interface RunCommandOptions {
  /** its arguments, the program's name first */
  readonly args: readonly string[]
  /** what it may reach: `env` (its variables), `fs.dirs` (`--dir`), `net.http`, `clock`, `random` */
  readonly grants: Grants
  /** names the command in messages (e.g. the file name) */
  readonly name: string
  readonly stdio: CommandStdio
  /** @default the cap `loaded` was compiled with */
  readonly memMaxBytes?: number
  /** stops it after this long: DeadlineExceededError. @default no deadline */
  readonly deadlineMs?: number
  /** what grants each capability key, for the message of a refusal (e.g. a flag) */
  readonly grantedBy?: (key: CapabilityKey) => string
  /** stops it (the worker is terminated) and rejects with `signal.reason` */
  readonly signal?: AbortSignal
}

/** `workerData` of command-worker.ts */
export type CommandWorkerInit = Pick<WorkerInit, 'brane' | 'entry' | 'modules' | 'imports' | 'grants' | 'handlerExport' | 'maxBodyBytes' | 'memMaxBytes'> & {
  readonly args: readonly string[]
  readonly stdio: CommandStdio
}

/** What command-worker.ts posts, once */
export type FromCommandWorker =
  | { readonly type: 'exit', readonly code: number }
  | { readonly type: 'error', readonly name: WorkerErrorName, readonly message: string }

const ERRORS: Readonly<Record<WorkerErrorName, new (message: string) => Error>> = {
  GuestError, MemoryLimitError, ComponentLoadError, RetryableEventError, RejectedEventError, SnapshotError, SkippedEventError, CapabilityDeniedError
}

/**
 * Runs the `wasi:cli/run` export of `loaded` once, in a worker thread, and resolves
 * with its exit status (0 when run returned ok, 1 when it returned err, the code it
 * gave wasi:cli/exit). Its imports are checked against `grants` first: nothing runs
 * when one is not granted. Its environment interface is always linked (its arguments
 * come through it); its variables are only the `env` grant's.
 *
 * @throws CapabilityDeniedError when an import is not granted (naming what grants it)
 * @throws ComponentLoadError when it is not a command or imports what Omega lacks
 * @throws GuestError, MemoryLimitError when it traps
 * @throws DeadlineExceededError when it runs past `deadlineMs`
 */
export async function runCommand (loaded: LoadedComponent, options: RunCommandOptions): Promise<number> {
  options.signal?.throwIfAborted()
  const run = checkCommand(loaded, options)
  const capped = options.memMaxBytes === undefined ? loaded : await withMemoryCap(loaded, options.memMaxBytes)
  const init: CommandWorkerInit = {
    brane: options.name,
    entry: capped.entry,
    modules: capped.modules,
    imports: capped.imports,
    grants: { ...options.grants, env: options.grants.env ?? {} },
    handlerExport: run,
    maxBodyBytes: 0,
    memMaxBytes: capped.memMaxBytes,
    args: options.args,
    stdio: options.stdio
  }
  const worker = new Worker(new URL('./command-worker.js', import.meta.url), {
    workerData: init,
    name: `omega-run:${options.name}`,
    env: {} // nothing of the host's environment: the guest's is its grant
  })
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = options.deadlineMs === undefined
        ? undefined
        : setTimeout(() => { reject(new DeadlineExceededError(`${options.name} did not exit within its deadline of ${options.deadlineMs ?? 0} ms: it was stopped`)) }, options.deadlineMs)
      const onAbort = (): void => { reject(options.signal?.reason) }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      const done = (): void => {
        clearTimeout(timer)
        options.signal?.removeEventListener('abort', onAbort)
      }
      worker.once('message', (message: FromCommandWorker) => {
        done()
        if (message.type === 'exit') {
          resolve(message.code)
        } else {
          reject(new ERRORS[message.name](message.message))
        }
      })
      worker.once('error', (err) => {
        done()
        reject(new ComponentLoadError(`Cannot run ${options.name}: ${err.message}`, { cause: err }))
      })
      worker.once('exit', (code) => {
        done()
        reject(new ComponentLoadError(`Cannot run ${options.name}: its worker stopped (code ${code}) before it exited`))
      })
    })
  } finally {
    await worker.terminate()
  }
}

/**
 * What {@link runCommand} checks before anything runs: `loaded` is a command, and its
 * imports are granted and provided.
 *
 * @returns its `wasi:cli/run` export
 * @throws CapabilityDeniedError, ComponentLoadError as runCommand does
 */
export function checkCommand (loaded: LoadedComponent, options: Pick<RunCommandOptions, 'name' | 'grants' | 'grantedBy'>): string {
  const run = loaded.exports.find((name) => unversioned(name) === 'wasi:cli/run')
  if (run === undefined) {
    throw new ComponentLoadError(`Cannot run ${options.name}: it does not export wasi:cli/run (it exports ${loaded.exports.join(', ') || 'nothing'}), so it is not a command; serve a component that exports a handler with "omega up"`)
  }
  checkImports(loaded.imports, linkGrantKeys(grantKeys(options.grants), [run]), { brane: options.name, subject: `command "${options.name}"`, ...(options.grantedBy === undefined ? {} : { grantedBy: options.grantedBy }) })
  const unprovided = findUnprovided(loaded.imports)
  if (unprovided.length > 0) {
    throw new ComponentLoadError(`Cannot run ${options.name}: Omega does not provide ${unprovided.map((name) => `"${name}"`).join(', ')}`)
  }
  return run
}
