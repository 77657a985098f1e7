/**
 * Two-pass validation. Pass one walks the JSON Schema (generated from schema.ts) over the parsed
 * data; pass two checks meaning: edges name branes, no cycles unless allowed, frontier not
 * on habitat, quantities and globs parse. Every problem becomes one `ManifestIssue`, and
 * all of a file's problems are reported together.
 */
import { readFileSync } from 'node:fs'
import picomatch from 'picomatch'
import type { ManifestIssue } from '../errors.ts'
import type { KeyPath, ParsedManifest } from './parse.ts'
import type { Manifest } from './schema.ts'
import { CAPABILITY_KEYS } from './vocabulary.ts'
import { parseCpuQuota, parseDuration, parseSize } from './quantity.ts'
import { MANIFEST_LIMITS } from './limits.ts'

interface JsonSchema {
  type?: string
  enum?: unknown[]
  const?: unknown
  pattern?: string
  minLength?: number
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  properties?: Record<string, JsonSchema>
  patternProperties?: Record<string, JsonSchema>
  required?: string[]
  additionalProperties?: boolean
  items?: JsonSchema
  anyOf?: JsonSchema[]
  description?: string
}

/** Largest linear memory a wasm32 component can address */
const WASM32_MAX_MEMORY = 4 * 2 ** 30
const HOST_PATTERN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:\d{1,5})?$/i

let rootSchema: JsonSchema | undefined

/** Format a key path the way TOML writes it: `brane.api.capability."net.http".allowlist[0]` */
export function formatKeyPath (path: KeyPath): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') {
      out += `[${part}]`
    } else {
      const key = /^[A-Za-z0-9_-]+$/.test(part) ? part : JSON.stringify(part)
      out += out === '' ? key : `.${key}`
    }
  }
  return out
}

class IssueList {
  readonly issues: ManifestIssue[] = []
  readonly #parsed: ParsedManifest
  readonly #failed = new Set<string>()
  constructor (parsed: ParsedManifest) {
    this.#parsed = parsed
  }

  add (severity: ManifestIssue['severity'], path: KeyPath, message: string): void {
    const key = formatKeyPath(path)
    // One error per key: a value the structure pass refused is not judged again for meaning
    if (severity === 'error' && this.#failed.has(key)) {
      return
    }
    if (severity === 'error') {
      this.#failed.add(key)
    }
    const position = this.#parsed.locate(path)
    this.issues.push({ file: this.#parsed.file, path: key, message, severity, ...position })
  }

  error (path: KeyPath, message: string): void { this.add('error', path, message) }
  warn (path: KeyPath, message: string): void { this.add('warning', path, message) }
  get errorCount (): number { return this.issues.filter((i) => i.severity === 'error').length }
}

/**
 * The JSON Schema `omega schema` generates, as shipped in `schema/zgraph.schema.json` (a
 * test keeps the two equal): read once, instead of loading TypeBox to build it
 */
function shippedSchema (): JsonSchema {
  return JSON.parse(readFileSync(new URL('../../../schema/zgraph.schema.json', import.meta.url), 'utf8')) as JsonSchema
}

/**
 * Validate parsed manifest data. Returns every issue found (errors and warnings), sorted
 * by position; the manifest is usable when none is an error.
 */
export function validateManifest (parsed: ParsedManifest): ManifestIssue[] {
  rootSchema ??= shippedSchema()
  const list = new IssueList(parsed)
  checkStructure(list, rootSchema, parsed.data, [])
  if (isObject(parsed.data)) {
    checkMeaning(list, parsed.data as Partial<Manifest>)
  }
  return list.issues.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0))
}

function isObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function show (value: unknown): string {
  if (typeof value === 'string') {
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) {
    return 'an array'
  }
  if (isObject(value)) {
    return 'a table'
  }
  return String(value)
}

