/**
 * The gateway: one HTTP server for every brane of the node. It routes by host and path,
 * reads the body under a cap, hands the request to the brane and maps failures to HTTP
 * statuses by error name. A request whose client goes away is aborted.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { BodyChunks, HttpHandler, Logger, Startable, StreamingHttpResponse } from '../interfaces/index.ts'
import { OmegaError, OverloadedError, PayloadTooLargeError, UnauthorizedError, byErrorName, type OmegaErrorName } from '../errors.ts'
import { listening } from '../util/index.ts'

export { OverloadedError, PayloadTooLargeError, UnauthorizedError }
import { Router, type RouteEntry } from './router.ts'

/** Error name → HTTP status; anything else is a 500 */
export const STATUS_BY_ERROR: Readonly<Partial<Record<OmegaErrorName, number>>> = {
  RouteNotFoundError: 404,
  PayloadTooLargeError: 413,
  CapabilityDeniedError: 403,
  DeadlineExceededError: 504,
  GuestError: 502,
  // the guest hit [brane.X.limits] mem_max: the body names the key
  MemoryLimitError: 507,
  ComponentLoadError: 503,
  UnsupportedError: 501,
  OverloadedError: 503,
  BraneClosedError: 503,
  TargetUnavailableError: 503,
  UnauthorizedError: 401
}

/** `CapabilityTokenError` reasons that mean "not authenticated" (401); the others are 403 */
const UNAUTHENTICATED = new Set(['malformed', 'signature', 'expired'])

const EMPTY_BODY = new Uint8Array(0)
/** Headers that say how a body is framed */
const FRAMING = new Set(['content-length', 'transfer-encoding'])
/**
 * A request body larger than this (or of unknown length: chunked) streams to a brane
 * that takes streams; a smaller one is read first and handed over whole
 */
const STREAM_REQUEST_ABOVE = 64 * 1024

export interface GatewayInit {
  /** @default '127.0.0.1' */
  host?: string
  /** 0 picks a free port. @default 8080 */
  port?: number
  /** largest request body accepted. @default 16 MiB */
  maxBodyBytes?: number
  /**
   * most request-body bytes held at once, all connections together (read, or waiting
   * for their brane); a request that would pass it is answered 503 with Retry-After.
   * @default 256 MiB
   */
  maxBufferedBytes?: number
}

export interface GatewayComponents {
  logger: Logger
  /**
   * Checks the bearer token of a request to a brane with `auth = "token"`; throws
   * `CapabilityTokenError` to refuse (without it, such routes refuse every request)
   */
  authorize?: (brane: string, token: string) => unknown
}

export interface GatewayRoutes {
  readonly router: Router
  readonly handlers: ReadonlyMap<string, HttpHandler>
}

export class Gateway implements Startable {
  readonly #logger: Logger
  readonly #components: GatewayComponents
  readonly #host: string
  readonly #port: number
  readonly #maxBodyBytes: number
  readonly #maxBufferedBytes: number
  /** request-body bytes held now */
  #buffered = 0
  #server: Server | undefined
  #routes: GatewayRoutes = { router: new Router([]), handlers: new Map() }
  readonly #limits = new WeakMap<HttpHandler, BodyLimit>()

  constructor (components: GatewayComponents, init: GatewayInit = {}) {
    this.#logger = components.logger
    this.#components = components
    this.#host = init.host ?? '127.0.0.1'
    this.#port = init.port ?? 8080
    this.#maxBodyBytes = init.maxBodyBytes ?? 16 * 2 ** 20
    this.#maxBufferedBytes = init.maxBufferedBytes ?? 256 * 2 ** 20
  }

  /** Swap the whole routing table at once (used at start and on reload) */
  setRoutes (entries: readonly RouteEntry[], handlers: ReadonlyMap<string, HttpHandler>): void {
    this.#routes = { router: new Router(entries), handlers }
  }

  get routes (): readonly RouteEntry[] {
    return this.#routes.router.entries
  }

  /** `http://host:port` once listening */
  get url (): string {
    const address = this.#server?.address() as AddressInfo | null | undefined
    if (address == null) {
      throw new OmegaError('The gateway is not listening')
    }
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    return `http://${host}:${address.port}`
  }

