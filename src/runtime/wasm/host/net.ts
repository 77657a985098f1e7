/**
 * `net.http`: wasi:http/outgoing-handler behind the brane's host allowlist.
 *
 * Allowlist rules (`[brane.X.capability] "net.http" = { allowlist = [...] }`):
 *
 * - Schemes: only `http` and `https` (a request without a scheme is `https`, as the
 *   shim sends it). Every other scheme is refused.
 * - `example.com` matches that host only. Host names compare case-insensitively, and
 *   one trailing dot is ignored (`EXAMPLE.com.` is `example.com`).
 * - `*.example.com` matches every subdomain at any depth (`a.example.com`,
 *   `a.b.example.com`) but NOT the bare `example.com`: list both to allow both.
 * - Ports: an entry without a port allows only the scheme's default port (80 for
 *   `http`, 443 for `https`); `example.com:8080` allows port 8080 only, with either
 *   scheme. There is no port wildcard.
 * - IP addresses are reached only when listed literally: `127.0.0.1:8080`, or
 *   `[::1]:8080` for IPv6. Globs never match addresses, and an IPv4 host written in
 *   any form but canonical dotted decimal (`2130706433`, `0x7f.0.0.1`, `127.1`,
 *   `0177.0.0.1`) is always refused, listed or not.
 * - Refused outright: an authority with userinfo (`user@host`), a missing or empty
 *   authority (Node would connect to localhost), a malformed port, and a request
 *   target that is not a path (absolute-form `http://other/…`, which a proxy would
 *   forward).
 * - Redirects are not followed by the host (the shim uses Node's `http.request`, which
 *   returns 3xx responses as they are). A guest that follows a redirect sends a new
 *   request, which is checked again.
 * - The check is on names, before any network I/O: a listed name is trusted wherever
 *   DNS points it.
 *
 * A refused request fails inside the guest with the wasi:http `error-code`
 * `HTTP-request-denied` and is reported to the host's `onDenied` callback.
 *
 * While OpenTelemetry export is on, a request carries the W3C `traceparent` of the span
 * its job runs in (set by the worker per job, see {@link traceOutgoing}), unless the
 * guest set one itself.
 */
import { guestWaits } from './waits.ts'
import { shim, WitError, type ImportInterface } from './shim.ts'

/** A refused capability use, for the brane's log */
export interface DeniedEvent {
  /** the capability key whose policy refused the call */
  readonly capability: 'net.http'
  /** what the guest asked for, e.g. `http://example.com:8080/path` */
  readonly target: string
  /** why, as a clause, e.g. `host "example.com" is not in the allowlist` */
  readonly reason: string
}

interface AllowEntry {
  /** lowercased host without trailing dot; for globs, the suffix after `*.` */
  readonly host: string
  readonly glob: boolean
  /** `undefined`: the scheme's default port */
  readonly port: number | undefined
}

/** A compiled allowlist */
export interface Allowlist {
  readonly entries: readonly AllowEntry[]
}

/** What {@link checkRequest} looks at: the outgoing request's fields */
export interface RequestTarget {
  /** `http`, `https`, another scheme, or `undefined` (the shim sends `https`) */
  readonly scheme: string | undefined
  readonly authority: string | undefined
  readonly pathWithQuery: string | undefined
}

/** The verdict of {@link checkRequest} */
export type Verdict = { readonly ok: true } | { readonly ok: false, readonly reason: string }

const DEFAULT_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443 }

/** the `traceparent` of the job running in this worker, while OpenTelemetry export is on */
let jobTraceparent: Uint8Array | undefined

/**
 * Outgoing requests from now on carry `traceparent` (the span of the job this worker
 * runs now); `undefined` when the job ends or carries none
 */
export function traceOutgoing (traceparent: string | undefined): void {
  jobTraceparent = traceparent === undefined ? undefined : new TextEncoder().encode(traceparent)
}
const LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/
const PORT = /^[1-9][0-9]{0,4}$/

/**
 * Compiles allowlist entries.
 *
 * @throws RangeError when an entry is not `host`, `*.domain`, an IP literal, each with
 * an optional `:port`
 */
export function compileAllowlist (entries: readonly string[]): Allowlist {
  return {
    entries: entries.map((entry) => {
      const parsed = parseAuthority(entry.trim(), true)
      if (typeof parsed === 'string') {
        throw new RangeError(`Invalid net.http allowlist entry "${entry}": ${parsed}`)
      }
      return parsed
    })
  }
}

/**
 * Whether `allowlist` lets a request to `target` go out. Pure: no DNS, no I/O.
 */