function describe (schema: JsonSchema): string {
  if (schema.enum !== undefined) {
    return `one of ${schema.enum.map((v) => JSON.stringify(v)).join(', ')}`
  }
  if (schema.const !== undefined) {
    return JSON.stringify(schema.const)
  }
  if (schema.description !== undefined && /^an? /.test(schema.description)) {
    return schema.description
  }
  if (schema.anyOf !== undefined) {
    return schema.anyOf.map(describe).join(' or ')
  }
  switch (schema.type) {
    case 'string':
      return 'a string'
    case 'integer': {
      const bounds = [
        schema.minimum === undefined ? '' : `≥ ${schema.minimum}`,
        schema.maximum === undefined ? '' : `≤ ${schema.maximum}`
      ].filter((b) => b !== '').join(' and ')
      return bounds === '' ? 'an integer' : `an integer ${bounds}`
    }
    case 'number': return 'a number'
    case 'boolean': return 'true or false'
    case 'array': return schema.items === undefined ? 'an array' : `an array of ${plural(describe(schema.items))}`
    case 'object': return 'a table'
    default: return 'a value'
  }
}

function plural (text: string): string {
  return text.replace(/^an? (\w+)/, '$1s')
}

function typeMatches (schema: JsonSchema, value: unknown): boolean {
  switch (schema.type) {
    case 'string': return typeof value === 'string'
    case 'integer': return typeof value === 'number' && Number.isInteger(value)
    case 'number': return typeof value === 'number'
    case 'boolean': return typeof value === 'boolean'
    case 'array': return Array.isArray(value)
    case 'object': return isObject(value)
    default: return schema.anyOf?.some((alt) => typeMatches(alt, value)) ?? true
  }
}

/** Levenshtein distance, for "did you mean" hints on unknown keys */
function distance (a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] ?? 0
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] ?? 0
      row[j] = Math.min(current + 1, (row[j - 1] ?? 0) + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return row[b.length] ?? 0
}

function suggestion (key: string, known: readonly string[]): string {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of known) {
    const d = distance(key.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  const close = bestDistance > 0 && bestDistance <= Math.max(1, Math.floor(key.length / 3)) && key.length > 2
  return best !== undefined && close ? ` (did you mean "${best}"?)` : ''
}

function checkStructure (list: IssueList, schema: JsonSchema, value: unknown, path: KeyPath): void {
  if (schema.anyOf !== undefined) {
    checkUnion(list, schema, value, path)
    return
  }
  if (!typeMatches(schema, value)) {
    list.error(path, `expected ${describe(schema)}, got ${show(value)}`)
    return
  }
  if (schema.enum !== undefined && !schema.enum.includes(value)) {
    const hint = typeof value === 'string' ? suggestion(value, schema.enum.map(String)) : ''
    list.error(path, `expected ${describe(schema)}, got ${show(value)}${hint}`)
    return
  }
  if (schema.const !== undefined && value !== schema.const) {
    list.error(path, `expected ${describe(schema)}, got ${show(value)}`)
    return
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) {
      list.error(path, 'expected a non-empty string')
    } else if (schema.pattern !== undefined && !new RegExp(schema.pattern).test(value)) {
      list.error(path, `expected ${describe(schema)}, got ${show(value)}`)
    }
    return
  }
  if (typeof value === 'number') {
    const low = schema.minimum !== undefined && value < schema.minimum
    const high = schema.maximum !== undefined && value > schema.maximum
    const notAbove = schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum
    if (low || high || notAbove) {
      list.error(path, `expected ${notAbove ? `a number > ${String(schema.exclusiveMinimum)}` : describe(schema)}, got ${value}`)
    }
    return
  }
  if (Array.isArray(value)) {
    const items = schema.items
    if (items !== undefined) {
      value.forEach((item, index) => { checkStructure(list, items, item, [...path, index]) })
    }
    return
  }
  if (isObject(value)) {
    checkObject(list, schema, value, path)
  }
}

function checkUnion (list: IssueList, schema: JsonSchema, value: unknown, path: KeyPath): void {
  const alternatives = schema.anyOf ?? []
  const attempts = alternatives.map((alt) => {
    const trial = new IssueList({ file: '', format: 'json', data: undefined, locate: () => ({ line: 1, column: 1 }) })
    checkStructure(trial, alt, value, path)
    return { alt, trial }
  })
  const passing = attempts.find((a) => a.trial.errorCount === 0)
  if (passing !== undefined) {
    checkStructure(list, passing.alt, value, path)
    return
  }
  // When exactly one alternative has the value's type (a table where a table is allowed),
  // its own, more precise errors are the useful ones
  const sameType = attempts.filter((a) => typeMatches(a.alt, value) && (a.alt.type !== 'string' || a.alt.enum === undefined || typeof value !== 'string'))
  const only = sameType.length === 1 ? sameType[0] : undefined
  if (only !== undefined && (only.alt.type === 'object' || only.alt.type === 'array' || only.alt.anyOf !== undefined)) {
    checkStructure(list, only.alt, value, path)
    return
  }
  const enumAlt = alternatives.find((alt) => alt.enum !== undefined)
  const hint = typeof value === 'string' && enumAlt?.enum !== undefined ? suggestion(value, enumAlt.enum.map(String)) : ''
  list.error(path, `expected ${describe(schema)}, got ${show(value)}${hint}`)
}

