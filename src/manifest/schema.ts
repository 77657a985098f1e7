/**
 * The ZGraph manifest: one source for the TypeScript types (`Static<…>`) and the JSON
 * Schema that `omega schema` prints and editors use. Never describe the manifest twice.
 *
 * Objects that omit `additionalProperties` are open: an unknown key there is reported as a
 * warning (like Cargo's "unused manifest key"), so a manifest written for a newer Omega still
 * loads. `additionalProperties: false` marks closed objects, where an unknown key is an
 * error: the capability table is closed because a grant Omega does not know must never be
 * silently ignored.
 *
 * Only `omega schema` (and its test) loads this file: validation reads the schema it
 * generates, shipped as `schema/zgraph.schema.json`, so that starting a node does not load
 * TypeBox.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox'

/** A string enum, emitted as `{ type: "string", enum: [...] }` for editors */
function oneOf<const T extends readonly string[]> (values: T, description: string): TSchema & { static: T[number] } {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], description })
}

import {
  AUTH_MODES, CLOCK_RESOLUTIONS, CRDT_TYPES, DISCOVERY_MODES, DURABILITY_MODES, FS_LIFETIMES, GPU_MODES, LIFECYCLES, PROFILES,
  RESOLVER_MODES, STDOUT_MODES, SUBSTRATES, APP_NAME_PATTERN
} from './vocabulary.ts'

const SIZE_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*([kKmMgGtT]i?[bB]|[bB])?\\s*$'
const DURATION_PATTERN = '^\\s*(\\d+(\\.\\d+)?\\s*(ns|us|µs|ms|s|m|h|d)\\s*)+$'

const Size = Type.Union([
  Type.String({ pattern: SIZE_PATTERN, description: 'a size such as "64 MiB", "512 KiB" or "1 GB"' }),
  Type.Integer({ minimum: 0, description: 'a size in bytes' })
], { description: 'a size such as "64 MiB"' })
const Duration = Type.String({ pattern: DURATION_PATTERN, description: 'a duration such as "8s", "250ms" or "1m30s"' })
const Port = Type.Integer({ minimum: 0, maximum: 65535, description: 'a port number (0 picks a free one)' })
const StringList = Type.Array(Type.String())
const OneOrMany = Type.Union([Type.String(), StringList])

const NetHttpGrant = Type.Object({
  allowlist: Type.Array(Type.String({ minLength: 1 }), {
    description: 'host names the brane may call: exact ("api.example.com"), a subdomain glob ("*.crossref.org") or with a port ("example.com:8443")'
  })
}, { additionalProperties: false, description: 'outgoing HTTP (wasi:http/outgoing-handler) to allowlisted hosts' })

const FsTmpGrant = Type.Object({
  quota: Type.Optional(Size),
  lifetime: Type.Optional(oneOf(FS_LIFETIMES, 'when the directory is removed: after each request, or with the instance'))
}, { additionalProperties: false, description: 'a private scratch directory (wasi:filesystem) with a quota' })

const ClockGrant = Type.Union([
  Type.Boolean(),
  Type.Object({
    resolution: Type.Optional(oneOf(CLOCK_RESOLUTIONS, 'clock readings are rounded to this resolution'))
  }, { additionalProperties: false })
], { description: 'wall and monotonic clocks (wasi:clocks)' })

const Toggle = Type.Union([Type.Boolean(), Type.Object({}, { additionalProperties: false })])

const Capability = Type.Object({
  'net.http': Type.Optional(NetHttpGrant),
  'fs.tmp': Type.Optional(FsTmpGrant),
  clock: Type.Optional(ClockGrant),
  random: Type.Optional(Type.Union([...Toggle.anyOf], { description: 'random bytes (wasi:random); seeded when execution.deterministic = true' })),
  env: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String(), { description: 'environment variables: only these, with these values (wasi:cli/environment)' })),
  state: Type.Optional(Type.Union([...Toggle.anyOf], { description: 'replicated CRDT state (omega:brane/state)' })),
  profile: Type.Optional(oneOf(PROFILES, 'how the brane runs, when this table also holds grants'))
}, { additionalProperties: false, description: 'what the brane may reach; nothing else is reachable' })

