/**
 * Contracts shared between modules. No runtime code lives here: implementations depend
 * on these types and never on each other's classes.
 */

/** Every public async method takes these as its last parameter */
export interface AbortOptions {
  signal?: AbortSignal
}

/** A long-lived component with a lifecycle */
export interface Startable {
  start: () => void | Promise<void>
  stop: () => void | Promise<void>
}

/** Structured logging, one logger per component */
export interface Logger {
  debug: (obj: Record<string, unknown>, msg?: string) => void
  info: (obj: Record<string, unknown>, msg?: string) => void
  warn: (obj: Record<string, unknown>, msg?: string) => void
  error: (obj: Record<string, unknown>, msg?: string) => void
  /** whether a call at `level` writes anything (pino's): lets hot paths skip building what would be dropped */
  isLevelEnabled?: (level: string) => boolean
}

export interface ComponentLogger {
  forComponent: (name: string) => Logger
}

/** An HTTP request as a brane sees it (wasi:http/incoming-handler) */
export interface BraneHttpRequest {
  readonly method: string
  /** path and query, e.g. `/api/items?page=2` */
  readonly pathWithQuery: string
  /** `http` or `https` */
  readonly scheme: string
  /** the Host header, e.g. `api.example.com:8080` */
  readonly authority: string
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly body: Uint8Array
}

/** The response a brane produced */
export interface BraneHttpResponse {
  readonly status: number
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly body: Uint8Array
}

/**
 * A body that arrives in pieces: iterate it once. Taking the next piece is what lets
 * the producer go on (back-pressure); leaving the loop early tells it to stop.
 */
export type BodyChunks = AsyncIterable<Uint8Array>

/** A request whose body may still be arriving */
export interface StreamingHttpRequest extends Omit<BraneHttpRequest, 'body'> {
  readonly body: Uint8Array | BodyChunks
}

/** A response whose body may still be being written */
export interface StreamingHttpResponse extends Omit<BraneHttpResponse, 'body'> {
  readonly body: Uint8Array | BodyChunks
}

/** Something that serves HTTP requests for one brane */
export interface HttpHandler {
  handle: (request: BraneHttpRequest, options?: AbortOptions) => Promise<BraneHttpResponse>
  /**
   * The same with bodies that stream both ways, when the handler can: the response
   * resolves once the brane has set its status and headers, and its body follows
   */
  stream?: (request: StreamingHttpRequest, options?: AbortOptions) => Promise<StreamingHttpResponse>
  /** most bytes of a request or response body (`[brane.X.limits] body_max`) */
  readonly bodyMax?: number
}

/** An event as a brane receives it (omega:brane/types.event) */
export interface BraneEvent {
  /** `topic:b3:<emit time><hash prefix>` (32 hex digits), unique per emit: the guest's idempotency key */
  readonly id: string
  readonly topic: string
  readonly payload: Uint8Array
  /** the brane that emitted it */
  readonly source: string
  /** shared by every event caused by the same first emit */
  readonly traceId: string
  /**
   * the W3C trace context of the span that emitted it (`00-<trace id>-<span id>-<flags>`),
   * the parent of its delivery's span; set only while OpenTelemetry export is on
   */
  readonly traceparent?: string
  /** 1 for the first delivery, more for retries */
  readonly attempt: number
}

/** What one request or event delivery used: what the observer measures and settlement meters */
export interface Usage {
  readonly brane: string
  readonly kind: 'request' | 'event'
  /** guest CPU time where the runtime measured it, else execution time */
  readonly cpuMs: number
  /** linear memory after the call, bytes (0 when unknown) */
  readonly memBytes: number
  /** wall time of the call */
  readonly durationMs: number
  readonly bytesIn: number
  readonly bytesOut: number
  readonly ok: boolean
}
