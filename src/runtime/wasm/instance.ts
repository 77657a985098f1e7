/**
 * Instances of a component (an HTTP brane or an event brane) and the per-worker pool
 * that lifecycles are made of.
 * Runs inside a brane worker (and in benchmarks): it imports the host implementations,
 * which start preview2-shim's I/O helper thread, so keep it off the daemon's main thread.
 */
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { threadId } from 'node:worker_threads'
import { buildImports, createInstanceHost, disposeInstanceHost, GuestExit, type EmitHook, type GuestLogLevel, type InstanceHost, type StateHook } from './host/imports.ts'
import type { Invocation } from './host/instance.ts'
import { parseEmits } from '../emit-records.ts'
import { WitError } from './host/shim.ts'
import { instancePrefix } from './host/tmp-paths.ts'
import { httpTypesFor, type ExchangeStreams, type GuestResponse } from './host/http.ts'
import { ByteCollector, LineSplitter, MemoryInputStream, SinkOutputStream } from './host/streams.ts'
import { LogBudget } from './limits.ts'
import { wasm, type CoreImports, type CoreInstance, type CoreModule } from './wasm-api.ts'
import type { BraneEventInput, GlobalState, HttpRequest, InstanceState, Lifecycle, LogStream, WorkerErrorName, WorkerInit } from './protocol.ts'

type Instantiate = (
  getCoreModule: (name: string) => CoreModule,
  imports: Record<string, unknown>,
  instantiateCore: (module: CoreModule, imports?: CoreImports) => CoreInstance
) => unknown

interface IncomingHandler {
  handle: (request: object, outparam: object) => void
}

/** `omega:brane/handler` as jco binds it: an `err` result is thrown as a ComponentError */
interface EventHandler {
  handle: (event: BraneEventInput) => void
}

/** `wasi:cli/run` as jco binds it: an `err` result is thrown */
interface CommandRun {
  run: () => void
}

interface LinearMemory {
  readonly buffer: ArrayBuffer
  grow: (pages: number) => number
}

/** An exported global; setting `value` throws a TypeError when it is immutable */
interface CoreGlobal {
  value: unknown
}

const MemoryClass = (globalThis as unknown as { WebAssembly: { Memory: abstract new (...args: never[]) => LinearMemory } }).WebAssembly.Memory
const GlobalClass = (globalThis as unknown as { WebAssembly: { Global: abstract new (...args: never[]) => CoreGlobal } }).WebAssembly.Global
const WASM_PAGE_BYTES = 65_536

/** A failure to report to the caller, as an OmegaError name and message */
export class Failure extends Error {
  readonly kind: WorkerErrorName
  constructor (kind: WorkerErrorName, message: string, options?: ErrorOptions) {
    super(message, options)
    this.kind = kind
  }
}

/** Where a log line goes; `level` is set for omega:brane/log records */
export type LineSink = (stream: LogStream, line: string, level?: GuestLogLevel, instance?: string) => void

/**
 * Where one request's (or event's) stdout/stderr lines and omega:brane/log records
 * go, within its log budget
 */
export class RequestOutput {
  readonly #emit: LineSink
  readonly #budget: LogBudget
  readonly #maxBytes: number
  readonly #out: LineSplitter
  readonly #err: LineSplitter
  #rawBytes = 0
  #marked = false
  /** the id of the instance serving the request (`fetch.034`), once it has one */
  instance: string | undefined

  constructor (emit: LineSink, limits: { maxBytes: number, maxLines: number }) {
    this.#emit = emit
    this.#maxBytes = limits.maxBytes
    this.#budget = new LogBudget(limits)
    this.#out = new LineSplitter((line) => { this.#line('stdout', line) })
    this.#err = new LineSplitter((line) => { this.#line('stderr', line) })
  }

