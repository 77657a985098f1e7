/**
 * Worker thread entry of a brane (HTTP or event): imports the transpiled component,
 * keeps a pool of instances by the brane's lifecycle (pre-warmed before `ready` is
 * posted, refilled in the background after each job), and runs its jobs one at a time
 * in the order they came (the main thread keeps a few queued here):
 * acquire an instance, call its `wasi:http/incoming-handler` (a request) or
 * `omega:brane/handler` (an event), post the outcome with its accounting. A guest
 * that spins blocks only this thread, and the main thread terminates it at the
 * deadline. omega:brane/emit blocks this thread until the main thread has the event
 * queued (host/sync-call.ts).
 */
import { parentPort } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { emitError, stateError, type GuestLogLevel, type StateCall, type StateResult } from './host/imports.ts'
import { decodeStateValue, HostCaller } from './host/sync-call.ts'
import { WorkerProfiler, type ToProfiler } from './cpu-profile.ts'
import { Failure, InstanceFactory, InstancePool, RequestOutput, type GuestInstance, type ServeStreams } from './instance.ts'
import { guestWaits, onGuestWait } from './host/waits.ts'
import { traceOutgoing } from './host/net.ts'
import { shim, WitError } from './host/shim.ts'
import type { FromWorker, InstanceState, LogLine, LogStream, ToWorker, WorkerTiming } from './protocol.ts'
// last: a worker started ahead of its brane waits here for its init, every other module loaded
import { init } from './worker-init.ts'

const port = parentPort
if (port === null) {
  throw new Error('worker.ts must run in a worker thread')
}

// jco's glue checks `process.env.JCO_DEBUG` on every host call (~130 sites; 40% of a
// warm call in a profile): Node's env object answers through an interceptor at
// ~150 ns a read. The worker's env is the empty one the brane gave it and nothing
// here writes to it: a frozen plain copy reads ~10x faster.
Object.defineProperty(process, 'env', { value: Object.freeze({ ...process.env }), writable: false, configurable: true, enumerable: true })
const caller = init.hostCalls === undefined ? undefined : new HostCaller(init.hostCalls, (message, transfer) => { post(message, transfer) })
/** the job running now, and when its deadline falls (performance.now() time) */
let current: { readonly id: number, readonly deadline: number } | undefined
const factory = await InstanceFactory.create(init, { emit, state })
// a pooled instance that has grown past 3/4 of mem_max is replaced rather than reused:
// guests that leak (a JS engine's heap, a forgotten handle) never reach the cap mid-request
const pool = new InstancePool(factory, { lifecycle: init.lifecycle, prewarm: init.prewarm, recycleAboveBytes: init.memMaxBytes * 0.75 })

// Log lines go out in batches: one message per line would let a chatty guest flood
// the main thread; a batch leaves at 256 lines or 64 KiB, and before each answer.
const LOG_BATCH_LINES = 256
const LOG_BATCH_CHARS = 64 * 1024
let logBatch: LogLine[] = []
let logChars = 0

function post (message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(message, transfer)
}

function log (stream: LogStream, line: string, level?: GuestLogLevel, instance?: string): void {
  logBatch.push([stream, line, level, instance])
  logChars += line.length
  if (logBatch.length >= LOG_BATCH_LINES || logChars >= LOG_BATCH_CHARS) {
    flushLog()
  }
}

function flushLog (): void {
  if (logBatch.length > 0) {
    post({ type: 'log', lines: logBatch })
    logBatch = []
    logChars = 0
  }
}

/**
 * A guest blocked in emit is stopped at its deadline like a spinning one: the main
 * thread's deadline terminates this worker. This thread waits that long and a grace
 * beyond, so the outcome does not depend on which thread's clock fires first; the grace
 * only matters when the main thread cannot act at all.
 */
const EMIT_GRACE_MS = 2_000

