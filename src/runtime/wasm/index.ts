/**
 * runtime/wasm: runs WASI 0.2 components. Load a component (transpiled once per
 * content with jco, cached by BLAKE3), link it against a brane's grants, and serve
 * HTTP requests (`HttpBrane`) or deliver events (`EventBrane`, wit/brane/brane.wit)
 * with it in worker threads.
 *
 * @example
 * ```ts
 * import { HttpBrane, loadComponent } from './runtime/wasm/index.ts'
 *
 * const loaded = await loadComponent(await readFile('examples/hello/hello.wasm'), { cacheDir: '.omega/components' })
 * const brane = await HttpBrane.create(loaded, { name: 'hello', grants: {}, log: (stream, line) => {} })
 * const res = await brane.handle({ method: 'GET', pathWithQuery: '/hi', scheme: 'http',
 *   authority: 'localhost', headers: [], body: new Uint8Array() })
 * new TextDecoder().decode(res.body) // 'hello from omega: /hi\n'
 * await brane.close()
 * ```
 */
export { DEFAULT_MEM_MAX_BYTES, loadComponent, withMemoryCap } from './load.ts'
export type { LoadComponentOptions, LoadedComponent } from './load.ts'
export {
  CAPABILITY_KEYS, PROVIDED_INTERFACES, checkImports, fetchEventReuseWarning, findUngranted, grantsBlock, isCommand, linkGrantKeys, serveKind, findUnprovided, importRule, unversioned
} from './link.ts'
export type { CapabilityKey, CheckImportsOptions, ImportRule, ServeKindOptions, UngrantedImport } from './link.ts'
export { HttpBrane } from './http-brane.ts'
export type { HandleOptions, HttpBraneOptions, HttpBraneStats } from './http-brane.ts'
export { EventBrane } from './event-brane.ts'
export type { Delivered, DeliverOptions, EventBraneOptions } from './event-brane.ts'
export { WorkerBrane } from './worker-brane.ts'
export type { BraneLog, BraneOptions, BraneSnapshot, BraneStats, CloseOptions, OnEmit, OnEmitOptions, OnState, SnapshotOptions } from './worker-brane.ts'
export { MAX_PROFILE_MS } from './cpu-profile.ts'
export type { ProfileOptions, WorkerCpuProfile } from './cpu-profile.ts'
export type { BraneEventInput, ExchangeTiming, GlobalState, HttpRequest, HttpResponse, InstanceState, Lifecycle, LogStream, RequestTiming } from './protocol.ts'
export type { StateCall, StateResult } from './host/brane.ts'
export { STATE_UNAVAILABLE } from './protocol.ts'
export type { EmitError, GuestLogLevel } from './host/brane.ts'
export { HOST_CALL_ANSWER_BYTES } from './host/sync-call.ts'
export { CpuThrottle } from './limits.ts'
export type { CpuThrottleInit } from './limits.ts'
export { capMemoryMax, WASM_PAGE } from './memory-cap.ts'
export { BraneClosedError } from './errors.ts'
export { checkCommand, runCommand } from './run.ts'
export type { CommandStdio, RunCommandOptions } from './run.ts'