export function checkRequest (allowlist: Allowlist, target: RequestTarget): Verdict {
  const scheme = (target.scheme ?? 'https').toLowerCase()
  const defaultPort = DEFAULT_PORTS[scheme]
  if (defaultPort === undefined) {
    return { ok: false, reason: `scheme "${scheme}" is not http or https` }
  }
  const path = target.pathWithQuery ?? '/'
  if (!path.startsWith('/')) {
    return { ok: false, reason: `request target "${path}" is not a path` }
  }
  const parsed = parseAuthority(target.authority ?? '', false)
  if (typeof parsed === 'string') {
    return { ok: false, reason: parsed }
  }
  const port = parsed.port ?? defaultPort
  for (const entry of allowlist.entries) {
    if ((entry.port ?? DEFAULT_PORTS[scheme]) !== port) {
      continue
    }
    if (entry.glob ? !isIp(parsed.host) && parsed.host.endsWith(`.${entry.host}`) : parsed.host === entry.host) {
      return { ok: true }
    }
  }
  return { ok: false, reason: `"${parsed.host}" port ${port} is not in the allowlist` }
}

/** An outgoing request as the shim's `OutgoingRequest` exposes it */
interface OutgoingRequestLike {
  method: () => { tag: string, val?: string }
  scheme: () => { tag: string, val?: string } | undefined
  authority: () => string | undefined
  pathWithQuery: () => string | undefined
  headers: () => unknown
}

/**
 * wasi:http/outgoing-handler for one instance: the shim's handler behind `allowlist`.
 *
 * @param onDenied - told about every refused request (before the guest sees the error)
 * @param onOutgoing - told of every request sent, once the guest has its response or
 * its failure: `REQ GET api.example.com/works bytes=12,422 dur=42ms status=200`
 */
export function outgoingHandlerFor (allowlist: Allowlist, onDenied: (event: DeniedEvent) => void, onOutgoing?: (line: string) => void): ImportInterface {
  const inner = shim.outgoingHandler['handle'] as (request: unknown, options: unknown) => unknown
  return {
    handle (request: OutgoingRequestLike, options: unknown): unknown {
      const scheme = schemeName(request.scheme())
      const target: RequestTarget = { scheme, authority: request.authority(), pathWithQuery: request.pathWithQuery() }
      const verdict = checkRequest(allowlist, target)
      if (!verdict.ok) {
        onDenied({
          capability: 'net.http',
          target: `${scheme ?? 'https'}://${target.authority ?? ''}${target.pathWithQuery ?? ''}`,
          reason: verdict.reason
        })
        throw new WitError({ tag: 'HTTP-request-denied' })
      }
      guestWaits() // the guest waits for the response next
      const future = jobTraceparent === undefined ? inner(request, options) : sendTraced(inner, request, options, jobTraceparent)
      if (onOutgoing !== undefined) {
        const method = request.method()
        reportWhenAnswered(future, `REQ ${method.tag === 'other' ? method.val ?? '' : method.tag.toUpperCase()} ${target.authority ?? ''}${target.pathWithQuery ?? '/'}`, onOutgoing)
      }
      return future
    }
  }
}

/** The shim's `fields`, as much of them as adding a header needs */
interface FieldsLike {
  get: (name: string) => Uint8Array[]
  entries: () => Array<[string, Uint8Array]>
}

/**
 * `inner(request, options)` with a `traceparent` header added, unless the guest set one.
 * The request's headers are immutable once it is made (the shim locks them), and the
 * shim reads them once, synchronously, while it sends: for that call only, their
 * `entries` answer with the header added, on the object itself (it stays the shim's).
 */
function sendTraced (inner: (request: unknown, options: unknown) => unknown, request: OutgoingRequestLike, options: unknown, traceparent: Uint8Array): unknown {
  const fields = request.headers() as FieldsLike
  if (fields.get('traceparent').length > 0) {
    return inner(request, options)
  }
  const entries: Array<[string, Uint8Array]> = [...fields.entries(), ['traceparent', traceparent]]
  Object.defineProperty(fields, 'entries', { configurable: true, writable: true, value: () => entries })
  try {
    return inner(request, options)
  } finally {
    Reflect.deleteProperty(fields, 'entries')
  }
}

/** The shim's incoming response, as much of it as a log line needs */
interface IncomingResponseLike {
  status: () => number
  headers: () => { get: (name: string) => Uint8Array[] }
}

/**
 * Reports `what` once the guest takes the outcome of `future` (a FutureIncomingResponse):
 * its `get` is wrapped on the object itself, so it stays the shim's class for jco
 */
