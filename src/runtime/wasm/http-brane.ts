import type { LoadedComponent } from './load.ts'
import type { HttpRequest, HttpResponse } from './protocol.ts'
import { positive, WorkerBrane, type BraneOptions, type BraneStats, type ServeKind } from './worker-brane.ts'

export { grantKeys } from './worker-brane.ts'
export type { BraneLog, CloseOptions, OnEmit, OnEmitOptions } from './worker-brane.ts'

/** Options of {@link HttpBrane.create} */
export interface HttpBraneOptions extends BraneOptions {
  /**
   * Most bytes of a response body.
   * @default 16777216
   */
  readonly maxBodyBytes?: number
}

/** Options of {@link HttpBrane.handle} */
export interface HandleOptions {
  /** abandons the request: rejected with `signal.reason` (a running guest runs on to its deadline) */
  readonly signal?: AbortSignal
}

/** A snapshot of a brane's workers and queue */
export type HttpBraneStats = BraneStats

const HTTP: ServeKind = { kind: 'http', handlerInterface: 'wasi:http/incoming-handler', verb: 'serve HTTP with' }

/**
 * Serves HTTP requests with a `wasi:http/incoming-handler` component, in worker
 * threads (see {@link WorkerBrane} for the pool, the deadline and the limits). A
 * component that imports omega:brane/emit (granted by the brane's outgoing edges)
 * emits through `onEmit`, each emit starting a new trace.
 *
 * @example
 * ```ts
 * const loaded = await loadComponent(bytes, { cacheDir })
 * const brane = await HttpBrane.create(loaded, { name: 'hello', grants: {}, log: console.log, lifecycle: 'pooled' })
 * const res = await brane.handle({ method: 'GET', pathWithQuery: '/', scheme: 'http',
 *   authority: 'localhost', headers: [], body: new Uint8Array() })
 * res.timing // { cold: false, pooled: true, queueMs: 0.02, acquireMs: 0.003, execMs: 0.05, cpuMs: 0.06, … }
 * await brane.close()
 * ```
 */
export class HttpBrane extends WorkerBrane {
  /**
   * Links `loaded` against the brane's grants (nothing runs if an import is not
   * granted), applies its memory cap and starts its first worker.
   *
   * @throws CapabilityDeniedError when the component imports what the grants do not allow
   * @throws ComponentLoadError when it imports what Omega does not provide, does not
   * export `wasi:http/incoming-handler`, its memory cannot be capped, or its worker cannot start
   * @throws RangeError for a limit that is not a positive number
   */
  static async create (loaded: LoadedComponent, options: HttpBraneOptions): Promise<HttpBrane> {
    const prepared = await WorkerBrane.prepare(loaded, options, HTTP)
    const maxBodyBytes = positive(options.maxBodyBytes ?? 16 * 1024 * 1024, 'maxBodyBytes')
    const brane = new HttpBrane(prepared.loaded, options, { kind: 'http', handlerExport: prepared.handlerExport, maxBodyBytes })
    await brane.start(options.signal)
    return brane
  }

  /**
   * Runs one request through an instance chosen by the lifecycle.
   *
   * @throws GuestError when the guest traps, fails or answers with an error
   * @throws DeadlineExceededError when it runs past the deadline
   * @throws BraneClosedError when the brane is closing
   */
  async handle (request: HttpRequest, options: HandleOptions = {}): Promise<HttpResponse> {
    const result = await this.run({ type: 'request', request }, {
      what: `answer ${request.method} ${request.pathWithQuery}`,
      ...(options.signal === undefined ? {} : { signal: options.signal })
    })
    if (result.response === undefined) {
      throw new TypeError('HTTP worker finished without a response')
    }
    return { ...result.response, timing: result.timing }
  }
}
