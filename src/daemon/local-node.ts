/**
 * One node running its manifests, each an app: `omega up`. Every substrate maps to this
 * node; every standard brane is loaded, linked against its grants (generation.ts) and
 * served through the gateway. This is where the manifest, the runtime and the gateway meet.
 */
import { join, resolve } from 'node:path'
import { BraneNotFoundError, CapabilityTokenError, OmegaError, SnapshotError, UnsupportedError, UsageError } from '../errors.ts'
import type { AbortOptions, ComponentLogger, HttpHandler, Logger } from '../interfaces/index.ts'
import { parseDuration, type BranePlan, type Plan, type ResolverPlan } from '../manifest/index.ts'
import { loadOrCreateNodeKey, RevocationList, verifyCapability, type NodeKey } from '../identity/index.ts'
import type { Resolvers, ResolverStatus } from '../resolver/index.ts'
import { Settlement } from '../settle/index.ts'
import { Dispatcher, EventQueue, signTrace, type DeadLetter, type DispatcherComponents, type EventTarget, type Hop } from '../dispatch/index.ts'
import { Gateway, type RouteEntry } from '../gateway/index.ts'
import type { WorkerBrane } from '../runtime/wasm/index.ts'
import { AdminServer, type AdminComponents, type AdminStatus } from './admin.ts'
import { StateStore } from '../biome/lite.ts'
import { cpuProfileToPprof, encodePprof, LogBook, startTelemetry, type Telemetry, type TelemetryInit } from '../observe/index.ts'
import { RequestObserver } from './observer.ts'
import { MetricsEndpoint } from './metrics-endpoint.ts'
import { openSnapshot, sealSnapshot, type SnapshotDocument } from './snapshot.ts'
import type { Dashboard, DashboardInit } from './dashboard.ts'
import type { MeshView } from './dashboard-state.ts'
import { loadApps, loadGeneration, sameBrane, startBrane, type BraneContext, type BraneStarter, type BraneStatus, type Generation } from './generation.ts'
import { Supervisor } from './supervisor.ts'

export type { BraneStatus }

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
  /** serve the live dashboard (dashboard.ts) here; off when unset, and without the admin API */
  dashboard?: DashboardInit
  /** what the dashboard shows of a mesh, and where it finds a trace's hops */
  meshView?: MeshView & { readonly trace: (id: string, options: AbortOptions) => Promise<unknown> }
  /** in a mesh: which branes run on this node, and how to reach the others */
  placement?: PlacementHooks
  /** more admin routes (the mesh's) */
  adminRoutes?: AdminComponents['routes']
  /** root did:keys trusted for capability tokens besides the node's own (admin API, gateway) */
  trustedRoots?: readonly string[]
  /** meter usage and write settlement receipts to `<home>/settle.db`. @default true */
  metering?: boolean
  /** ms between periodic settlement receipts. @default 60000 */
  settleIntervalMs?: number
  /** who deployed a brane, for settlement (e.g. the subject of its deploy token). @default the node */
  deployerOf?: (brane: string) => string
  /** environment of resolver provider processes (`[resolver.X]`). @default the daemon's */
  resolverEnv?: Readonly<Record<string, string | undefined>>
  /** first restart delay of a failed resolver process. @default 500 */
  resolverBackoffMs?: number
  /**
   * export spans and metrics over OTLP/HTTP (the CLI reads the `OTEL_*` variables with
   * `telemetryFromEnv`); off when unset, and then the OpenTelemetry packages are not loaded
   */
  telemetry?: TelemetryInit
}

/** How a node in a mesh splits a manifest with the other nodes */
export interface PlacementHooks {
  /** whether `brane` runs on this node */
  readonly runsHere: (brane: BranePlan) => boolean
  /** whether this node runs a resolver's provider (the node leading its brane). @default every node */
  readonly runsResolver?: (resolver: ResolverPlan) => boolean
  /** where it runs instead, for `omega ps` */
  readonly elsewhere: (brane: BranePlan) => string
  /** delivers events to a replica on another node */
  readonly events: (brane: string) => EventTarget | undefined
  /** serves HTTP requests through a replica on another node */
  readonly http: (brane: string) => HttpHandler | undefined
  /** keeps copies of new deliveries on another node (`[graph] durability = "replicated"`) */
  readonly replication?: Pick<DispatcherComponents, 'replicate' | 'settled'>
}

