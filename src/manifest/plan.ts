/**
 * A validated manifest compiles to a Plan: per brane its substrate, profile, replica rule,
 * grants, limits, triggers and edges, with every default resolved and every quantity in
 * base units. Everything downstream reads the Plan, never the raw manifest.
 */
import type { AuthMode, BraneSpec, CapabilityKey, EdgeSpec, Lifecycle, Manifest, Profile, ResolverMode, StdoutMode, Substrate } from './schema.ts'
import { parseCpuQuota, parseDuration, parseSize } from './quantity.ts'

/** Defaults, stated once */
export const DEFAULTS = {
  substrate: 'gaia' as Substrate,
  profile: 'standard' as Profile,
  lifecycle: 'ephemeral' as Lifecycle,
  replicas: 1,
  autoMin: 1,
  autoMax: 8,
  memMaxBytes: 64 * 2 ** 20,
  deadlineMs: 30_000,
  bodyMaxBytes: 16 * 2 ** 20,
  cpuQuota: 1,
  fsTmpQuotaBytes: 64 * 2 ** 20,
  fsTmpLifetime: 'request' as const,
  clockResolution: 'ms' as const,
  edgePriority: 5
}

export type ReplicaRule =
  | { readonly kind: 'fixed', readonly count: number }
  | { readonly kind: 'auto', readonly min: number, readonly max: number }

export interface Grants {
  readonly 'net.http'?: { readonly allowlist: readonly string[] }
  readonly 'fs.tmp'?: { readonly quotaBytes: number, readonly lifetime: 'request' | 'instance' }
  readonly clock?: { readonly resolution: 'ns' | 'us' | 'ms' | 's' }
  readonly random?: true
  readonly env?: Readonly<Record<string, string>>
  readonly state?: true
  /** implied by outgoing edges: the topics this brane may emit */
  readonly emit?: { readonly topics: readonly string[] }
  /**
   * host directories preopened as `guest` (wasi:filesystem): never from a manifest,
   * only `omega run --dir HOST::GUEST`
   */
  readonly 'fs.dirs'?: ReadonlyArray<{ readonly host: string, readonly guest: string }>
}

export interface Limits {
  readonly memMaxBytes: number
  readonly deadlineMs: number
  /** most bytes of one HTTP request body and of one response body */
  readonly bodyMaxBytes: number
  /** fraction of one core */
  readonly cpuQuota: number
}

export interface HttpRoute {
  /** normalised: "/api" (exact) or "/api/" + wildcard flag */
  readonly path: string
  readonly wildcard: boolean
  readonly host?: string
  readonly methods?: readonly string[]
  /** whether the manifest named it, or Omega chose `/<brane>/...` */
  readonly declared: boolean
}

export interface Edge {
  readonly from: string
  readonly to: string
  readonly on: string
  readonly priority: number
}

export interface BranePlan {
  readonly name: string
  /** the app the brane belongs to, when several run together (see combineApps) */
  readonly app?: string
  /** the manifest file it was declared in, when it is not the plan's (image paths are relative to it) */
  readonly manifest?: string
  readonly substrate: Substrate
  readonly profile: Profile
  readonly replicas: ReplicaRule
  readonly lifecycle: Lifecycle
  /** where a wasi:cli/run command's stdout goes: its log, or emit records */
  readonly stdout: StdoutMode
  readonly image?: string
  readonly guest?: string
  readonly gpu: 'none' | 'passthrough'
  readonly peers?: string
  readonly hosts: readonly string[]
  readonly grants: Grants
  /** the capability keys granted (plus `emit` when the brane has outgoing edges) */
  readonly grantKeys: ReadonlyArray<CapabilityKey | 'emit'>
  readonly limits: Limits
  readonly routes: readonly HttpRoute[]
  /** `token`: every HTTP request needs a capability token allowing `invoke` on `brane/NAME` */
  readonly auth: AuthMode
  readonly edgesIn: readonly Edge[]
  readonly edgesOut: readonly Edge[]
  readonly deterministic: boolean
  readonly seed?: number
  readonly discovery?: Readonly<Record<string, unknown>>
  readonly network?: Readonly<Record<string, unknown>>
  readonly state?: Readonly<Record<string, unknown>>
  /** `[brane.X.config]`: what wasi:config/store answers */
  readonly config: Readonly<Record<string, string>>
}

export interface ResolverPlan {
  readonly name: string
  readonly host: string
  readonly mode: ResolverMode
  readonly brane?: string
}

export interface Plan {
  readonly file: string
  readonly name?: string
  /** `[app] name`: the app this manifest is, when it says */
  readonly app?: string
  readonly branes: readonly BranePlan[]
  readonly edges: readonly Edge[]
  readonly resolvers: readonly ResolverPlan[]
  /** where an emit is stored before it is acknowledged ([graph] durability). @default 'local' */
  readonly durability?: 'local' | 'replicated'
}

/** Compile a manifest that passed validation (structure and meaning) into a Plan */
export function compilePlan (manifest: Manifest, file: string): Plan {
  const edges: Edge[] = (manifest.graph?.edges ?? []).map((e: EdgeSpec) => ({
    from: e.from, to: e.to, on: e.on, priority: e.priority ?? DEFAULTS.edgePriority
  }))
  const branes = Object.entries(manifest.brane).map(([name, spec]) => compileBrane(name, spec, edges))
  const resolvers = Object.entries(manifest.resolver ?? {}).map(([name, r]) => ({
    name, host: r.host, mode: r.mode, ...(r.brane === undefined ? {} : { brane: r.brane })
  }))
  return { file, ...(manifest.name === undefined ? {} : { name: manifest.name }), ...(manifest.app?.name === undefined ? {} : { app: manifest.app.name }), branes, edges, resolvers, durability: manifest.graph?.durability ?? 'local' }
}