const Limits = Type.Object({
  cpu_quota: Type.Optional(Type.Union([
    Type.Number({ exclusiveMinimum: 0, description: 'a fraction of one core, e.g. 0.5' }),
    Type.String({ pattern: '^\\s*\\d+(\\.\\d+)?\\s*%\\s*$', description: 'a percentage of one core, e.g. "50%"' })
  ], { description: 'share of one CPU core, e.g. 0.5 or "50%"' })),
  mem_max: Type.Optional(Size),
  deadline: Type.Optional(Duration),
  body_max: Type.Optional(Type.Union([...Size.anyOf], { description: 'most bytes of one HTTP request body and of one response body (default "16 MiB", at most "1 GiB")' }))
}, { description: 'resource limits per instance' })

const HttpRoute = Type.Union([
  Type.String({ pattern: '^/', description: 'a path route: "/api", "/api/*" or "/..." ' }),
  Type.Object({
    route: Type.String({ pattern: '^/', description: 'a path route: "/api", "/api/*" or "/..."' }),
    host: Type.Optional(Type.String({ description: 'only requests for this host name' })),
    methods: Type.Optional(StringList)
  })
])

const Trigger = Type.Object({
  http: Type.Optional(Type.Union([HttpRoute, Type.Array(HttpRoute)], { description: 'HTTP routes served by this brane' }))
}, { description: 'what starts the brane: HTTP routes (events come through [graph].edges)' })

const Discovery = Type.Object({
  mode: Type.Optional(Type.Union([oneOf(DISCOVERY_MODES, 'how peers are found'), Type.Array(oneOf(DISCOVERY_MODES, 'how peers are found'))])),
  bootstrap: Type.Optional(OneOrMany),
  service: Type.Optional(Type.String({ description: 'DNS-SD service name' })),
  interval: Type.Optional(Duration)
}, { description: 'how this brane\'s nodes find peers' })

const Network = Type.Object({
  quic_port: Type.Optional(Port),
  tcp_port: Type.Optional(Port),
  mdns: Type.Optional(Type.Boolean()),
  overlay: Type.Optional(Type.String({ description: 'overlay network name, e.g. "tailscale" or "netbird"' }))
}, { description: 'mesh transport settings' })

const StateSettings = Type.Object({
  crdt: Type.Optional(oneOf(CRDT_TYPES, 'the replicated data type')),
  fanout: Type.Optional(Type.Integer({ minimum: 1 })),
  gc_interval: Type.Optional(Duration)
}, { description: 'replicated state settings' })

const Execution = Type.Object({
  deterministic: Type.Optional(Type.Boolean({ description: 'seeded random and a virtual clock: same inputs, same outputs' })),
  seed: Type.Optional(Type.Integer({ minimum: 0 }))
}, { description: 'execution settings' })

const Replicas = Type.Union([
  Type.Integer({ minimum: 1, description: 'a fixed number of replicas (≥ 1)' }),
  Type.Unsafe<'auto'>({ type: 'string', const: 'auto', description: 'scale with queue depth and load' }),
  Type.Object({
    min: Type.Integer({ minimum: 0 }),
    max: Type.Integer({ minimum: 1 })
  }, { additionalProperties: false, description: 'automatic scaling between bounds' })
], { description: 'an integer ≥ 1, "auto", or { min, max }' })

