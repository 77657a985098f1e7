/**
 * A frontier brane: HTTP requests and events served by microVM clones restored from a
 * golden snapshot of its guest image. It fits the gateway (`HttpHandler`) and the
 * dispatcher (`EventTarget`) exactly like a standard brane.
 *
 * The workload inside the guest is `/app/run`, run once per request or event by the
 * agent: it reads the body (or event payload) on stdin and describes the call in its
 * environment; what it writes on stdout is the reply; events it emits are records
 * `TOPIC LENGTH\n<bytes>` on file descriptor 3 (see README, "Frontier").
 */
import { randomBytes } from 'node:crypto'
import { rm, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { AbortOptions, BraneEvent, BraneHttpRequest, BraneHttpResponse, Logger } from '../../interfaces/index.ts'
import { CapabilityDeniedError, DeadlineExceededError, GuestError, OmegaError, RejectedEventError, RetryableEventError, VmmError } from '../../errors.ts'
import type { AgentConnection, RunInput, RunResult } from './agent.ts'
import { parseEmits } from './agent.ts'
import type { VmHandle, VmmDriver } from './driver.ts'
import type { GuestImage } from './image.ts'
import { ensureGolden, vmConfig, type GoldenSnapshot, type SnapshotSigner } from './snapshots.ts'
import { combineSignals } from '../../util/index.ts'

/** Exit code of a workload that asks for the event again later (sysexits EX_TEMPFAIL) */
export const EXIT_RETRY = 75
/** Exit code of a workload that refuses an event for good (sysexits EX_DATAERR) */
export const EXIT_REJECT = 65

export interface FrontierBraneInit {
  readonly name: string
  readonly image: GuestImage
  readonly driver: VmmDriver
  /** guest RAM (the brane's mem_max, at least 96 MiB) */
  readonly memBytes: number
  readonly vcpus: number
  /** per request or event; a late guest is killed and replaced. @default 30_000 */
  readonly deadlineMs?: number
  /** `ephemeral`: a fresh clone per call; `pooled`/`pinned`: clones are reused. @default 'ephemeral' */
  readonly lifecycle?: 'ephemeral' | 'pooled' | 'pinned'
  /** clones kept warm, and calls served at once. @default 1 */
  readonly poolSize?: number
  /** the topics its outgoing edges allow it to emit */
  readonly emitTopics?: readonly string[]
  readonly onEmit?: (topic: string, payload: Uint8Array, options: AbortOptions & { traceId?: string, traceparent?: string }) => Promise<string>
  readonly log?: (stream: 'stdout' | 'stderr', line: string) => void
  /** where golden snapshots live (a tmpfs) */
  readonly snapshotRoot: string
  /** where VMs keep their sockets */
  readonly runDir: string
  readonly signer: SnapshotSigner
  readonly logger?: Logger
  /** how long the first boot may take. @default 120_000 */
  readonly bootTimeoutMs?: number
}

/** How a call went: where the time went */
export interface FrontierTiming {
  /** ms waiting for a clone (0 when a warm one was ready) */
  readonly acquireMs: number
  /** ms from sending the call to the agent's reply */
  readonly execMs: number
  /** whether the clone was restored for this call (no warm one was ready) */
  readonly cold: boolean
}

export interface FrontierStats {
  /** clones restored from the golden snapshot */
  readonly restored: number
  /** clones replaced after their VMM died or ran past the deadline */
  readonly replaced: number
  readonly warm: number
  readonly busy: number
}

interface Clone {
  readonly vm: VmHandle
  readonly agent: AgentConnection
  /** set while it serves a call */
  busy: boolean
}

export const MIN_GUEST_MEM = 96 * 2 ** 20

export class FrontierBrane {
  readonly name: string
  readonly #init: FrontierBraneInit
  readonly #golden: GoldenSnapshot
  readonly #poolSize: number
  readonly #deadlineMs: number
  readonly #lifecycle: 'ephemeral' | 'pooled' | 'pinned'
  readonly #warm: Clone[] = []
  readonly #all = new Set<Clone>()
  readonly #waiters: Array<() => void> = []
  #starting = 0
  #inFlight = 0
  #restored = 0
  #replaced = 0
  #closed = false
  readonly #shutdown = new AbortController()

  private constructor (init: FrontierBraneInit, golden: GoldenSnapshot) {
    this.name = init.name
    this.#init = init
    this.#golden = golden
    this.#lifecycle = init.lifecycle ?? 'ephemeral'
    this.#poolSize = this.#lifecycle === 'pinned' ? 1 : Math.max(1, init.poolSize ?? 1)
    this.#deadlineMs = init.deadlineMs ?? 30_000
  }

  /**
   * Makes (or reuses) the golden snapshot of the brane's image and warms its pool.
   *
   * @throws VmmError when the VMM cannot start or the guest does not answer
   */
  static async create (init: FrontierBraneInit, options: AbortOptions = {}): Promise<FrontierBrane> {
    const memBytes = Math.max(init.memBytes, MIN_GUEST_MEM)
    const golden = await ensureGolden({
      driver: init.driver,
      image: init.image,
      memBytes,
      vcpus: init.vcpus,
      root: init.snapshotRoot,
      runDir: init.runDir,
      signer: init.signer,
      ...(init.bootTimeoutMs === undefined ? {} : { bootTimeoutMs: init.bootTimeoutMs }),
      ...(init.logger === undefined ? {} : { logger: init.logger })
    }, options)
    const brane = new FrontierBrane({ ...init, memBytes }, golden)
    try {
      const first = await brane.#restore(options)
      brane.#release(first, true)
      brane.#refill()
    } catch (err) {
      await brane.close()
      throw err
    }
    return brane
  }

  /** The golden snapshot clones are restored from */
  get snapshot (): GoldenSnapshot {
    return this.#golden
  }

  get stats (): FrontierStats {
    return { restored: this.#restored, replaced: this.#replaced, warm: this.#warm.length, busy: this.#inFlight }
  }

  /** Process ids of the VMMs serving this brane (warm and busy) */
  get pids (): number[] {
    return [...this.#all].map((c) => c.vm.pid)
  }

  /** Restores one clone into a VMM started for it, and waits for its agent */
  async #restore (options: AbortOptions): Promise<Clone> {
    const dir = join(this.#init.runDir, `${this.name}-${randomBytes(5).toString('hex')}`)
    const vm = await this.#init.driver.prepare(vmConfig({ image: this.#init.image, memBytes: this.#init.memBytes, vcpus: this.#init.vcpus }, this.#golden.ramFile, false, dir), options)
    const combined = combineSignals([AbortSignal.timeout(30_000), options.signal])
    const signal = combined.signal
    try {
      await vm.restore(this.#golden.stateFile, { signal })
      const agent = await vm.connectAgent({ signal })
      // the first answer costs a translation of the agent's code under TCG: pay it now, not in a call
      await agent.ready({ signal, intervalMs: 250 })
      this.#restored++
      const clone: Clone = { vm, agent, busy: false }
      this.#all.add(clone)
      vm.exited.then(() => { this.#onExit(clone) }, () => {})
      return clone
    } catch (err) {
      const diag = await vm.diagnostics()
      await vm.stop()
      if (err instanceof VmmError) {
        throw new VmmError(`Cannot restore a clone of brane "${this.name}": ${err.message}${diag === '' ? '' : `\n${diag}`}`, { cause: err })
      }
      throw err
    } finally {
      combined.clear()
    }
  }

  /** A VMM exited: forget its clone, and replace it when it was not stopped on purpose */
  #onExit (clone: Clone): void {
    if (!this.#all.delete(clone)) {
      return
    }
    const i = this.#warm.indexOf(clone)
    if (i >= 0) {
      this.#warm.splice(i, 1)
    }
    clone.agent.close()
    if (!this.#closed) {
      this.#replaced++
      this.#init.logger?.warn({ brane: this.name, pid: clone.vm.pid }, 'a microVM exited: replacing it')
      clone.vm.stop().catch(() => {})
      this.#refill()
    }
  }

  /** Keeps `poolSize` clones warm or busy */
  #refill (): void {
    while (!this.#closed && this.#all.size + this.#starting < this.#poolSize) {
      this.#starting++
      this.#restore({ signal: this.#shutdown.signal }).then(
        (clone) => {
          this.#starting--
          if (this.#closed) {
            clone.vm.stop().catch(() => {})
            return
          }
          this.#release(clone, true)
        },
        (err: unknown) => {
          this.#starting--
          if (!this.#closed) {
            this.#init.logger?.error({ brane: this.name, err: (err as Error).message }, 'cannot restore a clone')
            // wake a waiter: it restores its own clone and sees the error
            this.#waiters.shift()?.()
          }
        })
    }
  }

  #release (clone: Clone, reusable: boolean): void {
    clone.busy = false
    if (!reusable || clone.vm.dead || clone.agent.closed) {
      this.#all.delete(clone)
      clone.vm.stop().catch(() => {})
      this.#refill()
    } else {
      this.#warm.push(clone)
    }
    this.#waiters.shift()?.()
  }

  async #acquire (options: AbortOptions): Promise<{ clone: Clone, cold: boolean }> {
    for (let round = 0; round < 1000; round++) {
      if (this.#closed) {
        throw new OmegaError(`Brane "${this.name}" is closed`)
      }
      options.signal?.throwIfAborted()
      const clone = this.#warm.shift()
      if (clone !== undefined) {
        if (clone.vm.dead || clone.agent.closed) {
          continue
        }
        clone.busy = true
        return { clone, cold: false }
      }
      if (this.#inFlight < this.#poolSize && this.#starting === 0 && this.#all.size < this.#poolSize) {
        // nothing warm and nothing on its way: restore one for this call
        this.#starting++
        try {
          const fresh = await this.#restore(options)
          fresh.busy = true
          return { clone: fresh, cold: true }
        } finally {
          this.#starting--
        }
      }
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => { reject(options.signal?.reason) }
        options.signal?.addEventListener('abort', onAbort, { once: true })
        this.#waiters.push(() => { options.signal?.removeEventListener('abort', onAbort); resolve() })
      })
    }
    throw new VmmError(`No clone of brane "${this.name}" became free`)
  }

  /** Runs one call in a clone, with the deadline; a clone that died or ran late is replaced */
  async #call (input: RunInput, what: string, options: AbortOptions): Promise<{ result: RunResult, timing: FrontierTiming }> {
    const t0 = performance.now()
    const { clone, cold } = await this.#acquire(options)
    this.#inFlight++
    const t1 = performance.now()
    const deadline = AbortSignal.timeout(this.#deadlineMs)
    const combined = combineSignals([deadline, options.signal])
    const signal = combined.signal
    let reusable = this.#lifecycle !== 'ephemeral'
    try {
      const result = await clone.agent.run(input, { signal })
      return { result, timing: { acquireMs: t1 - t0, execMs: performance.now() - t1, cold } }
    } catch (err) {
      reusable = false
      if (deadline.aborted) {
        this.#replaced++
        throw new DeadlineExceededError(`Brane "${this.name}" did not answer ${what} within its deadline of ${this.#deadlineMs} ms: its microVM was stopped and is being replaced`)
      }
      if (clone.vm.dead || clone.agent.closed) {
        const exit = await Promise.race([clone.vm.exited, new Promise<undefined>((resolve) => setTimeout(resolve, 200, undefined))])
        if (this.#all.has(clone)) {
          // #onExit has not seen it (and will not: the release below forgets the clone); the release replaces it
          this.#replaced++
        }
        const how = exit === undefined ? 'its connection to the agent broke' : `VMM pid ${clone.vm.pid} exited${exit.signal === null ? ` with code ${String(exit.code)}` : ` on ${exit.signal}`}`
        throw new VmmError(`Brane "${this.name}" lost its microVM during ${what} (${how}): the call failed and a replacement is starting`, { cause: err })
      }
      throw err
    } finally {
      combined.clear()
      this.#inFlight--
      this.#release(clone, reusable)
    }
  }

  #logOutput (stream: 'stdout' | 'stderr', bytes: Buffer): void {
    if (this.#init.log === undefined || bytes.byteLength === 0) {
      return
    }
    for (const line of bytes.toString('utf8').split('\n')) {
      if (line !== '') {
        this.#init.log(stream, line)
      }
    }
  }

  /** `trace`: the trace the emits continue, and the span they are made in (OpenTelemetry export on) */
  async #emit (result: RunResult, trace: { readonly traceId?: string | undefined, readonly traceparent?: string | undefined }, options: AbortOptions): Promise<void> {
    if (result.emits.byteLength === 0) {
      return
    }
    let emits
    try {
      emits = parseEmits(result.emits)
    } catch (err) {
      throw new GuestError(`Brane "${this.name}": ${(err as Error).message}`)
    }
    const allowed = this.#init.emitTopics ?? []
    for (const e of emits) {
      if (!allowed.includes(e.topic)) {
        throw new CapabilityDeniedError(`Brane "${this.name}" emitted on topic "${e.topic}", which no edge in [graph].edges carries from it (it may emit: ${allowed.length === 0 ? 'nothing' : allowed.join(', ')})`)
      }
    }
    if (this.#init.onEmit === undefined) {
      return
    }
    for (const e of emits) {
      await this.#init.onEmit(e.topic, e.payload, {
        ...(trace.traceId === undefined ? {} : { traceId: trace.traceId }),
        ...(trace.traceparent === undefined ? {} : { traceparent: trace.traceparent }),
        ...(options.signal === undefined ? {} : { signal: options.signal })
      })
    }
  }

  /**
   * Serves an HTTP request (the workload sees CGI-style variables and writes a CGI-style
   * or plain reply); `traceparent`: the span serving it (OpenTelemetry export on), which
   * the workload sees as `TRACEPARENT`
   */
  async handle (request: BraneHttpRequest, options: AbortOptions & { traceparent?: string } = {}): Promise<BraneHttpResponse & { timing: FrontierTiming }> {
    const [path = '/', query = ''] = splitOnce(request.pathWithQuery, '?')
    const env: Record<string, string> = {
      OMEGA_KIND: 'http',
      OMEGA_BRANE: this.name,
      REQUEST_METHOD: request.method,
      OMEGA_PATH: request.pathWithQuery,
      PATH_INFO: path,
      QUERY_STRING: query,
      OMEGA_SCHEME: request.scheme,
      HTTP_HOST: request.authority,
      CONTENT_LENGTH: String(request.body.byteLength)
    }
    for (const [name, value] of request.headers) {
      if (name.toLowerCase() === 'proxy') {
        continue // httpoxy: a "Proxy" header would become HTTP_PROXY, which HTTP clients in the guest obey
      }
      const key = name.toLowerCase() === 'content-type' ? 'CONTENT_TYPE' : `HTTP_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`
      if (!value.includes('\0')) {
        env[key] = env[key] === undefined || key === 'HTTP_HOST' ? value : `${env[key]}, ${value}`
      }
    }
    if (options.traceparent !== undefined) {
      env.TRACEPARENT = options.traceparent
    }
    const { result, timing } = await this.#call({ env, stdin: request.body }, `${request.method} ${request.pathWithQuery}`, options)
    this.#logOutput('stderr', result.stderr)
    if (result.status !== 0) {
      throw new GuestError(`Brane "${this.name}": /app/run exited with status ${result.status}${tail(result.stderr)}`)
    }
    await this.#emit(result, { traceparent: options.traceparent }, options)
    return { ...parseCgi(result.stdout), timing }
  }

  /** Delivers an event: exit 0 is done, 75 asks for a retry, 65 rejects it, anything else is retried */
  async deliver (event: BraneEvent, options: AbortOptions = {}): Promise<{ timing: FrontierTiming }> {
    const env = {
      OMEGA_KIND: 'event',
      OMEGA_BRANE: this.name,
      OMEGA_TOPIC: event.topic,
      OMEGA_EVENT_ID: event.id,
      OMEGA_SOURCE: event.source,
      OMEGA_TRACE_ID: event.traceId,
      OMEGA_ATTEMPT: String(event.attempt),
      // the delivery's span (OpenTelemetry export on)
      ...(event.traceparent === undefined ? {} : { TRACEPARENT: event.traceparent })
    }
    const { result, timing } = await this.#call({ env, stdin: event.payload }, `event ${event.id}`, options)
    this.#logOutput('stdout', result.stdout)
    this.#logOutput('stderr', result.stderr)
    if (result.status === EXIT_REJECT) {
      throw new RejectedEventError(`Brane "${this.name}" rejected event ${event.id}${tail(result.stderr)}`)
    }
    if (result.status !== 0) {
      throw new RetryableEventError(`Brane "${this.name}": /app/run exited with status ${result.status} on event ${event.id}${result.status === EXIT_RETRY ? ' (retry asked)' : ''}${tail(result.stderr)}`)
    }
    await this.#emit(result, event, options)
    return { timing }
  }

  /** Stops every clone (the golden snapshot stays for the next start) */
  async close (): Promise<void> {
    if (this.#closed) {
      return
    }
    this.#closed = true
    this.#shutdown.abort(new OmegaError(`Brane "${this.name}" is closing`))
    for (const w of this.#waiters.splice(0)) {
      w()
    }
    const clones = [...this.#all]
    this.#all.clear()
    this.#warm.length = 0
    await Promise.allSettled(clones.map(async (c) => { c.agent.close(); await c.vm.stop() }))
    // the run directory goes with the last brane using it (rmdir refuses while others have VMs in it)
    await rmdir(this.#init.runDir).catch(() => {})
  }

  /** Removes the golden snapshot's files (for tests and `omega guest rm`) */
  async removeSnapshot (): Promise<void> {
    await rm(this.#golden.dir, { recursive: true, force: true })
  }
}

function splitOnce (s: string, sep: string): [string, string] {
  const i = s.indexOf(sep)
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)]
}