function checkObject (list: IssueList, schema: JsonSchema, value: Record<string, unknown>, path: KeyPath): void {
  const properties = schema.properties ?? {}
  const known = Object.keys(properties)
  for (const required of schema.required ?? []) {
    if (!(required in value)) {
      const expected = properties[required]
      list.error(path, `missing key "${required}"${expected === undefined ? '' : `: expected ${describe(expected)}`}`)
    }
  }
  const patterns = Object.entries(schema.patternProperties ?? {})
  for (const [key, child] of Object.entries(value)) {
    const childPath = [...path, key]
    const property = properties[key]
    if (property !== undefined) {
      checkStructure(list, property, child, childPath)
      continue
    }
    if (patterns.length > 0) {
      const match = patterns.find(([pattern]) => new RegExp(pattern).test(key))
      if (match === undefined) {
        list.error(childPath, `invalid name "${key}": expected lowercase letters, digits, "-" or "_", starting with a letter (at most 63)`)
      } else {
        checkStructure(list, match[1], child, childPath)
      }
      continue
    }
    if (schema.additionalProperties === false) {
      const isCapability = path[path.length - 1] === 'capability'
      if (isCapability && key === 'emit') {
        list.error(childPath, 'unknown capability "emit": emitting is granted by the brane\'s outgoing edges in [graph].edges')
      } else if (isCapability) {
        list.error(childPath, `unknown capability "${key}": expected one of ${CAPABILITY_KEYS.map((k) => `"${k}"`).join(', ')}${suggestion(key, CAPABILITY_KEYS)}`)
      } else {
        list.error(childPath, `unknown key "${key}": expected one of ${known.map((k) => `"${k}"`).join(', ')}${suggestion(key, known)}`)
      }
    } else {
      list.warn(childPath, `unknown key "${key}" is ignored${suggestion(key, known)}`)
    }
  }
}

