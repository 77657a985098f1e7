/** A job of a worker brane, and the worker slot that runs it (worker-brane.ts) */
import type { Worker } from 'node:worker_threads'
import type { JobResult, Work } from './brane-options.ts'
import type { HostCallJob } from './host-calls.ts'
import type { ToWorker } from './protocol.ts'

export interface Job extends HostCallJob {
  readonly id: number
  readonly what: string
  readonly resolve: (result: JobResult) => void
  readonly reject: (err: unknown) => void
  readonly enqueuedAt: number
  queueMs: number
  startedAt: number
  settled: boolean
  timer: NodeJS.Timeout | undefined
  cleanup: (() => void) | undefined
  /** a job of an ordered batch (see runBatch): once one fails, the rest are not started */
  readonly group: { readonly id: number, failed: boolean } | undefined
  /** its caller's: once aborted, the job is rejected with its reason */
  readonly signal: AbortSignal | undefined
}

/** A job with every field set from the start (one object shape for all jobs) */
export function newJob (id: number, work: Work, what: string, trace: { readonly traceId?: string | undefined, readonly traceparent?: string | undefined }, resolve: Job['resolve'], reject: Job['reject'], group?: Job['group'], signal?: AbortSignal): Job {
  return { id, work, what, traceId: trace.traceId, traceparent: trace.traceparent, resolve, reject, enqueuedAt: performance.now(), queueMs: 0, startedAt: 0, settled: false, timer: undefined, cleanup: undefined, calls: undefined, group, signal }
}

export interface Slot {
  readonly worker: Worker
  /** the worker's host-call buffer */
  readonly hostCalls: SharedArrayBuffer
  role: 'active' | 'spare'
  ready: boolean
  gone: boolean
  /** jobs sent to the worker and not answered, in order: the first is running, the others wait there */
  readonly jobs: Job[]
  /** messages of jobs dispatched to it, sent at the end of the event-loop turn */
  outbox: ToWorker[]
  idleSince: number
  failure: unknown
}
