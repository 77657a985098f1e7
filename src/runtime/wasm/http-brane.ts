import { Worker } from 'node:worker_threads'
import { ComponentLoadError, DeadlineExceededError, GuestError } from '../../errors.ts'
import { BraneClosedError } from './errors.ts'
import { checkImports, findUnprovided, unversioned } from './link.ts'
import type { LoadedComponent } from './load.ts'
import type { FromWorker, HttpRequest, HttpResponse, ToWorker, WorkerInit } from './protocol.ts'

import type { Grants } from '../../manifest/index.ts'

/** Where a brane's stdout/stderr lines go */
export type BraneLog = (stream: 'stdout' | 'stderr', line: string) => void

/** Options of {@link HttpBrane.create} */
export interface HttpBraneOptions {
  /** the brane's name in the manifest */
  readonly name: string
  /** the brane's grants, as the plan resolved them (keys and settings) */
  readonly grants: Grants
  /** seeded random and a virtual clock: the same inputs give the same outputs */
  readonly deterministic?: { readonly seed: number }
  /** receives the guest's stdout/stderr, one line at a time, and anything its worker prints */
  readonly log: BraneLog
  /**
   * Most milliseconds one request may run in the guest; a late guest's worker is
   * terminated and replaced.
   * @default 30000
   */
  readonly deadlineMs?: number
  /**
   * Most bytes of a response body.
   * @default 16777216
   */
  readonly maxBodyBytes?: number
  readonly signal?: AbortSignal
}

/** Options of {@link HttpBrane.handle} */
export interface HandleOptions {
  /** abandons the request: rejected with `signal.reason` (a running guest runs on to its deadline) */
  readonly signal?: AbortSignal
}

/** Options of {@link HttpBrane.close} */
export interface CloseOptions {
  /** stops waiting for queued and running requests: they fail with BraneClosedError */
  readonly signal?: AbortSignal
}

interface Job {
  readonly id: number
  readonly request: HttpRequest
  readonly resolve: (response: HttpResponse) => void
  readonly reject: (err: unknown) => void
  settled: boolean
  timer?: NodeJS.Timeout
  cleanup?: () => void
}

const HANDLER_INTERFACE = 'wasi:http/incoming-handler'
const WORKER_URL = new URL('./worker.js', import.meta.url)

/**
 * Serves HTTP requests with a `wasi:http/incoming-handler` component, in a worker
 * thread so that a spinning guest cannot stall the caller. Lifecycle `ephemeral`:
 * every request gets a fresh instance; requests queue for the one worker. A trap fails
 * that request with GuestError; a late request fails with DeadlineExceededError and
 * its worker is replaced; a worker that dies is replaced.
 *
 * @example
 * ```ts
 * const loaded = await loadComponent(bytes, { cacheDir })
 * const brane = await HttpBrane.create(loaded, { name: 'hello', grants: {}, log: console.log })
 * const res = await brane.handle({ method: 'GET', pathWithQuery: '/', scheme: 'http',
 *   authority: 'localhost', headers: [], body: new Uint8Array() })
 * await brane.close()
 * ```
 */
export class HttpBrane {
  readonly #init: WorkerInit
  readonly #log: BraneLog
  readonly #deadline: number
  readonly #queue: Job[] = []
  #worker: Worker | undefined
  #ready = false
  /** a worker started once: replace workers that stop */
  #healthy = false
  #startup: { resolve: () => void, reject: (err: unknown) => void } | undefined
  #current: Job | undefined
  #nextId = 1
  #closing = false
  #drained: (() => void) | undefined

