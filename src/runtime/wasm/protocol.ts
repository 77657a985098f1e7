/**
 * Messages between a brane (main thread) and its worker threads. Internal to
 * runtime/wasm, except the request, response, event and timing types.
 */
import type { CoreModule } from './wasm-api.ts'
import type { GuestLogLevel } from './host/brane.ts'
import type { HostCallMessage } from './host/sync-call.ts'
import type { Grants } from '../../manifest/index.ts'
import type { BraneEvent, BraneHttpRequest } from '../../interfaces/index.ts'

/** What every omega:brane/state call answers when the node gave the brane no state service */
export const STATE_UNAVAILABLE = 'replicated state is not available on this node'

/** An HTTP request for a brane, fully buffered */
export type HttpRequest = BraneHttpRequest

/** A brane's answer, fully buffered */
export interface HttpResponse {
  readonly status: number
  readonly headers: Array<[string, string]>
  readonly body: Uint8Array
  /** where the time and memory went */
  readonly timing: RequestTiming
}

/** An event as a brane receives it */
export type BraneEventInput = BraneEvent

/** How instances live: see `BraneOptions.lifecycle` */
export type Lifecycle = 'ephemeral' | 'pooled' | 'pinned'

/** where a line of a brane's log comes from: its stdout, its stderr, or a request it made (outgoing HTTP) */
export type LogStream = 'stdout' | 'stderr' | 'request'

/**
 * Accounting of one request, in milliseconds and bytes. For log lines like
 * `RES 200 cpu=0.4ms END cold=false exec=0.1ms pooled✓`.
 */
export interface RequestTiming {
  /** the instance was instantiated on this request's time (no pre-warmed or reusable one was ready) */
  readonly cold: boolean
  /** the instance served earlier requests (lifecycle `pooled` or `pinned`) */
  readonly pooled: boolean
  /** waiting in the brane's queue on the main thread (for a worker, or for CPU quota) */
  readonly queueMs: number
  /** taking an instance inside the worker: µs when pre-warmed or reused, else the instantiation */
  readonly acquireMs: number
  /** instantiation on this request's time: equals the instantiation when `cold`, else 0 */
  readonly instantiateMs: number
  /** running the guest's handler */
  readonly execMs: number
  /**
   * Best estimate of CPU time: the wall time of acquire + exec on the worker thread,
   * which runs the guest synchronously and nothing else. Over-counts while the guest
   * blocks in outgoing HTTP or the thread is preempted; time blocked waiting for the
   * main thread (emit) is not counted, nor is background pre-warming. This is what
   * the CPU quota charges.
   */
  readonly cpuMs: number
  /** linear memory of the instance after the call, all memories together */
  readonly memBytes: number
  /** the instance that served it, e.g. `fetch.034` (the brane's name and its instance number) */
  readonly instance?: string
}

/** @deprecated use {@link RequestTiming} */
export type ExchangeTiming = RequestTiming

/** `workerData` of a brane worker */
export interface WorkerInit {
  readonly brane: string
  /** what the worker serves: `wasi:http/incoming-handler` requests or `omega:brane/handler` events */
  readonly kind: 'http' | 'event'
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
  /**
   * set when the export is `wasi:cli/run`: each event runs the command once, in a
   * fresh instance; `stdout` says whether its stdout is logged or carries emit records
   */
  readonly command?: { readonly stdout: 'log' | 'emit' }
  readonly maxBodyBytes: number
  readonly lifecycle: Lifecycle
  /** instances kept ready ahead of need, per worker */
  readonly prewarm: number
  /** the cap patched into the modules' memories (for messages) */
  readonly memMaxBytes: number
  /** per request: most bytes and lines of stdout/stderr */
  readonly maxLogBytes: number
  readonly maxLogLines: number
  /** the brane's deadline: a host call waits at most what is left of it */
  readonly deadlineMs: number
  /** most bytes of one emitted payload */
  readonly maxEmitBytes: number
  /** the brane's `[brane.X.config]` table, read through wasi:config/store */
  readonly config: Readonly<Record<string, string>>
  /** this worker's buffer for synchronous host calls (see host/sync-call.ts), set per worker */
  readonly hostCalls?: SharedArrayBuffer
  /** one Int32 shared by the brane's workers: instances are numbered across all of them */
  readonly instanceCounter?: SharedArrayBuffer
}

