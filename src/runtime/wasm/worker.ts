/**
 * Worker thread entry of an HTTP brane: imports the transpiled component, keeps a
 * pool of instances by the brane's lifecycle (pre-warmed before `ready` is posted,
 * refilled in the background after each request), and serves one request at a time:
 * acquire an instance, call its `wasi:http/incoming-handler`, post the buffered
 * response with its accounting. A guest that spins blocks only this thread, and the
 * main thread terminates it at the deadline.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { Failure, InstanceFactory, InstancePool, RequestOutput, type GuestInstance } from './instance.ts'
import type { FromWorker, HttpRequest, LogStream, ToWorker, WorkerInit, WorkerTiming } from './protocol.ts'

const port = parentPort
if (port === null) {
  throw new Error('worker.ts must run in a worker thread')
}
const init = workerData as WorkerInit

// jco's glue checks `process.env.JCO_DEBUG` on every host call (~130 sites; 40% of a
// warm call in a profile): Node's env object answers through an interceptor at
// ~150 ns a read. The worker's env is the empty one the brane gave it and nothing
// here writes to it: a frozen plain copy reads ~10x faster.
Object.defineProperty(process, 'env', { value: Object.freeze({ ...process.env }), writable: false, configurable: true, enumerable: true })
const factory = await InstanceFactory.create(init)
const pool = new InstancePool(factory, { lifecycle: init.lifecycle, prewarm: init.prewarm })

// Log lines go out in batches: one message per line would let a chatty guest flood
// the main thread; a batch leaves at 256 lines or 64 KiB, and before each answer.
const LOG_BATCH_LINES = 256
const LOG_BATCH_CHARS = 64 * 1024
let logBatch: Array<[LogStream, string]> = []
let logChars = 0

function post (message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(message, transfer)
}

function log (stream: LogStream, line: string): void {
  logBatch.push([stream, line])
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

async function serve (id: number, request: HttpRequest): Promise<void> {
  const start = performance.now()
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
      // time is the estimate
      cpuMs: end - start,
      memBytes: instance?.memBytes ?? 0
    }
  }
  try {
    const taken = await pool.acquire()
    instance = taken.instance
    cold = taken.cold
    pooled = instance.uses > 0
    instance.output = output
    acquired = performance.now()
    const answer = factory.serve(instance, request)
    outcome = { type: 'response', id, response: answer, timing: timing() }
    transfer = [answer.body.buffer as ArrayBuffer]
    pool.release(instance, true)
  } catch (err) {
    const failure = factory.classify(err, instance)
    outcome = { type: 'error', id, name: failure.kind, message: failure.message, timing: timing() }
    if (instance !== undefined) {
      pool.release(instance, false)
    }
  }
  // the instance is done: its last log lines go out before its answer
  output.end()
  flushLog()
  post(outcome, transfer)
  pool.refillSoon(warn)
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

port.on('message', (message: ToWorker) => {
  if (message.type === 'request') {
    // handled one at a time: the main thread sends the next request after the answer
    serve(message.id, message.request).catch(crash)
  }
})
// a spare is only useful warm: fill before announcing readiness. A component that
// cannot be instantiated at all still starts, and each request reports why.
try {
  await pool.fill()
} catch (err) {
  warn(err)
}
post({ type: 'ready' })