  private constructor (loaded: LoadedComponent, options: HttpBraneOptions, handlerExport: string) {
    this.#log = options.log
    this.#deadline = options.deadlineMs ?? 30_000
    this.#init = {
      brane: options.name,
      entry: loaded.entry,
      modules: loaded.modules,
      imports: loaded.imports,
      grants: options.grants,
      ...(options.deterministic === undefined ? {} : { deterministic: options.deterministic }),
      handlerExport,
      maxBodyBytes: options.maxBodyBytes ?? 16 * 1024 * 1024
    }
  }

  /**
   * Links `loaded` against the brane's grants (nothing runs if an import is not
   * granted) and starts its worker.
   *
   * @throws CapabilityDeniedError when the component imports what the grants do not allow
   * @throws ComponentLoadError when it imports what Omega does not provide, does not
   * export `wasi:http/incoming-handler`, or its worker cannot start
   */
  static async create (loaded: LoadedComponent, options: HttpBraneOptions): Promise<HttpBrane> {
    options.signal?.throwIfAborted()
    checkImports(loaded.imports, grantKeys(options.grants), { brane: options.name })
    const unprovided = findUnprovided(loaded.imports)
    if (unprovided.length > 0) {
      throw new ComponentLoadError(`Cannot link brane "${options.name}": Omega does not provide ${unprovided.map((name) => `"${name}"`).join(', ')}`)
    }
    const handlerExport = loaded.exports.find((name) => unversioned(name) === HANDLER_INTERFACE)
    if (handlerExport === undefined) {
      const exported = loaded.exports.length === 0 ? 'nothing' : loaded.exports.map((name) => `"${name}"`).join(', ')
      throw new ComponentLoadError(`Cannot serve HTTP with brane "${options.name}": component does not export "${HANDLER_INTERFACE}" (it exports ${exported})`)
    }
    const brane = new HttpBrane(loaded, options, handlerExport)
    await brane.#start(options.signal)
    return brane
  }

  /** the brane's name */
  get name (): string {
    return this.#init.brane
  }

  /**
   * Runs one request through a fresh instance.
   *
   * @throws GuestError when the guest traps, fails or answers with an error
   * @throws DeadlineExceededError when it runs past the deadline
   * @throws BraneClosedError when the brane is closing
   */
  async handle (request: HttpRequest, options: HandleOptions = {}): Promise<HttpResponse> {
    const signal = options.signal
    signal?.throwIfAborted()
    if (this.#closing) {
      throw new BraneClosedError(`Brane "${this.name}" is closed`)
    }
    return new Promise<HttpResponse>((resolve, reject) => {
      const job: Job = { id: this.#nextId++, request, resolve, reject, settled: false }
      if (signal !== undefined) {
        const onAbort = (): void => {
          const queued = this.#queue.indexOf(job)
          if (queued !== -1) {
            this.#queue.splice(queued, 1)
          }
          // a running job keeps the worker until it answers or hits the deadline
          this.#settle(job, undefined, signal.reason)
        }
        signal.addEventListener('abort', onAbort, { once: true })
        job.cleanup = () => { signal.removeEventListener('abort', onAbort) }
      }
      this.#queue.push(job)
      this.#pump()
    })
  }

  /**
   * Stops taking requests, lets queued and running ones finish (each bounded by the
   * deadline), then stops the worker.
   */
  async close (options: CloseOptions = {}): Promise<void> {
    this.#closing = true
    const signal = options.signal
    if (this.#current !== undefined || this.#queue.length > 0) {
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
    const current = this.#takeCurrent()
    if (current !== undefined) {
      this.#settle(current, undefined, closed)
    }
    this.#startup?.reject(closed)
    const worker = this.#worker
    this.#worker = undefined
    await worker?.terminate()
  }

  async #start (signal?: AbortSignal): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => {
      this.#startup = { resolve, reject }
    })
    this.#spawn()
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
  }

  #spawn (): void {
    this.#ready = false
    const worker = new Worker(WORKER_URL, {
      workerData: this.#init,
      name: `brane:${this.name}`,
      env: {}, // the guest sees no host environment, and neither does jco's glue
      stdout: true,
      stderr: true
    })
    this.#worker = worker
    pipeLines(worker.stdout, (line) => { this.#emitLog('stdout', line) })
    pipeLines(worker.stderr, (line) => { this.#emitLog('stderr', line) })
    let failure: unknown
    worker.on('message', (message: FromWorker) => {
      if (this.#worker === worker) {
        this.#onMessage(message)
      }
    })
    worker.on('error', (err) => { failure = err })
    worker.on('exit', (code) => {
      if (this.#worker === worker) {
        this.#onExit(code, failure)
      }
    })
  }

  #onMessage (message: FromWorker): void {
    switch (message.type) {
      case 'ready':
        this.#ready = true
        this.#healthy = true
        this.#startup?.resolve()
        this.#startup = undefined
        this.#pump()
        break
      case 'log':
        this.#emitLog(message.stream, message.line)
        break
      case 'response':
      case 'error': {
        if (this.#current?.id !== message.id) {
          return
        }
        const job = this.#takeCurrent() as Job
        if (message.type === 'response') {
          this.#settle(job, message.response)
        } else {
          const Err = message.name === 'ComponentLoadError' ? ComponentLoadError : GuestError
          this.#settle(job, undefined, new Err(message.message))
        }
        this.#pump()
        break
      }
    }
  }

  #onExit (code: number, failure: unknown): void {
    this.#worker = undefined
    const reason = failure instanceof Error ? failure.message : `exit code ${code}`
    if (!this.#ready) {
      // it never started: fail what waits rather than respawn in a loop
      this.#healthy = false
      const err = new ComponentLoadError(`Cannot start brane "${this.name}": ${reason}`, { cause: failure })
      this.#startup?.reject(err)
      this.#startup = undefined
      for (const job of this.#queue.splice(0)) {
        this.#settle(job, undefined, err)
      }
      this.#pump()
      return
    }
    const job = this.#takeCurrent()
    if (job !== undefined) {
      this.#settle(job, undefined, new GuestError(`Brane "${this.name}" stopped while handling a request: ${reason}`, { cause: failure }))
    }
    this.#pump()
  }

  #onDeadline (job: Job): void {
    if (this.#current !== job) {
      return
    }
    this.#takeCurrent()
    this.#settle(job, undefined, new DeadlineExceededError(`Brane "${this.name}" did not answer within ${this.#deadline} ms`))
    const worker = this.#worker
    this.#worker = undefined
    worker?.terminate().catch(ignore)
    this.#pump()
  }

  #pump (): void {
    // replace a terminated or dead worker at once, so it is warm for the next request
    if (this.#worker === undefined && (this.#queue.length > 0 || (this.#healthy && !this.#closing))) {
      this.#spawn()
    }
    const worker = this.#worker
    if (this.#current === undefined && this.#queue.length === 0) {
      worker?.unref() // an idle brane does not keep the process alive
      const drained = this.#drained
      this.#drained = undefined
      drained?.()
      return
    }
    if (worker === undefined) {
      return
    }
    worker.ref()
    if (!this.#ready || this.#current !== undefined) {
      return
    }
    const job = this.#queue.shift()
    if (job === undefined) {
      return
    }
    this.#current = job
    job.timer = setTimeout(() => { this.#onDeadline(job) }, this.#deadline)
    const message: ToWorker = { type: 'request', id: job.id, request: job.request }
    worker.postMessage(message)
  }

  /** The running job leaves the worker (answered, late, or the worker died) */
  #takeCurrent (): Job | undefined {
    const job = this.#current
    this.#current = undefined
    clearTimeout(job?.timer)
    return job
  }

  #settle (job: Job, response: HttpResponse | undefined, err?: unknown): void {
    if (job.settled) {
      return
    }
    job.settled = true
    job.cleanup?.()
    if (response !== undefined) {
      job.resolve(response)
    } else {
      job.reject(err)
    }
  }

  #emitLog (stream: 'stdout' | 'stderr', line: string): void {
    try {
      this.#log(stream, line)
    } catch {
      // a failing log sink must not break request handling
    }
  }
}

function ignore (): void {}

/** The capability keys a plan's grants hold */
export function grantKeys (grants: Grants): ReadonlySet<string> {
  return new Set(Object.entries(grants).filter(([, value]) => value !== undefined).map(([key]) => key))
}

function pipeLines (stream: NodeJS.ReadableStream, emit: (line: string) => void): void {
  let pending = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => {
    pending += chunk
    let newline = pending.indexOf('\n')
    while (newline !== -1) {
      emit(pending.slice(0, newline))
      pending = pending.slice(newline + 1)
      newline = pending.indexOf('\n')
    }
  })
  stream.on('end', () => {
    if (pending !== '') {
      emit(pending)
    }
  })
}
