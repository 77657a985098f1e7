/**
 * The gateway: one HTTP server for every brane of the node. It routes by host and path,
 * reads the body under a cap, hands the request to the brane and maps failures to HTTP
 * statuses by error name. A request whose client goes away is aborted.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { HttpHandler, Logger, Startable } from '../interfaces/index.ts'
import { OmegaError, OverloadedError } from '../errors.ts'

export { OverloadedError }
import { Router, type RouteEntry } from './router.ts'

/** Error name → HTTP status; anything else is a 500 */
export const STATUS_BY_ERROR: Readonly<Record<string, number>> = {
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

export class UnauthorizedError extends OmegaError {
  static override name = 'UnauthorizedError'
  constructor (message: string) {
    super(message)
    this.name = 'UnauthorizedError'
  }
}

export class PayloadTooLargeError extends OmegaError {
  static override name = 'PayloadTooLargeError'
  constructor (message: string) {
    super(message)
    this.name = 'PayloadTooLargeError'
  }
}

const EMPTY_BODY = new Uint8Array(0)

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
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#port, this.#host, () => {
        server.off('error', reject)
        resolve()
      })
    }).catch((err: NodeJS.ErrnoException) => {
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
    try {
      const body = await this.#readBody(req, held)
      const headers: Array<[string, string]> = []
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        headers.push([(req.rawHeaders[i] ?? '').toLowerCase(), req.rawHeaders[i + 1] ?? ''])
      }
      const response = await handler.handle({ method, pathWithQuery: target, scheme: 'http', authority, headers, body }, { signal })
      // one flat list of raw header lines: repeated names stay repeated, in order
      const lines: string[] = []
      for (const [name, value] of response.headers) {
        lines.push(name, value)
      }
      res.writeHead(response.status, lines)
      res.end(response.body)
    } finally {
      // the body is let go once the brane has answered (or the request failed)
      this.#buffered -= held.bytes
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
  async #readBody (req: IncomingMessage, held: { bytes: number }): Promise<Uint8Array> {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > this.#maxBodyBytes) {
      req.resume()
      throw new PayloadTooLargeError(`Request body of ${declared} bytes is over the limit of ${this.#maxBodyBytes}`)
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
      if (size > this.#maxBodyBytes) {
        req.resume()
        throw new PayloadTooLargeError(`Request body is over the limit of ${this.#maxBodyBytes} bytes`)
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
      : STATUS_BY_ERROR[name]
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