/** A plan with no branes: what a mesh node runs before its first deployment */
const EMPTY_PLAN: Plan = { file: '', branes: [], edges: [], resolvers: [] }

/**
 * What a node runs: manifest files (each an app, see manifest/apps.ts), a plan that was
 * loaded already (a mesh's apps, combined), or nothing yet
 */
export type NodeSource = string | readonly string[] | Plan | undefined

/** Rows of each queue table pruned per batch, batches per 5 s tick, and the time a tick may take (ms) */
const PRUNE_BATCH = 5_000
const PRUNE_BATCHES = 40
const PRUNE_BUDGET_MS = 50

/** How often replicated state is compacted when no brane sets `[brane.X.state] gc_interval` (ms) */
const DEFAULT_STATE_GC_MS = 60_000

/** What {@link LocalNode.restore} did */
export interface RestoreReport {
  readonly brane: string
  /** the component's content address */
  readonly component: string
  /** when the snapshot was taken */
  readonly createdAt: string
  /** bytes of linear memory restored, all memories together */
  readonly bytes: number
}

export interface ReloadOptions extends AbortOptions {
  /** only this brane may change: a manifest that changes anything else is refused, nothing changed */
  brane?: string
}

export interface ReloadReport {
  readonly added: readonly string[]
  readonly changed: readonly string[]
  readonly removed: readonly string[]
  readonly unchanged: readonly string[]
}

export class LocalNode {
  readonly did: string
  readonly logBook: LogBook
  readonly observer: RequestObserver
  readonly #init: LocalNodeInit
  readonly #context: BraneContext
  readonly #key: NodeKey
  readonly #queue: EventQueue
  #dispatcher: Dispatcher
  readonly #gateway: Gateway
  #admin: AdminServer | undefined
  #metrics: MetricsEndpoint | undefined
  #dashboard: Dashboard | undefined
  #resolvers: Resolvers | undefined
  #settlement: Settlement | undefined
  #revocations: RevocationList | undefined
  #telemetry: Telemetry | undefined
  /** what runs, reloads and retries of failed branes (one after another) */
  readonly #supervisor: Supervisor
  readonly #log: Logger
  readonly #startedAt = new Date()
  /** compacts replicated state at the shortest `gc_interval` of the running branes */
  readonly #stateGc: NodeJS.Timeout
  #lastGc = Date.now()
  /** the manifest file of each app, when the node runs files (`omega up`), by app name */
  #files = new Map<string, string>()

