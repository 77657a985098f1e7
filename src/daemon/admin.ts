/**
 * The admin API: HTTP over a Unix socket in the node's home (mode 0600), what the CLI
 * talks to. Every request needs a token signed by an authorised key (identity/tokens.ts)
 * or a capability token allowing the route's action (identity/capabilities.ts); none, a
 * forged, expired, revoked or insufficient one is refused before any handler runs.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { chmod, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { CapabilityTokenError, OmegaError } from '../errors.ts'
import { verifyAdminToken, verifyCapability } from '../identity/index.ts'
import { ADMIN_SOCKET, MAX_RESTORE_BODY_BYTES } from './admin-client.ts'
import { listening, socketAnswers } from '../util/index.ts'
import type { AbortOptions, Logger, Startable } from '../interfaces/index.ts'
import type { LogBook, LogRecord } from '../observe/index.ts'

// the client side (what the CLI uses) lives apart, so that a command loads none of the server
export { ADMIN_SOCKET, AdminRequestError, adminBytes, adminJson, adminStream, DaemonNotRunningError, MAX_RESTORE_BODY_BYTES, type AdminClientOptions } from './admin-client.ts'

export interface AdminStatus {
  readonly did: string
  readonly manifest: string
  readonly gateway: string
  /** the live dashboard's address, when it is on */
  readonly dashboard?: string
  readonly startedAt: string
  readonly resolvers?: readonly object[]
  readonly branes: ReadonlyArray<Record<string, unknown>>
}

export interface AdminComponents {
  /** the node's did: tokens must be addressed to it */
  readonly did: string
  readonly logBook: LogBook
  readonly observer: { profile: (brane: string) => unknown, metrics: { render: () => string } }
  readonly status: () => AdminStatus
  /**
   * hot reload from a manifest file (default: the one running); with `brane`, only that
   * brane may change (anything else is refused with a CapabilityTokenError, nothing changed)
   */
  readonly reload: (file: string | undefined, scope: { brane?: string }) => Promise<unknown>
  /** signed snapshots of pinned branes (the routes answer 404 without) */
  readonly snapshots?: {
    /** the signed snapshot document of `brane` */
    readonly take: (brane: string) => Promise<unknown>
    /** checks `doc` whole, then restores it into `brane`; returns a report */
    readonly restore: (brane: string, doc: unknown) => Promise<unknown>
  }
  /** a CPU profile of a brane's workers over `durationMs`, as gzipped pprof */
  readonly cpuProfile: (brane: string, durationMs: number, options: AbortOptions) => Promise<Uint8Array>
  /** the event side: signed traces and the dead-letter queue */
  readonly events: {
    /** the signed end record of the trace holding `id` (an event or trace id, or a prefix) */
    readonly trace: (id: string) => unknown
    readonly deadLetters: () => unknown
    /** put dead deliveries back (all when `ids` is undefined); returns how many */
    readonly replay: (ids?: readonly number[]) => number
  }
  readonly logger: Logger
  /** more JSON routes, by path (the mesh's: deploy, peers, …) */
  readonly routes?: ReadonlyMap<string, AdminRoute>
}

/** A JSON admin route: query and JSON body in, JSON out; a thrown error answers 422 with its name */
export interface AdminRoute {
  /** what a token must allow */
  readonly action: string
  readonly handle: (query: URLSearchParams, body: unknown, options: AbortOptions) => Promise<unknown>
}

export interface AdminInit {
  /** the node's home; the socket is `<home>/omega.sock` */
  home: string
  /** did:keys whose tokens are accepted. @default the node's own */
  issuers?: readonly string[]
  /** root did:keys trusted for capability tokens, besides the node's own */
  roots?: readonly string[]
  /** revoked capability token ids (checked on every request) */
  revocations?: { has: (id: string) => boolean, revoke: (id: string) => Promise<void> }
}

/** Admin actions on one brane (`?brane=NAME`): a capability token needs them on `brane/NAME`, else on `brane/*` */
const BRANE_ACTIONS = new Set(['logs', 'profile', 'deploy', 'snapshot', 'restore'])

/** Most bytes of a `POST /v1/reload` body (`{"file": PATH}`) */
export const MAX_RELOAD_BODY_BYTES = 64 * 2 ** 10

/**
 * An admin request parsed once: the authorisation and the handler read this same object,
 * so that what a token is checked against is exactly what the handler acts on
 */
export interface AdminCall {
  readonly path: string
  /** what a token must allow */
  readonly action: string
  /**
   * the one brane the call acts on (`?brane=NAME` of a built-in brane route); undefined:
   * every brane, or the node, and a capability token needs the action on `brane/*`
   */
  readonly brane: string | undefined
  readonly query: URLSearchParams
}

