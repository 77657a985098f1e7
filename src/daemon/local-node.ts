/**
 * One node running one manifest: `omega up`. Every substrate maps to this node; every
 * standard brane is loaded, linked against its grants and served through the gateway.
 * This is the only place where the manifest, the runtime and the gateway meet.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { OmegaError, UnsupportedError } from '../errors.ts'
import type { AbortOptions, ComponentLogger, HttpHandler, Logger } from '../interfaces/index.ts'
import { loadManifest, type BranePlan, type Plan } from '../manifest/index.ts'
import { loadOrCreateNodeKey } from '../identity/index.ts'
import { Gateway, type RouteEntry } from '../gateway/index.ts'
import { checkImports, HttpBrane, loadComponent } from '../runtime/wasm/index.ts'
import { resolveImage } from './images.ts'
import { AdminServer, type AdminStatus } from './admin.ts'
import { LogBook } from '../observe/index.ts'
import { RequestObserver } from './observer.ts'
import { MetricsEndpoint } from './metrics-endpoint.ts'

export interface LocalNodeInit {
  /** Omega's data directory (keys, images, component cache) */
  home: string
  /** gateway address. @default '127.0.0.1' */
  host?: string
  /** gateway port; 0 picks a free one. @default 8080 */
  port?: number
  logging: ComponentLogger
  /** serve the admin API on `<home>/omega.sock`. @default true */
  admin?: boolean
  /** serve Prometheus metrics on this port (on `host`); off when unset */
  metricsPort?: number
}

export interface BraneStatus {
  readonly name: string
  readonly state: 'running' | 'skipped'
  /** why a brane is not running */
  readonly reason?: string
  /** the component's content address */
  readonly id?: string
  readonly source?: string
  readonly routes: readonly string[]
}

interface RunningBrane {
  readonly plan: BranePlan
  readonly handler: HttpHandler & { close: () => Promise<void> }
  readonly status: BraneStatus
}

const HTTP_EXPORT = 'wasi:http/incoming-handler'
const EVENT_EXPORT = 'omega:brane/handler'

export class LocalNode {
  readonly did: string
  readonly plan: Plan
  readonly logBook: LogBook
  readonly observer: RequestObserver
  readonly #gateway: Gateway
  readonly #admin: AdminServer | undefined
  readonly #metrics: MetricsEndpoint | undefined
  readonly #running: readonly RunningBrane[]
  readonly #skipped: readonly BraneStatus[]
  readonly #log: Logger
  readonly #startedAt = new Date()

  private constructor (parts: { did: string, plan: Plan, logBook: LogBook, observer: RequestObserver, gateway: Gateway, admin: AdminServer | undefined, metrics: MetricsEndpoint | undefined, running: RunningBrane[], skipped: BraneStatus[], log: Logger }) {
    this.#metrics = parts.metrics
    this.did = parts.did
    this.plan = parts.plan
    this.logBook = parts.logBook
    this.observer = parts.observer
    this.#gateway = parts.gateway
    this.#admin = parts.admin
    this.#running = parts.running
    this.#skipped = parts.skipped
    this.#log = parts.log
  }

  /**
   * Validate, plan, load and serve a manifest. Fails (and leaves nothing running) when
   * any standard brane cannot be loaded, listing every failure.
   */
  static async start (manifestFile: string, init: LocalNodeInit, options: AbortOptions = {}): Promise<LocalNode> {
    const log = init.logging.forComponent('node')
    const { plan, warnings } = await loadManifest(manifestFile, options)
    for (const w of warnings) {
      log.warn({ path: w.path, line: w.line }, w.message)
    }
    const key = await loadOrCreateNodeKey(init.home, options)
    const logBook = new LogBook({ logger: init.logging.forComponent('brane') })
    const observer = new RequestObserver(logBook)
    const running: RunningBrane[] = []
    const skipped: BraneStatus[] = []
    const failures: Error[] = []
    const closeAll = async (): Promise<void> => { await Promise.allSettled(running.map(async (r) => { await r.handler.close() })) }
    for (const brane of plan.branes) {
      options.signal?.throwIfAborted()
      try {
        const started = await startBrane(brane, manifestFile, init, observer, options)
        if ('reason' in started) {
          skipped.push(started)
          log.warn({ brane: brane.name }, `skipped: ${started.reason}`)
        } else {
          running.push(started)
        }
      } catch (err) {
        failures.push(err as Error)
      }
    }
    if (failures.length > 0) {
      await closeAll()
      const first = failures[0] as Error
      if (failures.length === 1) {
        throw first
      }
      const err = new OmegaError(`Cannot start ${failures.length} branes:\n${failures.map((f) => `  ${f.message}`).join('\n')}`, { cause: first })
      err.name = first.name
      throw err
    }
    const gateway = new Gateway({ logger: init.logging.forComponent('gateway') }, {
      ...(init.host === undefined ? {} : { host: init.host }),
      ...(init.port === undefined ? {} : { port: init.port })
    })
    const entries: RouteEntry[] = running.flatMap((r) => r.plan.routes.map((route) => ({ brane: r.plan.name, route })))
    gateway.setRoutes(entries, new Map(running.map((r) => [r.plan.name, r.handler])))
    let admin: AdminServer | undefined
    let metrics: MetricsEndpoint | undefined
    // the admin API answers for the node, which exists once everything has started
    const started: { node?: LocalNode } = {}
    try {
      await gateway.start()
      if (init.admin !== false) {
        admin = new AdminServer({
          did: key.did,
          logBook,
          observer,
          status: () => {
            if (started.node === undefined) {
              throw new OmegaError('The node is still starting')
            }
            return started.node.status()
          },
          logger: init.logging.forComponent('admin')
        }, { home: init.home })
        await admin.start()
      }
      if (init.metricsPort !== undefined) {
        metrics = new MetricsEndpoint(() => observer.metrics.render(), { ...(init.host === undefined ? {} : { host: init.host }), port: init.metricsPort })
        await metrics.start()
      }
    } catch (err) {
      await admin?.stop()
      await gateway.stop()
      await closeAll()
      throw err
    }
    const node = new LocalNode({ did: key.did, plan, logBook, observer, gateway, admin, metrics, running, skipped, log })
    started.node = node
    log.info({ did: key.did, url: gateway.url, branes: running.length }, 'node up (one-node mode: every substrate maps to this node)')
    return node
  }

