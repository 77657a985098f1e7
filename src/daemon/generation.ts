/**
 * A generation: everything one version of a node's manifest runs. Made by starting
 * the branes that are new or changed (standard ones in worker threads, frontier ones in
 * microVMs) and reusing, from the generation before, every brane whose plan and
 * component are the same.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { OmegaError, PlacementError, UsageError } from '../errors.ts'
import type { AbortOptions, HttpHandler, Logger } from '../interfaces/index.ts'
import { appNameOf, combineApps, loadManifest, type BranePlan, type Plan } from '../manifest/index.ts'
import { loadOrCreateNodeKey } from '../identity/index.ts'
import type { EventTarget } from '../dispatch/index.ts'
import { checkImports, EventBrane, fetchEventReuseWarning, HttpBrane, linkGrantKeys, loadComponent, serveKind, type LogStream, type StateCall, type WorkerBrane } from '../runtime/wasm/index.ts'
import type { StateStore } from '../biome/lite.ts'
import { kindWarning, receivesHttp } from './link-check.ts'
import { resolveImage } from './images.ts'
import type { RequestObserver } from './observer.ts'
import type { LocalNodeInit } from './local-node.ts'

export interface BraneStatus {
  readonly name: string
  readonly state: 'running' | 'skipped' | 'remote' | 'failed'
  /** why a brane is not running */
  readonly reason?: string
  /** a failed brane: how many starts failed, and when the next one is (ISO time) */
  readonly attempts?: number
  readonly retryAt?: string
  /** the component's content address */
  readonly id?: string
  readonly source?: string
  readonly routes: readonly string[]
}

export interface RunningBrane {
  readonly plan: BranePlan
  /** the component's content address: with the plan, what decides reuse on reload */
  readonly id: string
  /** set for HTTP branes (`wasi:http/incoming-handler`) */
  readonly http?: HttpHandler
  /** set for event branes (`omega:brane/handler`) */
  readonly events?: EventTarget
  /** drains and stops its instances */
  readonly close: () => Promise<void>
  /** the WASM runtime serving it: snapshots and profiles go through it (absent for frontier branes) */
  readonly runtime?: WorkerBrane
  readonly status: BraneStatus
}

/** What branes need from the node while they run */
export interface BraneContext {
  readonly observer: RequestObserver
  /** emit from a brane through the node's current dispatcher */
  readonly emit: (brane: string, topic: string, payload: Uint8Array, options: AbortOptions & { traceId?: string, traceparent?: string }) => Promise<string>
  /** the replicated state of branes granted `state` */
  readonly state: StateStore
}

/** Everything one version of the manifest runs */
export interface Generation {
  readonly file: string
  readonly plan: Plan
  /** grows when a failed brane starts on a retry */
  readonly running: Map<string, RunningBrane>
  /** the event handlers of the branes that take events */
  readonly events: Map<string, EventTarget>
  readonly skipped: readonly BraneStatus[]
  /** branes that could not start when the node started, retried with back-off */
  readonly failed: Map<string, FailedBrane>
}

/** A brane that could not start, and when it is tried again */
export interface FailedBrane {
  readonly plan: BranePlan
  readonly error: Error
  readonly attempts: number
  /** ms since the epoch */
  readonly retryAt: number
}

/**
 * Starts one brane of a plan on this node (`current`: the brane of that name running
 * now, to hand back unchanged when its plan and component are the same); or says why
 * it does not run here (placed on another node, or not runnable by this node)
 */
export type BraneStarter = (brane: BranePlan, current: RunningBrane | undefined, options: AbortOptions) => Promise<RunningBrane | (BraneStatus & { reason: string })>

/** What {@link loadGeneration} may let pass */
export interface GenerationSettings {
  /** branes kept as they run (not started again) */
  readonly keep?: ReadonlySet<string>
  /** failures of these branes do not fail the load (unless no brane could start) */
  readonly tolerate?: (brane: string) => boolean
}