/** Pass two: what the schema cannot say */
function checkMeaning (list: IssueList, manifest: Partial<Manifest>): void {
  const branes = isObject(manifest.brane) ? manifest.brane : {}
  const names = Object.keys(branes)
  const edges = isObject(manifest.graph) && Array.isArray(manifest.graph.edges) ? manifest.graph.edges.length : 0
  if (names.length > MANIFEST_LIMITS.maxBranes || edges > MANIFEST_LIMITS.maxEdges) {
    const [path, what] = names.length > MANIFEST_LIMITS.maxBranes
      ? [['brane'], `${names.length} branes, more than a manifest may hold (${MANIFEST_LIMITS.maxBranes})`]
      : [['graph', 'edges'], `${edges} edges, more than a manifest may hold (${MANIFEST_LIMITS.maxEdges})`]
    list.error(path, `${what}: split the application into several manifests`)
    return
  }
  const routes = new Map<string, string>()
  for (const [name, brane] of Object.entries(branes)) {
    if (!isObject(brane)) {
      continue
    }
    const at = (...rest: KeyPath): KeyPath => ['brane', name, ...rest]
    const profileFromCapability = typeof brane.capability === 'string'
      ? brane.capability
      : isObject(brane.capability) && typeof brane.capability.profile === 'string' ? brane.capability.profile : undefined
    if (profileFromCapability !== undefined && typeof brane.profile === 'string' && brane.profile !== profileFromCapability) {
      list.error(at('profile'), `profile "${brane.profile}" contradicts capability "${profileFromCapability}": give the profile once`)
    }
    const profile = profileFromCapability ?? (typeof brane.profile === 'string' ? brane.profile : 'standard')
    const substrate = typeof brane.substrate === 'string' ? brane.substrate : 'gaia'
    const profilePath = typeof brane.capability === 'string' ? at('capability') : typeof brane.profile === 'string' ? at('profile') : at('capability', 'profile')
    if (profile === 'frontier' && substrate === 'habitat') {
      list.error(profilePath, 'capability "frontier" is not allowed on substrate "habitat": microVM branes run on "gaia" or "biome"')
    }
    if (brane.gpu === 'passthrough' && profile !== 'frontier') {
      list.error(at('gpu'), 'gpu = "passthrough" needs capability = "frontier": a WASI component cannot reach a GPU')
    }
    if (brane.guest !== undefined && profile !== 'frontier') {
      list.warn(at('guest'), 'guest is only used by frontier branes and is ignored here')
    }
    if (profile === 'standard' && brane.image === undefined) {
      list.warn(at(), 'no image: a standard brane needs image = "FILE.wasm" or "NAME:TAG" to run')
    }
    if (profile === 'frontier' && brane.image === undefined && brane.guest === undefined) {
      list.warn(at(), 'no guest or image: a frontier brane needs guest = "NAME" to run')
    }
    if (substrate === 'habitat' && brane.hosts === undefined) {
      list.warn(at('substrate'), 'a habitat brane usually names its hosts = [...]; it runs on the local node until then')
    }
    if (typeof brane.peers === 'string') {
      checkGlob(list, at('peers'), brane.peers)
    }
    const replicas = brane.replicas
    if (isObject(replicas) && typeof replicas.min === 'number' && typeof replicas.max === 'number' && replicas.min > replicas.max) {
      list.error(at('replicas'), `replicas.min (${replicas.min}) is greater than replicas.max (${replicas.max})`)
    }
    if (brane.lifecycle === 'pinned' && typeof replicas === 'number' && replicas > 1) {
      list.warn(at('lifecycle'), `a pinned brane keeps one long-lived instance per replica: ${replicas} replicas hold ${replicas} independent states`)
    }
    if (brane.stdout === 'emit' && profile === 'frontier') {
      list.error(at('stdout'), 'stdout = "emit" is for wasi:cli/run command branes: a frontier brane emits by writing records to file descriptor 3')
    } else if (brane.stdout === 'emit' && !hasOutgoingEdge(manifest, name)) {
      list.error(at('stdout'), `stdout = "emit" needs an outgoing edge: what brane "${name}" writes to stdout is emitted on the edges from it in [graph].edges, and it has none (add e.g. { from = "${name}", to = "<brane>", on = "<topic>" })`)
    }
    checkLimits(list, brane, at, profile)
    if (isObject(brane.capability)) {
      checkGrants(list, brane.capability, at)
    }
    if (isObject(brane.trigger)) {
      const http = brane.trigger.http
      const entries = Array.isArray(http) ? http : http === undefined ? [] : [http]
      entries.forEach((entry, index) => {
        const route = typeof entry === 'string' ? entry : isObject(entry) && typeof entry.route === 'string' ? entry.route : undefined
        if (route === undefined) {
          return
        }
        const routePath = Array.isArray(http) ? at('trigger', 'http', index) : at('trigger', 'http')
        const body = route.endsWith('/*') ? route.slice(0, -1) : route.endsWith('/...') ? route.slice(0, -3) : route
        if (body.includes('*') || body.includes('...')) {
          list.error(routePath, `invalid route "${route}": a wildcard may only end a route, as in "/api/*" or "/api/..."`)
        }
        const host = isObject(entry) && typeof entry.host === 'string' ? entry.host : '*'
        const key = `${host} ${route}`
        const other = routes.get(key)
        if (other !== undefined && other !== name) {
          list.error(routePath, `route "${route}" is already served by brane "${other}"`)
        }
        routes.set(key, name)
      })
    }
  }
  checkGraph(list, manifest, names)
  if (isObject(manifest.resolver)) {
    for (const [name, resolver] of Object.entries(manifest.resolver)) {
      if (isObject(resolver) && typeof resolver.brane === 'string' && !names.includes(resolver.brane)) {
        list.error(['resolver', name, 'brane'], `no brane named "${resolver.brane}"${known(names)}`)
      }
      if (isObject(resolver) && typeof resolver.host === 'string' && !HOST_PATTERN.test(resolver.host)) {
        list.error(['resolver', name, 'host'], `expected a host name such as "api.example.com", got ${JSON.stringify(resolver.host)}`)
      }
    }
  }
}

