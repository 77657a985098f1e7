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

/** What the guest answered, once `response-outparam.set` was called */
export type GuestResponse =
  | { readonly tag: 'ok', readonly status: number, readonly headers: Array<[string, string]>, readonly body: Uint8Array, readonly finished: boolean }
  | { readonly tag: 'err', readonly error: unknown }

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

  constructor (body: Uint8Array) {
    super()
    this.#stream = new MemoryInputStream(body)
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
  readonly #headers: ImmutableFields
  #consumed = false

  constructor (request: HostRequest) {
    super()
    this.#request = request
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
    return new OmegaIncomingBody(this.#request.body)
  }
}

/** An outgoing-body whose bytes stay in memory (response bodies) */
class OmegaOutgoingBody extends shim.OutgoingBody {
  readonly collector: ByteCollector
  #stream: SinkOutputStream | undefined
  #finished = false

  constructor (limit: number) {
    super()
    this.collector = new ByteCollector(limit)
    this.#stream = new SinkOutputStream((bytes) => { this.collector.push(bytes) })
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
  /** the guest's answer, `undefined` while `response-outparam.set` was not called */
  response: () => GuestResponse | undefined
}

/**
 * The `wasi:http/types` interface for one instance, and a function that makes the
 * request/outparam pair of an exchange.
 */
export function httpTypesFor (options: HttpTypesOptions): { types: ImportInterface, exchange: (request: HostRequest) => Exchange } {
  const maxBodyBytes = options.maxBodyBytes

  class OmegaOutgoingResponse extends shim.OutgoingResponse {
    #status = 200
    #body: OmegaOutgoingBody | undefined
    readonly #headers: { entries: () => Array<[string, Uint8Array]> }

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
      this.#body = new OmegaOutgoingBody(maxBodyBytes)
      return this.#body
    }

    read (): GuestResponse {
      const headers = this.#headers.entries().map(([name, value]): [string, string] => [name, decoder.decode(value)])
      return {
        tag: 'ok',
        status: this.#status,
        headers,
        body: this.#body?.collector.bytes() ?? new Uint8Array(0),
        finished: this.#body?.finished ?? false
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

  function exchange (request: HostRequest): Exchange {
    let set: { tag: string, val: unknown } | undefined
    const outparam = new OmegaResponseOutparam((response) => {
      if (set !== undefined) {
        // the outparam is an owned handle: the guest cannot set it twice
        throw new Error('response-outparam already set')
      }
      set = response
    })
    return {
      request: new OmegaIncomingRequest(request),
      outparam,
      response () {
        if (set === undefined) {
          return undefined
        }
        if (set.tag === 'ok' && set.val instanceof OmegaOutgoingResponse) {
          return set.val.read()
        }
        return { tag: 'err', error: set.val }
      }
    }
  }

  return { types, exchange }
}