/**
 * Load every brane of `plan` through `start`, which hands back a running brane whose
 * plan and component are the same (reused), and keep those in `keep` as they run. On
 * any failure, close what this call started (never what it reused) and throw every
 * failure at once. Failures of branes that `tolerate` names do not count, unless no
 * brane could start at all: those are returned in `failed`, to be retried.
 */
export async function loadGeneration (plan: Plan, current: ReadonlyMap<string, RunningBrane>, start: BraneStarter, log: Logger, options: AbortOptions, settings: GenerationSettings = {}): Promise<{ generation: Generation, reused: Set<string> }> {
  const keep = settings.keep ?? new Set<string>()
  const running = new Map<string, RunningBrane>()
  const reused = new Set<string>()
  const skipped: BraneStatus[] = []
  const failures: Error[] = []
  const failed = new Map<string, FailedBrane>()
  for (const brane of plan.branes) {
    options.signal?.throwIfAborted()
    try {
      const kept = keep.has(brane.name) ? current.get(brane.name) : undefined
      const started = kept ?? await start(brane, current.get(brane.name), options)
      if ('reason' in started) {
        skipped.push(started)
        if (started.state === 'skipped') {
          log.warn({ brane: brane.name }, `skipped: ${started.reason}`)
        }
      } else {
        running.set(brane.name, started)
        if (started === current.get(brane.name)) {
          reused.add(brane.name)
        }
      }
    } catch (err) {
      failures.push(err as Error)
      failed.set(brane.name, { plan: brane, error: err as Error, attempts: 1, retryAt: 0 })
    }
  }
  const tolerated = failures.length > 0 && running.size > 0 && [...failed.keys()].every((name) => settings.tolerate?.(name) === true)
  if (tolerated) {
    for (const f of failed.values()) {
      log.error({ brane: f.plan.name, error: f.error.name }, `brane ${f.plan.name} cannot start; the others serve and it is retried: ${f.error.message}`)
    }
  } else if (failures.length > 0) {
    await Promise.allSettled([...running.values()].filter((r) => !reused.has(r.plan.name)).map(async (r) => { await r.close() }))
    const first = failures[0] as Error
    if (failures.length === 1) {
      throw first
    }
    const err = new OmegaError(`Cannot start ${failures.length} branes:\n${failures.map((f) => `  ${f.message}`).join('\n')}`, { cause: first })
    err.name = first.name
    throw err
  }
  const events = new Map([...running.values()].flatMap((r) => r.events === undefined ? [] : [[r.plan.name, r.events] as const]))
  return { generation: { file: plan.file, plan, running, events, skipped, failed }, reused }
}

