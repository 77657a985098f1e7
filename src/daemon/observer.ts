/**
 * Watches every request a brane serves: one `REQ … RES … END` record in the log book,
 * and the metrics behind `omega profile` and `/metrics`.
 */
import type { AbortOptions, BodyChunks, BraneHttpRequest, BraneHttpResponse, HttpHandler, StreamingHttpRequest, StreamingHttpResponse, Usage } from '../interfaces/index.ts'
import { OmegaError } from '../errors.ts'
import { DeferredRecord, MetricsRegistry, BYTE_BUCKETS, type LogBook, type RecordText, type Summary, type Telemetry, type TelemetrySpan } from '../observe/index.ts'
import type { BraneEvent, EventTarget } from '../dispatch/index.ts'

interface EventRuntime {
  deliver: (event: BraneEvent, options?: AbortOptions) => Promise<{ timing?: object }>
  deliverBatch?: (events: readonly BraneEvent[]) => Promise<Array<PromiseSettledResult<{ timing?: object }>>>
}

/** `traceparent`: the span serving the request (its emits and outgoing requests continue it), while tracing */
type ServeOptions = AbortOptions & { traceparent?: string }

interface Runtime {
  handle: (request: BraneHttpRequest, options?: ServeOptions) => Promise<BraneHttpResponse & { timing?: object }>
  /** serves with bodies that stream, when the runtime can */
  stream?: (request: StreamingHttpRequest, options?: ServeOptions) => Promise<StreamingHttpResponse & { timing?: object }>
  close: () => Promise<void>
}

export interface BraneProfile {
  readonly brane: string
  readonly requests: number
  readonly errors: number
  /** requests per second over the last `windowSeconds` */
  readonly reqPerSec: number
  readonly windowSeconds: number
  readonly total?: Summary
  readonly cold?: Summary
  readonly exec?: Summary
  readonly cpu?: Summary
  readonly mem?: Summary
}

export type { Usage }

const RATE_WINDOW_MS = 10_000
const RECENT = 8192
/** instances remembered per brane (the most recently started) */
const INSTANCES = 32

/** One instance of a brane, as the requests and deliveries it served tell */
export interface InstanceRow {
  /** `fetch.034` */
  readonly id: string
  /** ms since the epoch: its first call seen */
  readonly since: number
  /** ms since the epoch: its latest call */
  readonly last: number
  readonly served: number
}

export class RequestObserver {
  readonly logBook: LogBook
  readonly metrics = new MetricsRegistry()
  readonly #requests = this.metrics.counter('omega_requests_total', 'Requests served, by brane and status')
  readonly #errors = this.metrics.counter('omega_request_errors_total', 'Requests that failed before a response, by brane and error')
  readonly #events = this.metrics.counter('omega_events_total', 'Event deliveries handled, by brane and outcome')
  readonly #total = this.metrics.histogram('omega_request_duration_ms', 'Time from routing to response, ms')
  readonly #cold = this.metrics.histogram('omega_instantiate_ms', 'Instantiation time of instances created for a request (cold starts), ms')
  readonly #exec = this.metrics.histogram('omega_exec_ms', 'Guest execution time, ms')
  readonly #cpu = this.metrics.histogram('omega_cpu_ms', 'Guest CPU time, ms')
  readonly #mem = this.metrics.histogram('omega_memory_bytes', 'Linear memory after a request, bytes', BYTE_BUCKETS)
  readonly #recent = new Map<string, { times: Float64Array, next: number }>()
  readonly #labelCache = new Map<string, Readonly<Record<string, string>>>()
  readonly #instances = new Map<string, Map<string, { since: number, last: number, served: number }>>()
  /** Told what every request and event delivery used (settlement metering); off when unset */
  meter: ((usage: Usage) => void) | undefined
  /**
   * Opens a span per request and per delivery (OpenTelemetry export); off when unset, and
   * then no span is made
   */
  telemetry: Telemetry | undefined

  constructor (logBook: LogBook) {
    this.logBook = logBook
  }