  async start (): Promise<void> {
    const server = createServer({ keepAliveTimeout: 5_000 }, (req, res) => { this.#serve(req, res) })
    await listening(server, this.#port, this.#host).catch((err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? `port ${this.#port} is in use (choose another with --port)` : err.message
      throw new OmegaError(`Cannot start the gateway on ${this.#host}:${this.#port}: ${why}`, { cause: err })
    })
    this.#server = server
  }

  async stop (): Promise<void> {
    const server = this.#server
    this.#server = undefined
    if (server === undefined) {
      return
    }
    await new Promise<void>((resolve) => {
      server.close(() => { resolve() })
      server.closeIdleConnections()
    })
  }

  #serve (req: IncomingMessage, res: ServerResponse): void {
    const controller = new AbortController()
    res.once('close', () => {
      if (!res.writableFinished) {
        controller.abort(new OmegaError('The client closed the connection'))
      }
    })
    this.#handle(req, res, controller.signal).catch((err: unknown) => {
      if (controller.signal.aborted) {
        return // the client went away: nobody to answer, nothing gone wrong here
      }
      this.#fail(res, err)
    })
  }

  async #handle (req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const method = req.method ?? 'GET'
    const target = req.url ?? '/'
    const authority = req.headers.host ?? ''
    const path = target.split('?')[0] ?? '/'
    const { router, handlers } = this.#routes
    const match = router.match(authority, path, method)
    const handler = match === undefined ? undefined : handlers.get(match.brane)
    if (match === undefined || handler === undefined) {
      req.resume()
      this.#send(res, 404, { error: 'RouteNotFoundError', message: `No brane serves ${method} ${path}` })
      return
    }
    if (match.auth === 'token') {
      try {
        this.#authorize(match.brane, req.headers.authorization)
      } catch (err) {
        // refused before reading the body: drain it so the connection can be reused
        req.resume()
        throw err
      }
    }
    const held = { bytes: 0 }
    const limit = this.#limit(match.brane, handler)
    try {
      const headers: Array<[string, string]> = []
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        headers.push([(req.rawHeaders[i] ?? '').toLowerCase(), req.rawHeaders[i + 1] ?? ''])
      }
      const stream = handler.stream
      if (stream === undefined) {
        const body = await this.#readBody(req, held, limit)
        const response = await handler.handle({ method, pathWithQuery: target, scheme: 'http', authority, headers, body }, { signal })
        this.#writeWhole(res, method, response.status, response.headers, response.body)
        return
      }
      const declared = Number(req.headers['content-length'] ?? 0)
      const chunked = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] !== undefined
      let chunks: RequestChunks | undefined
      if (declared > limit.bytes) {
        req.resume()
        throw tooLarge(limit, declared)
      }
      const body = chunked || declared > STREAM_REQUEST_ABOVE
        ? (chunks = new RequestChunks(req, limit))
        : await this.#readBody(req, held, limit)
      const response = await stream.call(handler, { method, pathWithQuery: target, scheme: 'http', authority, headers, body }, { signal })
      if (chunks?.failure !== undefined) {
        // the body went past its limit before the brane answered: that is the answer
        await cancel(response)
        throw chunks.failure
      }
      if (response.body instanceof Uint8Array) {
        this.#writeWhole(res, method, response.status, response.headers, response.body)
      } else {
        await this.#writeStream(res, response.status, response.headers, response.body, signal, chunks)
      }
    } finally {
      // the body is let go once the brane has answered (or the request failed)
      this.#buffered -= held.bytes
    }
  }

  /** The request-body limit of `handler` (made once per handler: this runs per request) */
  #limit (brane: string, handler: HttpHandler): BodyLimit {
    let limit = this.#limits.get(handler)
    if (limit === undefined) {
      limit = handler.bodyMax === undefined
        ? { bytes: this.#maxBodyBytes, what: 'the gateway\'s limit' }
        : { bytes: handler.bodyMax, what: `brane "${brane}"'s limit ([brane.${brane}.limits] body_max)` }
      this.#limits.set(handler, limit)
    }
    return limit
  }

  /**
   * Sends a whole response, with a `content-length` when the brane set no framing of its
   * own (not to a HEAD: the length there is the GET's, which only the brane knows)
   */
  #writeWhole (res: ServerResponse, method: string, status: number, headers: ReadonlyArray<readonly [string, string]>, body: Uint8Array): void {
    const lines = headerLines(headers)
    if (method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304 && !headers.some(([name]) => FRAMING.has(name.toLowerCase()))) {
      lines.push('content-length', String(body.byteLength))
    }
    res.writeHead(status, lines)
    res.end(body)
  }

  /**
   * Sends a body as the brane writes it: the head at once, then each chunk once the
   * socket took the one before (so a slow client slows the brane down, not the heap).
   * A brane that fails half-way cuts the connection: the client sees an incomplete body;
   * so does a request whose body went past its limit after the head went out.
   */
  async #writeStream (res: ServerResponse, status: number, headers: ReadonlyArray<readonly [string, string]>, body: BodyChunks, signal: AbortSignal, request: RequestChunks | undefined): Promise<void> {
    res.writeHead(status, headerLines(headers))
    res.flushHeaders()
    const chunks = body[Symbol.asyncIterator]()
    try {
      for (;;) {
        const next = await chunks.next()
        if (next.done === true) {
          break
        }
        if (!res.write(next.value) && !await drained(res)) {
          await chunks.return?.()
          return // the client went away
        }
      }
      if (request?.failure !== undefined) {
        throw request.failure
      }
      res.end()
    } catch (err) {
      res.destroy()
      if (!signal.aborted) {
        this.#logger.warn({ err }, 'a streamed response failed after its head was sent')
      }
    }
  }

  /** Request-body bytes the gateway holds now, all connections together */
  get bufferedBytes (): number {
    return this.#buffered
  }

  /**
   * Checks the `Authorization` header of a request to `brane` as this gateway would (for
   * requests that reached the brane another way, e.g. forwarded by another node)
   *
   * @throws UnauthorizedError or CapabilityTokenError unless its token allows the request
   */
  authorizeRequest (brane: string, headers: ReadonlyArray<readonly [string, string]>): void {
    this.#authorize(brane, headers.find(([name]) => name.toLowerCase() === 'authorization')?.[1])
  }

  /** Throws UnauthorizedError (401) or CapabilityTokenError (401 or 403) unless the token allows the request */
  #authorize (brane: string, header: string | undefined): void {
    const token = header?.startsWith('Bearer ') === true ? header.slice(7).trim() : ''
    if (token === '') {
      throw new UnauthorizedError(`Brane "${brane}" requires a capability token allowing "invoke" on "brane/${brane}": send Authorization: Bearer TOKEN`)
    }
    if (this.#components.authorize === undefined) {
      throw new UnauthorizedError(`Brane "${brane}" requires a capability token, but this gateway has no token verifier`)
    }
    this.#components.authorize(brane, token)
  }

  /** The body, counted in `held` (and in the gateway's total) as it arrives */
  async #readBody (req: IncomingMessage, held: { bytes: number }, limit: BodyLimit): Promise<Uint8Array> {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > limit.bytes) {
      req.resume()
      throw tooLarge(limit, declared)
    }
    if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) {
      // no body (a GET, most often): nothing to wait for
      req.resume()
      return EMPTY_BODY
    }
    const overloaded = (): OverloadedError => {
      req.resume()
      return new OverloadedError(`The gateway holds ${this.#buffered} bytes of request bodies, its limit is ${this.#maxBufferedBytes}: try again shortly`)
    }
    if (declared > 0 && this.#buffered + declared > this.#maxBufferedBytes) {
      throw overloaded()
    }
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size > limit.bytes) {
        req.resume()
        throw tooLarge(limit)
      }
      if (this.#buffered + chunk.length > this.#maxBufferedBytes) {
        throw overloaded()
      }
      this.#buffered += chunk.length
      held.bytes += chunk.length
      chunks.push(chunk)
    }
    return chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks)
  }

  #fail (res: ServerResponse, err: unknown): void {
    const name = err instanceof Error ? err.name : 'Error'
    const status = name === 'CapabilityTokenError'
      ? (UNAUTHENTICATED.has((err as { reason?: string }).reason ?? '') ? 401 : 403)
      : byErrorName(STATUS_BY_ERROR, name)
    if (status === undefined) {
      this.#logger.error({ err }, 'request failed')
      this.#send(res, 500, { error: 'InternalError', message: 'Internal error' })
      return
    }
    this.#send(res, status, { error: name, message: err instanceof Error ? err.message : String(err) })
  }

  #send (res: ServerResponse, status: number, body: Record<string, unknown>): void {
    if (res.headersSent) {
      res.destroy()
      return
    }
    const text = JSON.stringify(body) + '\n'
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...(status === 401 ? { 'www-authenticate': 'Bearer realm="omega"' } : {}),
      ...(status === 503 ? { 'retry-after': '1' } : {})
    })
    res.end(text)
  }
}