export async function startBrane (brane: BranePlan, manifestFile: string, init: LocalNodeInit, context: BraneContext, current: RunningBrane | undefined, options: AbortOptions): Promise<RunningBrane | (BraneStatus & { reason: string })> {
  if (init.placement !== undefined && !init.placement.runsHere(brane)) {
    return { name: brane.name, state: 'remote', routes: [], reason: init.placement.elsewhere(brane) }
  }
  if (brane.profile === 'frontier') {
    return startFrontier(brane, init, context, current, options)
  }
  if (brane.image === undefined) {
    throw new OmegaError(`Brane "${brane.name}" has no image: set image = "FILE.wasm" or "NAME:TAG" in [brane.${brane.name}]`)
  }
  const image = await resolveImage(brane.name, brane.image, manifestFile, init.home, options)
  const bytes = await readFile(image.path, options.signal === undefined ? {} : { signal: options.signal })
  const log = init.logging.forComponent('node')
  const loadStart = performance.now()
  log.info({ brane: brane.name, image: image.source, bytes: bytes.byteLength }, `loading brane ${brane.name}`)
  const loaded = await loadComponent(bytes, {
    cacheDir: join(init.home, 'cache', 'components'),
    memMaxBytes: brane.limits.memMaxBytes,
    ...(options.signal === undefined ? {} : { signal: options.signal })
  })
  log.info({ brane: brane.name, id: loaded.id, ms: Math.round(performance.now() - loadStart) },
    `loaded brane ${brane.name} (${loaded.cache === 'miss' ? 'transpiled now, cached for next time' : 'from the transpile cache'})`)
  if (current !== undefined && current.id === loaded.id && sameBrane(current.plan, brane)) {
    return current
  }
  // nothing it may not reach, then what it is (a command or a 0.3 component is refused as such)
  checkImports(loaded.imports, linkGrantKeys(brane.grantKeys, loaded.exports), { brane: brane.name })
  const kind = serveKind(loaded.exports, loaded.imports, `Brane "${brane.name}": component ${image.source}`, { http: receivesHttp(brane) })
  const ignored = kindWarning(kind, brane)
  if (ignored !== undefined) {
    log.warn({ brane: brane.name }, `brane ${brane.name}: ${ignored}`)
  }
  const reuse = fetchEventReuseWarning(bytes, brane.lifecycle)
  if (reuse !== undefined) {
    log.warn({ brane: brane.name, lifecycle: brane.lifecycle }, `brane ${brane.name}: ${reuse}`)
  }
  const { observer } = context
  const settings = {
    name: brane.name,
    grants: brane.grants,
    ...(brane.deterministic ? { deterministic: { seed: brane.seed ?? 0 } } : {}),
    lifecycle: brane.lifecycle,
    deadlineMs: brane.limits.deadlineMs,
    memMaxBytes: brane.limits.memMaxBytes,
    cpuQuota: brane.limits.cpuQuota,
    config: brane.config,
    onEmit: async (topic: string, payload: Uint8Array, opts: AbortOptions & { traceId?: string, traceparent?: string }) => context.emit(brane.name, topic, payload, opts),
    ...(brane.grants.state === undefined ? {} : { onState: (call: StateCall) => context.state.call(brane.name, call) }),
    log: (stream: LogStream, line: string, _level?: unknown, instance?: string) => {
      observer.logBook.append({ brane: brane.name, kind: stream, level: stream === 'stderr' ? 'warn' : 'info', message: line, ...(instance === undefined ? {} : { fields: { instance } }) })
    }
  }
  const status = { name: brane.name, state: 'running' as const, id: loaded.id, source: image.source }
  if (kind === 'http') {
    const runtime = await HttpBrane.create(loaded, { ...settings, maxBodyBytes: brane.limits.bodyMaxBytes })
    return {
      plan: brane,
      id: loaded.id,
      http: observer.wrap(brane.name, runtime, brane.limits.bodyMaxBytes),
      close: async () => { await runtime.close() },
      runtime,
      status: { ...status, routes: brane.routes.map((r) => `${r.host ?? ''}${r.path}${r.wildcard ? '*' : ''}`) }
    }
  }
  const runtime = await EventBrane.create(loaded, { ...settings, stdout: brane.stdout })
  return {
    plan: brane,
    id: loaded.id,
    events: observer.wrapEvents(brane.name, runtime),
    close: async () => { await runtime.close() },
    runtime,
    status: { ...status, routes: brane.edgesIn.map((e) => `← ${e.on}`) }
  }
}

/**
 * A frontier brane: placement checks first (VFIO for `gpu = "passthrough"`, a working
 * VMM), then clones of its guest image restored from a golden snapshot.
 *
 * @throws PlacementError when this node cannot run it, saying why
 * @throws GuestImageNotFoundError when its guest image was not built here
 */
