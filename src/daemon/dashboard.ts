/**
 * The live dashboard: a web page every node serves (on loopback unless told otherwise),
 * live by Server-Sent Events. It shows what the CLI shows — peers, the graph with its
 * rates, each brane's profile, instances and logs, traces, settlement — without a reload.
 *
 * Access: a capability token allowing `observe` on `node` (or a signed admin token for
 * `observe`), given once as `/login?token=…`, or a one-time link from `omega dashboard`
 * (`/login?code=…`, valid for a few minutes, usable once). Either becomes a session
 * cookie (HttpOnly, SameSite=Strict); a token session is checked again at every request
 * and every minute of an open stream, so a revoked or expired token ends it.
 *
 * Nothing runs while nobody watches: the state is read once a second only while a page
 * is connected, and log lines are listened to only then.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type { AbortOptions, Logger, Startable } from '../interfaces/index.ts'
import { listening } from '../util/index.ts'
import type { LogBook, LogRecord } from '../observe/index.ts'
import type { DashboardState } from './dashboard-state.ts'

export type { DashboardState }

export interface DashboardComponents {
  readonly logBook: LogBook
  /** what the page shows; read once a second while a page is open */
  readonly state: (options: AbortOptions) => Promise<DashboardState>
  /** the signed end record of the trace holding `id`, from every node that has hops of it */
  readonly trace: (id: string, options: AbortOptions) => Promise<unknown>
  /** @throws when `token` does not allow `observe` on this node */
  readonly authorize: (token: string) => void
  readonly logger: Logger
}

export interface DashboardInit {
  /** @default '127.0.0.1' */
  host?: string
  /** 0 picks a free one */
  port: number
  /** when `port` is taken, take a free one instead of failing (the default port) */
  anyPortIfTaken?: boolean
  /** ms between checks of an open stream's token (revoked or expired: the stream ends). @default 60000 */
  recheckMs?: number
}

/** The page's files: `dashboard/` at the package's root */
const ASSETS = fileURLToPath(new URL('../../../dashboard/', import.meta.url))
const FILES: Readonly<Record<string, string>> = {
  '/': 'index.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css'
}
const TYPES: Readonly<Record<string, string>> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8'
}

const COOKIE = 'omega_dashboard'
const COOKIE_PATTERN = new RegExp(`(?:^|;\\s*)${COOKIE}=([A-Za-z0-9_-]+)`)
const SESSION_MS = 12 * 3600_000
const CODE_MS = 5 * 60_000
const TICK_MS = 1000
/** log lines sent per stream and second at most; the rest are counted as skipped */
const LOG_LINES_PER_TICK = 200
const MAX_SESSIONS = 1000
const MAX_STREAMS = 64
/** a page that reads slower than the stream writes is cut off once this much waits for it (it reconnects) */
const MAX_UNREAD_BYTES = 4 * 2 ** 20

interface Session {
  readonly expires: number
  /** the token it came from, checked again as it is used; undefined: a one-time link */
  readonly token?: string
}

interface Stream {
  readonly res: ServerResponse
  readonly session: Session
  logs: LogRecord[]
  skipped: number
  checkedAt: number
}

/** Security headers of every answer: no framing, nothing loaded from elsewhere */
const HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store'
}

export class Dashboard implements Startable {
  readonly #components: DashboardComponents
  readonly #init: DashboardInit
  readonly #sessions = new Map<string, Session>()
  readonly #codes = new Map<string, number>()
  readonly #streams = new Set<Stream>()
  readonly #files = new Map<string, Buffer>()
  #server: Server | undefined
  #timer: NodeJS.Timeout | undefined
  #unsubscribe: (() => void) | undefined
  #ticking = false

  constructor (components: DashboardComponents, init: DashboardInit) {
    this.#components = components
    this.#init = init
  }

  /** `http://host:port` */
  get url (): string {
    const address = this.#server?.address() as AddressInfo | null | undefined
    const host = this.#init.host ?? '127.0.0.1'
    return address == null ? '' : `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`
  }

  /** A link that signs its first visitor in, once, within five minutes */
  link (): string {
    const now = Date.now()
    for (const [code, expires] of this.#codes) {
      if (expires <= now) {
        this.#codes.delete(code)
      }
    }
    const code = randomBytes(18).toString('base64url')
    this.#codes.set(code, now + CODE_MS)
    return `${this.url}/login?code=${code}`
  }

  async start (): Promise<void> {
    const host = this.#init.host ?? '127.0.0.1'
    const server = createServer((req, res) => { this.#serve(req, res) })
    let taken = false
    try {
      await listening(server, this.#init.port, host)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || this.#init.anyPortIfTaken !== true) {
        throw err
      }
      // a server may listen again after its listen failed
      await listening(server, 0, host)
      taken = true
    }
    this.#server = server
    if (taken) {
      this.#components.logger.info({ wanted: this.#init.port, url: this.url }, `dashboard port ${this.#init.port} is taken; serving on ${this.url}`)
    }
  }

  async stop (): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    for (const stream of this.#streams) {
      stream.res.end()
    }
    this.#streams.clear()
    const server = this.#server
    this.#server = undefined
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
    }
  }