  write (stream: LogStream, bytes: Uint8Array): void {
    // count raw bytes first: past the cap nothing is even decoded
    this.#rawBytes += bytes.length
    if (this.#rawBytes > this.#maxBytes + 1) {
      this.#mark()
      return
    }
    ;(stream === 'stdout' ? this.#out : this.#err).push(bytes)
  }

  /**
   * One omega:brane/log record: a line of its own (warn and error on stderr), under
   * the same budget as stdout and stderr
   */
  record (level: GuestLogLevel, message: string): void {
    this.#rawBytes += message.length
    if (this.#rawBytes > this.#maxBytes + 1) {
      this.#mark()
      return
    }
    const stream: LogStream = level === 'warn' || level === 'error' ? 'stderr' : 'stdout'
    if (this.#budget.take(message)) {
      this.#emit(stream, message, level, this.instance)
    } else {
      this.#mark()
    }
  }

  /** One line about a request the guest made (outgoing HTTP), under the same budget */
  outgoing (line: string): void {
    if (this.#budget.take(line)) {
      this.#emit('request', line, undefined, this.instance)
    } else {
      this.#mark()
    }
  }

  /** flushes unterminated last lines */
  end (): void {
    this.#out.end()
    this.#err.end()
  }

  #line (stream: LogStream, line: string): void {
    if (this.#budget.take(line)) {
      this.#emit(stream, line, undefined, this.instance)
    } else {
      this.#mark()
    }
  }

  #mark (): void {
    if (!this.#marked) {
      this.#marked = true
      this.#emit('stderr', this.#budget.marker(), undefined, this.instance)
    }
  }
}

/** One instance of the component and what the host keeps for it */
export class GuestInstance {
  /** the handler export: `wasi:http/incoming-handler`, `omega:brane/handler` or `wasi:cli/run` */
  readonly handler: IncomingHandler | EventHandler | CommandRun
  /** the capabilities built for this instance (tmp directory, clocks, random, …) */
  host: InstanceHost | undefined
  readonly #memories: LinearMemory[]
  readonly #globals: CoreGlobal[]
  /** ms its instantiation took */
  readonly instantiateMs: number
  /** its name in logs: the brane's name and its number among the brane's instances, `fetch.034` */
  id = ''
  /** requests it has served */
  uses = 0
  /** the request it serves now: stdout/stderr go there */
  output: RequestOutput | undefined
  /** a command's run: its arguments, more variables, stdin */
  invocation: Invocation | undefined
  /** where stdout goes instead of `output` (a command's emit records, `omega run`'s stdout) */
  stdoutTo: ((bytes: Uint8Array) => void) | undefined
  /** where stderr goes instead of `output` (`omega run`'s stderr) */
  stderrTo: ((bytes: Uint8Array) => void) | undefined

  constructor (handler: IncomingHandler | EventHandler | CommandRun, memories: LinearMemory[], instantiateMs: number, globals: CoreGlobal[] = []) {
    this.handler = handler
    this.#memories = memories
    this.#globals = globals
    this.instantiateMs = instantiateMs
  }

  /** bytes of linear memory, all memories together */
  get memBytes (): number {
    let bytes = 0
    for (const memory of this.#memories) {
      bytes += memory.buffer.byteLength
    }
    return bytes
  }

  /**
   * Copies of its linear memories and exported mutable globals. Call it between
   * requests only. What the host keeps in JS tables (resources) is not included.
   */
  capture (): InstanceState {
    const memories = this.#memories.map((memory) => new Uint8Array(memory.buffer.slice(0)))
    const globals: GlobalState[] = []
    for (const global of this.#mutableGlobals()) {
      const value = global.value
      globals.push(typeof value === 'bigint'
        ? { type: 'bigint', value: value.toString() }
        : { type: 'number', value: float64Bits(value as number) })
    }
    return { memories, globals }
  }