/**
 * omega:brane/emit: checked here (topic, size), then done by the main thread while
 * this thread waits, at most until the job's deadline (and a grace)
 */
function emit (topic: string, payload: Uint8Array): string {
  const topics = init.grants.emit?.topics ?? []
  if (!topics.includes(topic)) {
    throw emitError('unknown-topic', `Brane "${init.brane}" cannot emit "${topic}": no edge in [graph].edges carries it (its topics: ${topics.length === 0 ? 'none' : topics.join(', ')})`)
  }
  if (payload.byteLength > init.maxEmitBytes) {
    throw emitError('too-large', `Brane "${init.brane}" cannot emit ${payload.byteLength} bytes on "${topic}": the limit is ${init.maxEmitBytes} bytes`)
  }
  if (caller === undefined || current === undefined) {
    throw emitError('unavailable', `Brane "${init.brane}" cannot emit outside of a request or event`)
  }
  // lines logged before the emit reach the brane's log before the event exists
  guestWaits()
  flushLog()
  const answer = caller.call(current.id, { op: 'emit', topic, payload }, current.deadline + EMIT_GRACE_MS - performance.now())
  if (answer === undefined) {
    throw emitError('unavailable', `Brane "${init.brane}" cannot emit on "${topic}": the node did not queue the event within the brane's ${init.deadlineMs} ms deadline`)
  }
  if (answer.ok) {
    return answer.value
  }
  throw emitError(answer.error.tag as 'unknown-topic' | 'unavailable' | 'too-large', answer.error.val)
}

/**
 * omega:brane/state: done by the main thread (which holds the replicated documents)
 * while this thread waits, at most until the job's deadline (and a grace)
 */
function state (call: StateCall): StateResult {
  if (caller === undefined || current === undefined) {
    throw stateError(`Brane "${init.brane}" cannot use its state outside of a request or event`)
  }
  guestWaits()
  flushLog()
  const answer = caller.call(current.id, { op: 'state', call }, current.deadline + EMIT_GRACE_MS - performance.now())
  if (answer === undefined) {
    throw stateError(`Brane "${init.brane}": the node did not answer a state ${call.method} within the brane's ${init.deadlineMs} ms deadline`)
  }
  if (!answer.ok) {
    throw stateError(answer.error.val)
  }
  return decodeStateValue(call.method, answer.value)
}

/** A flush starts streaming a response once the guest has run this long (a quick answer leaves whole) */
const STREAM_AFTER_MS = 1
/** Bytes of a streamed response that may be on their way to the client before the guest waits */
const STREAM_WINDOW_BYTES = 1024 * 1024

// wasi:io/streams errors a body stream reports to the guest
const BODY_CLOSED = (): WitError => new WitError({ tag: 'closed' })

/**
 * The streams of request `id`: the rest of its body (when `more`) read from the main
 * thread, and its response sent as it is written once it runs long enough, at most
 * {@link STREAM_WINDOW_BYTES} ahead of the client
 */
function streamsFor (id: number, deadline: number, more: boolean, stream: boolean): ServeStreams {
  const started = performance.now()
  let sent = 0
  let taken = 0
  const ask = (call: { op: 'body-read' } | { op: 'body-wait', until: number }): string => {
    const answer = caller?.call(id, call, deadline + EMIT_GRACE_MS - performance.now())
    if (answer === undefined) {
      throw BODY_CLOSED() // no answer before the deadline: the job is being stopped
    }
    if (!answer.ok) {
      if (answer.error.tag === 'closed') {
        throw BODY_CLOSED()
      }
      throw new WitError({ tag: 'last-operation-failed', val: new (shim.ioError['Error'] as new (msg: string) => object)(answer.error.val) })
    }
    return answer.value
  }
  return {
    ...(more
      ? {
          pull: (): Uint8Array | undefined => {
            guestWaits()
            try {
              const bytes = Buffer.from(ask({ op: 'body-read' }), 'base64')
              return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
            } catch (err) {
              if (err instanceof WitError && (err.payload as { tag: string }).tag === 'closed') {
                return undefined // the end of the body
              }
              throw err
            }
          }
        }
      : {}),
    ...(stream
      ? {
          out: {
            due: () => performance.now() - started >= STREAM_AFTER_MS,
            head: (status, headers) => {
              flushLog()
              post({ type: 'head', id, status, headers })
            },
            chunk: (bytes) => {
              post({ type: 'chunk', id, bytes }, [bytes.buffer as ArrayBuffer])
              sent += bytes.byteLength
              if (sent - taken > STREAM_WINDOW_BYTES) {
                // wait until half the window is free again
                taken = Number(ask({ op: 'body-wait', until: sent - STREAM_WINDOW_BYTES / 2 }))
              }
            }
          }
        }
      : {}),
    bind: (pump) => { onGuestWait(() => { pump(true) }) }
  }
}

