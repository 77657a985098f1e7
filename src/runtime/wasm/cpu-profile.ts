/**
 * CPU profiles of a brane's workers. The main thread asks each worker to start V8's
 * sampling profiler (a node:inspector session connected inside the worker profiles
 * that worker's thread), waits, asks it to stop and collects the V8 cpuprofiles.
 * Both messages are handled between jobs, and the profiler samples from its own
 * thread, so requests run as before; a worker that stops meanwhile contributes nothing.
 */
import type { Profiler, Session } from 'node:inspector'
import type { Worker } from 'node:worker_threads'

/** Longest CPU profile of a brane, in milliseconds */
export const MAX_PROFILE_MS = 60_000

/** Messages to a worker about profiling (see {@link WorkerProfiler}) */
export type ToProfiler =
  | { readonly type: 'profile-start', readonly id: number, readonly intervalUs: number }
  | { readonly type: 'profile-stop', readonly id: number }

/** A worker's answer to `profile-stop`: its V8 CPU profile, or why it has none */
export type FromProfiler =
  | { readonly type: 'profile', readonly id: number, readonly profile: Profiler.Profile }
  | { readonly type: 'profile', readonly id: number, readonly error: string }

/** Options of {@link WorkerBrane.profile} */
export interface ProfileOptions {
  /**
   * How long to sample, at most {@link MAX_PROFILE_MS}.
   * @default 5000
   */
  readonly durationMs?: number
  /**
   * V8's sampling interval, in microseconds.
   * @default 1000
   */
  readonly intervalUs?: number
  /** stops sampling early; the call then rejects with the reason */
  readonly signal?: AbortSignal
}

/** One worker's share of a brane's CPU profile */
export interface WorkerCpuProfile {
  /** the worker's `threadId` */
  readonly threadId: number
  /** V8's cpuprofile (nodes, samples, timeDeltas in µs) */
  readonly profile: Profiler.Profile
  /** the sampling interval it was taken with, in microseconds */
  readonly intervalUs: number
}

/** Options of {@link profileWorkers} */
export interface ProfileWorkersOptions extends ProfileOptions {
  /** for messages */
  readonly brane: string
  /** how long a worker may take to answer `profile-stop` (it answers after its running job) */
  readonly answerTimeoutMs: number
  /** a worker that could not profile, and why */
  readonly onError: (message: string) => void
}

/**
 * Profiles `workers` for `durationMs` (main thread side).
 *
 * @throws RangeError for a duration or interval out of bounds
 */
export async function profileWorkers (workers: readonly Worker[], options: ProfileWorkersOptions): Promise<WorkerCpuProfile[]> {
  const signal = options.signal
  signal?.throwIfAborted()
  const durationMs = options.durationMs ?? 5_000
  if (!(durationMs > 0 && durationMs <= MAX_PROFILE_MS)) {
    throw new RangeError(`Cannot profile brane "${options.brane}": the duration must be above 0 and at most ${MAX_PROFILE_MS} ms (got ${durationMs})`)
  }
  const intervalUs = options.intervalUs ?? 1000
  if (!(intervalUs >= 1 && intervalUs <= 1_000_000)) {
    throw new RangeError(`Cannot profile brane "${options.brane}": the sampling interval must be 1 to 1000000 µs (got ${intervalUs})`)
  }
  const id = nextProfileId++
  let stop = (): void => {}
  const stopped = new Promise<void>((resolve) => { stop = resolve })
  const answers = workers.map(async (worker) => collect(worker, id, intervalUs, stopped, options))
  const timer = setTimeout(stop, durationMs)
  signal?.addEventListener('abort', stop, { once: true })
  try {
    const profiles = await Promise.all(answers)
    signal?.throwIfAborted()
    return profiles.filter((p) => p !== undefined)
  } finally {
    clearTimeout(timer)
    signal?.removeEventListener('abort', stop)
  }
}

let nextProfileId = 1

/** One worker's profile; undefined if it stopped or could not profile */
async function collect (worker: Worker, id: number, intervalUs: number, stopped: Promise<void>, options: ProfileWorkersOptions): Promise<WorkerCpuProfile | undefined> {
  const threadId = worker.threadId
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined
    let done = false
    const finish = (result: WorkerCpuProfile | undefined): void => {
      done = true
      clearTimeout(timer)
      worker.off('message', onMessage)
      worker.off('exit', onExit)
      resolve(result)
    }
    const onMessage = (message: { type?: unknown, id?: unknown } & Partial<FromProfiler>): void => {
      if (message.type !== 'profile' || message.id !== id) {
        return
      }
      if ('profile' in message && message.profile !== undefined) {
        finish({ threadId, profile: message.profile, intervalUs })
      } else {
        options.onError(`Cannot profile a worker of brane "${options.brane}": ${'error' in message ? String(message.error) : 'no profile'}`)
        finish(undefined)
      }
    }
    const onExit = (): void => { finish(undefined) }
    worker.on('message', onMessage)
    worker.once('exit', onExit)
    worker.postMessage({ type: 'profile-start', id, intervalUs } satisfies ToProfiler)
    stopped.then(() => {
      if (done) {
        return
      }
      worker.postMessage({ type: 'profile-stop', id } satisfies ToProfiler)
      // a worker answers once its running job is done; one stuck past the deadline is terminated
      timer = setTimeout(() => {
        options.onError(`Cannot profile a worker of brane "${options.brane}": it did not answer within ${options.answerTimeoutMs} ms`)
        finish(undefined)
      }, options.answerTimeoutMs)
    }, () => {})
  })
}

/**
 * The worker side: one node:inspector session per profile, connected to this
 * thread. Answers are posted with `post`.
 */
export class WorkerProfiler {
  readonly #post: (message: FromProfiler) => void
  readonly #running = new Map<number, { session: Promise<Session>, started: Promise<void> }>()

  constructor (post: (message: FromProfiler) => void) {
    this.#post = post
  }

  /** Whether `message` is for the profiler (and not a job) */
  static accepts (message: { readonly type: string }): message is ToProfiler {
    return message.type === 'profile-start' || message.type === 'profile-stop'
  }

  handle (message: ToProfiler): void {
    if (message.type === 'profile-start') {
      // imported on first use: the rest of the worker does not need the inspector
      const session = import('node:inspector').then(({ Session }) => {
        const s = new Session()
        s.connect()
        return s
      })
      const started = session.then(async (s) => {
        await call(s, 'Profiler.enable')
        await call(s, 'Profiler.setSamplingInterval', { interval: message.intervalUs })
        await call(s, 'Profiler.start')
      })
      started.catch(() => {}) // reported on profile-stop
      this.#running.set(message.id, { session, started })
      return
    }
    const running = this.#running.get(message.id)
    this.#running.delete(message.id)
    if (running === undefined) {
      this.#post({ type: 'profile', id: message.id, error: 'the profiler was not started' })
      return
    }
    running.started
      .then(async () => call<{ profile: Profiler.Profile }>(await running.session, 'Profiler.stop'))
      .then(({ profile }) => { this.#post({ type: 'profile', id: message.id, profile }) }, (err: unknown) => {
        this.#post({ type: 'profile', id: message.id, error: err instanceof Error ? err.message : String(err) })
      })
      .finally(() => {
        running.session.then((s) => { s.disconnect() }, () => {})
      })
      .catch(() => {})
  }
}

async function call<T = unknown> (session: Session, method: string, params: object = {}): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    session.post(method, params, (err, result) => {
      if (err === null) {
        resolve(result as T)
      } else {
        reject(err)
      }
    })
  })
}