  #serve (req: IncomingMessage, res: ServerResponse): void {
    req.resume()
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      answer(res, 405, 'text/plain; charset=utf-8', 'Only GET here\n', { allow: 'GET, HEAD' })
      return
    }
    // a page of another site that a browser sends here under our name (DNS rebinding) is turned away
    if (!this.#hostAllowed(req.headers.host)) {
      answer(res, 421, 'text/plain; charset=utf-8', `This dashboard answers as ${this.url} only\n`)
      return
    }
    const url = new URL(req.url ?? '/', 'http://dashboard')
    if (url.pathname === '/login') {
      this.#login(url, res)
      return
    }
    const session = this.#session(req)
    if (session === undefined) {
      if (url.pathname === '/') {
        answer(res, 401, TYPES.html as string, SIGN_IN)
      } else {
        answer(res, 401, 'application/json', JSON.stringify({ error: 'Unauthorized', message: 'Sign in: run "omega dashboard" for a link, or open /login?token=TOKEN with a token allowing observe' }))
      }
      return
    }
    if (url.pathname === '/api/events') {
      this.#stream(session, res)
      return
    }
    if (url.pathname === '/api/trace') {
      this.#trace(url.searchParams.get('id') ?? '', res)
      return
    }
    const file = FILES[url.pathname]
    if (file === undefined) {
      answer(res, 404, 'text/plain; charset=utf-8', 'Not found\n')
      return
    }
    this.#file(file).then(
      (body) => { answer(res, 200, TYPES[file.slice(file.lastIndexOf('.') + 1)] ?? 'application/octet-stream', body, {}, req.method === 'HEAD') },
      (err: unknown) => { answer(res, 500, 'text/plain; charset=utf-8', `The dashboard's files are missing: ${(err as Error).message}\n`) })
  }

  #hostAllowed (host: string | undefined): boolean {
    const bound = this.#init.host ?? '127.0.0.1'
    if (bound === '0.0.0.0' || bound === '::') {
      return true
    }
    const name = host?.replace(/:\d+$/, '')
    return name !== undefined && ['localhost', '127.0.0.1', '[::1]', bound, `[${bound}]`].includes(name)
  }

  #login (url: URL, res: ServerResponse): void {
    const code = url.searchParams.get('code')
    const token = url.searchParams.get('token')
    let session: Session
    if (code !== null) {
      const expires = this.#codes.get(code)
      this.#codes.delete(code)
      if (expires === undefined || expires <= Date.now()) {
        answer(res, 403, TYPES.html as string, page('This link was used already or has expired', 'Run <code>omega dashboard</code> for a new one.'))
        return
      }
      session = { expires: Date.now() + SESSION_MS }
    } else if (token !== null) {
      try {
        this.#components.authorize(token)
      } catch (err) {
        this.#components.logger.warn({ reason: (err as Error).message }, 'dashboard sign-in refused')
        answer(res, 403, TYPES.html as string, page('This token does not allow observing this node', escapeHtml((err as Error).message)))
        return
      }
      session = { expires: Date.now() + SESSION_MS, token }
    } else {
      answer(res, 400, TYPES.html as string, SIGN_IN)
      return
    }
    if (this.#sessions.size >= MAX_SESSIONS) {
      // the oldest session goes first
      this.#sessions.delete(this.#sessions.keys().next().value as string)
    }
    const id = randomBytes(24).toString('base64url')
    this.#sessions.set(id, session)
    // the secret leaves the address bar at once
    res.writeHead(303, {
      ...HEADERS,
      location: '/',
      'set-cookie': `${COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MS / 1000}`
    })
    res.end()
  }

  /** The session of a request, still valid (its token checked again), or undefined */
  #session (req: IncomingMessage): Session | undefined {
    const header = req.headers.authorization
    if (header?.startsWith('Bearer ') === true) {
      const token = header.slice(7)
      return this.#allowed(token) ? { expires: Date.now() + SESSION_MS, token } : undefined
    }
    const id = COOKIE_PATTERN.exec(req.headers.cookie ?? '')?.[1]
    const session = id === undefined ? undefined : this.#sessions.get(id)
    if (id === undefined || session === undefined) {
      return undefined
    }
    if (session.expires <= Date.now() || (session.token !== undefined && !this.#allowed(session.token))) {
      this.#sessions.delete(id)
      return undefined
    }
    return session
  }

  #allowed (token: string): boolean {
    try {
      this.#components.authorize(token)
      return true
    } catch {
      return false
    }
  }

  #stream (session: Session, res: ServerResponse): void {
    if (this.#streams.size >= MAX_STREAMS) {
      answer(res, 503, 'text/plain; charset=utf-8', 'Too many open dashboards\n', { 'retry-after': '5' })
      return
    }
    res.writeHead(200, { ...HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive', 'x-accel-buffering': 'no' })
    res.socket?.setNoDelay(true)
    // the page starts with the lines already written
    const recent = this.#components.logBook.query({ limit: 200 })
    const stream: Stream = { res, session, logs: [], skipped: 0, checkedAt: Date.now() }
    res.write(`retry: 2000\nevent: logs\ndata: ${JSON.stringify({ lines: recent.map(logLine), skipped: 0 })}\n\n`)
    this.#streams.add(stream)
    res.once('close', () => { this.#closed(stream) })
    if (this.#timer === undefined) {
      this.#unsubscribe = this.#components.logBook.subscribe((record) => {
        for (const s of this.#streams) {
          if (s.logs.length < LOG_LINES_PER_TICK) {
            s.logs.push(record)
          } else {
            s.skipped++
          }
        }
      })
      this.#timer = setInterval(() => { this.#tick().catch(() => {}) }, TICK_MS)
    }
    this.#tick().catch(() => {})
  }

  #closed (stream: Stream): void {
    this.#streams.delete(stream)
    if (this.#streams.size === 0) {
      clearInterval(this.#timer)
      this.#timer = undefined
      this.#unsubscribe?.()
      this.#unsubscribe = undefined
    }
  }

  /** One state for every open page, and each page's new log lines */
  async #tick (): Promise<void> {
    if (this.#ticking) {
      return
    }
    this.#ticking = true
    try {
      const now = Date.now()
      for (const stream of this.#streams) {
        const token = stream.session.token
        const recheck = now - stream.checkedAt >= (this.#init.recheckMs ?? 60_000)
        if (stream.session.expires <= now || (recheck && token !== undefined && !this.#allowed(token))) {
          // gone from the set now: nothing more is written to it (its close event comes later)
          this.#closed(stream)
          stream.res.end()
        } else if (recheck) {
          stream.checkedAt = now
        }
      }
      let state: string
      try {
        state = JSON.stringify(await this.#components.state({ signal: AbortSignal.timeout(TICK_MS * 3) }))
      } catch (err) {
        this.#components.logger.warn({ err: (err as Error).message }, 'cannot read the dashboard\'s state')
        return
      }
      for (const stream of this.#streams) {
        if (stream.res.writableLength > MAX_UNREAD_BYTES) {
          this.#closed(stream)
          stream.res.destroy()
          continue
        }
        let chunk = `event: state\ndata: ${state}\n\n`
        if (stream.logs.length > 0 || stream.skipped > 0) {
          chunk += `event: logs\ndata: ${JSON.stringify({ lines: stream.logs.map(logLine), skipped: stream.skipped })}\n\n`
          stream.logs = []
          stream.skipped = 0
        }
        stream.res.write(chunk)
      }
    } finally {
      this.#ticking = false
    }
  }

  #trace (id: string, res: ServerResponse): void {
    const gone = new AbortController()
    res.once('close', () => { gone.abort() })
    this.#components.trace(id, { signal: AbortSignal.any([gone.signal, AbortSignal.timeout(10_000)]) }).then(
      (record) => {
        if (record === undefined) {
          answer(res, 404, 'application/json', JSON.stringify({ error: 'NotFound', message: `No node holds a trace of "${id}"` }))
        } else {
          answer(res, 200, 'application/json', JSON.stringify(record))
        }
      },
      (err: unknown) => { answer(res, 502, 'application/json', JSON.stringify({ error: (err as Error).name, message: (err as Error).message })) })
  }

  async #file (name: string): Promise<Buffer> {
    let body = this.#files.get(name)
    if (body === undefined) {
      body = await readFile(join(ASSETS, name))
      this.#files.set(name, body)
    }
    return body
  }
}

/** `head`: the headers of `body` (its length too), without it */
function answer (res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Readonly<Record<string, string>> = {}, head = false): void {
  if (res.headersSent) {
    res.end()
    return
  }
  res.writeHead(status, { ...HEADERS, ...extra, 'content-type': type, 'content-length': Buffer.byteLength(body) })
  res.end(head ? undefined : body)
}

/** What a page shows of a log record */
function logLine (record: LogRecord): { seq: number, time: number, brane: string, level: string, kind: string, message: string, instance?: string } {
  const instance = record.fields?.instance
  return {
    seq: record.seq,
    time: record.time,
    brane: record.brane,
    level: record.level,
    kind: record.kind,
    message: record.message,
    ...(typeof instance === 'string' ? { instance } : {})
  }
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function page (title: string, body: string): string {
  return `<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Omega · ${title}</title><link rel="stylesheet" href="/style.css"><main class="signin"><h1>${title}</h1><p>${body}</p></main>\n`
}

const SIGN_IN = page('Sign in to this node\'s dashboard', 'Run <code>omega dashboard</code> on the node for a one-time link, or open <code>/login?token=TOKEN</code> with a capability token allowing <code>observe</code> on <code>node</code> (<code>omega token issue --to DID --cap observe:node</code>).')