async function serve (message: ToWorker): Promise<void> {
  const id = message.id
  const group = message.type === 'event' ? message.group : undefined
  if (group !== undefined && failedGroups.has(group)) {
    // an earlier event of its batch failed: this one is not started (order holds)
    post({ type: 'error', id, name: 'SkippedEventError', message: `Brane "${init.brane}" did not start event "${message.type === 'event' ? message.event.id : ''}": an earlier event of its batch failed`, timing: { cold: false, pooled: false, acquireMs: 0, instantiateMs: 0, execMs: 0, cpuMs: 0, memBytes: 0 } })
    return
  }
  const start = performance.now()
  current = { id, deadline: start + init.deadlineMs }
  const traced = message.type === 'request' || message.type === 'event' ? message.traceparent : undefined
  if (traced !== undefined) {
    traceOutgoing(traced)
  }
  caller?.takeBlockedMs()
  const output = new RequestOutput(log, { maxBytes: init.maxLogBytes, maxLines: init.maxLogLines })
  let instance: GuestInstance | undefined
  let cold = false
  let pooled = false
  let acquired = start
  let outcome: FromWorker
  let transfer: ArrayBuffer[] = []
  const timing = (): WorkerTiming => {
    const end = performance.now()
    return {
      cold,
      pooled,
      acquireMs: acquired - start,
      instantiateMs: cold && instance !== undefined ? instance.instantiateMs : 0,
      execMs: instance === undefined ? 0 : end - acquired,
      // Node 20 has no per-thread CPU clock (process.cpuUsage() covers all threads, and
      // /proc/thread-self/schedstat only advances at scheduler ticks for a running
      // thread): the guest runs synchronously on this dedicated thread, so its wall
      // time is the estimate, less the time it was blocked waiting for an emit
      cpuMs: Math.max(0, end - start - (caller?.takeBlockedMs() ?? 0)),
      memBytes: instance?.memBytes ?? 0,
      ...(instance === undefined ? {} : { instance: instance.id })
    }
  }
  try {
    const taken = await pool.acquire()
    instance = taken.instance
    cold = taken.cold
    pooled = instance.uses > 0
    instance.output = output
    output.instance = instance.id
    acquired = performance.now()
    if (message.type === 'request') {
      const answer = factory.serve(instance, message.request, streamsFor(id, current.deadline, message.more === true, message.stream === true))
      outcome = { type: 'response', id, response: answer, timing: timing() }
      transfer = [answer.body.buffer as ArrayBuffer]
    } else if (message.type === 'snapshot') {
      const state = instance.capture()
      outcome = { type: 'response', id, state, timing: timing() }
      transfer = state.memories.map((bytes) => bytes.buffer as ArrayBuffer)
    } else if (message.type === 'restore') {
      const restored = await restoredInstance(message.state)
      if (restored instanceof Failure) {
        // the running instance keeps its state
        outcome = { type: 'error', id, name: restored.kind, message: restored.message, timing: timing() }
      } else {
        restored.uses = instance.uses
        pool.release(instance, false)
        instance = restored
        outcome = { type: 'response', id, timing: timing() }
      }
    } else {
      const handled = init.command === undefined ? factory.handleEvent(instance, message.event) : factory.runCommand(instance, message.event)
      outcome = handled.ok
        ? { type: 'response', id, timing: timing() }
        : { type: 'error', id, name: handled.name, message: handled.message, timing: timing() }
    }
    // a handle-error (retry, reject) is the guest's answer: the instance is fine; a
    // command's instance has run its main and is never reused
    pool.release(instance, init.command === undefined)
  } catch (err) {
    const failure = factory.classify(err, instance)
    outcome = { type: 'error', id, name: failure.kind, message: failure.message, timing: timing() }
    if (instance !== undefined) {
      pool.release(instance, false)
    }
  }
  current = undefined
  if (traced !== undefined) {
    traceOutgoing(undefined)
  }
  onGuestWait(undefined)
  if (group !== undefined && outcome.type === 'error') {
    failedGroups.add(group)
  }
  // the instance is done: its last log lines go out before its answer
  output.end()
  flushLog()
  post(outcome, transfer)
  pool.refillSoon(warn)
}