  /**
   * Puts `state` into this instance: each memory grows to its saved size and takes
   * the saved bytes, each exported mutable global its saved value. Meant for a fresh
   * instance (a memory cannot shrink); host resources are not restored.
   *
   * @throws Failure (SnapshotError) when `state` does not fit: another number of
   * memories or globals, a memory smaller than this one's or past its maximum
   */
  restore (state: InstanceState, what: string): void {
    const globals = this.#mutableGlobals()
    if (state.memories.length !== this.#memories.length || state.globals.length !== globals.length) {
      throw new Failure('SnapshotError', `Cannot restore ${what}: the snapshot has ${state.memories.length} memories and ${state.globals.length} mutable globals, the instance ${this.#memories.length} and ${globals.length}`)
    }
    state.memories.forEach((bytes, i) => {
      const memory = this.#memories[i] as LinearMemory
      const current = memory.buffer.byteLength
      if (bytes.byteLength < current || bytes.byteLength % WASM_PAGE_BYTES !== 0) {
        throw new Failure('SnapshotError', `Cannot restore ${what}: memory ${i} holds ${bytes.byteLength} bytes in the snapshot, not a whole number of pages of at least ${current}`)
      }
      try {
        memory.grow((bytes.byteLength - current) / WASM_PAGE_BYTES)
      } catch (err) {
        throw new Failure('SnapshotError', `Cannot restore ${what}: memory ${i} cannot grow to ${bytes.byteLength} bytes (past its mem_max)`, { cause: err })
      }
      new Uint8Array(memory.buffer).set(bytes)
    })
    state.globals.forEach((saved, i) => {
      const global = globals[i] as CoreGlobal
      global.value = saved.type === 'bigint' ? BigInt(saved.value) : float64FromBits(saved.value)
    })
  }

  /**
   * the exported numeric globals that can be set, in a stable order (v128 ones cannot
   * be read; reference-typed ones are host objects, not state a snapshot can keep)
   */
  #mutableGlobals (): CoreGlobal[] {
    return this.#globals.filter((global) => {
      try {
        const value = global.value
        if (typeof value !== 'number' && typeof value !== 'bigint') {
          return false
        }
        global.value = value
        return true
      } catch {
        return false
      }
    })
  }
}

function float64Bits (value: number): string {
  const view = new DataView(new ArrayBuffer(8))
  view.setFloat64(0, value)
  return view.getBigUint64(0).toString(16).padStart(16, '0')
}

function float64FromBits (hex: string): number {
  const view = new DataView(new ArrayBuffer(8))
  view.setBigUint64(0, BigInt(`0x${hex}`))
  return view.getFloat64(0)
}

/** Outcome of {@link InstanceFactory.serve} */
export interface Served {
  readonly status: number
  readonly headers: Array<[string, string]>
  /** what was not streamed yet: all of the body unless `streamed` */
  readonly body: Uint8Array
  /** the head and part of the body already went out through `streams.out` */
  readonly streamed: boolean
}

/** How {@link InstanceFactory.serve} streams a request's bodies */
export interface ServeStreams extends ExchangeStreams {
  /** receives the exchange's `pump` before the guest runs (call it when the guest is about to block) */
  readonly bind?: (pump: (waiting: boolean) => void) => void
}

/** What {@link InstanceFactory} needs of a {@link WorkerInit} */
export type InstanceFactoryInit = Pick<WorkerInit, 'brane' | 'entry' | 'modules' | 'imports' | 'grants' | 'deterministic' | 'handlerExport' | 'maxBodyBytes' | 'memMaxBytes'> & Partial<Pick<WorkerInit, 'config' | 'command' | 'maxEmitBytes' | 'instanceCounter'>>

/** Host work an {@link InstanceFactory} delegates to the thread that runs it */
export interface InstanceHooks {
  /**
   * omega:brane/emit for every instance (a worker sends it to the main thread)
   * @default every emit fails with `unavailable`
   */
  readonly emit?: EmitHook
  /**
   * omega:brane/state for every instance (a worker sends it to the main thread)
   * @default every call fails with `unavailable`
   */
  readonly state?: StateHook
}

/** How an event handler ended, short of a trap: ok, or the guest's handle-error */
export type EventOutcome =
  | { readonly ok: true }
  | { readonly ok: false, readonly name: 'RetryableEventError' | 'RejectedEventError', readonly message: string }

/**
 * Makes instances of one component and runs requests through them. Imports the
 * transpiled module once; each instance gets its own import object.
 */