/** The call a request makes, or undefined when no route has its path */
export function parseAdminCall (url: URL, routes?: ReadonlyMap<string, AdminRoute>): AdminCall | undefined {
  const builtIn = ACTIONS[url.pathname]
  const action = builtIn ?? routes?.get(url.pathname)?.action
  if (action === undefined) {
    return undefined
  }
  // only the built-in routes act on `?brane=` alone; an extra route is authorised node-wide
  const named = url.searchParams.get('brane')
  const brane = builtIn !== undefined && BRANE_ACTIONS.has(action) && named !== null && named !== '' ? named : undefined
  return { path: url.pathname, action, brane, query: url.searchParams }
}

/** The resource a capability token must allow `call.action` on */
export function adminResource (call: AdminCall): string {
  return BRANE_ACTIONS.has(call.action) ? `brane/${call.brane ?? '*'}` : 'node'
}

/** Route → the action a token must allow */
const ACTIONS: Readonly<Record<string, string>> = {
  '/v1/status': 'ps',
  '/v1/logs': 'logs',
  '/v1/profile': 'profile',
  '/v1/metrics': 'metrics',
  '/v1/reload': 'deploy',
  '/v1/trace': 'trace',
  '/v1/dlq': 'dlq',
  '/v1/dlq/replay': 'dlq',
  '/v1/snapshot': 'snapshot',
  '/v1/restore': 'restore',
  '/v1/profile/cpu': 'profile',
  '/v1/revoke': 'revoke'
}

export class AdminServer implements Startable {
  readonly #components: AdminComponents
  readonly #socket: string
  readonly #issuers: ReadonlySet<string>
  readonly #roots: readonly string[]
  readonly #revocations: AdminInit['revocations']
  #server: Server | undefined
  readonly #streams = new Set<ServerResponse>()

  constructor (components: AdminComponents, init: AdminInit) {
    this.#components = components
    this.#socket = join(init.home, ADMIN_SOCKET)
    this.#issuers = new Set(init.issuers ?? [components.did])
    this.#roots = [...new Set([components.did, ...(init.roots ?? [])])]
    this.#revocations = init.revocations
  }