export const BraneSchema = Type.Object({
  substrate: Type.Optional(oneOf(SUBSTRATES, 'where the brane runs')),
  capability: Type.Optional(Type.Union([oneOf(PROFILES, 'how the brane runs'), Capability])),
  profile: Type.Optional(oneOf(PROFILES, 'how the brane runs (alternative to a string `capability`)')),
  replicas: Type.Optional(Replicas),
  image: Type.Optional(Type.String({ minLength: 1, description: 'a .wasm component path relative to the manifest, a store reference NAME:TAG, or b3:HASH' })),
  peers: Type.Optional(Type.String({ minLength: 1, description: 'glob of peer names, e.g. "lab.lan/transform-pool-*"' })),
  hosts: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'hosts the user owns (habitat)' })),
  guest: Type.Optional(Type.String({ minLength: 1, description: 'microVM guest image name (frontier)' })),
  gpu: Type.Optional(oneOf(GPU_MODES, 'GPU access (frontier only)')),
  lifecycle: Type.Optional(oneOf(LIFECYCLES, 'instance lifecycle')),
  stdout: Type.Optional(oneOf(STDOUT_MODES, 'where a wasi:cli/run command brane\'s stdout goes: "log" (default) or "emit" (records "TOPIC LENGTH\\n" then LENGTH bytes, emitted when it exits 0; needs an outgoing edge)')),
  trigger: Type.Optional(Trigger),
  limits: Type.Optional(Limits),
  discovery: Type.Optional(Discovery),
  network: Type.Optional(Network),
  state: Type.Optional(StateSettings),
  config: Type.Optional(Type.Record(Type.String({ minLength: 1 }), Type.String(), { description: 'string values the brane reads through wasi:config/store (no grant needed: only this brane sees them)' })),
  execution: Type.Optional(Execution),
  auth: Type.Optional(oneOf(AUTH_MODES, 'what an HTTP request to this brane must carry: "token" = Authorization: Bearer <capability token> allowing `invoke` on `brane/NAME`'))
}, { description: 'a workload' })

const Edge = Type.Object({
  from: Type.String({ minLength: 1, description: 'a brane name (the emitter)' }),
  to: Type.String({ minLength: 1, description: 'a brane name (the receiver)' }),
  on: Type.String({ minLength: 1, description: 'an event topic such as "raw.batch"' }),
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 9, description: '0 (lowest) to 9 (highest); default 5' }))
}, { description: 'a typed event channel' })

const Graph = Type.Object({
  edges: Type.Optional(Type.Array(Edge)),
  allow_cycles: Type.Optional(Type.Boolean({ description: 'permit cycles in the event graph' })),
  durability: Type.Optional(oneOf(DURABILITY_MODES, 'where an emitted event is stored before the emit is acknowledged: "local" (the emitting node\'s queue, the default) or "replicated" (also on a second node of the mesh)'))
}, { description: 'event edges between branes' })

const Resolver = Type.Object({
  host: Type.String({ minLength: 1, description: 'a public host name' }),
  mode: oneOf(RESOLVER_MODES, 'how the host is published'),
  brane: Type.Optional(Type.String({ description: 'the brane served at this host (default: by route)' }))
}, { description: 'publishes the gateway under a host name' })

const BRANE_NAME = '^[a-z][a-z0-9_-]{0,62}$'

const App = Type.Object({
  name: Type.Optional(Type.String({ pattern: APP_NAME_PATTERN, description: 'the app this manifest is (default: the file name without its extension); a mesh runs many apps, each replaced only by a newer deployment of the same name' }))
}, { additionalProperties: false, description: 'the application this manifest describes' })

export const ManifestSchema = Type.Object({
  name: Type.Optional(Type.String()),
  app: Type.Optional(App),
  version: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  description: Type.Optional(Type.String()),
  brane: Type.Record(Type.String({ pattern: BRANE_NAME }), BraneSchema, { description: 'a table of workloads: [brane.NAME]' }),
  graph: Type.Optional(Graph),
  resolver: Type.Optional(Type.Record(Type.String(), Resolver, { description: 'a table of public hosts: [resolver.NAME]' }))
}, { description: 'a ZGraph manifest' })

/** A manifest as written (after parsing and structural validation) */
export type Manifest = Static<typeof ManifestSchema>
export type { Substrate, Profile, Lifecycle, CapabilityKey, ResolverMode, AuthMode, StdoutMode } from './vocabulary.ts'
export type BraneSpec = Static<typeof BraneSchema>
export type CapabilitySpec = Static<typeof Capability>
export type EdgeSpec = Static<typeof Edge>
export type ResolverSpec = Static<typeof Resolver>

/** Brane names: lowercase, digits, `-` and `_`, at most 63 characters */
export const BRANE_NAME_PATTERN = BRANE_NAME

/** The JSON Schema (draft-07) of a manifest, as `omega schema` prints it */
export function manifestJsonSchema (): Record<string, unknown> {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://omega.dev/schema/zgraph.json',
    title: 'Omega ZGraph manifest',
    ...JSON.parse(JSON.stringify(ManifestSchema)) as Record<string, unknown>
  }
}
