/**
 * The server side of wasi:http/types for one request, in memory.
 *
 * preview2-shim's own server side (`HTTPServer`) lives in its I/O thread, hides the
 * constructors Omega would need (`IncomingRequest._create`, `ResponseOutparam._create`
 * are deleted after module load), cannot hand a response body back to the caller,
 * and calls `process.exit(1)` when a handler fails. So Omega keeps the shim's types
 * (Fields, OutgoingRequest, IncomingResponse, … for `net.http`) and replaces the
 * request/response half: subclasses of the shim's classes (so they pass the
 * `instanceof` checks in jco's bindings) that read the request from memory and
 * collect the response in memory.
 */
import { ByteCollector, MemoryInputStream, SinkOutputStream } from './streams.ts'
import type { BraneHttpRequest } from '../../../interfaces/index.ts'
import { shim, WitError, type ImportInterface } from './shim.ts'

/** A request as the host received it */
export type HostRequest = BraneHttpRequest

/**
 * What the guest answered, once `response-outparam.set` was called. `body` is what
 * was not streamed yet (all of it when `streamed` is false); `overflowed`: a write
 * was refused for going past the body limit, so the body is cut short.
 */
export type GuestResponse =
  | { readonly tag: 'ok', readonly status: number, readonly headers: Array<[string, string]>, readonly body: Uint8Array, readonly finished: boolean, readonly streamed: boolean, readonly overflowed: boolean }
  | { readonly tag: 'err', readonly error: unknown }

/**
 * Where a response goes while the guest still runs (see {@link Exchange.pump}). A
 * response that completes quickly is never streamed: it leaves whole, with the job.
 */
export interface ResponseOut {
  /** whether a flush starts streaming (the guest has run a while); a chunk's worth of bytes always does */
  readonly due: () => boolean
  /** sends the status and headers */
  readonly head: (status: number, headers: Array<[string, string]>) => void
  /**
   * sends body bytes; may block until the client takes earlier ones
   * @throws WitError `closed` when nobody takes them any more (the client went away)
   */
  readonly chunk: (bytes: Uint8Array) => void
}

/** Body bytes written that go out as a chunk of a streamed response without waiting for a flush */
const STREAM_CHUNK_BYTES = 64 * 1024
const METHODS = new Set(['get', 'head', 'post', 'put', 'delete', 'connect', 'options', 'trace', 'patch'])
// The shim refuses these header names in `fields` (and filters them from requests)
const FORBIDDEN_HEADERS = new Set(['connection', 'keep-alive', 'host'])
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Headers the guest cannot change (request headers) */
class ImmutableFields extends shim.Fields {
  #locked = false

  static of (entries: ReadonlyArray<readonly [string, string]>): ImmutableFields {
    const fields = new ImmutableFields()
    for (const [name, value] of entries) {
      if (!FORBIDDEN_HEADERS.has(name.toLowerCase())) {
        fields.append(name, encoder.encode(value))
      }
    }
    fields.#locked = true
    return fields
  }

  override append (name: string, value: Uint8Array): void {
    this.#check()
    super.append(name, value)
  }

  override set (name: string, values: Uint8Array[]): void {
    this.#check()
    super.set(name, values)
  }

  override delete (name: string): void {
    this.#check()
    super.delete(name)
  }

  #check (): void {
    if (this.#locked) {
      throw new WitError({ tag: 'immutable' })
    }
  }
}

class OmegaIncomingBody extends shim.IncomingBody {
  #stream: MemoryInputStream | undefined

  constructor (body: Uint8Array, pull: (() => Uint8Array | undefined) | undefined) {
    super()
    this.#stream = new MemoryInputStream(body, pull)
  }

  stream (): MemoryInputStream {
    const stream = this.#stream
    if (stream === undefined) {
      throw new WitError(undefined) // result<input-stream>: err(()) when taken twice
    }
    this.#stream = undefined
    return stream
  }
}

class OmegaIncomingRequest extends shim.IncomingRequest {
  readonly #request: HostRequest
  readonly #pull: (() => Uint8Array | undefined) | undefined
  readonly #headers: ImmutableFields
  #consumed = false

