/**
 * Messages between an HTTP brane (main thread) and its worker thread. Internal to
 * runtime/wasm.
 */
import type { CoreModule } from './wasm-api.ts'
import type { Grants } from '../../manifest/index.ts'

/** An HTTP request for a brane, fully buffered */
export interface HttpRequest {
  /** e.g. `GET`; any token is passed through */
  readonly method: string
  /** path and query as received, e.g. `/items?id=3` */
  readonly pathWithQuery: string
  /** `http` or `https` */
  readonly scheme: string
  /** host[:port] the client asked for */
  readonly authority: string
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly body: Uint8Array
}

/** A brane's answer, fully buffered */
export interface HttpResponse {
  readonly status: number
  readonly headers: Array<[string, string]>
  readonly body: Uint8Array
  /** where the time went inside the worker */
  readonly timing: ExchangeTiming
}

/** Timings of one exchange, in milliseconds */
export interface ExchangeTiming {
  /** building the import object and instantiating the component */
  readonly instantiateMs: number
  /** running the guest's handler */
  readonly handleMs: number
}

/** `workerData` of a brane worker */
export interface WorkerInit {
  readonly brane: string
  /** path of the transpiled ES module */
  readonly entry: string
  /** compiled core modules by file name (compiled modules can cross threads) */
  readonly modules: ReadonlyMap<string, CoreModule>
  readonly imports: readonly string[]
  /** the brane's grants with their settings (allowlist, quota, resolution, …) */
  readonly grants: Grants
  /** set when `[brane.X.execution] deterministic = true` */
  readonly deterministic?: { readonly seed: number }
  /** the export to call, e.g. `wasi:http/incoming-handler@0.2.12` */
  readonly handlerExport: string
  readonly maxBodyBytes: number
}

export type ToWorker = { readonly type: 'request', readonly id: number, readonly request: HttpRequest }

/** Error names a worker may report; the brane rebuilds the matching OmegaError */
export type WorkerErrorName = 'GuestError' | 'ComponentLoadError'

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'response', readonly id: number, readonly response: HttpResponse }
  | { readonly type: 'error', readonly id: number, readonly name: WorkerErrorName, readonly message: string }
  | { readonly type: 'log', readonly stream: 'stdout' | 'stderr', readonly line: string }