/** The most bytes a request body may have, and whose limit that is (for messages) */
interface BodyLimit {
  readonly bytes: number
  readonly what: string
}

function tooLarge (limit: BodyLimit, declared?: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`Request body${declared === undefined ? '' : ` of ${declared} bytes`} is over ${limit.what} of ${limit.bytes} bytes`)
}

/** One flat list of raw header lines: repeated names stay repeated, in order */
function headerLines (headers: ReadonlyArray<readonly [string, string]>): string[] {
  const lines: string[] = []
  for (const [name, value] of headers) {
    lines.push(name, value)
  }
  return lines
}

/** Waits for `res` to take more: true on 'drain', false once the connection closed */
async function drained (res: ServerResponse): Promise<boolean> {
  if (res.destroyed) {
    return false
  }
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      res.off('drain', onDrain)
      res.off('close', onClose)
      resolve(ok)
    }
    const onDrain = (): void => { done(true) }
    const onClose = (): void => { done(false) }
    res.once('drain', onDrain)
    res.once('close', onClose)
  })
}

/** Lets a response's streamed body go unread (the worker stops writing it) */
async function cancel (response: StreamingHttpResponse): Promise<void> {
  if (!(response.body instanceof Uint8Array)) {
    await response.body[Symbol.asyncIterator]().return?.()
  }
}