  constructor (request: HostRequest, pull: (() => Uint8Array | undefined) | undefined) {
    super()
    this.#request = request
    this.#pull = pull
    this.#headers = ImmutableFields.of(request.headers)
  }

  method (): { tag: string, val?: string } {
    const method = this.#request.method.toLowerCase()
    return METHODS.has(method) ? { tag: method } : { tag: 'other', val: this.#request.method }
  }

  pathWithQuery (): string | undefined {
    return this.#request.pathWithQuery
  }

  scheme (): { tag: string, val?: string } | undefined {
    switch (this.#request.scheme.toLowerCase()) {
      case 'http': return { tag: 'HTTP' }
      case 'https': return { tag: 'HTTPS' }
      case '': return undefined
      default: return { tag: 'other', val: this.#request.scheme }
    }
  }

  authority (): string | undefined {
    return this.#request.authority === '' ? undefined : this.#request.authority
  }

  headers (): ImmutableFields {
    return this.#headers
  }

  consume (): OmegaIncomingBody {
    if (this.#consumed) {
      throw new WitError(undefined)
    }
    this.#consumed = true
    return new OmegaIncomingBody(this.#request.body, this.#pull)
  }
}

/** An outgoing-body whose bytes stay in memory (response bodies) */
class OmegaOutgoingBody extends shim.OutgoingBody {
  readonly collector: ByteCollector
  #stream: SinkOutputStream | undefined
  #finished = false

  /** @param flushed - told when the guest flushes, or has written a streaming chunk's worth */
  constructor (limit: number, flushed: () => void) {
    super()
    const collector = this.collector = new ByteCollector(limit)
    this.#stream = new SinkOutputStream((bytes) => {
      collector.push(bytes)
      if (collector.pending >= STREAM_CHUNK_BYTES) {
        flushed()
      }
    }, flushed)
  }

  get finished (): boolean {
    return this.#finished
  }

  write (): SinkOutputStream {
    const stream = this.#stream
    if (stream === undefined) {
      throw new WitError(undefined)
    }
    this.#stream = undefined
    return stream
  }

  /** Called through {@link OutgoingBodyFacade.finish} */
  finishBody (trailers: unknown): void {
    if (this.#finished) {
      throw new WitError({ tag: 'internal-error', val: 'outgoing-body already finished' })
    }
    if (trailers !== undefined) {
      throw new WitError({ tag: 'internal-error', val: 'trailers are not supported' })
    }
    this.#finished = true
  }
}

/**
 * The `OutgoingBody` class in the import object. jco checks `instanceof OutgoingBody`
 * on every body the host returns and calls `OutgoingBody.finish` for every body:
 * response bodies are Omega's, request bodies (net.http) the shim's.
 */
class OutgoingBodyFacade extends shim.OutgoingBody {
  static override finish (body: unknown, trailers: unknown): void {
    if (body instanceof OmegaOutgoingBody) {
      body.finishBody(trailers)
      return
    }
    shim.OutgoingBody.finish(body, trailers)
  }