  /**
   * A handler for `brane` that serves through `runtime` and records every request; a
   * streamed response is recorded when its body ends (or fails half-way). `bodyMax` is
   * the brane's `body_max`, for the gateway to refuse larger request bodies.
   */
  wrap (brane: string, runtime: Runtime, bodyMax?: number): HttpHandler & { close: () => Promise<void> } {
    const stream = runtime.stream
    return {
      handle: async (request: BraneHttpRequest, options: AbortOptions = {}): Promise<BraneHttpResponse> => {
        const start = performance.now()
        const span = this.telemetry?.request(brane, request)
        try {
          const response = await runtime.handle(request, span === undefined ? options : { ...options, traceparent: span.traceparent })
          this.#served(brane, request, start, response.status, request.body.byteLength, response.body.byteLength, response.timing, span)
          return response
        } catch (err) {
          this.#refused(brane, request, start, request.body.byteLength, err, span)
          throw err
        }
      },
      ...(stream === undefined
        ? {}
        : {
            stream: async (request: StreamingHttpRequest, options: AbortOptions = {}): Promise<StreamingHttpResponse> => {
              const start = performance.now()
              const span = this.telemetry?.request(brane, request)
              const read = { bytes: 0 }
              let unread: unknown
              const counted = request.body instanceof Uint8Array
                ? request
                : { ...request, body: counting(request.body, read, (err, left) => { unread = left ? undefined : err }) }
              const bytesIn = (): number => request.body instanceof Uint8Array ? request.body.byteLength : read.bytes
              let response: StreamingHttpResponse & { timing?: object }
              try {
                response = await stream.call(runtime, counted, span === undefined ? options : { ...options, traceparent: span.traceparent })
              } catch (err) {
                this.#refused(brane, request, start, bytesIn(), err, span)
                throw err
              }
              const { body } = response
              if (body instanceof Uint8Array) {
                this.#served(brane, request, start, response.status, bytesIn(), body.byteLength, response.timing, span)
                return response
              }
              const written = { bytes: 0 }
              return {
                ...response,
                body: counting(body, written, (err) => {
                  err ??= unread // the request failed half-way (its body went past its limit, or its client left)
                  if (err === undefined) {
                    this.#served(brane, request, start, response.status, bytesIn(), written.bytes, (body as { timing?: object }).timing, span)
                  } else {
                    this.#refused(brane, request, start, bytesIn(), err, span)
                  }
                })
              }
            }
          }),
      ...(bodyMax === undefined ? {} : { bodyMax }),
      close: async (): Promise<void> => { await runtime.close() }
    }
  }