function hasOutgoingEdge (manifest: Partial<Manifest>, name: string): boolean {
  const edges = isObject(manifest.graph) && Array.isArray(manifest.graph.edges) ? manifest.graph.edges : []
  return edges.some((edge) => isObject(edge) && edge.from === name)
}

function known (names: readonly string[]): string {
  return names.length === 0 ? ' (the manifest has no branes)' : ` (branes: ${names.join(', ')})`
}

function checkGlob (list: IssueList, path: KeyPath, glob: string): void {
  let depth = 0
  for (const ch of glob) {
    if (ch === '[' || ch === '{') {
      depth++
    } else if (ch === ']' || ch === '}') {
      depth--
    }
    if (depth < 0) {
      break
    }
  }
  try {
    if (depth !== 0) {
      throw new Error('unbalanced brackets or braces')
    }
    picomatch.makeRe(glob, { strictBrackets: true })
  } catch (err) {
    list.error(path, `invalid glob ${JSON.stringify(glob)}: ${err instanceof Error ? err.message : String(err)}`)
  }
}

/** Most cores a cpu_quota may name, and the longest deadline (timers cannot wait past 24.8 days) */
const MAX_CPU_QUOTA = 1024
const MAX_DEADLINE_MS = 24 * 3600 * 1000
/** Largest body_max: a body that does not stream is held whole in memory */
const MAX_BODY_BYTES = 2 ** 30

function checkLimits (list: IssueList, brane: Record<string, unknown>, at: (...rest: KeyPath) => KeyPath, profile: string): void {
  const limits = brane.limits
  if (!isObject(limits)) {
    return
  }
  checkSize(list, limits, 'mem_max', at, profile === 'standard' ? { bytes: WASM32_MAX_MEMORY, shown: '"4 GiB"', why: 'for a standard brane (wasm32 linear memory)' } : undefined, '"64 MiB"')
  checkSize(list, limits, 'body_max', at, { bytes: MAX_BODY_BYTES, shown: '"1 GiB"', why: '(a body that does not stream is held whole in memory)' }, '"16 MiB"')
  if (typeof limits.deadline === 'string') {
    const ms = parseDuration(limits.deadline)
    if (ms === 0) {
      list.error(at('limits', 'deadline'), 'expected a duration greater than 0')
    } else if (ms !== undefined && ms > MAX_DEADLINE_MS) {
      list.error(at('limits', 'deadline'), `expected at most "24h" (a call that may run longer is a job for a queue), got ${show(limits.deadline)}`)
    }
  }
  if (typeof limits.cpu_quota === 'string' || typeof limits.cpu_quota === 'number') {
    const share = parseCpuQuota(limits.cpu_quota)
    if (share === undefined || share <= 0) {
      list.error(at('limits', 'cpu_quota'), `expected a share of a core greater than 0, got ${show(limits.cpu_quota)}`)
    } else if (share > MAX_CPU_QUOTA) {
      list.error(at('limits', 'cpu_quota'), `expected at most ${MAX_CPU_QUOTA} cores, got ${show(limits.cpu_quota)}`)
    }
  }
}

/** A size in `limits[key]`: greater than 0 and at most `max` */
function checkSize (list: IssueList, limits: Record<string, unknown>, key: string, at: (...rest: KeyPath) => KeyPath, max: { bytes: number, shown: string, why: string } | undefined, example: string): void {
  const value = limits[key]
  if (typeof value !== 'string' && typeof value !== 'number') {
    return
  }
  const bytes = parseSize(value)
  if (bytes === 0) {
    list.error(at('limits', key), 'expected a size greater than 0')
  } else if (bytes !== undefined && max !== undefined && bytes > max.bytes) {
    list.error(at('limits', key), `expected at most ${max.shown} ${max.why}, got ${show(value)}`)
  } else if (bytes === undefined && typeof value === 'string') {
    list.error(at('limits', key), `expected a size such as ${example}, got ${show(value)}`)
  }
}