function compileBrane (name: string, spec: BraneSpec, edges: readonly Edge[]): BranePlan {
  const capability = spec.capability
  const grantsSpec = typeof capability === 'object' ? capability : undefined
  const profile: Profile = typeof capability === 'string' ? capability : grantsSpec?.profile ?? spec.profile ?? DEFAULTS.profile
  const edgesOut = edges.filter((e) => e.from === name)
  const grants = compileGrants(grantsSpec, edgesOut)
  const grantKeys = Object.keys(grants) as Array<CapabilityKey | 'emit'>
  const limits: Limits = {
    memMaxBytes: spec.limits?.mem_max === undefined ? DEFAULTS.memMaxBytes : parseSize(spec.limits.mem_max) ?? DEFAULTS.memMaxBytes,
    deadlineMs: spec.limits?.deadline === undefined ? DEFAULTS.deadlineMs : parseDuration(spec.limits.deadline) ?? DEFAULTS.deadlineMs,
    bodyMaxBytes: spec.limits?.body_max === undefined ? DEFAULTS.bodyMaxBytes : parseSize(spec.limits.body_max) ?? DEFAULTS.bodyMaxBytes,
    cpuQuota: spec.limits?.cpu_quota === undefined ? DEFAULTS.cpuQuota : parseCpuQuota(spec.limits.cpu_quota) ?? DEFAULTS.cpuQuota
  }
  return {
    name,
    substrate: spec.substrate ?? DEFAULTS.substrate,
    profile,
    replicas: compileReplicas(spec.replicas),
    lifecycle: spec.lifecycle ?? DEFAULTS.lifecycle,
    stdout: spec.stdout ?? 'log',
    ...(spec.image === undefined ? {} : { image: spec.image }),
    ...(spec.guest === undefined ? {} : { guest: spec.guest }),
    gpu: spec.gpu ?? 'none',
    ...(spec.peers === undefined ? {} : { peers: spec.peers }),
    hosts: spec.hosts ?? [],
    grants,
    grantKeys,
    limits,
    routes: compileRoutes(name, spec),
    auth: spec.auth ?? 'none',
    edgesIn: edges.filter((e) => e.to === name),
    edgesOut,
    deterministic: spec.execution?.deterministic ?? false,
    ...(spec.execution?.seed === undefined ? {} : { seed: spec.execution.seed }),
    ...(spec.discovery === undefined ? {} : { discovery: spec.discovery }),
    ...(spec.network === undefined ? {} : { network: spec.network }),
    ...(spec.state === undefined ? {} : { state: spec.state }),
    config: spec.config ?? {}
  }
}

function compileReplicas (replicas: BraneSpec['replicas']): ReplicaRule {
  if (replicas === undefined) {
    return { kind: 'fixed', count: DEFAULTS.replicas }
  }
  if (replicas === 'auto') {
    return { kind: 'auto', min: DEFAULTS.autoMin, max: DEFAULTS.autoMax }
  }
  if (typeof replicas === 'number') {
    return { kind: 'fixed', count: replicas }
  }
  return { kind: 'auto', min: replicas.min, max: replicas.max }
}

function isOn (value: unknown): boolean {
  return value === true || (value !== null && typeof value === 'object')
}

function compileGrants (spec: Exclude<BraneSpec['capability'], string | undefined> | undefined, edgesOut: readonly Edge[]): Grants {
  const grants: { -readonly [K in keyof Grants]: Grants[K] } = {}
  if (spec?.['net.http'] !== undefined) {
    grants['net.http'] = { allowlist: [...spec['net.http'].allowlist] }
  }
  const fs = spec?.['fs.tmp']
  if (fs !== undefined) {
    grants['fs.tmp'] = {
      quotaBytes: fs.quota === undefined ? DEFAULTS.fsTmpQuotaBytes : parseSize(fs.quota) ?? DEFAULTS.fsTmpQuotaBytes,
      lifetime: fs.lifetime ?? DEFAULTS.fsTmpLifetime
    }
  }
  const clock = spec?.clock
  if (isOn(clock)) {
    grants.clock = { resolution: typeof clock === 'object' ? clock.resolution ?? DEFAULTS.clockResolution : DEFAULTS.clockResolution }
  }
  if (isOn(spec?.random)) {
    grants.random = true
  }
  if (spec?.env !== undefined) {
    grants.env = { ...spec.env }
  }
  if (isOn(spec?.state)) {
    grants.state = true
  }
  if (edgesOut.length > 0) {
    grants.emit = { topics: [...new Set(edgesOut.map((e) => e.on))] }
  }
  return grants
}

function compileRoutes (name: string, spec: BraneSpec): HttpRoute[] {
  const http = spec.trigger?.http
  const entries = http === undefined ? [] : Array.isArray(http) ? http : [http]
  if (entries.length === 0) {
    return [{ path: `/${name}/`, wildcard: true, declared: false }]
  }
  return entries.map((entry) => {
    const raw = typeof entry === 'string' ? entry : entry.route
    const wildcard = raw.endsWith('/*') || raw.endsWith('/...')
    const path = wildcard ? raw.slice(0, raw.lastIndexOf('/') + 1) : raw
    const route: HttpRoute = { path, wildcard, declared: true }
    if (typeof entry === 'object') {
      return {
        ...route,
        ...(entry.host === undefined ? {} : { host: entry.host.toLowerCase() }),
        ...(entry.methods === undefined ? {} : { methods: entry.methods.map((m) => m.toUpperCase()) })
      }
    }
    return route
  })
}