export class InstanceFactory {
  readonly #init: InstanceFactoryInit
  readonly #hooks: InstanceHooks
  readonly #instantiate: Instantiate
  readonly #http: ReturnType<typeof httpTypesFor>
  readonly #prefix = instancePrefix(process.pid, threadId)
  #made = 0
  /** shared with the brane's other workers when given: instance numbers count across all */
  readonly #numbers: Int32Array | undefined

  private constructor (init: InstanceFactoryInit, instantiate: Instantiate, hooks: InstanceHooks) {
    this.#init = init
    this.#hooks = hooks
    this.#instantiate = instantiate
    this.#http = httpTypesFor({ maxBodyBytes: init.maxBodyBytes })
    this.#numbers = init.instanceCounter === undefined ? undefined : new Int32Array(init.instanceCounter)
  }

  static async create (init: InstanceFactoryInit, hooks: InstanceHooks = {}): Promise<InstanceFactory> {
    stubPromising()
    const { instantiate } = await import(pathToFileURL(init.entry).href) as { instantiate: Instantiate }
    return new InstanceFactory(init, instantiate, hooks)
  }

  /** A fresh instance (synchronous work only: the core modules are compiled already) */
  async instantiate (): Promise<GuestInstance> {
    const start = performance.now()
    const memories: LinearMemory[] = []
    const globals: CoreGlobal[] = []
    // the instance's stdout/stderr follow whichever request it serves
    const self: { instance?: GuestInstance } = {}
    // (or, for a command, wherever its run sends them: `stdoutTo`, `stderrTo`)
    const sink = (stream: 'stdout' | 'stderr'): SinkOutputStream => new SinkOutputStream((bytes) => {
      const to = stream === 'stdout' ? self.instance?.stdoutTo : self.instance?.stderrTo
      if (to !== undefined) {
        to(bytes)
      } else {
        self.instance?.output?.write(stream, bytes)
      }
    })
    const stdout = sink('stdout')
    const stderr = sink('stderr')
    let host: InstanceHost
    try {
      host = createInstanceHost({
        brane: this.#init.brane,
        grants: this.#init.grants,
        ...(this.#init.config === undefined ? {} : { config: this.#init.config }),
        ...(this.#init.deterministic === undefined ? {} : { deterministic: this.#init.deterministic }),
        stdout,
        stderr,
        httpTypes: this.#http.types,
        instance: `${this.#prefix}${++this.#made}`,
        onOutgoing: (line) => { self.instance?.output?.outgoing(line) },
        onDenied: (event) => {
          self.instance?.output?.write('stderr', new TextEncoder().encode(`omega: denied ${event.capability} ${event.target}: ${event.reason}\n`))
        },
        ...(this.#hooks.emit === undefined ? {} : { emit: this.#hooks.emit }),
        ...(this.#hooks.state === undefined ? {} : { state: this.#hooks.state }),
        log: (level, message) => { self.instance?.output?.record(level, message) },
        invocation: () => self.instance?.invocation
      })
    } catch (err) {
      throw new Failure('ComponentLoadError', `Cannot instantiate brane "${this.#init.brane}": ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
    let imports: ReturnType<typeof buildImports>
    try {
      imports = buildImports(this.#init.imports, this.#init.grants, host)
    } catch (err) {
      disposeInstanceHost(host)
      throw err
    }
    const instantiateCore = (module: CoreModule, coreImports?: CoreImports): CoreInstance => {
      const core = new wasm.Instance(module, coreImports)
      // a core instance may re-export what another one defines: count each once
      for (const value of Object.values(core.exports)) {
        if (value instanceof MemoryClass && !memories.includes(value)) {
          memories.push(value)
        } else if (value instanceof GlobalClass && !globals.includes(value)) {
          globals.push(value)
        }
      }
      return core
    }
    let handler: IncomingHandler | EventHandler | CommandRun | undefined
    try {
      const exports = await this.#instantiate((name) => this.#module(name), imports, instantiateCore) as Record<string, IncomingHandler | EventHandler | CommandRun | undefined>
      handler = exports[this.#init.handlerExport]
    } catch (err) {
      disposeInstanceHost(host)
      throw err
    }
    if (handler === undefined) {
      disposeInstanceHost(host)
      throw new Failure('ComponentLoadError', `Cannot instantiate brane "${this.#init.brane}": no export "${this.#init.handlerExport}"`)
    }
    self.instance = new GuestInstance(handler, memories, performance.now() - start, globals)
    const number = this.#numbers === undefined ? this.#made : Atomics.add(this.#numbers, 0, 1) + 1
    self.instance.id = `${this.#init.brane}.${String(number).padStart(3, '0')}`
    self.instance.host = host
    return self.instance
  }

  /**
   * Runs `request` through `instance`.
   *
   * @throws Failure for everything the guest did wrong
   */
  serve (instance: GuestInstance, request: HttpRequest, streams: ServeStreams = {}): Served {
    instance.uses++
    const exchange = this.#http.exchange(request, streams)
    streams.bind?.(exchange.pump)
    try {
      (instance.handler as IncomingHandler).handle(exchange.request, exchange.outparam)
    } catch (err) {
      // exit(ok) after answering is a normal end of a command-style guest
      if (!(err instanceof GuestExit && err.ok && exchange.response() !== undefined)) {
        // a guest that fails once its body was refused (a write past body_max) failed because of that
        const answer = exchange.response()
        throw answer?.tag === 'ok' && answer.overflowed ? this.#overflow() : this.classify(err, instance)
      }
    }
    return this.#toResponse(exchange.response())
  }

  #overflow (): Failure {
    const brane = this.#init.brane
    return new Failure('GuestError', `Brane "${brane}" wrote a response body over its limit of ${this.#init.maxBodyBytes} bytes, so the response was cut off (raise [brane.${brane}.limits] body_max to allow more)`)
  }

  /**
   * Runs `event` through `instance`'s `omega:brane/handler`.
   *
   * @returns ok, or the guest's handle-error (retry or reject: the instance is fine)
   * @throws Failure when the guest traps or breaks the contract
   */
  handleEvent (instance: GuestInstance, event: BraneEventInput): EventOutcome {
    instance.uses++
    try {
      (instance.handler as EventHandler).handle({
        id: event.id,
        topic: event.topic,
        payload: event.payload,
        source: event.source,
        traceId: event.traceId,
        attempt: event.attempt
      })
      return { ok: true }
    } catch (err) {
      const handleError = handleErrorOf(err)
      if (handleError === undefined) {
        throw this.classify(err, instance)
      }
      const brane = this.#init.brane
      return handleError.tag === 'retry'
        ? { ok: false, name: 'RetryableEventError', message: `Brane "${brane}" asked to retry event "${event.id}": ${handleError.val}` }
        : { ok: false, name: 'RejectedEventError', message: `Brane "${brane}" rejected event "${event.id}": ${handleError.val}` }
    }
  }

  /**
   * Runs `event` through `instance`'s `wasi:cli/run` command, once: the payload is
   * its stdin, its environment has the event's `OMEGA_*` variables (after the `env`
   * grant's), its arguments are the brane's name. Exit 0 is done, 65 rejects the
   * event, anything else asks for a retry. With `stdout = "emit"`, what it wrote to
   * stdout is emit records, emitted (on the brane's outgoing edges only) once it
   * exited 0. The instance must not run again.
   *
   * @returns ok, or the exit status as a retry or a rejection
   * @throws Failure when the guest traps, its emit records are malformed (GuestError)
   * or name a topic no edge carries (CapabilityDeniedError), or they cannot be queued
   */
  runCommand (instance: GuestInstance, event: BraneEventInput): EventOutcome {
    instance.uses++
    const brane = this.#init.brane
    const limit = this.#init.maxEmitBytes ?? 16 * 1024 * 1024
    const records = this.#init.command?.stdout === 'emit' ? new ByteCollector(limit) : undefined
    instance.invocation = {
      args: [brane],
      env: [
        ['OMEGA_KIND', 'event'],
        ['OMEGA_BRANE', brane],
        ['OMEGA_TOPIC', event.topic],
        ['OMEGA_EVENT_ID', event.id],
        ['OMEGA_SOURCE', event.source],
        ['OMEGA_TRACE_ID', event.traceId],
        ['OMEGA_ATTEMPT', String(event.attempt)]
      ],
      stdin: () => new MemoryInputStream(event.payload)
    }
    if (records !== undefined) {
      instance.stdoutTo = (bytes) => { records.push(bytes) }
    }
    const status = this.runMain(instance)
    if (status === EXIT_REJECT) {
      return { ok: false, name: 'RejectedEventError', message: `Brane "${brane}" rejected event "${event.id}": its command exited with status ${status}` }
    }
    if (status !== 0) {
      return { ok: false, name: 'RetryableEventError', message: `Brane "${brane}": its command exited with status ${status} on event "${event.id}"${status === EXIT_RETRY ? ' (retry asked)' : ''}` }
    }
    if (records !== undefined && records.size > 0) {
      this.#emitRecords(records.take())
    }
    return { ok: true }
  }

  /**
   * Calls `instance`'s `wasi:cli/run` once (its invocation set beforehand).
   *
   * @returns the exit status: 0 when run returned ok, 1 when it returned err, the
   * code it gave wasi:cli/exit
   * @throws Failure when the guest traps or breaks the contract
   */
  runMain (instance: GuestInstance): number {
    try {
      (instance.handler as CommandRun).run()
      return 0
    } catch (err) {
      if (err instanceof GuestExit) {
        return err.code
      }
      // run returned err: jco 1.x throws a ComponentError, jco-transpile the value itself
      if (!(err instanceof Error) || err.name === 'ComponentError') {
        return 1
      }
      throw this.classify(err, instance)
    }
  }

  /** Emits what a command wrote to stdout, all or nothing as far as the topics go */
  #emitRecords (bytes: Uint8Array): void {
    const brane = this.#init.brane
    let emits
    try {
      emits = parseEmits(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'stdout')
    } catch (err) {
      throw new Failure('GuestError', `Brane "${brane}" (stdout = "emit"): ${(err as Error).message}`)
    }
    const allowed = this.#init.grants.emit?.topics ?? []
    for (const e of emits) {
      if (!allowed.includes(e.topic)) {
        throw new Failure('CapabilityDeniedError', `Brane "${brane}" emitted on topic "${e.topic}", which no edge in [graph].edges carries from it (it may emit: ${allowed.length === 0 ? 'nothing' : allowed.join(', ')})`)
      }
    }
    const emit = this.#hooks.emit
    if (emit === undefined) {
      throw new Failure('RetryableEventError', `Brane "${brane}" cannot emit what its command wrote: no event dispatcher on this node`)
    }
    for (const e of emits) {
      try {
        emit(e.topic, e.payload)
      } catch (err) {
        const payload = err instanceof WitError ? err.payload as { tag?: string, val?: string } : undefined
        const message = payload?.val ?? (err instanceof Error ? err.message : String(err))
        throw new Failure(payload?.tag === 'too-large' ? 'GuestError' : 'RetryableEventError', `Brane "${brane}" could not emit on "${e.topic}": ${message}`, { cause: err })
      }
    }
  }

  /** A guest's failure as the name and message the caller gets */
  classify (err: unknown, instance?: GuestInstance): Failure {
    const brane = this.#init.brane
    if (err instanceof Failure) {
      return err
    }
    if (err instanceof Error && err.name === 'ComponentLoadError') {
      return new Failure('ComponentLoadError', err.message)
    }
    if (err instanceof wasm.RuntimeError) {
      return this.#atMemoryLimit(instance)
        ? new Failure('MemoryLimitError', `Brane "${brane}" ran out of memory: its linear memory reached ${instance?.memBytes ?? 0} bytes and could not grow past mem_max (${this.#init.memMaxBytes} bytes; raise [brane.${brane}.limits] mem_max to allow more), then it trapped: ${err.message}`)
        : new Failure('GuestError', `Brane "${brane}" trapped: ${err.message}`)
    }
    if (err instanceof RangeError && /call stack/i.test(err.message)) {
      return new Failure('GuestError', `Brane "${brane}" overflowed its stack (recursion too deep): ${err.message}`)
    }
    if (err instanceof GuestExit) {
      const what = this.#init.handlerExport.startsWith('omega:brane/') ? 'before its handler returned' : 'without a response'
      return new Failure('GuestError', `Brane "${brane}" exited (${err.ok ? 'success' : 'failure'}) ${what}`)
    }
    // jco's bindings throw TypeError/Error for ABI misuse (bad handles, bad values):
    // the guest broke the contract
    return new Failure('GuestError', `Brane "${brane}" failed: ${describeValue(err)}${this.#memoryNote(instance)}`)
  }

  /** whether the instance's linear memory cannot grow another page: a failure then probably came from mem_max */
  #atMemoryLimit (instance: GuestInstance | undefined): boolean {
    return instance !== undefined && instance.memBytes + WASM_PAGE_BYTES > this.#init.memMaxBytes
  }

  /** says so when a failure probably came from hitting mem_max */
  #memoryNote (instance: GuestInstance | undefined): string {
    return this.#atMemoryLimit(instance) ? ` (linear memory is at its limit: mem_max = ${this.#init.memMaxBytes} bytes)` : ''
  }

  #module (name: string): CoreModule {
    const module = this.#init.modules.get(name)
    if (module === undefined) {
      throw new Failure('ComponentLoadError', `Cannot instantiate brane "${this.#init.brane}": missing core module "${name}"`)
    }
    return module
  }

  #toResponse (answer: GuestResponse | undefined): Served {
    const brane = this.#init.brane
    if (answer === undefined) {
      throw new Failure('GuestError', `Brane "${brane}" returned without setting a response`)
    }
    if (answer.tag === 'err') {
      throw new Failure('GuestError', `Brane "${brane}" answered with an error: ${describeValue(answer.error)}`)
    }
    if (answer.overflowed) {
      throw this.#overflow()
    }
    return { status: answer.status, headers: answer.headers, body: answer.body, streamed: answer.streamed }
  }
}

/** The exit status a command rejects an event with (EX_DATAERR), as a frontier guest does */
const EXIT_REJECT = 65
/** The exit status that asks for a retry by convention (EX_TEMPFAIL); any other but 0 and 65 retries too */
const EXIT_RETRY = 75

const NO_JSPI = new TypeError('WebAssembly.promising is not available (no JSPI in this Node.js)')

/**
 * jco's per-instance setup calls `WebAssembly.promising(cabi_realloc)` in a try/catch
 * and falls back to the plain export when it throws. Node 20 has no JSPI, so the call
 * throws "WebAssembly.promising is not a function", and to word that message V8
 * re-parses the ~4,500-line setup function: ~1 ms, most of a fresh instantiation.
 * A stub that throws a prebuilt error keeps the same fallback at no cost. Installed
 * only where the global is missing, in threads that instantiate components.
 */
function stubPromising (): void {
  const api = (globalThis as unknown as { WebAssembly: { promising?: unknown } }).WebAssembly
  if (api.promising === undefined) {
    Object.defineProperty(api, 'promising', {
      value: function promising (): never { throw NO_JSPI },
      writable: true,
      configurable: true
    })
  }
}

/** An instance taken from an {@link InstancePool} */
export interface Acquired {
  readonly instance: GuestInstance
  /** instantiated for this acquire, on the caller's time */
  readonly cold: boolean
}

/** Options of {@link InstancePool} */
export interface InstancePoolInit {
  readonly lifecycle: Lifecycle
  /** instances kept ready ahead of need @default 1 */
  readonly prewarm?: number
  /**
   * `pooled`: an instance whose linear memory has grown past this many bytes is not
   * reused but replaced, before a guest that leaks runs into mem_max in a request
   * @default Infinity
   */
  readonly recycleAboveBytes?: number
}

/**
 * The instances of one worker. `ephemeral`: every acquire gets an instance that never
 * served before, taken from a pre-warmed set that refills in the background.
 * `pooled` and `pinned`: instances go back to the pool after a clean request and are
 * discarded after a trap or error (a failed instance's state cannot be trusted);
 * `pinned` differs only in that the brane runs one worker, so one instance serves
 * every request. Requests are served one at a time per worker.
 */
export class InstancePool {
  readonly #factory: InstanceFactory
  readonly #reuse: boolean
  readonly #target: number
  readonly #recycleAbove: number
  readonly #ready: GuestInstance[] = []
  #refilling: Promise<void> | undefined
  #closed = false