async function startFrontier (brane: BranePlan, init: LocalNodeInit, context: BraneContext, current: RunningBrane | undefined, options: AbortOptions): Promise<RunningBrane> {
  const { createDriver, FrontierBrane, probeFrontier, resolveGuest, runDirFor, snapshotRootFor } = await import('../runtime/microvm/index.ts')
  const probe = await probeFrontier()
  if (brane.gpu === 'passthrough' && !probe.vfio) {
    throw new PlacementError(`Cannot place brane "${brane.name}" on this node: gpu = "passthrough" needs VFIO (/dev/vfio/vfio and an IOMMU group), which this host lacks; run it on a node with a GPU bound to vfio-pci, or remove gpu = "passthrough"`)
  }
  if (!probe.frontier) {
    throw new PlacementError(`Cannot place frontier brane "${brane.name}" on this node: ${probe.reason ?? 'no usable VMM'}`)
  }
  if (brane.guest === undefined) {
    throw new OmegaError(`Frontier brane "${brane.name}" has no guest image: set guest = "NAME" in [brane.${brane.name}] and build it with "omega guest build NAME --from DIR"`)
  }
  const image = await resolveGuest(init.home, brane.guest)
  if (current !== undefined && current.id === image.id && sameBrane(current.plan, brane)) {
    return current
  }
  const key = await loadOrCreateNodeKey(init.home, options)
  const { observer } = context
  const log = init.logging.forComponent('microvm')
  const runtime = await FrontierBrane.create({
    name: brane.name,
    image,
    driver: await createDriver(),
    memBytes: brane.limits.memMaxBytes,
    vcpus: Math.max(1, Math.ceil(brane.limits.cpuQuota)),
    deadlineMs: brane.limits.deadlineMs,
    lifecycle: brane.lifecycle,
    poolSize: brane.replicas.kind === 'fixed' ? brane.replicas.count : brane.replicas.min,
    emitTopics: brane.edgesOut.map((e) => e.on),
    onEmit: async (topic, payload, opts) => context.emit(brane.name, topic, payload, opts),
    log: (stream, line) => { observer.logBook.append({ brane: brane.name, kind: stream, level: stream === 'stderr' ? 'warn' : 'info', message: line }) },
    snapshotRoot: snapshotRootFor(init.home),
    runDir: runDirFor(init.home),
    signer: key,
    logger: log
  }, options)
  log.info({ brane: brane.name, guest: image.name, id: image.id, vmm: probe.vmm, accel: probe.accel }, `frontier brane ${brane.name} up`)
  return {
    plan: brane,
    id: image.id,
    http: observer.wrap(brane.name, runtime, brane.limits.bodyMaxBytes),
    events: observer.wrapEvents(brane.name, runtime),
    close: async () => { await runtime.close() },
    status: {
      name: brane.name,
      state: 'running',
      id: image.id,
      source: `guest ${image.name}`,
      routes: [...brane.routes.map((r) => `${r.host ?? ''}${r.path}${r.wildcard ? '*' : ''}`), ...brane.edgesIn.map((e) => `← ${e.on}`)]
    }
  }
}

/**
 * Load manifest files as apps and combine them (see manifest/apps.ts). `names`: the app
 * each file was before (a reloaded file stays its app, whatever its name says now).
 *
 * @throws ManifestError for an invalid manifest; DeploymentError when two apps collide
 */
export async function loadApps (names: ReadonlyMap<string, string>, files: readonly string[], log: Logger, options: AbortOptions): Promise<{ plan: Plan, apps: Map<string, string> }> {
  const apps = new Map<string, string>()
  const plans = []
  for (const file of files) {
    const { plan, warnings } = await loadManifest(file, options)
    for (const w of warnings) {
      log.warn({ path: w.path, line: w.line }, w.message)
    }
    const before = [...names].find(([name, f]) => f === file && name !== '')?.[0]
    const name = before ?? appNameOf(file, plan)
    const other = apps.get(name)
    if (other !== undefined) {
      throw new UsageError(`${other} and ${file} are both the app "${name}": give one another name with [app] name = "..."`)
    }
    apps.set(name, file)
    plans.push({ name, plan })
  }
  return { plan: combineApps(plans).plan, apps }
}

/**
 * Whether two plans of a brane are the same: everything but the manifest file it was read
 * from (which only says where its image path starts; the image's bytes are compared apart)
 */
export function sameBrane (a: BranePlan, b: BranePlan): boolean {
  const { manifest: _a, ...restA } = a
  const { manifest: _b, ...restB } = b
  return JSON.stringify(restA) === JSON.stringify(restB)
}