  #served (brane: string, request: Pick<BraneHttpRequest, 'method' | 'pathWithQuery'>, start: number, status: number, bytesIn: number, bytesOut: number, responseTiming: object | undefined, span: TelemetrySpan | undefined): void {
    span?.end(status)
    const path = request.pathWithQuery
    const totalMs = performance.now() - start
    const timing = (responseTiming ?? {}) as Readonly<Record<string, unknown>>
    this.#record(brane, status, totalMs, timing)
    this.meter?.(usage(brane, 'request', totalMs, timing, bytesIn, bytesOut, true))
    this.logBook.append(new RequestRecord(brane, status >= 500 ? 'warn' : 'info', request.method, path, status, bytesOut, totalMs, timing))
  }

  #refused (brane: string, request: Pick<BraneHttpRequest, 'method' | 'pathWithQuery'>, start: number, bytesIn: number, err: unknown, span: TelemetrySpan | undefined): void {
    span?.end(undefined, err)
    const path = request.pathWithQuery
    const name = err instanceof Error ? err.name : 'Error'
    const message = err instanceof Error ? err.message : String(err)
    const totalMs = performance.now() - start
    this.#errors.inc({ brane, error: name })
    this.meter?.(usage(brane, 'request', totalMs, {}, bytesIn, 0, false))
    this.#tick(brane)
    this.logBook.append({
      brane,
      kind: 'request',
      level: 'error',
      message: `REQ ${request.method} ${path} ERR ${name}: ${message} END total=${ms(totalMs)}`,
      fields: { method: request.method, path, error: name, totalMs: round(totalMs) }
    })
  }

  /**
   * An event target for `brane` that delivers through `runtime` and records every
   * delivery; batches too when the runtime takes them (a skipped event is not recorded:
   * it was never started and comes again)
   */
  wrapEvents (brane: string, runtime: EventRuntime): EventTarget {
    const deliverBatch = runtime.deliverBatch
    return {
      deliver: async (event: BraneEvent, options: AbortOptions = {}): Promise<void> => {
        const start = performance.now()
        const span = this.telemetry?.delivery(brane, event)
        try {
          // the brane's emits and outgoing requests continue the delivery's span
          const { timing = {} } = await runtime.deliver(span === undefined ? event : { ...event, traceparent: span.traceparent }, options)
          span?.end()
          this.#delivered(brane, event, start, timing)
        } catch (err) {
          span?.end(undefined, err)
          this.#failed(brane, event, start, err)
          throw err
        }
      },
      ...(deliverBatch === undefined
        ? {}
        : {
            deliverBatch: async (events: readonly BraneEvent[]): Promise<Array<PromiseSettledResult<void>>> => {
              const start = performance.now()
              const telemetry = this.telemetry
              const spans = telemetry === undefined ? undefined : events.map((event) => telemetry.delivery(brane, event))
              const results = await deliverBatch.call(runtime, spans === undefined ? events : events.map((event, i) => ({ ...event, traceparent: (spans[i] as TelemetrySpan).traceparent })))
              return results.map((result, i) => {
                const event = events[i] as BraneEvent
                const span = spans?.[i]
                if (result.status === 'fulfilled') {
                  span?.end()
                  this.#delivered(brane, event, start, result.value.timing ?? {})
                  return { status: 'fulfilled', value: undefined }
                }
                span?.end(undefined, result.reason)
                if (!(result.reason instanceof Error && result.reason.name === 'SkippedEventError')) {
                  this.#failed(brane, event, start, result.reason)
                }
                return result
              })
            }
          })
    }
  }

  #delivered (brane: string, event: BraneEvent, start: number, timing: object): void {
    const totalMs = performance.now() - start
    const fields: Record<string, unknown> = { ...timing }
    this.#events.inc({ brane, outcome: 'ok' })
    this.#record(brane, undefined, totalMs, fields)
    this.meter?.(usage(brane, 'event', totalMs, fields, event.payload.byteLength, 0, true))
    this.logBook.append(new DeliveryRecord(brane, event, totalMs, fields))
  }

  #failed (brane: string, event: BraneEvent, start: number, err: unknown): void {
    const name = err instanceof Error ? err.name : 'Error'
    const message = err instanceof Error ? err.message : String(err)
    this.#events.inc({ brane, outcome: name })
    this.meter?.(usage(brane, 'event', performance.now() - start, {}, event.payload.byteLength, 0, false))
    this.#tick(brane)
    this.logBook.append({ brane, kind: 'request', level: 'error', message: `${eventLine(brane, event)} ERR ${name}: ${message}`, fields: { event: event.id, topic: event.topic, source: event.source, attempt: event.attempt, error: name } })
  }

  /** P50/P99 of cold, exec, cpu, mem and the request rate of one brane */
  profile (brane: string): BraneProfile {
    const labels = { brane }
    const requests = this.#requests.sum(labels) + this.#events.sum(labels)
    const errors = this.#errors.sum(labels) + this.#events.sum(labels) - this.#events.sum({ brane, outcome: 'ok' })
    const recent = this.#recent.get(brane)
    const now = performance.now()
    let inWindow = 0
    if (recent !== undefined) {
      for (const t of recent.times) {
        if (t > 0 && now - t <= RATE_WINDOW_MS) {
          inWindow++
        }
      }
    }
    const parts: Record<string, Summary | undefined> = {
      total: this.#total.summary(labels),
      cold: this.#cold.summary(labels),
      exec: this.#exec.summary(labels),
      cpu: this.#cpu.summary(labels),
      mem: this.#mem.summary(labels)
    }
    return {
      brane,
      requests,
      errors,
      reqPerSec: inWindow / (RATE_WINDOW_MS / 1000),
      windowSeconds: RATE_WINDOW_MS / 1000,
      ...Object.fromEntries(Object.entries(parts).filter(([, v]) => v !== undefined))
    }
  }

  /** The same frozen label objects every time (the metrics cache their keys by identity) */
  #labels (brane: string, status?: number): Readonly<Record<string, string>> {
    const key = status === undefined ? brane : `${brane}\u0000${status}`
    let labels = this.#labelCache.get(key)
    if (labels === undefined) {
      labels = Object.freeze(status === undefined ? { brane } : { brane, status: String(status) })
      this.#labelCache.set(key, labels)
    }
    return labels
  }

  #record (brane: string, status: number | undefined, totalMs: number, timing: Readonly<Record<string, unknown>>): void {
    const labels = this.#labels(brane)
    if (status !== undefined) {
      this.#requests.inc(this.#labels(brane, status))
    }
    this.#total.observe(totalMs, labels)
    const num = (key: string): number | undefined => typeof timing[key] === 'number' ? timing[key] : undefined
    const instantiate = num('instantiateMs')
    if (instantiate !== undefined && timing.cold !== false) {
      this.#cold.observe(instantiate, labels)
    }
    const exec = num('execMs') ?? num('handleMs')
    if (exec !== undefined) {
      this.#exec.observe(exec, labels)
    }
    const cpu = num('cpuMs')
    if (cpu !== undefined) {
      this.#cpu.observe(cpu, labels)
    }
    const mem = num('memBytes')
    if (mem !== undefined) {
      this.#mem.observe(mem, labels)
    }
    if (typeof timing.instance === 'string') {
      this.#instanceServed(brane, timing.instance)
    }
    this.#tick(brane)
  }

  #instanceServed (brane: string, id: string): void {
    let instances = this.#instances.get(brane)
    if (instances === undefined) {
      instances = new Map()
      this.#instances.set(brane, instances)
    }
    const now = Date.now()
    const seen = instances.get(id)
    if (seen !== undefined) {
      seen.last = now
      seen.served++
      return
    }
    instances.set(id, { since: now, last: now, served: 1 })
    if (instances.size > INSTANCES) {
      instances.delete(instances.keys().next().value as string)
    }
  }

  /** The latest instances of `brane` that served calls, newest first */
  instances (brane: string): InstanceRow[] {
    return [...this.#instances.get(brane) ?? []].map(([id, i]) => ({ id, ...i })).reverse()
  }

  #tick (brane: string): void {
    let recent = this.#recent.get(brane)
    if (recent === undefined) {
      recent = { times: new Float64Array(RECENT), next: 0 }
      this.#recent.set(brane, recent)
    }
    recent.times[recent.next] = performance.now()
    recent.next = (recent.next + 1) % RECENT
  }
}