  static override [Symbol.hasInstance] (value: unknown): boolean {
    return value instanceof shim.OutgoingBody
  }
}

/** Options of {@link httpTypesFor} */
export interface HttpTypesOptions {
  /** most bytes a response body may have */
  readonly maxBodyBytes: number
}

/** One request's response side: the outparam handed to the guest and what it set */
export interface Exchange {
  readonly request: object
  readonly outparam: object
  /**
   * the guest's answer, `undefined` while `response-outparam.set` was not called; the
   * first answer read is the final one (its body is what was not streamed)
   */
  response: () => GuestResponse | undefined
  /**
   * Sends what the guest has answered so far, when it set its response: at a flush
   * once `out.due` says so, and always when `waiting` (the guest is about to block,
   * so what it wrote must not wait for it). Once started, every flush sends.
   */
  pump: (waiting: boolean) => void
}

/** How the body of one request continues and where its response goes, while the guest runs */
export interface ExchangeStreams {
  /** the next piece of the request body (blocking), `undefined` at its end */
  readonly pull?: () => Uint8Array | undefined
  /** where a streamed response goes; without it the response is only read at the end */
  readonly out?: ResponseOut
}

/**
 * The `wasi:http/types` interface for one instance, and a function that makes the
 * request/outparam pair of an exchange.
 */
export function httpTypesFor (options: HttpTypesOptions): { types: ImportInterface, exchange: (request: HostRequest, streams?: ExchangeStreams) => Exchange } {
  const maxBodyBytes = options.maxBodyBytes

  class OmegaOutgoingResponse extends shim.OutgoingResponse {
    #status = 200
    #body: OmegaOutgoingBody | undefined
    readonly #headers: { entries: () => Array<[string, Uint8Array]> }
    /** set by the exchange this response answers */
    onFlush: (() => void) | undefined

    constructor (headers: { entries: () => Array<[string, Uint8Array]> }) {
      super(headers) // the shim locks the headers
      this.#headers = headers
    }

    statusCode (): number {
      return this.#status
    }

    setStatusCode (status: number): void {
      if (!Number.isInteger(status) || status < 100 || status > 999) {
        throw new WitError(undefined)
      }
      this.#status = status
    }

    body (): OmegaOutgoingBody {
      if (this.#body !== undefined) {
        throw new WitError(undefined)
      }
      this.#body = new OmegaOutgoingBody(maxBodyBytes, () => { this.onFlush?.() })
      return this.#body
    }

    get collector (): ByteCollector | undefined {
      return this.#body?.collector
    }

    headerList (): Array<[string, string]> {
      return this.#headers.entries().map(([name, value]): [string, string] => [name, decoder.decode(value)])
    }

    read (streamed: boolean): GuestResponse {
      return {
        tag: 'ok',
        status: this.#status,
        headers: this.headerList(),
        body: this.#body?.collector.take() ?? new Uint8Array(0),
        finished: this.#body?.finished ?? false,
        streamed,
        overflowed: this.#body?.collector.overflowed ?? false
      }
    }
  }

  class OmegaResponseOutparam {
    readonly #deliver: (response: { tag: string, val: unknown }) => void

    constructor (deliver: (response: { tag: string, val: unknown }) => void) {
      this.#deliver = deliver
    }

    static set (param: OmegaResponseOutparam, response: { tag: string, val: unknown }): void {
      param.#deliver(response)
    }
  }

  const types: ImportInterface = {
    ...shim.httpTypes,
    IncomingRequest: OmegaIncomingRequest,
    OutgoingResponse: OmegaOutgoingResponse,
    OutgoingBody: OutgoingBodyFacade,
    ResponseOutparam: OmegaResponseOutparam
  }

  function exchange (request: HostRequest, streams: ExchangeStreams = {}): Exchange {
    let set: { tag: string, val: unknown } | undefined
    let answer: OmegaOutgoingResponse | undefined
    let streaming = false
    let read: GuestResponse | undefined
    const out = streams.out
    const pump = (waiting: boolean): void => {
      if (answer === undefined || out === undefined) {
        return
      }
      const collector = answer.collector
      if (!streaming) {
        if (!waiting && (collector?.pending ?? 0) < STREAM_CHUNK_BYTES && !out.due()) {
          return
        }
        streaming = true
        out.head(answer.statusCode(), answer.headerList())
      }
      if (collector !== undefined && collector.pending > 0) {
        out.chunk(collector.take())
      }
    }
    const outparam = new OmegaResponseOutparam((response) => {
      if (set !== undefined) {
        // the outparam is an owned handle: the guest cannot set it twice
        throw new Error('response-outparam already set')
      }
      set = response
      if (response.tag === 'ok' && response.val instanceof OmegaOutgoingResponse) {
        answer = response.val
        answer.onFlush = () => { pump(false) }
      }
    })
    return {
      request: new OmegaIncomingRequest(request, streams.pull),
      outparam,
      pump,
      response () {
        if (set === undefined) {
          return undefined
        }
        // reading takes the body's bytes: once read, the answer stays as it was read
        read ??= answer === undefined ? { tag: 'err', error: set.val } : answer.read(streaming)
        return read
      }
    }
  }

  return { types, exchange }
}