/**
 * A fresh instance holding `state`, to take the place of the running one; or why
 * there cannot be one. Fresh, so that its memories can grow to exactly the saved
 * sizes and the host holds no resources the saved memory knows nothing of.
 */
async function restoredInstance (state: InstanceState): Promise<GuestInstance | Failure> {
  let fresh: GuestInstance | undefined
  try {
    fresh = await factory.instantiate()
    fresh.restore(state, `a snapshot of brane "${init.brane}"`)
    return fresh
  } catch (err) {
    if (fresh !== undefined) {
      pool.release(fresh, false)
    }
    return factory.classify(err)
  }
}

function warn (err: unknown): void {
  const failure = err instanceof Failure ? err : factory.classify(err)
  post({ type: 'warn', message: `Cannot pre-warm an instance of brane "${init.brane}": ${failure.message}` })
}

/** serve() reports guest failures itself: anything else is a bug here, so die and be replaced */
function crash (err: unknown): never {
  process.stderr.write(`omega brane worker: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
}

/** Jobs sent and not yet answered; the first is running */
const jobs: ToWorker[] = []
/** batches (event groups) one of whose events failed; a batch arrives whole, so this empties with the queue */
const failedGroups = new Set<number>()

async function drain (): Promise<void> {
  while (jobs.length > 0) {
    await serve(jobs[0] as ToWorker)
    jobs.shift()
  }
  failedGroups.clear()
}

// CPU profiling (cpu-profile.ts) runs beside the jobs: V8 samples from its own thread
const profiler = new WorkerProfiler((message) => { port?.postMessage(message) })
port.on('message', (message: ToWorker | readonly ToWorker[] | ToProfiler) => {
  if (!Array.isArray(message) && WorkerProfiler.accepts(message as ToWorker | ToProfiler)) {
    profiler.handle(message as ToProfiler)
    return
  }
  // the main thread keeps a few jobs queued here (several in one message) so that this
  // thread never waits for the next one: they run one at a time, in the order sent
  const idle = jobs.length === 0
  if (Array.isArray(message)) {
    jobs.push(...message as readonly ToWorker[])
  } else {
    jobs.push(message as ToWorker)
  }
  if (idle) {
    drain().catch(crash)
  }
})

// a spare is only useful warm: one instance before announcing readiness, the rest of
// the pre-warmed set right after (a JS engine's instance takes tens of ms: the first
// request need not wait for the second). A component that cannot be instantiated at
// all still starts, and each request reports why.
try {
  await pool.fill(1)
} catch (err) {
  warn(err)
}
post({ type: 'ready' })
pool.refillSoon(warn)