  /** `http://host:port` of the gateway */
  get url (): string {
    return this.#gateway.url
  }

  get branes (): readonly BraneStatus[] {
    return [...this.#running.map((r) => r.status), ...this.#skipped]
  }

  /** What `omega ps` shows */
  status (): AdminStatus {
    return {
      did: this.did,
      manifest: this.plan.file,
      gateway: this.url,
      startedAt: this.#startedAt.toISOString(),
      branes: this.branes.map((b) => {
        const plan = this.plan.branes.find((p) => p.name === b.name)
        return {
          ...b,
          substrate: plan?.substrate,
          profile: plan?.profile,
          lifecycle: plan?.lifecycle,
          replicas: plan?.replicas
        }
      })
    }
  }

  /** `http://host:port/metrics`, when the metrics endpoint is on */
  get metricsUrl (): string | undefined {
    return this.#metrics?.url
  }

  /** Stop accepting requests, then close every brane */
  async stop (): Promise<void> {
    await this.#metrics?.stop()
    await this.#admin?.stop()
    await this.#gateway.stop()
    await Promise.allSettled(this.#running.map(async (r) => { await r.handler.close() }))
    this.#log.info({}, 'node stopped')
  }
}

async function startBrane (brane: BranePlan, manifestFile: string, init: LocalNodeInit, observer: RequestObserver, options: AbortOptions): Promise<RunningBrane | (BraneStatus & { reason: string })> {
  const routes = brane.routes.map((r) => `${r.host ?? ''}${r.path}${r.wildcard ? '*' : ''}`)
  if (brane.profile === 'frontier') {
    return { name: brane.name, state: 'skipped', routes: [], reason: new UnsupportedError('frontier (microVM) branes are not supported by this node yet').message }
  }
  if (brane.image === undefined) {
    throw new OmegaError(`Brane "${brane.name}" has no image: set image = "FILE.wasm" or "NAME:TAG" in [brane.${brane.name}]`)
  }
  const image = await resolveImage(brane.name, brane.image, manifestFile, init.home, options)
  const bytes = await readFile(image.path, options.signal === undefined ? {} : { signal: options.signal })
  const loaded = await loadComponent(bytes, { cacheDir: join(init.home, 'cache', 'components'), ...(options.signal === undefined ? {} : { signal: options.signal }) })
  checkImports(loaded.imports, new Set(brane.grantKeys), { brane: brane.name })
  const exports = loaded.exports.map((e) => e.split('@')[0])
  if (!exports.includes(HTTP_EXPORT)) {
    if (exports.includes(EVENT_EXPORT)) {
      return { name: brane.name, state: 'skipped', routes: [], id: loaded.id, reason: 'event branes (omega:brane/handler) run once the dispatcher is available' }
    }
    throw new OmegaError(`Brane "${brane.name}": component ${image.source} exports neither "${HTTP_EXPORT}" nor "${EVENT_EXPORT}" (it exports: ${loaded.exports.join(', ') || 'nothing'})`)
  }
  const runtime = await HttpBrane.create(loaded, {
    name: brane.name,
    grants: brane.grants,
    ...(brane.deterministic ? { deterministic: { seed: brane.seed ?? 0 } } : {}),
    deadlineMs: brane.limits.deadlineMs,
    log: (stream, line) => { observer.logBook.append({ brane: brane.name, kind: stream, level: stream === 'stderr' ? 'warn' : 'info', message: line }) }
  })
  return {
    plan: brane,
    handler: observer.wrap(brane.name, runtime),
    status: { name: brane.name, state: 'running', id: loaded.id, source: image.source, routes }
  }
}
