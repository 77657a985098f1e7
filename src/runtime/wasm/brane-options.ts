/**
 * The contract of a brane served by worker threads ({@link WorkerBrane}): what it is
 * given (options, log and emit and state hooks), what it runs (work) and what it reports
 * (results, stats, snapshots). The HTTP and event branes take and give these.
 */
import type { GuestLogLevel, StateCall, StateResult } from './host/brane.ts'
import type { BodyReader, ResponseStream } from './body.ts'
import type { BraneEventInput, HttpRequest, HttpResponse, InstanceState, Lifecycle, LogStream, RequestTiming, WorkerInit } from './protocol.ts'
import type { Grants } from '../../manifest/index.ts'

/** Where a brane's log lines go: the stream, the line, its level (omega:brane/log) and the instance that wrote it (`fetch.034`) */
export type BraneLog = (stream: LogStream, line: string, level?: GuestLogLevel, instance?: string) => void

/** Options of {@link BraneOptions.onEmit} */
export interface OnEmitOptions {
  /**
   * the trace of the event being handled; absent for an HTTP request (the emit
   * starts a new trace)
   */
  readonly traceId?: string
  /** the W3C trace context of the span the job runs in (OpenTelemetry export on): the new event's parent span */
  readonly traceparent?: string
  /** aborted when the guest no longer waits (its call hit the deadline or its worker stopped) */
  readonly signal: AbortSignal
}

/**
 * Queues an event emitted by the brane (the daemon passes the dispatcher's `emit`
 * with the brane's name bound). Resolve with the event id once it is durably queued;
 * the guest's `emit` returns only then. Reject with an error named
 * `UnknownTopicError` for a topic no edge carries (the guest sees `unknown-topic`);
 * any other rejection is `unavailable` to the guest.
 */
export type OnEmit = (topic: string, payload: Uint8Array, options: OnEmitOptions) => Promise<string>

/**
 * Does one omega:brane/state call of the brane (the daemon passes its state store with
 * the brane's name bound). Throw to answer `unavailable` with the error's message.
 */
export type OnState = (call: StateCall) => StateResult

/** Options common to {@link HttpBrane.create} and {@link EventBrane.create} */
export interface BraneOptions {
  /** the brane's name in the manifest */
  readonly name: string
  /** the brane's grants, as the plan resolved them (keys and settings) */
  readonly grants: Grants
  /** seeded random and a virtual clock: the same inputs give the same outputs */
  readonly deterministic?: { readonly seed: number }
  /** receives the guest's stdout/stderr, one line at a time, its omega:brane/log records, and anything its worker prints */
  readonly log: BraneLog
  /**
   * does the work of omega:brane/emit (the component imports it and the grants have
   * `emit`): see {@link OnEmit}
   * @default every emit fails with `unavailable`
   */
  readonly onEmit?: OnEmit
  /**
   * does the work of omega:brane/state (the component imports it and the grants have
   * `state`): see {@link OnState}
   * @default every call fails with `unavailable`
   */
  readonly onState?: OnState
  /**
   * Most bytes of one emitted payload; a larger one fails with `too-large` in the guest.
   * @default 16777216 (16 MiB)
   */
  readonly maxEmitBytes?: number
  /** what wasi:config/store answers (`[brane.X.config]`). @default {} */
  readonly config?: Readonly<Record<string, string>>
  /**
   * How instances live (`[brane.X] lifecycle`):
   * - `ephemeral`: a fresh instance per request, taken from a set each worker
   *   instantiates ahead of need and refills in the background;
   * - `pooled`: instances are reused across requests and keep their state; one that
   *   traps or fails is discarded and replaced;
   * - `pinned`: one long-lived instance in one worker; requests are serialized. If
   *   it is stopped (deadline) or fails, a new instance takes over, without the state.
   * @default 'ephemeral'
   */
  readonly lifecycle?: Lifecycle
  /**
   * Instances each worker keeps ready ahead of need.
   * @default 2 for `ephemeral`, 1 otherwise
   */
  readonly prewarm?: number
  /**
   * Most milliseconds one request or event may run in its worker
   * (`limits.deadline`), host calls included; a late one fails with
   * DeadlineExceededError, its worker is terminated, and the warm spare takes its place.
   * @default 30000
   */
  readonly deadlineMs?: number
  /**
   * Cap on the guest's linear memory (`limits.mem_max`), patched into the core
   * modules' memory maximum: past it `memory.grow` fails in the guest.
   * @default the cap `loaded` was compiled with (64 MiB unless loadComponent was told otherwise)
   */
  readonly memMaxBytes?: number
  /**
   * CPU quota in cores (`limits.cpu_quota`), enforced over windows of `cpuWindowMs`
   * by admission control (see {@link CpuThrottle} for the exact semantics).
   * @default Infinity (no throttle)
   */
  readonly cpuQuota?: number
  /** @default 100 */
  readonly cpuWindowMs?: number
  /**
   * Fewest worker threads kept (each runs one request at a time).
   * @default 1
   */
  readonly minWorkers?: number
  /**
   * Most worker threads under load; `pinned` always uses 1.
   * @default os.availableParallelism()
   */
  readonly maxWorkers?: number
  /**
   * A worker above `minWorkers` idle this long is stopped.
   * @default 30000
   */
  readonly idleWorkerMs?: number
  /**
   * Keep one extra worker started and warm, so that a worker lost to the deadline
   * (or the first worker added under load) is replaced without start-up time.
   * @default true
   */
  readonly spare?: boolean
  /**
   * Jobs each worker may hold: the running one and those sent to wait behind it, so
   * that a busy worker starts its next job without a round trip to the main thread. A
   * job is only queued behind one that started less than 20 ms ago; jobs waiting in a
   * worker that hits the deadline or dies go back to the brane's queue (they never ran),
   * each with what is left of its deadline counted from its arrival.
   * 1 sends a job only to an idle worker. The deadline of each job counts from its start.
   * Deep is cheap for reused instances: a worker that finds its next job waiting is never
   * woken for it (a wake-up is most of a small job's cost on a busy machine). Shallow
   * suits `ephemeral`: a worker makes the next fresh instance between two jobs, off the
   * request's time (measured here: 2 → 2 260 req/s, P99 31 ms; 16 → 1 690 req/s, P99 378 ms).
   * @default 16, or 2 for `ephemeral`
   */
  readonly pipeline?: number
  /**
   * Most calls waiting for a worker (or for CPU quota); past it a call is refused at once
   * with OverloadedError (HTTP 503 with Retry-After).
   * @default 10000
   */
  readonly maxQueued?: number
  /**
   * Most bytes of stdout + stderr one request may log; the rest is dropped and one
   * marker line says so.
   * @default 1048576
   */
  readonly maxLogBytes?: number
  /**
   * Most lines one request may log.
   * @default 10000
   */
  readonly maxLogLines?: number
  readonly signal?: AbortSignal
}