/**
 * A request body read one chunk at a time as the brane asks for it: the socket is
 * paused in between, so a brane that reads slowly slows the client down. Past the
 * limit, reading fails with PayloadTooLargeError (kept in `failure`) and the rest is
 * discarded; so is whatever the brane leaves unread.
 */
class RequestChunks implements BodyChunks {
  readonly #req: IncomingMessage
  #queue: Buffer[] = []
  #size = 0
  #ended = false
  #stopped = false
  #error: Error | undefined
  #wake: (() => void) | undefined
  /** set once the body went past its limit */
  failure: PayloadTooLargeError | undefined

  constructor (req: IncomingMessage, limit: BodyLimit) {
    this.#req = req
    req.on('data', (chunk: Buffer) => {
      if (this.#stopped) {
        return
      }
      this.#size += chunk.length
      if (this.#size > limit.bytes) {
        this.failure = tooLarge(limit)
        this.#stop()
      } else {
        this.#queue.push(chunk)
        req.pause()
      }
      this.#wakeReader()
    })
    req.once('end', () => {
      this.#ended = true
      this.#wakeReader()
    })
    req.once('close', () => {
      if (!this.#ended) {
        this.#error ??= new OmegaError('The client closed the connection before the end of its request body')
        this.#ended = true
        this.#wakeReader()
      }
    })
  }

  [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
    return {
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        for (;;) {
          if (this.failure !== undefined) {
            throw this.failure
          }
          const chunk = this.#queue.shift()
          if (chunk !== undefined) {
            return { done: false, value: chunk }
          }
          if (this.#ended) {
            if (this.#error !== undefined) {
              throw this.#error
            }
            return { done: true, value: undefined }
          }
          this.#req.resume()
          await new Promise<void>((resolve) => { this.#wake = resolve })
        }
      },
      return: async (): Promise<IteratorResult<Uint8Array>> => {
        this.#stop()
        return { done: true, value: undefined }
      }
    }
  }

  /** Discards the rest of the body (the connection stays usable) */
  #stop (): void {
    this.#stopped = true
    this.#queue = []
    this.#req.resume()
  }

  #wakeReader (): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }
}
