/**
 * Routes a request (host, path, method) to a brane. Exact routes beat wildcard routes;
 * among wildcards the longest prefix wins; a route bound to a host beats one that is not.
 * The table is immutable: a new plan builds a new router and swaps it in one assignment.
 */
import type { HttpRoute } from '../manifest/index.ts'

export interface RouteEntry {
  readonly brane: string
  readonly route: HttpRoute
  /** `token`: requests need `Authorization: Bearer <capability token>` (see GatewayComponents.authorize) */
  readonly auth?: 'none' | 'token'
}

export interface RouteMatch {
  readonly brane: string
  readonly route: HttpRoute
  readonly auth?: 'none' | 'token'
}

export class Router {
  readonly #exact = new Map<string, RouteEntry[]>()
  readonly #prefixes: RouteEntry[]

  constructor (entries: readonly RouteEntry[]) {
    const prefixes: RouteEntry[] = []
    for (const entry of entries) {
      if (entry.route.wildcard) {
        prefixes.push(entry)
      } else {
        const list = this.#exact.get(entry.route.path) ?? []
        list.push(entry)
        this.#exact.set(entry.route.path, list)
      }
    }
    // longest prefix first; host-bound before any-host
    this.#prefixes = prefixes.sort((a, b) =>
      b.route.path.length - a.route.path.length || Number(b.route.host !== undefined) - Number(a.route.host !== undefined))
  }

  /** The brane serving `path` on `host` for `method`, if any */
  match (host: string, path: string, method: string): RouteMatch | undefined {
    const hostname = stripPort(host).toLowerCase()
    const exact = this.#exact.get(path)
    const fromExact = exact === undefined ? undefined : pick(exact, hostname, method)
    if (fromExact !== undefined) {
      return fromExact
    }
    // "/api/" also serves "/api"
    const withSlash = path.endsWith('/') ? path : `${path}/`
    for (const entry of this.#prefixes) {
      if ((path.startsWith(entry.route.path) || withSlash === entry.route.path) && accepts(entry.route, hostname, method)) {
        return entry
      }
    }
    return undefined
  }

  /** Every route, for display */
  get entries (): readonly RouteEntry[] {
    return [...[...this.#exact.values()].flat(), ...this.#prefixes]
  }
}

function pick (entries: readonly RouteEntry[], host: string, method: string): RouteEntry | undefined {
  return entries.find((e) => e.route.host !== undefined && accepts(e.route, host, method)) ??
    entries.find((e) => accepts(e.route, host, method))
}

function accepts (route: HttpRoute, host: string, method: string): boolean {
  if (route.host !== undefined && route.host !== host) {
    return false
  }
  return route.methods === undefined || route.methods.includes(method)
}

function stripPort (host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    return end === -1 ? host : host.slice(0, end + 1)
  }
  const colon = host.lastIndexOf(':')
  return colon === -1 ? host : host.slice(0, colon)
}
