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

/** Something that serves HTTP requests for one brane */
export interface HttpHandler {
  handle: (request: BraneHttpRequest, options?: AbortOptions) => Promise<BraneHttpResponse>
}

/** An event as a brane receives it (omega:brane/types.event) */
export interface BraneEvent {
  /** `topic:b3:<hash prefix>`, unique per emit: the guest's idempotency key */
  readonly id: string
  readonly topic: string
  readonly payload: Uint8Array
  /** the brane that emitted it */
  readonly source: string
  /** shared by every event caused by the same first emit */
  readonly traceId: string
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
