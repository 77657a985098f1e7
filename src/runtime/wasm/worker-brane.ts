/**
 * The machinery HTTP branes and event branes share: a pool of worker threads (each
 * runs one job at a time), a FIFO queue, the deadline (terminate and replace from a
 * warm spare), the CPU quota, idle retirement, close/drain (its contract: brane-options.ts;
 * host calls: host-calls.ts). {@link HttpBrane} and {@link EventBrane} add what they serve.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { instancePrefix, sweepTmpDirs } from './host/tmp-paths.ts'
import { answerHostCall, hostCallBuffer, type HostCallMessage } from './host/sync-call.ts'
import { HostCalls } from './host-calls.ts'
import type { GuestLogLevel } from './host/brane.ts'
import { ComponentLoadError, DeadlineExceededError, GuestError, OverloadedError, SkippedEventError, SnapshotError } from '../../errors.ts'
import { BraneClosedError, workerError } from './errors.ts'
import { eachLine, untilFirstFailure } from '../../util/index.ts'
import { CpuThrottle } from './limits.ts'
import { profileWorkers, type ProfileOptions, type WorkerCpuProfile } from './cpu-profile.ts'
import { prepareComponent, type LoadedComponent } from './load.ts'
import type { FromWorker, InstanceState, LogStream, ToWorker, WorkerInit } from './protocol.ts'
import { newJob, type Job, type Slot } from './jobs.ts'
import { takeStandbyWorker, WORKER_URL, workerOptions } from './standby.ts'
import { positive, type BraneLog, type BraneOptions, type BraneSnapshot, type BraneStats, type CloseOptions, type JobResult, type RunOptions, type ServeKind, type SnapshotOptions, type Work } from './brane-options.ts'

export type { BraneLog, BraneOptions, BraneSnapshot, BraneStats, CloseOptions, JobResult, OnEmit, OnEmitOptions, OnState, RequestStreams, RunOptions, ServeKind, SnapshotOptions, Work } from './brane-options.ts'
export { grantKeys, positive } from './brane-options.ts'

/** a job is queued behind a running one only while that has run less than this */
const PIPELINE_MAX_AGE_MS = 20
/** worker start-ups that may fail in a row before the brane stops trying */
const MAX_START_FAILURES = 3

/**
 * A brane served by worker threads, so that a spinning or blocked guest stalls
 * neither the caller nor other branes. Jobs wait in one FIFO queue; the brane runs
 * between `minWorkers` and `maxWorkers` workers (one job at a time each), adds one
 * when jobs wait and stops those idle for `idleWorkerMs`. Each worker keeps
 * instances by the lifecycle.
 *
 * Failures: a trap fails that job with GuestError (the brane keeps serving); a late
 * job fails with DeadlineExceededError, its worker is terminated and the warm spare
 * takes its place; a worker that dies is replaced the same way.
 */
export abstract class WorkerBrane {
  readonly #init: WorkerInit
  readonly #componentId: string
  readonly #log: BraneLog
  readonly #deadline: number
  readonly #minWorkers: number
  readonly #maxWorkers: number
  readonly #idleMs: number
  readonly #useSpare: boolean
  readonly #pipeline: number
  readonly #maxQueued: number
  readonly #throttle: CpuThrottle | undefined
  readonly #queue: Job[] = []
  readonly #active = new Set<Slot>()
  #spare: Slot | undefined
  /** a worker started once: replace workers that stop */
  #healthy = false
  #startFailures = 0
  #startup: { resolve: () => void, reject: (err: unknown) => void } | undefined
  #throttleTimer: NodeJS.Timeout | undefined
  #idleTimer: NodeJS.Timeout | undefined
  #deadlineKills = 0
  #nextId = 1
  #closing = false
  #drained: (() => void) | undefined
  #flushing = false
  /** the reason host calls of a finished job are abandoned with */
  #callEnded: BraneClosedError | undefined
  readonly #hostCalls: HostCalls