/** Options of {@link WorkerBrane.close} */
export interface CloseOptions {
  /** stops waiting for queued and running requests: they fail with BraneClosedError */
  readonly signal?: AbortSignal
}

/** A snapshot of a brane's workers and queue */
export interface BraneStats {
  readonly lifecycle: Lifecycle
  /** workers serving requests, started or starting (not the spare) */
  readonly workers: number
  /** workers running a request now */
  readonly busy: number
  /** workers started and free to take a request now */
  readonly idle: number
  /** whether a warm spare is ready */
  readonly spareReady: boolean
  /** requests waiting for a worker or for CPU quota */
  readonly queued: number
  /** workers stopped at a deadline since the brane started */
  readonly deadlineKills: number
}

/** How a request's bodies stream while the guest runs (see `HttpBrane.stream`) */
export interface RequestStreams {
  /** the rest of the request body, after `request.body`, read as the guest asks */
  readonly rest?: BodyReader
  /** told the status and headers of a response that streams, before its first chunk */
  readonly onHead: (status: number, headers: Array<[string, string]>) => void
  /** where a streaming response's chunks go */
  readonly out: ResponseStream
}

/** What a job hands to a worker: a request or an event */
export type Work =
  | { readonly type: 'request', readonly request: HttpRequest, readonly streams?: RequestStreams }
  | { readonly type: 'event', readonly event: BraneEventInput }
  | { readonly type: 'snapshot' }
  | { readonly type: 'restore', readonly state: InstanceState }

/** A finished job: the HTTP response (absent for an event), and where the time went */
export interface JobResult {
  readonly response?: Omit<HttpResponse, 'timing'>
  /** what a snapshot job copied */
  readonly state?: InstanceState
  readonly timing: RequestTiming
}

/** The state of a pinned brane's instance between calls: see {@link WorkerBrane.snapshot} */
export interface BraneSnapshot extends InstanceState {
  readonly brane: string
  /** the content address (`b3:…`) of the component whose memory this is */
  readonly componentId: string
  readonly lifecycle: Lifecycle
}

/** Options of {@link WorkerBrane.snapshot} and {@link WorkerBrane.restore} */
export interface SnapshotOptions {
  /** stops waiting (a snapshot already running in the worker runs on to its deadline) */
  readonly signal?: AbortSignal
}

/** Options of {@link WorkerBrane.run} */
export interface RunOptions {
  /** what the job does, for messages: `answer GET /x`, `handle event "…"` */
  readonly what: string
  /** the trace the job's emits continue */
  readonly traceId?: string
  /** the W3C trace context of the span the job runs in, while OpenTelemetry export is on */
  readonly traceparent?: string
  readonly signal?: AbortSignal
}

/** What a subclass tells {@link WorkerBrane.prepare} about what it serves */
export interface ServeKind {
  readonly kind: WorkerInit['kind']
  /** the export it calls, unversioned: `wasi:http/incoming-handler`, `omega:brane/handler` */
  readonly handlerInterface: string
  /** for messages: `serve HTTP with`, `deliver events to` */
  readonly verb: string
}

/** Throws a RangeError unless `value` is above 0 */
export function positive (value: number, name: string): number {
  if (!(value > 0)) {
    throw new RangeError(`Cannot create brane: ${name} must be above 0 (got ${value})`)
  }
  return value
}

/** The capability keys a plan's grants hold */
export function grantKeys (grants: Grants): ReadonlySet<string> {
  return new Set(Object.entries(grants).filter(([, value]) => value !== undefined).map(([key]) => key))
}