export type ToWorker =
  /**
   * `more`: the body goes on after `request.body`, read through `body-read` host calls;
   * `stream`: the response may stream (`head`, then `chunk`s, before the job's answer)
   */
  | { readonly type: 'request', readonly id: number, readonly request: HttpRequest, readonly more?: boolean, readonly stream?: boolean, readonly traceparent?: string }
  /**
   * `group`: events of one batch, in order: once one fails, the worker skips the rest.
   * `traceparent` (of a request too): the span the job runs in, sent on the guest's
   * outgoing `wasi:http` requests; set only while OpenTelemetry export is on
   */
  | { readonly type: 'event', readonly id: number, readonly event: BraneEventInput, readonly group?: number, readonly traceparent?: string }
  /** copy the state of the instance the next request would get (answered by `response` with `state`) */
  | { readonly type: 'snapshot', readonly id: number }
  /** replace that instance with a fresh one holding `state` (answered by `response`) */
  | { readonly type: 'restore', readonly id: number, readonly state: InstanceState }

/**
 * What can be saved of an instance between calls: its linear memories and its
 * exported mutable globals. Not what the host keeps for it in JS tables (resources:
 * streams, pollables, fields), nor globals the core modules do not export.
 */
export interface InstanceState {
  /** each linear memory's bytes, in the order the core instances were created */
  readonly memories: readonly Uint8Array[]
  /** the exported mutable globals, in the same order */
  readonly globals: readonly GlobalState[]
}

/** The value of one exported mutable global, in a form JSON keeps exactly */
export interface GlobalState {
  /** `bigint` for an i64 global; `number` for i32, f32 and f64 */
  readonly type: 'number' | 'bigint'
  /** `number`: the float64 bits as 16 hex digits (NaN and -0 survive); `bigint`: decimal */
  readonly value: string
}

/** Error names a worker may report; the brane rebuilds the matching OmegaError */
export type WorkerErrorName = 'GuestError' | 'MemoryLimitError' | 'ComponentLoadError' | 'RetryableEventError' | 'RejectedEventError' | 'SnapshotError' | 'SkippedEventError' | 'CapabilityDeniedError'

/** A log line of the running request or event; `level` is set for omega:brane/log records */
/** a line, its stream, its level (omega:brane/log records) and the instance that wrote it */
export type LogLine = readonly [LogStream, string, GuestLogLevel | undefined, string | undefined]

/** What the worker measured of a request, before the main thread adds queueMs */
export type WorkerTiming = Omit<RequestTiming, 'queueMs'>

export type FromWorker =
  | { readonly type: 'ready' }
  /**
   * done: `response` for an HTTP request, absent for an event handled ok; `state` for a
   * snapshot. A streamed response's `body` is its last bytes, after its `head` and `chunk`s.
   */
  | { readonly type: 'response', readonly id: number, readonly response?: Omit<HttpResponse, 'timing'> & { readonly streamed?: boolean }, readonly state?: InstanceState, readonly timing: WorkerTiming }
  /** a response that streams: its status and headers, before the guest is done */
  | { readonly type: 'head', readonly id: number, readonly status: number, readonly headers: Array<[string, string]> }
  /** the next bytes of a streaming response */
  | { readonly type: 'chunk', readonly id: number, readonly bytes: Uint8Array }
  | { readonly type: 'error', readonly id: number, readonly name: WorkerErrorName, readonly message: string, readonly timing: WorkerTiming }
  /** lines of the running request, in order, batched */
  | { readonly type: 'log', readonly lines: readonly LogLine[] }
  /** a background failure (pre-warming): the worker keeps serving, instantiating on demand */
  | { readonly type: 'warn', readonly message: string }
  /** the guest waits (blocked) for the answer: see host/sync-call.ts */
  | HostCallMessage