/** One request served, its line made when read */
class RequestRecord extends DeferredRecord {
  readonly #method: string
  readonly #path: string
  readonly #status: number
  readonly #bytes: number
  readonly #totalMs: number
  readonly #timing: Readonly<Record<string, unknown>>

  constructor (brane: string, level: 'info' | 'warn', method: string, path: string, status: number, bytes: number, totalMs: number, timing: Readonly<Record<string, unknown>>) {
    super(brane, 'request', level)
    this.#method = method
    this.#path = path
    this.#status = status
    this.#bytes = bytes
    this.#totalMs = totalMs
    this.#timing = timing
  }

  get size (): number {
    return this.#path.length + 96
  }

  protected text (): RecordText {
    return {
      message: requestLine(this.#method, this.#path, this.#status, this.#bytes, this.#totalMs, this.#timing),
      fields: Object.assign({ method: this.#method, path: this.#path, status: this.#status, bytes: this.#bytes, totalMs: round(this.#totalMs) }, this.#timing)
    }
  }
}

/** One event delivered, its line made when read (of the event it keeps what the line says, never the payload) */
class DeliveryRecord extends DeferredRecord {
  readonly #event: EventNames
  readonly #bytes: number
  readonly #totalMs: number
  readonly #timing: Readonly<Record<string, unknown>>

  constructor (brane: string, event: BraneEvent, totalMs: number, timing: Readonly<Record<string, unknown>>) {
    super(brane, 'request', 'info')
    this.#event = { id: event.id, topic: event.topic, source: event.source, attempt: event.attempt }
    this.#bytes = event.payload.byteLength
    this.#totalMs = totalMs
    this.#timing = timing
  }

  get size (): number {
    return this.#event.id.length + this.#event.topic.length + this.#event.source.length + this.brane.length + 64
  }

  protected text (): RecordText {
    const event = this.#event
    const exec = typeof this.#timing.execMs === 'number' ? ` exec=${ms(this.#timing.execMs)}` : ''
    return {
      message: `${eventLine(this.brane, event)} OK ${this.#bytes}B${exec} total=${ms(this.#totalMs)}`,
      fields: { event: event.id, topic: event.topic, source: event.source, attempt: event.attempt, totalMs: round(this.#totalMs), ...this.#timing }
    }
  }
}

/** What an event's log line names of it */
type EventNames = Pick<BraneEvent, 'id' | 'topic' | 'source' | 'attempt'>

function eventLine (brane: string, event: EventNames): string {
  return `EVT ${event.topic} …${event.id.slice(-12)} ${event.source} → ${brane}${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}`
}

/** `REQ GET /x RES 200 25B cpu=0.41ms END cold=1.30ms exec=0.48ms total=2.10ms pooled✓` */
export function requestLine (method: string, path: string, status: number, bytes: number, totalMs: number, timing: Readonly<Record<string, unknown>>): string {
  const num = (key: string): number | undefined => typeof timing[key] === 'number' ? timing[key] : undefined
  const cpu = num('cpuMs') ?? num('execMs') ?? num('handleMs')
  const exec = num('execMs') ?? num('handleMs')
  const instantiate = num('instantiateMs')
  const cold = typeof timing.cold === 'boolean' ? timing.cold : undefined
  const pooled = typeof timing.pooled === 'boolean' ? timing.pooled : undefined
  const parts = [`REQ ${method} ${path}`, `RES ${status} ${bytes}B${cpu === undefined ? '' : ` cpu=${ms(cpu)}`}`, 'END']
  if (instantiate !== undefined) {
    parts.push(`cold=${cold === false ? '✗' : ms(instantiate)}`)
  }
  if (exec !== undefined) {
    parts.push(`exec=${ms(exec)}`)
  }
  parts.push(`total=${ms(totalMs)}`)
  if (pooled !== undefined) {
    parts.push(`pooled${pooled ? '✓' : '✗'}`)
  }
  return parts.join(' ')
}

function usage (brane: string, kind: Usage['kind'], durationMs: number, timing: Readonly<Record<string, unknown>>, bytesIn: number, bytesOut: number, ok: boolean): Usage {
  const num = (key: string): number | undefined => typeof timing[key] === 'number' ? timing[key] : undefined
  return { brane, kind, cpuMs: num('cpuMs') ?? num('execMs') ?? num('handleMs') ?? durationMs, memBytes: num('memBytes') ?? 0, durationMs, bytesIn, bytesOut, ok }
}

/**
 * `chunks`, counting in `count` the bytes that went through; `settled` hears once how
 * it ended: no error at the end, the error when reading failed, or an error and
 * `left` when the reader stopped early
 */
function counting (chunks: BodyChunks, count: { bytes: number }, settled: (err: unknown, left: boolean) => void): BodyChunks {
  return {
    [Symbol.asyncIterator]: (): AsyncIterator<Uint8Array> => {
      const inner = chunks[Symbol.asyncIterator]()
      let done = false
      const settle = (err: unknown, left = false): void => {
        if (!done) {
          done = true
          settled(err, left)
        }
      }
      return {
        next: async (): Promise<IteratorResult<Uint8Array>> => {
          try {
            const next = await inner.next()
            if (next.done === true) {
              settle(undefined)
            } else {
              count.bytes += next.value.byteLength
            }
            return next
          } catch (err) {
            settle(err)
            throw err
          }
        },
        return: async (): Promise<IteratorResult<Uint8Array>> => {
          settle(new OmegaError('The reader stopped before the end of the body'), true)
          return await inner.return?.() ?? { done: true, value: undefined }
        }
      }
    }
  }
}

function ms (value: number): string {
  return `${value < 10 ? value.toFixed(2) : value.toFixed(1)}ms`
}

function round (value: number): number {
  return Math.round(value * 1000) / 1000
}