function reportWhenAnswered (future: unknown, what: string, report: (line: string) => void): void {
  const target = future as { get: () => unknown }
  const get = target.get
  const started = performance.now()
  Object.defineProperty(target, 'get', {
    configurable: true,
    writable: true,
    value: () => {
      const outcome = get.call(target) as { tag: string, val?: { tag: string, val?: unknown } } | undefined
      if (outcome !== undefined) {
        Object.defineProperty(target, 'get', { configurable: true, writable: true, value: get })
        const dur = `dur=${Math.round(performance.now() - started)}ms`
        const result = outcome.tag === 'ok' ? outcome.val : undefined
        if (result?.tag === 'ok') {
          const response = result.val as IncomingResponseLike
          const length = response.headers().get('content-length')[0]
          const bytes = length === undefined ? '?' : Number(new TextDecoder().decode(length)).toLocaleString('en-US')
          report(`${what} bytes=${bytes} ${dur} status=${response.status()}`)
        } else if (result?.tag === 'err') {
          report(`${what} ${dur} failed: ${String((result.val as { tag?: unknown } | undefined)?.tag ?? 'error')}`)
        }
      }
      return outcome
    }
  })
}

function schemeName (scheme: { tag: string, val?: string } | undefined): string | undefined {
  if (scheme === undefined) {
    return undefined
  }
  switch (scheme.tag) {
    case 'HTTP': return 'http'
    case 'HTTPS': return 'https'
    default: return scheme.val ?? ''
  }
}

/**
 * `host[:port]`, `[v6][:port]`, or (for allowlist entries) `*.domain[:port]`, parsed
 * and normalised; a string is the reason it is refused.
 */
function parseAuthority (authority: string, entry: boolean): AllowEntry | string {
  if (authority === '') {
    return 'the request has no authority'
  }
  if (authority.includes('@')) {
    return `authority "${authority}" has userinfo`
  }
  let host: string
  let portText: string | undefined
  if (authority.startsWith('[')) {
    const match = /^\[([0-9a-fA-F:.]+)\](?::([^:]*))?$/.exec(authority)
    if (match === null) {
      return `authority "${authority}" is not a valid IPv6 literal`
    }
    const v6 = normalizeIpv6(match[1] ?? '')
    if (v6 === undefined) {
      return `authority "${authority}" is not a valid IPv6 literal`
    }
    host = `[${v6}]`
    portText = match[2]
  } else {
    const parts = authority.split(':')
    if (parts.length > 2) {
      return `authority "${authority}" is malformed`
    }
    host = (parts[0] ?? '').toLowerCase()
    portText = parts[1]
  }
  let port: number | undefined
  if (portText !== undefined) {
    if (!PORT.test(portText) || Number(portText) > 65535) {
      return `port "${portText}" is not a valid port`
    }
    port = Number(portText)
  }
  if (host.startsWith('[')) {
    return { host, glob: false, port }
  }
  if (host.endsWith('.')) {
    host = host.slice(0, -1)
  }
  let glob = false
  if (entry && host.startsWith('*.')) {
    glob = true
    host = host.slice(2)
  }
  const labels = host.split('.')
  if (host === '' || !labels.every((label) => LABEL.test(label))) {
    return `host "${host}" is not a valid host name`
  }
  if (isIp(host)) {
    if (glob) {
      return `glob "*.${host}" names an IP address`
    }
    if (!isCanonicalIpv4(host)) {
      return `host "${host}" is an IPv4 address not in dotted-decimal form`
    }
  }
  return { host, glob, port }
}

/** WHATWG URL's rule: a host whose last label is numeric is an IPv4 address */
function isIp (host: string): boolean {
  if (host.startsWith('[')) {
    return true
  }
  const last = host.slice(host.lastIndexOf('.') + 1)
  return /^(?:0x[0-9a-f]*|[0-9]+)$/.test(last)
}

function isCanonicalIpv4 (host: string): boolean {
  const parts = host.split('.')
  return parts.length === 4 && parts.every((p) => /^(?:0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)
}

/** Eight lowercase hex groups without leading zeros, or `undefined` if invalid */
function normalizeIpv6 (text: string): string | undefined {
  let source = text.toLowerCase()
  // an embedded IPv4 tail becomes two groups
  const v4 = /(?:^|:)(\d+\.\d+\.\d+\.\d+)$/.exec(source)
  if (v4 !== null) {
    const quad = v4[1] ?? ''
    if (!isCanonicalIpv4(quad)) {
      return undefined
    }
    const [a, b, c, d] = quad.split('.').map(Number) as [number, number, number, number]
    source = source.slice(0, source.length - quad.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = source.split('::')
  if (halves.length > 2) {
    return undefined
  }
  const head = halves[0] === '' ? [] : (halves[0] ?? '').split(':')
  const tail = halves.length === 2 ? (halves[1] === '' ? [] : (halves[1] ?? '').split(':')) : []
  const missing = 8 - head.length - tail.length
  if ((halves.length === 1 && missing !== 0) || (halves.length === 2 && missing < 1)) {
    return undefined
  }
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail]
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) {
    return undefined
  }
  return groups.map((g) => parseInt(g, 16).toString(16)).join(':')
}
