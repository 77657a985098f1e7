import type { StreamingHttpRequest, StreamingHttpResponse } from '../../interfaces/index.ts'
import { BodyReader, ResponseStream } from './body.ts'
import type { LoadedComponent } from './load.ts'
import type { HttpRequest, HttpResponse, RequestTiming } from './protocol.ts'
import { positive, WorkerBrane, type BraneOptions, type BraneStats, type RequestStreams, type ServeKind } from './worker-brane.ts'

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
  /**
   * abandons the request: rejected with `signal.reason`, at once while it waits for a
   * worker, else when its worker answers (a running guest runs on to its deadline)
   */
  readonly signal?: AbortSignal
  /**
   * the W3C trace context of the span serving the request (OpenTelemetry export on): the
   * parent of the events the guest emits, and sent on its outgoing `wasi:http` requests
   */
  readonly traceparent?: string
}

/** A snapshot of a brane's workers and queue */
export type HttpBraneStats = BraneStats

/** A response whose body may still be coming: see {@link HttpBrane.stream} */
export interface StreamedHttpResponse extends StreamingHttpResponse {
  /** where the time went; for a streamed body, `body.timing` once it has ended */
  readonly timing?: RequestTiming
}

const EMPTY = new Uint8Array(0)

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
  /** most bytes of a request or response body */
  readonly bodyMax: number

  private constructor (loaded: LoadedComponent, options: BraneOptions, bodyMax: number, handlerExport: string) {
    super(loaded, options, { kind: 'http', handlerExport, maxBodyBytes: bodyMax })
    this.bodyMax = bodyMax
  }

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
    const brane = new HttpBrane(prepared.loaded, options, maxBodyBytes, prepared.handlerExport)
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
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.traceparent === undefined ? {} : { traceparent: options.traceparent })
    })
    if (result.response === undefined) {
      throw new TypeError('HTTP worker finished without a response')
    }
    return { ...result.response, timing: result.timing }
  }

  /**
   * Runs one request whose bodies may stream: a body given as chunks is read as the
   * guest reads it (the guest's reads wait for it), and a response that the guest is
   * still writing a while after it set it resolves early, with a {@link ResponseStream}
   * as its body that the worker fills no more than a window ahead of its reader. A
   * response the guest finishes quickly resolves whole, as {@link handle} would.
   * Failures after the head went out end the body's iteration with the error.
   *
   * @throws the errors of {@link handle} when they come before the response's head
   */
  async stream (request: StreamingHttpRequest, options: HandleOptions = {}): Promise<StreamedHttpResponse> {
    const chunks = request.body instanceof Uint8Array ? undefined : request.body
    const rest = chunks === undefined ? undefined : new BodyReader(chunks)
    const out = new ResponseStream()
    return new Promise((resolve, reject) => {
      let headed = false
      const streams: RequestStreams = {
        ...(rest === undefined ? {} : { rest }),
        out,
        onHead: (status, headers) => {
          headed = true
          resolve({ status, headers, body: out })
        }
      }
      const buffered: HttpRequest = { ...request, body: request.body instanceof Uint8Array ? request.body : EMPTY }
      this.run({ type: 'request', request: buffered, streams }, {
        what: `answer ${request.method} ${request.pathWithQuery}`,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        ...(options.traceparent === undefined ? {} : { traceparent: options.traceparent })
      }).then((result) => {
        rest?.close()
        const response = result.response
        if (response === undefined) {
          const err = new TypeError('HTTP worker finished without a response')
          headed ? out.fail(err) : reject(err)
        } else if (headed) {
          out.end(response.body, result.timing)
        } else {
          resolve({ status: response.status, headers: response.headers, body: response.body, timing: result.timing })
        }
      }, (err: unknown) => {
        rest?.close()
        headed ? out.fail(err) : reject(err)
      })
    })
  }
}