function tail (stderr: Buffer): string {
  const text = stderr.toString('utf8').trim()
  return text === '' ? '' : `: ${text.split('\n').slice(-3).join(' | ').slice(0, 400)}`
}

const HEADER_LINE = /^[A-Za-z0-9-]+:[ \t]*[^\r\n]*$/

/**
 * A CGI-style reply (header lines, a blank line, the body; `Status: 404 Not Found`
 * sets the status) or, when stdout does not start with a header block, a plain body
 * with status 200.
 */
export function parseCgi (stdout: Buffer): BraneHttpResponse {
  const head = stdout.subarray(0, 8192).toString('latin1')
  const end = head.search(/\r?\n\r?\n/)
  if (end > 0) {
    const lines = head.slice(0, end).split(/\r?\n/)
    if (lines.every((l) => HEADER_LINE.test(l))) {
      const sep = /\r?\n\r?\n/.exec(head.slice(end))?.[0].length ?? 2
      let status = 200
      const headers: Array<[string, string]> = []
      for (const l of lines) {
        const colon = l.indexOf(':')
        const name = l.slice(0, colon).trim()
        const value = l.slice(colon + 1).trim()
        if (name.toLowerCase() === 'status') {
          const code = Number.parseInt(value, 10)
          if (code >= 100 && code <= 599) {
            status = code
          }
        } else {
          headers.push([name.toLowerCase(), value])
        }
      }
      return { status, headers, body: stdout.subarray(end + sep) }
    }
  }
  return { status: 200, headers: [['content-type', 'text/plain; charset=utf-8']], body: stdout }
}