function checkGrants (list: IssueList, grants: Record<string, unknown>, at: (...rest: KeyPath) => KeyPath): void {
  const net = grants['net.http']
  if (isObject(net) && Array.isArray(net.allowlist)) {
    net.allowlist.forEach((host, index) => {
      if (typeof host !== 'string' || host === '') {
        return
      }
      const path = at('capability', 'net.http', 'allowlist', index)
      if (host.includes('://')) {
        list.error(path, `expected a host name without a scheme, such as "api.example.com" or "*.example.com", got ${JSON.stringify(host)}`)
      } else if (!HOST_PATTERN.test(host)) {
        list.error(path, `expected a host name, a "*.domain" glob or "host:port", got ${JSON.stringify(host)}`)
      } else {
        const port = /:(\d+)$/.exec(host)?.[1]
        if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
          list.error(path, `expected a port between 1 and 65535 in ${JSON.stringify(host)}`)
        }
      }
    })
    if (net.allowlist.length === 0) {
      list.warn(at('capability', 'net.http', 'allowlist'), 'an empty allowlist grants outgoing HTTP to no host')
    }
  }
  const fs = grants['fs.tmp']
  if (isObject(fs) && (typeof fs.quota === 'string' || typeof fs.quota === 'number') && parseSize(fs.quota) === 0) {
    list.error(at('capability', 'fs.tmp', 'quota'), 'expected a size greater than 0')
  }
}

function checkGraph (list: IssueList, manifest: Partial<Manifest>, names: readonly string[]): void {
  const graph = manifest.graph
  if (!isObject(graph) || !Array.isArray(graph.edges)) {
    return
  }
  const adjacency = new Map<string, Set<string>>()
  const seen = new Set<string>()
  graph.edges.forEach((edge, index) => {
    if (!isObject(edge)) {
      return
    }
    for (const end of ['from', 'to'] as const) {
      const name = edge[end]
      if (typeof name === 'string' && !names.includes(name)) {
        list.error(['graph', 'edges', index, end], `no brane named "${name}"${known(names)}${suggestion(name, names)}`)
      }
    }
    if (typeof edge.from === 'string' && typeof edge.to === 'string' && typeof edge.on === 'string') {
      const key = `${edge.from}\u0000${edge.to}\u0000${edge.on}`
      if (seen.has(key)) {
        list.warn(['graph', 'edges', index], `duplicate edge ${edge.from} → ${edge.to} on "${edge.on}"`)
      }
      seen.add(key)
      if (names.includes(edge.from) && names.includes(edge.to)) {
        const targets = adjacency.get(edge.from) ?? new Set<string>()
        targets.add(edge.to)
        adjacency.set(edge.from, targets)
      }
    }
  })
  if (graph.allow_cycles === true) {
    return
  }
  for (const cycle of findCycles(adjacency)) {
    const first = cycle[0] ?? ''
    const second = cycle[1] ?? first
    const index = graph.edges.findIndex((e) => isObject(e) && e.from === first && e.to === second)
    list.error(['graph', 'edges', Math.max(index, 0)], `the event graph has a cycle: ${showCycle(cycle)} (set [graph] allow_cycles = true if it is intended)`)
  }
}

/** `a → b → c → a`; a long cycle shows its ends and how many branes it passes */
function showCycle (cycle: readonly string[]): string {
  const loop = [...cycle, cycle[0] ?? '']
  return loop.length <= 10 ? loop.join(' → ') : `${loop.slice(0, 4).join(' → ')} → … → ${loop.slice(-3).join(' → ')} (${cycle.length} branes)`
}

/**
 * Each elementary cycle found by a depth-first search, reported once per strongly
 * connected loop. Iterative: a chain of thousands of branes must not exhaust the stack.
 */
function findCycles (adjacency: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  const cycles: string[][] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const stack: string[] = []
  for (const root of [...adjacency.keys()].sort()) {
    if (state.has(root)) {
      continue
    }
    // each frame: a node and what is left of its successors
    const frames: Array<{ node: string, next: Iterator<string> }> = [{ node: root, next: (adjacency.get(root) ?? new Set<string>()).values() }]
    state.set(root, 'visiting')
    stack.push(root)
    while (frames.length > 0) {
      const frame = frames[frames.length - 1] as { node: string, next: Iterator<string> }
      const step = frame.next.next()
      if (step.done === true) {
        frames.pop()
        stack.pop()
        state.set(frame.node, 'done')
        continue
      }
      const next = step.value
      const mark = state.get(next)
      if (mark === 'visiting') {
        cycles.push(stack.slice(stack.indexOf(next)))
      } else if (mark === undefined) {
        state.set(next, 'visiting')
        stack.push(next)
        frames.push({ node: next, next: (adjacency.get(next) ?? new Set<string>()).values() })
      }
    }
  }
  return cycles
}