  constructor (factory: InstanceFactory, init: InstancePoolInit) {
    this.#factory = factory
    this.#reuse = init.lifecycle !== 'ephemeral'
    this.#target = Math.max(0, init.prewarm ?? 1)
    this.#recycleAbove = init.lifecycle === 'pooled' ? init.recycleAboveBytes ?? Infinity : Infinity
  }

  /** instances ready now */
  get size (): number {
    return this.#ready.length
  }

  /** Fills the pool to its target (or to `count` instances, if fewer); resolves when done */
  async fill (count = this.#target): Promise<void> {
    while (!this.#closed && this.#ready.length < Math.min(count, this.#target)) {
      this.#ready.push(await this.#factory.instantiate())
    }
  }

  async acquire (): Promise<Acquired> {
    const instance = this.#ready.pop()
    if (instance !== undefined) {
      return { instance, cold: false }
    }
    return { instance: await this.#factory.instantiate(), cold: true }
  }

  /** Hands back an instance after a request; `ok` false discards it */
  release (instance: GuestInstance, ok: boolean): void {
    instance.output = undefined
    instance.invocation = undefined
    instance.stdoutTo = undefined
    instance.stderrTo = undefined
    instance.host?.endRequest()
    if (this.#reuse && ok && !this.#closed && instance.memBytes <= this.#recycleAbove) {
      this.#ready.push(instance)
    } else {
      discard(instance)
    }
  }

  /**
   * Refills in the background, one instance per macrotask, so that a request that
   * arrives meanwhile waits for one instantiation at most.
   */
  refillSoon (onError: (err: unknown) => void): void {
    if (this.#refilling !== undefined || this.#closed || this.#ready.length >= this.#target) {
      return
    }
    this.#refilling = (async () => {
      while (!this.#closed && this.#ready.length < this.#target) {
        await new Promise<void>((resolve) => { setImmediate(resolve) })
        if (this.#ready.length < this.#target) {
          this.#ready.push(await this.#factory.instantiate())
        }
      }
    })().catch(onError).finally(() => { this.#refilling = undefined })
  }

  close (): void {
    this.#closed = true
    for (const instance of this.#ready.splice(0)) {
      discard(instance)
    }
  }
}

/** Frees what the host holds for an instance that will not serve again */
function discard (instance: GuestInstance): void {
  if (instance.host !== undefined) {
    disposeInstanceHost(instance.host)
    instance.host = undefined
  }
}

/**
 * The `handle-error` of an export's `err` result: jco-transpile 0.15 throws the value
 * itself (`{ tag, val }`); jco 1.x CLI output throws a ComponentError with the value
 * in `payload`. Accept both.
 */
function handleErrorOf (err: unknown): { tag: 'retry' | 'reject', val: string } | undefined {
  if (typeof err !== 'object' || err === null) {
    return undefined
  }
  const value = Object.hasOwn(err, 'payload') ? (err as { payload: unknown }).payload : err
  const payload = value as { tag?: unknown, val?: unknown } | null
  if (payload === null || typeof payload !== 'object' || (payload.tag !== 'retry' && payload.tag !== 'reject')) {
    return undefined
  }
  return { tag: payload.tag, val: typeof payload.val === 'string' ? payload.val : String(payload.val) }
}

function describeValue (value: unknown): string {
  if (value instanceof Error) {
    return value.message
  }
  try {
    return JSON.stringify(value, (_key, v: unknown) => typeof v === 'bigint' ? v.toString() : v) ?? String(value)
  } catch {
    return String(value)
  }
}