  protected constructor (loaded: LoadedComponent, options: BraneOptions, serve: { kind: WorkerInit['kind'], handlerExport: string, maxBodyBytes: number, command?: WorkerInit['command'] }) {
    this.#log = options.log
    this.#componentId = loaded.id
    this.#hostCalls = new HostCalls(options.name, options.onEmit, options.onState)
    this.#deadline = positive(options.deadlineMs ?? 30_000, 'deadlineMs')
    const lifecycle = options.lifecycle ?? 'ephemeral'
    const pinned = lifecycle === 'pinned'
    this.#maxWorkers = pinned ? 1 : positive(options.maxWorkers ?? availableParallelism(), 'maxWorkers')
    this.#minWorkers = Math.min(this.#maxWorkers, Math.max(1, options.minWorkers ?? 1))
    this.#idleMs = positive(options.idleWorkerMs ?? 30_000, 'idleWorkerMs')
    this.#useSpare = options.spare ?? true
    this.#pipeline = Math.max(1, Math.floor(options.pipeline ?? (lifecycle === 'ephemeral' ? 2 : 16)))
    this.#maxQueued = positive(options.maxQueued ?? 10_000, 'maxQueued')
    const quota = options.cpuQuota ?? Infinity
    this.#throttle = quota === Infinity ? undefined : new CpuThrottle({ quota, ...(options.cpuWindowMs === undefined ? {} : { windowMs: options.cpuWindowMs }) })
    this.#init = {
      brane: options.name,
      kind: serve.kind,
      entry: loaded.entry,
      modules: loaded.modules,
      imports: loaded.imports,
      grants: options.grants,
      ...(options.deterministic === undefined ? {} : { deterministic: options.deterministic }),
      handlerExport: serve.handlerExport,
      ...(serve.command === undefined ? {} : { command: serve.command }),
      maxBodyBytes: serve.maxBodyBytes,
      lifecycle,
      prewarm: Math.max(0, options.prewarm ?? (lifecycle === 'ephemeral' ? 2 : 1)),
      memMaxBytes: loaded.memMaxBytes,
      maxLogBytes: options.maxLogBytes ?? 1024 * 1024,
      maxLogLines: options.maxLogLines ?? 10_000,
      instanceCounter: new SharedArrayBuffer(4),
      deadlineMs: this.#deadline,
      maxEmitBytes: positive(options.maxEmitBytes ?? 16 * 1024 * 1024, 'maxEmitBytes'),
      config: options.config ?? {}
    }
  }

  /**
   * Links `loaded` against the brane's grants (nothing runs if an import is not
   * granted), checks that it exports what `serve` calls and applies its memory cap.
   *
   * @throws CapabilityDeniedError when the component imports what the grants do not allow
   * @throws ComponentLoadError when it imports what Omega does not provide, does not
   * export the handler, or its memory cannot be capped
   */
  protected static async prepare (loaded: LoadedComponent, options: BraneOptions, serve: ServeKind): Promise<{ loaded: LoadedComponent, handlerExport: string }> {
    return prepareComponent(loaded, options, serve)
  }

  /** the brane's name */
  get name (): string {
    return this.#init.brane
  }

  get stats (): BraneStats {
    let busy = 0
    let idle = 0
    for (const slot of this.#active) {
      busy += slot.jobs.length === 0 ? 0 : 1
      idle += slot.ready && slot.jobs.length === 0 ? 1 : 0
    }
    return {
      lifecycle: this.#init.lifecycle,
      workers: this.#active.size,
      busy,
      idle,
      spareReady: this.#spare?.ready === true,
      queued: this.#queue.length,
      deadlineKills: this.#deadlineKills
    }
  }

  /**
   * Samples the CPU of every started worker (the warm spare too) for
   * `durationMs` with V8's profiler and returns their cpuprofiles (convert them with
   * observe's `cpuProfileToPprof`). Requests are served as usual meanwhile. Workers
   * started during the profile are not sampled; one that stops contributes nothing.
   *
   * @throws RangeError when `durationMs` is not in (0, 60000] or `intervalUs` not in [1, 1000000]
   * @throws BraneClosedError when the brane is closing
   */
  async profile (options: ProfileOptions = {}): Promise<WorkerCpuProfile[]> {
    options.signal?.throwIfAborted()
    if (this.#closing) {
      throw new BraneClosedError(`Brane "${this.name}" is closed`)
    }
    const slots = [...this.#active, ...(this.#spare === undefined ? [] : [this.#spare])].filter((slot) => slot.ready && !slot.gone)
    return profileWorkers(slots.map((slot) => slot.worker), {
      ...options,
      brane: this.name,
      // a worker answers after its running job, which ends by the deadline
      answerTimeoutMs: this.#deadline + 5_000,
      onError: (message) => { this.#emitLog('stderr', `[omega] ${message}`) }
    })
  }

  /**
   * Runs one job through an instance chosen by the lifecycle.
   *
   * @throws GuestError when the guest traps, fails or answers with an error
   * @throws RetryableEventError, RejectedEventError when an event handler returns a handle-error
   * @throws DeadlineExceededError when it runs past the deadline
   * @throws BraneClosedError when the brane is closing
   */
  protected async run (work: Work, options: RunOptions): Promise<JobResult> {
    const signal = options.signal
    signal?.throwIfAborted()
    if (this.#closing) {
      throw new BraneClosedError(`Brane "${this.name}" is closed`)
    }
    if (this.#queue.length >= this.#maxQueued) {
      throw new OverloadedError(`Brane "${this.name}" has ${this.#queue.length} calls waiting for a worker, its limit: try again shortly`)
    }
    return new Promise<JobResult>((resolve, reject) => {
      const job = newJob(this.#nextId++, work, options.what, options, resolve, reject, undefined, signal)
      this.#queue.push(job)
      this.#pump()
      if (this.#queue.at(-1) === job) {
        // still waiting for a worker (most jobs leave at once: no timer, no listener for them)
        this.#waitAtMost(job, this.#deadline)
        if (signal !== undefined) {
          // a job its caller abandons leaves the queue at once; one a worker has is
          // rejected when it answers (it keeps its worker until then, or its deadline)
          const onAbort = (): void => {
            const queued = this.#queue.indexOf(job)
            if (queued !== -1) {
              this.#queue.splice(queued, 1)
              this.#settle(job, undefined, signal.reason)
            }
          }
          signal.addEventListener('abort', onAbort, { once: true })
          job.cleanup = () => { signal.removeEventListener('abort', onAbort) }
        }
      }
    })
  }

  /**
   * Admission control: a job still waiting for a worker (or for CPU quota) after `ms`
   * is answered at once, so that callers queued behind a spinning or overloaded brane
   * are not held for longer than its deadline
   */
  #waitAtMost (job: Job, ms: number): void {
    clearTimeout(job.timer)
    job.timer = setTimeout(() => {
      const queued = this.#queue.indexOf(job)
      if (queued === -1) {
        return // a worker has it
      }
      this.#queue.splice(queued, 1)
      this.#settle(job, undefined, new DeadlineExceededError(`Brane "${this.name}" could not ${job.what}: it waited ${Math.round(performance.now() - job.enqueuedAt)} ms for a worker, past its ${this.#deadline} ms deadline (the brane is overloaded or its workers are stuck)`))
    }, Math.max(0, ms))
  }

  /**
   * Runs `works` in order in one worker, sent together: each is a job of its own (its own
   * deadline, from its own start), and once one fails the worker starts none of the
   * rest, which fail with SkippedEventError. What a failing job reports is what `run`
   * would. Used to deliver several events of one edge per round trip.
   */
  protected async runBatch (works: ReadonlyArray<{ work: Work, what: string, traceId?: string, traceparent?: string }>): Promise<Array<PromiseSettledResult<JobResult>>> {
    if (this.#closing) {
      throw new BraneClosedError(`Brane "${this.name}" is closed`)
    }
    // over its CPU quota, a brane admits jobs one by one as its budget allows
    const throttled = (this.#throttle?.waitMs() ?? 0) > 0
    const slot = throttled ? undefined : this.#idleSlot() ?? this.#grow() ?? this.#leastLoaded()
    if (slot === undefined) {
      // no worker is ready (or no quota): one at a time, stopping at the first failure
      return untilFirstFailure(works.length, async (i) => {
        const { work, what, traceId, traceparent } = works[i] as typeof works[number]
        return this.run(work, { what, ...(traceId === undefined ? {} : { traceId }), ...(traceparent === undefined ? {} : { traceparent }) })
      }, (i) => new SkippedEventError(`Brane "${this.name}" did not ${works[i]?.what ?? 'run'}: an earlier event of its batch failed`))
    }
    const group = { id: this.#nextId, failed: false }
    const promises = works.map(async (w) => new Promise<JobResult>((resolve, reject) => {
      const job = newJob(this.#nextId++, w.work, w.what, w, resolve, reject, group)
      this.#dispatch(slot, job)
    }))
    this.#pump()
    return Promise.allSettled(promises)
  }

  /** The ready worker with the fewest jobs (busy or not) among those `accept` takes */
  #leastLoaded (accept: (slot: Slot) => boolean = () => true): Slot | undefined {
    let best: Slot | undefined
    for (const slot of this.#active) {
      if (slot.ready && accept(slot) && (best === undefined || slot.jobs.length < best.jobs.length)) {
        best = slot
      }
    }
    return best
  }

  /**
   * Copies the state of a pinned brane's instance: its linear memories (bytes) and
   * its exported mutable globals. Queued like a request, so it runs between calls,
   * never during one, within the brane's deadline (past it the worker is stopped like
   * a late request, and the instance with it).
   *
   * Not included, so not restorable: what the host keeps for the instance in JS
   * tables (resources such as streams, pollables, fields and open files), and globals
   * the core modules do not export (e.g. a stack pointer, which is back at its
   * initial value between calls anyway). A guest that holds resource handles across
   * calls will find them invalid after a restore.
   *
   * @throws SnapshotError when the brane is not `pinned` (its instances are many or short-lived)
   * @throws DeadlineExceededError, BraneClosedError as {@link run}
   */
  async snapshot (options: SnapshotOptions = {}): Promise<BraneSnapshot> {
    this.#pinnedOnly('take a snapshot of')
    const result = await this.run({ type: 'snapshot' }, { what: 'take a snapshot', ...(options.signal === undefined ? {} : { signal: options.signal }) })
    if (result.state === undefined) {
      throw new TypeError('Worker finished a snapshot without the state')
    }
    return { brane: this.name, componentId: this.#componentId, lifecycle: this.#init.lifecycle, ...result.state }
  }

  /**
   * Replaces a pinned brane's instance with a fresh one holding `snapshot`: each
   * memory grows to its saved size and takes the saved bytes, each exported mutable
   * global its saved value. Queued like a request (between calls, within the
   * deadline); the instance it replaces serves on when the restore fails. The
   * snapshot's resources were never saved (see {@link snapshot}): the fresh instance
   * starts with none.
   *
   * @throws SnapshotError when the brane is not `pinned`, the snapshot is of another
   * component, or a memory is larger than `mem_max` or does not fit the instance
   * @throws DeadlineExceededError, BraneClosedError as {@link run}
   */
  async restore (snapshot: BraneSnapshot, options: SnapshotOptions = {}): Promise<void> {
    this.#pinnedOnly('restore a snapshot into')
    if (snapshot.componentId !== this.#componentId) {
      throw new SnapshotError(`Cannot restore a snapshot into brane "${this.name}": it is of component ${snapshot.componentId}, the brane runs ${this.#componentId}`)
    }
    snapshot.memories.forEach((bytes, i) => {
      if (bytes.byteLength > this.#init.memMaxBytes) {
        throw new SnapshotError(`Cannot restore a snapshot into brane "${this.name}": memory ${i} holds ${bytes.byteLength} bytes, more than its mem_max of ${this.#init.memMaxBytes} bytes`)
      }
    })
    const state: InstanceState = { memories: snapshot.memories, globals: snapshot.globals }
    await this.run({ type: 'restore', state }, { what: 'restore a snapshot', ...(options.signal === undefined ? {} : { signal: options.signal }) })
  }

  #pinnedOnly (what: string): void {
    const lifecycle = this.#init.lifecycle
    if (lifecycle !== 'pinned') {
      throw new SnapshotError(`Cannot ${what} brane "${this.name}": its lifecycle is "${lifecycle}", and only a pinned brane has one instance whose state lasts (set lifecycle = "pinned")`)
    }
  }

  /**
   * Stops taking requests, lets queued and running ones finish (each bounded by the
   * deadline), then stops the workers.
   */
  async close (options: CloseOptions = {}): Promise<void> {
    this.#closing = true
    const signal = options.signal
    if (this.#busy() || this.#queue.length > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve
        if (signal?.aborted === true) {
          resolve()
        }
        signal?.addEventListener('abort', () => { resolve() }, { once: true })
      })
    }
    const closed = new BraneClosedError(`Brane "${this.name}" was closed`)
    for (const job of this.#queue.splice(0)) {
      this.#settle(job, undefined, closed)
    }
    clearTimeout(this.#throttleTimer)
    clearInterval(this.#idleTimer)
    this.#startup?.reject(closed)
    this.#startup = undefined
    const slots = [...this.#active, ...(this.#spare === undefined ? [] : [this.#spare])]
    this.#active.clear()
    this.#spare = undefined
    await Promise.all(slots.map(async (slot) => {
      slot.gone = true
      for (let job = this.#takeJob(slot); job !== undefined; job = this.#takeJob(slot)) {
        this.#settle(job, undefined, closed)
      }
      await slot.worker.terminate()
    }))
  }

  /** Starts the first worker; resolves once it is ready (closes the brane if it cannot start) */
  protected async start (signal?: AbortSignal): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => {
      this.#startup = { resolve, reject }
    })
    this.#spawn('active')
    const onAbort = (): void => { this.#startup?.reject(signal?.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await ready
    } catch (err) {
      await this.close({ signal: AbortSignal.abort() })
      throw err
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    this.#idleTimer = setInterval(() => { this.#retireIdle() }, Math.min(this.#idleMs, 5_000))
    this.#idleTimer.unref()
    this.#pump()
  }

  #spawn (role: Slot['role']): Slot {
    const hostCalls = hostCallBuffer()
    const workerData: WorkerInit = { ...this.#init, hostCalls }
    // a worker `omega up` started ahead of need (standby.ts) has booted already: it waits for its init
    const standby = takeStandbyWorker()
    standby?.postMessage(workerData)
    const worker = standby ?? new Worker(WORKER_URL, workerOptions(`brane:${this.name}`, workerData))
    const slot: Slot = { worker, hostCalls, role, ready: false, gone: false, jobs: [], outbox: [], idleSince: performance.now(), failure: undefined }
    if (role === 'spare') {
      this.#spare = slot
    } else {
      this.#active.add(slot)
    }
    worker.unref()
    eachLine(worker.stdout, (line) => { this.#emitLog('stdout', line) })
    eachLine(worker.stderr, (line) => { this.#emitLog('stderr', line) })
    worker.on('message', (message: FromWorker) => {
      if (!slot.gone) {
        this.#onMessage(slot, message)
      }
    })
    worker.on('error', (err) => { slot.failure = err })
    const thread = worker.threadId
    worker.on('exit', (code) => {
      // a worker that was terminated could not remove its instances' tmp directories
      if (this.#init.grants['fs.tmp'] !== undefined) {
        sweepTmpDirs(this.name, { prefix: instancePrefix(process.pid, thread) })
      }
      if (!slot.gone) {
        this.#onExit(slot, code)
      }
    })
    return slot
  }

  #onMessage (slot: Slot, message: FromWorker): void {
    switch (message.type) {
      case 'ready':
        slot.ready = true
        slot.idleSince = performance.now()
        this.#healthy = true
        this.#startFailures = 0
        this.#startup?.resolve()
        this.#startup = undefined
        this.#pump()
        break
      case 'log':
        for (const [stream, line, level, instance] of message.lines) {
          this.#emitLog(stream, line, level, instance)
        }
        break
      case 'host-call':
        this.#onHostCall(slot, message)
        break
      case 'warn':
        this.#emitLog('stderr', `[omega] ${message.message}`)
        break
      case 'head':
      case 'chunk': {
        const job = slot.jobs[0]
        const streams = job?.id === message.id && job.work.type === 'request' ? job.work.streams : undefined
        if (message.type === 'head') {
          streams?.onHead(message.status, message.headers)
        } else {
          streams?.out.push(message.bytes)
        }
        break
      }
      case 'response':
      case 'error': {
        if (slot.jobs[0]?.id !== message.id) {
          return
        }
        const job = this.#takeJob(slot) as Job
        this.#throttle?.charge(message.timing.cpuMs)
        if (message.type === 'response') {
          const timing = { ...message.timing, queueMs: job.queueMs }
          this.#settle(job, {
            timing,
            ...(message.response === undefined ? {} : { response: message.response }),
            ...(message.state === undefined ? {} : { state: message.state })
          })
        } else {
          this.#settle(job, undefined, workerError(message.name, message.message))
        }
        this.#pump()
        break
      }
    }
  }

  #onExit (slot: Slot, code: number): void {
    this.#remove(slot)
    const failure = slot.failure
    const reason = failure instanceof Error ? failure.message : `exit code ${code}`
    if (!slot.ready) {
      this.#startFailures++
      if (!this.#healthy || this.#startFailures >= MAX_START_FAILURES) {
        // it never started: fail what waits rather than respawn in a loop
        const err = new ComponentLoadError(`Cannot start brane "${this.name}": ${reason}`, { cause: failure })
        this.#startup?.reject(err)
        this.#startup = undefined
        for (const job of this.#queue.splice(0)) {
          this.#settle(job, undefined, err)
        }
      }
    }
    const job = this.#takeJob(slot)
    this.#requeue(slot)
    if (job !== undefined) {
      this.#throttle?.charge(performance.now() - job.startedAt)
      this.#settle(job, undefined, new GuestError(`Brane "${this.name}" stopped while it tried to ${job.what}: ${reason}`, { cause: failure }))
    }
    this.#pump()
  }

  #onDeadline (slot: Slot, job: Job): void {
    if (slot.jobs[0] !== job) {
      return
    }
    this.#remove(slot)
    this.#takeJob(slot)
    this.#requeue(slot)
    this.#deadlineKills++
    this.#throttle?.charge(this.#deadline)
    this.#settle(job, undefined, new DeadlineExceededError(`Brane "${this.name}" did not ${job.what} within its ${this.#deadline} ms deadline: the call was stopped`))
    slot.worker.terminate().catch(() => {})
    this.#pump()
  }

  #remove (slot: Slot): void {
    slot.gone = true
    this.#active.delete(slot)
    if (this.#spare === slot) {
      this.#spare = undefined
    }
  }

  #busy (): boolean {
    for (const slot of this.#active) {
      if (slot.jobs.length > 0) {
        return true
      }
    }
    return false
  }

  /** Dispatches what may run, then keeps the minimum of workers and the spare */
  #pump (): void {
    while (this.#queue.length > 0) {
      const wait = this.#throttle?.waitMs() ?? 0
      if (wait > 0) {
        if (this.#throttleTimer === undefined) {
          this.#throttleTimer = setTimeout(() => {
            this.#throttleTimer = undefined
            this.#pump()
          }, wait)
        }
        break
      }
      const slot = this.#idleSlot() ?? this.#grow() ?? this.#pipelineSlot()
      if (slot === undefined) {
        break
      }
      const job = this.#queue.shift() as Job
      if (job.signal?.aborted === true) {
        this.#settle(job, undefined, job.signal.reason) // abandoned while it waited to go back to a worker
        continue
      }
      this.#dispatch(slot, job)
    }
    this.#replenish()
    const busy = this.#busy()
    for (const slot of this.#active) {
      // an idle brane does not keep the process alive
      if (busy || this.#queue.length > 0) {
        slot.worker.ref()
      } else {
        slot.worker.unref()
      }
    }
    if (!busy && this.#queue.length === 0) {
      const drained = this.#drained
      this.#drained = undefined
      drained?.()
    }
  }

  #idleSlot (): Slot | undefined {
    for (const slot of this.#active) {
      if (slot.ready && slot.jobs.length === 0) {
        return slot
      }
    }
    return undefined
  }

  /**
   * A busy worker that may take one more job behind its running one, so that it never
   * waits for the main thread between jobs: the least loaded whose queue is below the
   * pipeline depth and whose running job is young (a job queued behind a spinning guest
   * waits for that guest's deadline, then goes back to the brane's queue with what is
   * left of its own, often nothing: keep that rare)
   */
  #pipelineSlot (): Slot | undefined {
    const now = performance.now()
    return this.#leastLoaded((slot) => {
      const head = slot.jobs[0]
      return head !== undefined && slot.jobs.length < this.#pipeline && now - head.startedAt < PIPELINE_MAX_AGE_MS
    })
  }

  /** A ready worker for a waiting request: the spare if warm; else starts one (undefined: wait) */
  #grow (): Slot | undefined {
    if (this.#active.size >= this.#maxWorkers || this.#startFailures >= MAX_START_FAILURES) {
      return undefined
    }
    const spare = this.#spare
    if (spare?.ready === true) {
      spare.role = 'active'
      this.#spare = undefined
      this.#active.add(spare)
      return spare
    }
    let starting = 0
    for (const slot of this.#active) {
      starting += slot.ready ? 0 : 1
    }
    if (starting < this.#queue.length && (this.#healthy || this.#active.size === 0)) {
      this.#spawn('active')
    }
    return undefined
  }

  /** Keeps `minWorkers` workers (promoting the warm spare first) and one spare */
  #replenish (): void {
    if (this.#closing || !this.#healthy || this.#startFailures >= MAX_START_FAILURES) {
      return
    }
    while (this.#active.size < this.#minWorkers) {
      const spare = this.#spare
      if (spare !== undefined) {
        spare.role = 'active'
        this.#spare = undefined
        this.#active.add(spare)
      } else {
        this.#spawn('active')
      }
    }
    if (this.#useSpare && this.#spare === undefined) {
      this.#spawn('spare')
    }
  }

  #retireIdle (): void {
    const now = performance.now()
    for (const slot of this.#active) {
      if (this.#active.size <= this.#minWorkers) {
        return
      }
      if (slot.ready && slot.jobs.length === 0 && now - slot.idleSince > this.#idleMs) {
        this.#remove(slot)
        slot.worker.terminate().catch(() => {})
      }
    }
  }

  #dispatch (slot: Slot, job: Job): void {
    clearTimeout(job.timer)
    slot.jobs.push(job)
    if (slot.jobs.length === 1) {
      this.#begin(slot, job)
    }
    const work = job.work
    const message: ToWorker = work.type === 'request'
      ? { type: 'request', id: job.id, request: work.request, ...(work.streams === undefined ? {} : { stream: true, ...(work.streams.rest === undefined ? {} : { more: true }) }) }
      : work.type === 'event'
        ? { type: 'event', id: job.id, event: work.event, ...(job.group === undefined ? {} : { group: job.group.id }) }
        : work.type === 'snapshot'
          ? { type: 'snapshot', id: job.id }
          : { type: 'restore', id: job.id, state: work.state }
    // the worker sends the span's context on the guest's outgoing requests (OpenTelemetry export on)
    slot.outbox.push(job.traceparent === undefined || message.type === 'snapshot' || message.type === 'restore' ? message : { ...message, traceparent: job.traceparent })
    if (!this.#flushing) {
      this.#flushing = true
      setImmediate(() => { this.#flush() })
    }
  }

  /**
   * Sends each worker the jobs dispatched to it since the last flush, in one message: a
   * message to an idle thread costs a wake-up, so the jobs of one event-loop turn share it
   */
  #flush (): void {
    this.#flushing = false
    for (const slot of this.#active) {
      if (slot.outbox.length > 0 && !slot.gone) {
        slot.worker.postMessage(slot.outbox.length === 1 ? slot.outbox[0] : slot.outbox)
        slot.outbox = []
      }
    }
  }

  /**
   * `job` starts running in its worker (the worker starts the next job as soon as it has
   * answered the one before): its deadline counts from now
   */
  #begin (slot: Slot, job: Job): void {
    job.startedAt = performance.now()
    job.queueMs = job.startedAt - job.enqueuedAt
    job.timer = setTimeout(() => { this.#onDeadline(slot, job) }, this.#deadline)
  }

  /** The running job leaves its worker (answered, late, or the worker died); the next one there starts */
  #takeJob (slot: Slot): Job | undefined {
    const job = slot.jobs.shift()
    slot.idleSince = performance.now()
    clearTimeout(job?.timer)
    // nothing waits for its host calls any more (one reason for all: no stack per job)
    job?.calls?.abort(this.#callEnded ??= new BraneClosedError(`Brane "${this.name}" no longer waits: the call that made this host call ended`))
    const next = slot.jobs[0]
    if (next !== undefined && !slot.gone) {
      this.#begin(slot, next)
    }
    return job
  }

  /** The jobs waiting in a worker that stops never started there: they go back to the front of the queue */
  #requeue (slot: Slot): void {
    const waiting: Job[] = []
    for (const job of slot.jobs.splice(0)) {
      if (job.settled) {
        continue
      }
      if (job.group === undefined) {
        waiting.push(job)
        continue
      }
      // a batch's job: the ones after it must not run before it, so none runs now
      clearTimeout(job.timer)
      this.#settle(job, undefined, new SkippedEventError(`Brane "${this.name}" did not ${job.what}: the worker of its batch stopped before it started`))
    }
    this.#queue.unshift(...waiting)
    for (const job of waiting) {
      // what is left of its deadline, counted from when it was queued
      this.#waitAtMost(job, this.#deadline - (performance.now() - job.enqueuedAt))
    }
  }

  /**
   * A guest waits, blocked, for the main thread (see host/sync-call.ts): do the call
   * (host-calls.ts) and write the answer. A call of a job that has left its worker is
   * answered `unavailable` (nobody reads it: the worker withdrew or is gone).
   */
  #onHostCall (slot: Slot, message: HostCallMessage): void {
    const job = slot.jobs[0]
    this.#hostCalls.handle(job?.id === message.job ? job : undefined, message, (value) => { answerHostCall(slot.hostCalls, message.seq, value) })
  }

  #settle (job: Job, result: JobResult | undefined, err?: unknown): void {
    if (job.settled) {
      return
    }
    job.settled = true
    job.cleanup?.()
    if (result === undefined && job.group !== undefined) {
      job.group.failed = true
    }
    if (result !== undefined && job.signal?.aborted === true) {
      job.reject(job.signal.reason)
    } else if (result !== undefined) {
      job.resolve(result)
    } else {
      job.reject(err)
    }
  }

  #emitLog (stream: LogStream, line: string, level?: GuestLogLevel, instance?: string): void {
    try {
      this.#log(stream, line, level, instance)
    } catch {
      // a failing log sink must not break request handling
    }
  }
}