  /**
   * Check that `token` (a signed admin token, or a capability token: Biscuit, base64url
   * without dots) allows `action` on `resource` (`node` or `brane/NAME`) of this node
   *
   * @throws TokenError or CapabilityTokenError saying why not
   */
  authorize (token: string, action: string, resource: string): void {
    if (token.includes('.')) {
      verifyAdminToken(token, { audience: this.#components.did, issuers: this.#issuers, action })
    } else {
      const revoked = this.#revocations
      verifyCapability(token, { ability: action, resource, roots: this.#roots, ...(revoked === undefined ? {} : { revoked }) })
    }
  }

  get socketPath (): string {
    return this.#socket
  }

  async start (): Promise<void> {
    await claimSocket(this.#socket)
    const server = createServer((req, res) => { this.#serve(req, res) })
    await listening(server, this.#socket)
    await chmod(this.#socket, 0o600)
    this.#server = server
  }

  async stop (): Promise<void> {
    const server = this.#server
    this.#server = undefined
    for (const stream of this.#streams) {
      stream.end()
    }
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
    }
  }

  #serve (req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://omega')
    const extra = this.#components.routes?.get(url.pathname)
    const call = parseAdminCall(url, this.#components.routes)
    // a body nobody reads is drained, so that the client can finish sending it
    if (call === undefined || (call.path !== '/v1/reload' && call.path !== '/v1/restore' && extra === undefined)) {
      req.resume()
    }
    if (call === undefined) {
      send(res, 404, { error: 'NotFound', message: `No admin route ${url.pathname}` })
      return
    }
    const header = req.headers.authorization ?? ''
    const token = header.startsWith('Bearer ') ? header.slice(7) : ''
    if (token === '') {
      req.resume()
      send(res, 401, { error: 'Unauthorized', message: 'A signed admin token is required (Authorization: Bearer TOKEN)' })
      return
    }
    try {
      this.authorize(token, call.action, adminResource(call))
    } catch (err) {
      this.#components.logger.warn({ path: url.pathname, reason: (err as Error).message }, 'admin request refused')
      req.resume()
      send(res, 403, { error: 'Forbidden', message: (err as Error).message })
      return
    }
    if (extra !== undefined && ACTIONS[url.pathname] === undefined) {
      this.#extra(extra, url, req, res)
      return
    }
    switch (url.pathname) {
      case '/v1/revoke': {
        const id = url.searchParams.get('id') ?? ''
        if (this.#revocations === undefined) {
          send(res, 404, { error: 'NotFound', message: 'This node keeps no revocation list' })
          return
        }
        this.#revocations.revoke(id).then(
          () => { send(res, 200, { revoked: id }) },
          (err: unknown) => { send(res, 422, { error: (err as Error).name, message: (err as Error).message }) })
        return
      }
      case '/v1/reload':
        this.#reload(call, req, res)
        return
      case '/v1/snapshot':
      case '/v1/restore':
        this.#snapshot(call, req, res)
        return
      case '/v1/status':
        send(res, 200, this.#components.status())
        return
      case '/v1/trace': {
        const id = url.searchParams.get('id') ?? ''
        const record = id === '' ? undefined : this.#components.events.trace(id)
        if (record === undefined) {
          send(res, 404, { error: 'NotFound', message: `No trace holds an event "${id}" (or the prefix is ambiguous)` })
        } else {
          send(res, 200, record)
        }
        return
      }
      case '/v1/dlq':
        send(res, 200, this.#components.events.deadLetters())
        return
      case '/v1/dlq/replay': {
        const ids = url.searchParams.getAll('id').map(Number).filter((n) => Number.isInteger(n))
        send(res, 200, { replayed: this.#components.events.replay(ids.length === 0 ? undefined : ids) })
        return
      }
      case '/v1/profile': {
        const brane = call.brane
        if (brane === undefined) {
          send(res, 400, { error: 'BadRequest', message: 'Missing ?brane=NAME' })
          return
        }
        send(res, 200, this.#components.observer.profile(brane))
        return
      }
      case '/v1/profile/cpu':
        this.#cpuProfile(call, req, res)
        return
      case '/v1/metrics': {
        const text = this.#components.observer.metrics.render()
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(text) })
        res.end(text)
        return
      }
      default:
        this.#logs(call, res)
    }
  }

  #extra (route: AdminRoute, url: URL, req: IncomingMessage, res: ServerResponse): void {
    const gone = new AbortController()
    res.once('close', () => { gone.abort(new OmegaError('The admin client closed the connection')) })
    readBody(req, MAX_RESTORE_BODY_BYTES).then(async (body) => {
      if (body === undefined) {
        send(res, 413, { error: 'PayloadTooLarge', message: `A request body may hold at most ${MAX_RESTORE_BODY_BYTES} bytes` }, { close: true })
        return
      }
      let parsed: unknown
      try {
        parsed = body.byteLength === 0 ? undefined : JSON.parse(body.toString('utf8'))
      } catch {
        send(res, 400, { error: 'BadRequest', message: 'Expected a JSON body' })
        return
      }
      send(res, 200, await route.handle(url.searchParams, parsed, { signal: gone.signal }))
    }).catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err))
      send(res, e.name === 'BraneNotFoundError' ? 404 : 422, { error: e.name, message: e.message })
    })
  }

  /** POST /v1/profile/cpu?brane=NAME&seconds=N: answers once the profile is taken */
  #cpuProfile (call: AdminCall, req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') {
      send(res, 405, { error: 'MethodNotAllowed', message: 'POST /v1/profile/cpu?brane=NAME&seconds=N' })
      return
    }
    const brane = call.brane
    const seconds = Number(call.query.get('seconds') ?? 5)
    if (brane === undefined || !Number.isFinite(seconds)) {
      send(res, 400, { error: 'BadRequest', message: 'Expected ?brane=NAME and optionally &seconds=N' })
      return
    }
    // a client that goes away stops the profile
    const gone = new AbortController()
    res.once('close', () => { gone.abort(new OmegaError('The admin client closed the connection')) })
    this.#components.cpuProfile(brane, seconds * 1000, { signal: gone.signal }).then((bytes) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.byteLength })
      res.end(bytes)
    }, (err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err))
      send(res, e.name === 'BraneNotFoundError' ? 404 : e instanceof RangeError ? 400 : 422, { error: e.name, message: e.message })
    })
  }

  /**
   * `POST /v1/reload[?brane=NAME]` with `{"file": PATH}` or no body (the running manifest).
   * With a brane, only that brane may change: a token for `deploy` on `brane/NAME` is
   * checked against the same brane that confines the reload.
   */
  #reload (call: AdminCall, req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') {
      req.resume()
      send(res, 405, { error: 'MethodNotAllowed', message: 'POST /v1/reload' })
      return
    }
    readBody(req, MAX_RELOAD_BODY_BYTES).then(async (body) => {
      if (body === undefined) {
        send(res, 413, { error: 'PayloadTooLarge', message: `A reload request body may hold at most ${MAX_RELOAD_BODY_BYTES} bytes: send {"file": PATH}, not the manifest` }, { close: true })
        return
      }
      let file: string | undefined
      try {
        const parsed = body.byteLength === 0 ? {} : JSON.parse(body.toString('utf8')) as { file?: unknown } | null
        file = typeof parsed?.file === 'string' ? parsed.file : undefined
      } catch {
        send(res, 400, { error: 'BadRequest', message: 'Expected a JSON body like {"file": "/path/to/manifest.toml"}' })
        return
      }
      send(res, 200, await this.#components.reload(file, call.brane === undefined ? {} : { brane: call.brane }))
    }).catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err))
      const issues = (e as Error & { issues?: unknown }).issues
      send(res, e instanceof CapabilityTokenError ? 403 : 422, { error: e.name, message: e.message, ...(issues === undefined ? {} : { issues }) })
    })
  }

  /** `POST /v1/snapshot?brane=NAME` answers the document; `POST /v1/restore?brane=NAME` takes it */
  #snapshot (call: AdminCall, req: IncomingMessage, res: ServerResponse): void {
    const snapshots = this.#components.snapshots
    const brane = call.brane
    if (req.method !== 'POST') {
      send(res, 405, { error: 'MethodNotAllowed', message: `POST ${call.path}?brane=NAME` })
      return
    }
    if (snapshots === undefined) {
      send(res, 404, { error: 'NotFound', message: 'This node takes no snapshots' })
      return
    }
    if (brane === undefined) {
      send(res, 400, { error: 'BadRequest', message: 'Missing ?brane=NAME' })
      return
    }
    const refused = (err: unknown): void => {
      const e = err instanceof Error ? err : new Error(String(err))
      send(res, 422, { error: e.name, message: e.message })
    }
    if (call.path === '/v1/snapshot') {
      req.resume()
      snapshots.take(brane).then((doc) => { send(res, 200, doc) }, refused)
      return
    }
    readBody(req, MAX_RESTORE_BODY_BYTES).then((body) => {
      if (body === undefined) {
        send(res, 413, { error: 'PayloadTooLarge', message: `A snapshot document may hold at most ${MAX_RESTORE_BODY_BYTES} bytes` }, { close: true })
        return
      }
      let doc: unknown
      try {
        doc = JSON.parse(body.toString('utf8'))
      } catch {
        send(res, 400, { error: 'BadRequest', message: 'Expected a snapshot document (JSON) as the body' })
        return
      }
      snapshots.restore(brane, doc).then((report) => { send(res, 200, report) }, refused)
    }, refused)
  }

  /** `GET /v1/logs[?brane=NAME]`: one brane's logs, or every brane's (which needs `logs` on `brane/*`) */
  #logs (call: AdminCall, res: ServerResponse): void {
    const brane = call.brane
    const since = Number(call.query.get('since') ?? 0)
    const limit = Number(call.query.get('limit') ?? 1000)
    const follow = call.query.get('follow') === '1'
    const records = this.#components.logBook.query({ ...(brane === undefined ? {} : { brane }), since, limit })
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    for (const record of records) {
      res.write(JSON.stringify(record) + '\n')
    }
    if (!follow) {
      res.end()
      return
    }
    const last = records.at(-1)?.seq ?? 0
    const unsubscribe = this.#components.logBook.subscribe((record: LogRecord) => {
      if (record.seq > last) {
        res.write(JSON.stringify(record) + '\n')
      }
    }, brane)
    this.#streams.add(res)
    res.once('close', () => {
      unsubscribe()
      this.#streams.delete(res)
    })
  }
}

function send (res: ServerResponse, status: number, body: unknown, options: { close?: boolean } = {}): void {
  const text = JSON.stringify(body) + '\n'
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(options.close === true ? { connection: 'close' } : {}) })
  res.end(text)
}

/**
 * The request body, or undefined once it passes `limit` bytes: the rest is read and
 * dropped (nothing more is kept), so that the answer can still be sent
 */
async function readBody (req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of req) {
    length += (chunk as Buffer).byteLength
    if (length <= limit) {
      chunks.push(chunk as Buffer)
    } else {
      chunks.length = 0
    }
  }
  return length > limit ? undefined : Buffer.concat(chunks, length)
}

/** Take over the socket path: refuse if a live daemon answers there, remove a stale one */
async function claimSocket (path: string): Promise<void> {
  if (await socketAnswers(path)) {
    throw new OmegaError(`Another omega daemon is running with this home (its socket ${path} answers): stop it, or use another --home`)
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') {
      throw err
    }
  })
}