  get #generation (): Generation {
    return this.#supervisor.generation
  }

  private constructor (key: NodeKey, init: LocalNodeInit, generation: Generation, context: BraneContext, gateway: Gateway, queue: EventQueue) {
    this.#context = context
    const observer = context.observer
    this.did = key.did
    this.#key = key
    this.#queue = queue
    this.#init = init
    this.#supervisor = new Supervisor(generation, {
      starter: (plan) => starter(plan, init, context),
      log: init.logging.forComponent('node'),
      started: () => {
        this.#route()
        this.#dispatcher.kick()
      }
    })
    this.observer = observer
    this.logBook = observer.logBook
    this.#gateway = gateway
    this.#log = init.logging.forComponent('node')
    this.#dispatcher = this.#newDispatcher(generation)
    this.#stateGc = setInterval(() => {
      this.#pruneQueue()
      this.#compactState()
    }, 5_000).unref()
  }

  /** Forget delivered events and old traces (EventQueue.prune), a few batches at a time */
  #pruneQueue (): void {
    const until = performance.now() + PRUNE_BUDGET_MS
    try {
      for (let batch = 0; batch < PRUNE_BATCHES && performance.now() < until; batch++) {
        this.#queue.prune({ limit: PRUNE_BATCH })
        if (!this.#queue.pruneMore) {
          break
        }
      }
    } catch (err) {
      this.#log.error({ err }, 'could not prune the event queue')
    }
  }

  #compactState (): void {
    const intervals = this.#generation.plan.branes.flatMap((b) => {
      const gc = b.state?.gc_interval
      const ms = typeof gc === 'string' ? parseDuration(gc) : undefined
      return ms === undefined ? [] : [ms]
    })
    const every = Math.min(DEFAULT_STATE_GC_MS, ...intervals)
    if (Date.now() - this.#lastGc < every) {
      return
    }
    this.#lastGc = Date.now()
    try {
      const removed = this.#context.state.compact()
      if (removed > 0) {
        this.#log.debug({ removed }, 'compacted replicated state')
      }
    } catch (err) {
      this.#log.error({ err }, 'state compaction failed')
    }
  }

  /**
   * Validate, plan, load and serve a manifest. Fails (and leaves nothing running) when
   * any standard brane cannot be loaded, listing every failure.
   */
  static async start (source: NodeSource, init: LocalNodeInit, options: AbortOptions = {}): Promise<LocalNode> {
    const log = init.logging.forComponent('node')
    const files = typeof source === 'string' ? [source] : Array.isArray(source) ? source as readonly string[] : []
    const { plan, apps } = files.length > 0 ? await loadApps(new Map(), files, log, options) : { plan: source as Plan | undefined ?? EMPTY_PLAN, apps: new Map<string, string>() }
    const key = await loadOrCreateNodeKey(init.home, options)
    const observer = new RequestObserver(new LogBook({ logger: init.logging.forComponent('brane') }))
    // branes emit through whichever dispatcher is current (it is replaced on reload)
    const holder: { node?: LocalNode } = {}
    // the stores first: a damaged one refuses the start before anything runs
    const queue = new EventQueue({ path: join(init.home, 'queue.db') })
    let state: StateStore
    try {
      state = new StateStore({ path: join(init.home, 'state.db'), logger: init.logging.forComponent('state') })
    } catch (err) {
      queue.close()
      throw err
    }
    const context: BraneContext = {
      observer,
      state,
      emit: async (brane, topic, payload, opts) => {
        if (holder.node === undefined) {
          throw new OmegaError('The node is still starting')
        }
        return holder.node.emit(brane, topic, payload, opts)
      }
    }
    let generation: Generation | undefined
    let revocations: RevocationList
    try {
      // a brane that cannot start does not stop the others: it is retried (start fails when none can)
      ({ generation } = await loadGeneration(plan, new Map(), starter(plan, init, context), init.logging.forComponent('node'), options, { tolerate: () => true }))
      revocations = await new RevocationList(init.home).load()
    } catch (err) {
      await Promise.allSettled([...generation?.running.values() ?? []].map(async (r) => { await r.close() }))
      state.close()
      queue.close()
      throw err
    }
    // capability tokens: the node's key and the configured roots; revocations persist in the home
    const roots = [key.did, ...(init.trustedRoots ?? [])]
    const gateway = new Gateway({
      logger: init.logging.forComponent('gateway'),
      authorize: (brane, token) => verifyCapability(token, { ability: 'invoke', resource: `brane/${brane}`, roots, revoked: revocations })
    }, {
      ...(init.host === undefined ? {} : { host: init.host }),
      ...(init.port === undefined ? {} : { port: init.port })
    })
    const node = new LocalNode(key, init, generation, context, gateway, queue)
    node.#files = apps
    holder.node = node
    node.#revocations = revocations
    node.#route()
    node.#dispatcher.start()
    if (init.metering !== false) {
      // usage is metered from the first request; receipts are written once this daemon holds the home
      const settlement = new Settlement({ key, logger: init.logging.forComponent('settle'), ...(init.deployerOf === undefined ? {} : { deployerOf: init.deployerOf }) }, {
        home: init.home, ...(init.settleIntervalMs === undefined ? {} : { intervalMs: init.settleIntervalMs })
      })
      node.#settlement = settlement
      observer.meter = (usage) => { settlement.record(usage) }
    }
    try {
      if (init.telemetry !== undefined) {
        // before the first request: it has its span
        node.#telemetry = await startTelemetry({ metrics: observer.metrics, logger: init.logging.forComponent('otel'), instanceId: key.did }, init.telemetry)
        observer.telemetry = node.#telemetry.tracing ? node.#telemetry : undefined
      }
      await gateway.start()
      if (init.admin !== false) {
        node.#admin = new AdminServer({
          did: key.did,
          logBook: observer.logBook,
          observer,
          status: () => node.status(),
          reload: async (file: string | undefined, scope: { brane?: string }) => node.reload(file, scope),
          cpuProfile: async (brane: string, durationMs: number, opts: AbortOptions) => node.cpuProfile(brane, durationMs, opts),
          snapshots: {
            take: async (brane: string) => node.snapshot(brane),
            restore: async (brane: string, doc: unknown) => node.restore(brane, doc)
          },
          events: {
            trace: (id: string) => node.trace(id),
            deadLetters: () => node.deadLetters(),
            replay: (ids?: readonly number[]) => {
              const n = queue.replay(ids)
              node.#dispatcher.kick()
              return n
            }
          },
          logger: init.logging.forComponent('admin'),
          routes: new Map([
            ...(init.adminRoutes ?? new Map()),
            ['/v1/dashboard', {
              action: 'observe',
              handle: async () => {
                if (node.#dashboard === undefined) {
                  throw new UnsupportedError('This node serves no dashboard (it was started with --no-dashboard)')
                }
                return { url: node.#dashboard.url, link: node.#dashboard.link() }
              }
            }],
            ['/v1/state', {
              action: 'state',
              handle: async (q: URLSearchParams) => {
                const list = q.get('list')
                return list === null ? state.snapshot(q.get('brane') ?? '') : state.list(q.get('brane') ?? '', list)
              }
            }]
          ])
        }, { home: init.home, roots: init.trustedRoots ?? [], revocations })
        await node.#admin.start()
        if (init.dashboard !== undefined) {
          await node.#startDashboard(init.dashboard, node.#admin)
        }
      }
      if (init.metricsPort !== undefined) {
        node.#metrics = new MetricsEndpoint(() => observer.metrics.render(), { ...(init.host === undefined ? {} : { host: init.host }), port: init.metricsPort })
        await node.#metrics.start()
      }
      // after the admin socket is claimed: a second daemon on this home never gets here
      node.#settlement?.start()
      await node.#syncResolvers(plan)
    } catch (err) {
      await node.stop()
      throw err
    }
    log.info({ did: key.did, url: gateway.url, branes: generation.running.size }, init.placement === undefined ? 'node up (one-node mode: every substrate maps to this node)' : 'node up (mesh mode: this node runs its share of each deployment)')
    node.#supervisor.retryFailed()
    return node
  }

  async #startDashboard (at: DashboardInit, admin: AdminServer): Promise<void> {
    const [{ Dashboard }, { DashboardModel }] = await Promise.all([import('./dashboard.ts'), import('./dashboard-state.ts')])
    const mesh = this.#init.meshView
    const model = new DashboardModel(this, mesh)
    this.#dashboard = new Dashboard({
      logBook: this.logBook,
      state: async (options) => model.read(options),
      trace: async (id, options) => mesh === undefined ? this.trace(id) : mesh.trace(id, options),
      authorize: (token) => { admin.authorize(token, 'observe', 'node') },
      logger: this.#init.logging.forComponent('dashboard')
    }, at)
    await this.#dashboard.start()
  }

  /** `http://host:port` of the gateway */
  get url (): string {
    return this.#gateway.url
  }

  /** when the node started, ISO 8601 */
  get startedAt (): string {
    return this.#startedAt.toISOString()
  }

  /** `http://host:port` of the dashboard, when it is on */
  get dashboardUrl (): string | undefined {
    return this.#dashboard?.url
  }

  /** `http://host:port/metrics`, when the metrics endpoint is on */
  get metricsUrl (): string | undefined {
    return this.#metrics?.url
  }

  get plan (): Plan {
    return this.#generation.plan
  }

  /** The `[resolver.X]` publications and their public URLs */
  get resolvers (): ResolverStatus[] {
    return this.#resolvers?.status() ?? []
  }

  /**
   * Revoked capability token ids (persisted in `<home>/revoked.json`): `onRevoked` tells of
   * local revocations (to gossip them), `add` takes revocations heard from peers
   */
  get revocations (): RevocationList | undefined {
    return this.#revocations
  }

  /** Settlement (metering and receipts), when metering is on */
  get settlement (): Settlement | undefined {
    return this.#settlement
  }

  get branes (): readonly BraneStatus[] {
    const failed = [...this.#generation.failed.values()].map((f): BraneStatus => ({
      name: f.plan.name, state: 'failed', reason: f.error.message, attempts: f.attempts, retryAt: new Date(f.retryAt).toISOString(), routes: []
    }))
    return [...[...this.#generation.running.values()].map((r) => r.status), ...this.#generation.skipped, ...failed]
  }

  /** What `omega ps` shows */
  status (): AdminStatus {
    return {
      did: this.did,
      manifest: this.#generation.file,
      gateway: this.url,
      ...(this.#dashboard === undefined ? {} : { dashboard: this.#dashboard.url }),
      startedAt: this.startedAt,
      ...(this.#resolvers === undefined ? {} : { resolvers: this.#resolvers.status() }),
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

  /**
   * Hot reload: validate the manifest (a bad one changes nothing and says why), load and
   * warm every new or changed brane beside the running ones, switch the routes in one
   * step, then let the replaced branes finish what they were doing and close. Branes
   * whose plan and component did not change keep running untouched.
   *
   * `file` is the manifest of one of the apps this node runs (the others keep running as
   * they are), or, on a node that runs one app, a manifest that replaces it. Without it,
   * every app's manifest is read again.
   */
  async reload (file?: string, options: ReloadOptions = {}): Promise<ReloadReport> {
    return this.#supervisor.serially(async () => this.#reload(file, options))
  }

  /**
   * Hot reload to a plan that was validated already (a mesh deployment, read once when it
   * arrived): as {@link reload}, without reading its manifest again
   */
  async apply (plan: Plan, options: ReloadOptions = {}): Promise<ReloadReport> {
    return this.#supervisor.serially(async () => this.#switch(plan, options))
  }

  async #reload (file: string | undefined, options: ReloadOptions): Promise<ReloadReport> {
    const files = new Map(this.#files)
    if (file !== undefined) {
      const path = resolve(file)
      // the app of that file; on a node that runs one app, another file replaces it (the app keeps its name)
      const app = [...files].find(([, f]) => resolve(f) === path)?.[0] ?? (files.size <= 1 ? [...files.keys()][0] ?? '' : undefined)
      if (app === undefined) {
        throw new UsageError(`This node runs the apps ${[...files].map(([name, f]) => `${name} (${f})`).join(', ')}: reload one of their manifests`)
      }
      // the app that changes comes last: a collision names it as the one refused
      files.delete(app)
      files.set(app, file)
    }
    if (files.size === 0) {
      throw new OmegaError('This node runs no manifest file: give one to reload, or deploy to the mesh with "omega deploy FILE"')
    }
    const { plan, apps } = await loadApps(files, [...files.values()], this.#log, options)
    const report = await this.#switch(plan, options)
    this.#files = apps
    return report
  }

  /** Load `plan` beside what runs, switch the routes and the dispatcher to it, drain what it replaced */
  async #switch (plan: Plan, options: ReloadOptions): Promise<ReloadReport> {
    const old = this.#generation
    // a reload confined to one brane keeps every other one exactly as it runs
    const keep = options.brane === undefined ? new Set<string>() : confineReload(old.plan, plan, options.brane)
    // a brane that could not start before may still fail: that alone does not refuse the reload
    const { generation, reused, replaced } = await this.#supervisor.load(plan, options, { keep, tolerate: (name) => old.failed.has(name) })
    this.#route()
    // events follow the new edges from now on; deliveries already running finish
    this.#dispatcher.stop()
    this.#dispatcher = this.#newDispatcher(generation)
    this.#dispatcher.start()
    // the old instances drain: close() waits for what they are serving
    await Promise.allSettled(replaced.map(async (r) => { await r.close() }))
    await this.#syncResolvers(plan)
    const report: ReloadReport = {
      added: plan.branes.filter((b) => !old.plan.branes.some((o) => o.name === b.name)).map((b) => b.name),
      changed: plan.branes.filter((b) => old.plan.branes.some((o) => o.name === b.name) && !reused.has(b.name)).map((b) => b.name),
      removed: old.plan.branes.filter((o) => !plan.branes.some((b) => b.name === o.name)).map((o) => o.name),
      unchanged: [...reused]
    }
    this.#log.info({ ...report }, 'reloaded')
    return report
  }

  /**
   * Run the resolvers of `plan` this node runs (all of them on one node; in a mesh, those
   * of the branes it leads), stopping those gone, changed or placed elsewhere
   */
  async #syncResolvers (plan: Plan): Promise<void> {
    if (this.#resolvers === undefined) {
      if (plan.resolvers.length === 0) {
        return
      }
      // loaded only by a manifest that has resolvers, like the microVM runtime by a frontier brane
      const { Resolvers } = await import('../resolver/index.ts')
      const init = this.#init
      this.#resolvers = new Resolvers({ logger: init.logging.forComponent('resolver'), onChange: () => { this.#route() } }, plan.resolvers, {
        port: Number(new URL(this.#gateway.url).port),
        ...(init.resolverEnv === undefined ? {} : { env: init.resolverEnv }),
        ...(init.resolverBackoffMs === undefined ? {} : { backoffMs: init.resolverBackoffMs })
      }, this.#runsResolver)
      this.#resolvers.start()
    } else {
      await this.#resolvers.update(plan.resolvers, this.#runsResolver)
    }
    this.#route()
  }

  readonly #runsResolver = (resolver: ResolverPlan): boolean => this.#init.placement?.runsResolver?.(resolver) ?? true

  /** The mesh's view changed without changing what runs here: resolvers may move all the same */
  async placementChanged (): Promise<void> {
    await this.#supervisor.serially(async () => {
      if (!this.#supervisor.signal.aborted) {
        await this.#syncResolvers(this.plan)
      }
    })
    this.kick()
  }

  /** The signed end record of the trace that holds `id` (an event or trace id, or a prefix) */
  trace (id: string): ReturnType<typeof signTrace> | undefined {
    const found = this.#queue.trace(id)
    return found === undefined || found.hops.length === 0 ? undefined : signTrace(found.traceId, found.hops, this.#key)
  }

  /**
   * A signed snapshot of a pinned brane's linear memory, taken between two of its
   * calls (see `WorkerBrane.snapshot` for what it cannot hold: resources).
   *
   * @throws SnapshotError when no such brane runs or it is not pinned
   */
  async snapshot (brane: string, options: AbortOptions = {}): Promise<SnapshotDocument> {
    const running = this.#snapshotTarget(brane, 'take a snapshot of')
    return sealSnapshot(await running.snapshot(options), this.#key)
  }

  /**
   * Puts a pinned brane back in the state of `doc` (from {@link snapshot}), between
   * two of its calls. The whole document is checked first: shape, this node's
   * signature, every digest, the brane and its component; a document that fails
   * changes nothing.
   *
   * @throws SnapshotError naming what failed
   */
  async restore (brane: string, doc: unknown, options: AbortOptions = {}): Promise<RestoreReport> {
    const running = this.#snapshotTarget(brane, 'restore a snapshot into')
    const snapshot = await openSnapshot(doc, { did: this.did, brane })
    await running.restore(snapshot, options)
    const bytes = snapshot.memories.reduce((sum, m) => sum + m.byteLength, 0)
    this.#log.info({ brane, component: snapshot.componentId, createdAt: snapshot.createdAt, bytes }, 'restored snapshot')
    return { brane, component: snapshot.componentId, createdAt: snapshot.createdAt, bytes }
  }

  #snapshotTarget (brane: string, what: string): WorkerBrane {
    const running = this.#generation.running.get(brane)
    if (running === undefined) {
      const names = [...this.#generation.running.keys()]
      throw new SnapshotError(`Cannot ${what} brane "${brane}": no such brane is running (running: ${names.length === 0 ? 'none' : names.join(', ')})`)
    }
    if (running.runtime === undefined) {
      throw new SnapshotError(`Cannot ${what} brane "${brane}": it is a frontier (microVM) brane, whose clones restore from its golden snapshot`)
    }
    return running.runtime
  }

  /** Deliveries by state (pending, inflight, done, dead) */
  queueCounts (): ReturnType<EventQueue['counts']> {
    return this.#queue.counts()
  }

  /** Deliveries acknowledged since the node started (a counter, cheap to poll) */
  get acked (): number {
    return this.#queue.acked
  }

  /** The dead-letter queue */
  deadLetters (): DeadLetter[] {
    return this.#queue.deadLetters()
  }

  /**
   * A CPU profile of a brane's workers over `durationMs`, as gzipped pprof (what
   * `go tool pprof` and Pyroscope read). Samples carry the labels `brane` and
   * `thread` (the worker's threadId); time a worker waited for work is left out.
   *
   * @throws BraneNotFoundError when no such brane runs
   * @throws RangeError when `durationMs` is not above 0 and at most 60000
   */
  async cpuProfile (brane: string, durationMs: number, options: AbortOptions = {}): Promise<Buffer> {
    const running = this.#generation.running.get(brane)
    if (running === undefined) {
      const names = [...this.#generation.running.keys()]
      throw new BraneNotFoundError(`Cannot profile brane "${brane}": no such brane is running (running: ${names.length === 0 ? 'none' : names.join(', ')})`)
    }
    if (running.runtime === undefined) {
      throw new UnsupportedError(`Cannot profile brane "${brane}": CPU profiles cover WASM workers, and it is a frontier (microVM) brane`)
    }
    const startedAt = new Date()
    const profiles = await running.runtime.profile({ durationMs, ...(options.signal === undefined ? {} : { signal: options.signal }) })
    const sources = profiles.map((p) => ({ profile: p.profile, labels: { brane, thread: String(p.threadId) } }))
    return encodePprof(cpuProfileToPprof(sources, { startedAt, intervalUs: profiles[0]?.intervalUs ?? 1000 }))
  }

  /** Emit an event from `brane` (HTTP branes and the CLI use this; durable when it resolves) */
  async emit (brane: string, topic: string, payload: Uint8Array, options: AbortOptions & { traceId?: string, traceparent?: string } = {}): Promise<string> {
    return this.#dispatcher.emit(brane, topic, payload, options)
  }

  #newDispatcher (generation: Generation): Dispatcher {
    const replication = generation.plan.durability === 'replicated' ? this.#init.placement?.replication : undefined
    if (generation.plan.durability === 'replicated' && replication === undefined) {
      this.#log.warn({}, '[graph] durability = "replicated" needs a mesh (omega node): on this node alone every event is stored here only')
    }
    return new Dispatcher({
      queue: this.#queue,
      target: (brane) => generation.events.get(brane) ?? this.#init.placement?.events(brane),
      logger: this.#init.logging.forComponent('dispatch'),
      ...replication
    }, { edges: generation.plan.edges })
  }

  /** The node's event queue (a mesh node hands its deliveries over and holds copies of others') */
  get queue (): EventQueue {
    return this.#queue
  }

  /**
   * Stop taking work before a mesh node leaves: no new requests, no new deliveries, and
   * (at most `timeoutMs`) the running deliveries settled. Resolves whether they all did.
   */
  async quiesce (timeoutMs: number): Promise<boolean> {
    await this.#gateway.stop()
    return this.#dispatcher.drain(timeoutMs)
  }

  /** Point the gateway at the current generation, in one assignment */
  #route (): void {
    const http = [...this.#generation.running.values()].flatMap((r) => r.http === undefined ? [] : [[r.plan, r.http] as const])
    // in a mesh, the routes of branes that run elsewhere go to a replica there
    const placement = this.#init.placement
    const remote = placement === undefined
      ? []
      : this.#generation.plan.branes.filter((b) => !this.#generation.running.has(b.name) && b.routes.length > 0).flatMap((b) => {
        const handler = placement.http(b.name)
        return handler === undefined ? [] : [[b, handler] as const]
      })
    const all = [...http, ...remote]
    const entries: RouteEntry[] = all.flatMap(([plan]) => plan.routes.map((route) => ({ brane: plan.name, route, auth: plan.auth })))
    // a resolver bound to a brane: its host names serve that brane on every path
    for (const { host, brane } of this.#resolvers?.hostRoutes() ?? []) {
      const auth = all.find(([plan]) => plan.name === brane)?.[0].auth
      entries.push({ brane, route: { path: '/', wildcard: true, host, declared: true }, ...(auth === undefined ? {} : { auth }) })
    }
    this.#gateway.setRoutes(entries, new Map(all.map(([plan, handler]) => [plan.name, handler])))
  }

  /** The event handler of `brane` when it runs on this node */
  localEvents (brane: string): EventTarget | undefined {
    return this.#generation.running.get(brane)?.events
  }

  /**
   * The HTTP handler of `brane` when it runs on this node, for requests that reached it
   * another way than this node's gateway (forwarded by another node): a brane with
   * `auth = "token"` checks the request's token here too
   */
  localHttp (brane: string): HttpHandler | undefined {
    const running = this.#generation.running.get(brane)
    const http = running?.http
    if (http === undefined || running?.plan.auth !== 'token') {
      return http
    }
    return {
      handle: async (request, options) => {
        this.#gateway.authorizeRequest(brane, request.headers)
        return http.handle(request, options)
      },
      ...(http.bodyMax === undefined ? {} : { bodyMax: http.bodyMax })
    }
  }

  /** The hops this node recorded of the trace holding `id` */
  traceHops (id: string): { traceId: string, hops: Hop[] } | undefined {
    return this.#queue.trace(id)
  }

  /** Look for deliveries to try now (placement changed: targets may be reachable) */
  kick (): void {
    this.#dispatcher.kick()
  }

  /** Undelivered events per target brane (for `replicas = "auto"`) */
  backlog (): Map<string, number> {
    const byBrane = new Map<string, number>()
    for (const [edge, depth] of this.#queue.depth()) {
      const arrow = edge.indexOf('>')
      const to = edge.slice(arrow + 1, edge.indexOf(':', arrow))
      byBrane.set(to, (byBrane.get(to) ?? 0) + depth)
    }
    return byBrane
  }

  /** The replicated state of this node's branes */
  get state (): StateStore {
    return this.#context.state
  }

  /** Stop accepting requests, then close every brane */
  async stop (): Promise<void> {
    await this.#supervisor.stop()
    await this.#resolvers?.stop()
    await this.#metrics?.stop()
    await this.#dashboard?.stop()
    await this.#admin?.stop()
    await this.#gateway.stop()
    this.#dispatcher.stop()
    await Promise.allSettled([...this.#generation.running.values()].map(async (r) => { await r.close() }))
    clearInterval(this.#stateGc)
    this.#context.state.close()
    this.#dispatcher.flush()
    this.#queue.close()
    // the spans of everything served until now, and the last metrics (bounded: a collector that is gone does not hold the stop)
    this.observer.telemetry = undefined
    await this.#telemetry?.shutdown()
    // the final receipt covers everything served until now
    try {
      this.#settlement?.stop()
    } catch (err) {
      this.#log.error({ err }, 'cannot write the final settlement receipt')
    }
    this.#log.info({}, 'node stopped')
  }
}

/**
 * The branes a reload confined to `brane` keeps running as they are (all the others).
 * @throws {CapabilityTokenError} `denied` when `next` adds, removes or changes another
 * brane (its edges included) or the graph's resolvers or name
 */
export function confineReload (old: Plan, next: Plan, brane: string): Set<string> {
  if (!old.branes.some((b) => b.name === brane) && !next.branes.some((b) => b.name === brane)) {
    throw new BraneNotFoundError(`Neither the running manifest nor the new one has a brane "${brane}"`)
  }
  const before = new Map(old.branes.map((b) => [b.name, b]))
  const after = new Map(next.branes.map((b) => [b.name, b]))
  const others = [...new Set([...before.keys(), ...after.keys()])].filter((name) => name !== brane)
  const changes: string[] = []
  for (const name of others) {
    const a = before.get(name)
    const b = after.get(name)
    if (a === undefined) {
      changes.push(`adds brane "${name}"`)
    } else if (b === undefined) {
      changes.push(`removes brane "${name}"`)
    } else if (!sameBrane(a, b)) {
      changes.push(`changes brane "${name}"`)
    }
  }
  if (JSON.stringify(old.resolvers) !== JSON.stringify(next.resolvers)) {
    changes.push('changes the resolvers')
  }
  if (old.name !== next.name) {
    changes.push('renames the graph')
  }
  if ((old.durability ?? 'local') !== (next.durability ?? 'local')) {
    changes.push('changes the graph\'s durability')
  }
  if (changes.length > 0) {
    throw new CapabilityTokenError(`A reload confined to brane "${brane}" may change only that brane, but this manifest ${changes.join(', ')}: nothing changed (that needs deploy on brane/*)`, 'denied')
  }
  return new Set(others)
}

/** Starts the branes of `plan` on this node (their image paths are relative to its manifest) */
function starter (plan: Plan, init: LocalNodeInit, context: BraneContext): BraneStarter {
  return async (brane, current, options) => startBrane(brane, brane.manifest ?? plan.file, init, context, current, options)
}
