import { CapabilityDeniedError, ComponentLoadError } from '../../errors.ts'

/** The manifest capability keys that grant component imports */
export const CAPABILITY_KEYS = ['net.http', 'fs.tmp', 'clock', 'random', 'env', 'state', 'emit'] as const

/** A manifest capability key, e.g. `"random"` in `[brane.api.capability]` */
export type CapabilityKey = typeof CAPABILITY_KEYS[number]

/** How Omega treats one imported interface */
export type ImportRule =
  /** linked for every brane: wasi:io, wasi:http/types, stdio, exit, terminal */
  | { readonly kind: 'always' }
  /**
   * linked when the brane's manifest grants `key` (or, outside a manifest, one of
   * `alsoBy`: `omega run --dir` grants wasi:filesystem with host directories)
   */
  | { readonly kind: 'capability', readonly key: CapabilityKey, readonly alsoBy?: readonly string[] }
  /** never linked, whatever the manifest says */
  | { readonly kind: 'never', readonly reason: string }
  /** not an interface Omega knows */
  | { readonly kind: 'unknown' }

/** An import the grants do not allow, and what would allow it */
export interface UngrantedImport {
  /** the import as the component names it, e.g. `wasi:random/random@0.2.3` */
  readonly name: string
  /** the capability key that grants it, when one does */
  readonly capability?: CapabilityKey
  /** why it cannot be linked, as a clause for an error message */
  readonly reason: string
}

const ALWAYS: ImportRule = { kind: 'always' }
const UNKNOWN: ImportRule = { kind: 'unknown' }
const SOCKETS: ImportRule = {
  kind: 'never',
  reason: 'which no capability grants (raw sockets are not available to branes: use "net.http" for outgoing HTTP)'
}

// Checked in order; a rule ending in '/' matches every interface of that package.
const RULES: ReadonlyArray<readonly [string, ImportRule]> = [
  ['wasi:io/', ALWAYS],
  ['wasi:http/types', ALWAYS],
  ['wasi:http/outgoing-handler', { kind: 'capability', key: 'net.http' }],
  // stdout/stderr go to the brane's log and stdin is empty (a command's stdin is the
  // event's payload); exit ends the instance
  ['wasi:cli/stdout', ALWAYS],
  ['wasi:cli/stderr', ALWAYS],
  ['wasi:cli/stdin', ALWAYS],
  ['wasi:cli/exit', ALWAYS],
  ['wasi:cli/terminal-input', ALWAYS],
  ['wasi:cli/terminal-output', ALWAYS],
  ['wasi:cli/terminal-stdin', ALWAYS],
  ['wasi:cli/terminal-stdout', ALWAYS],
  ['wasi:cli/terminal-stderr', ALWAYS],
  ['wasi:cli/environment', { kind: 'capability', key: 'env' }],
  ['wasi:filesystem/', { kind: 'capability', key: 'fs.tmp', alsoBy: ['fs.dirs'] }],
  ['wasi:clocks/', { kind: 'capability', key: 'clock' }],
  ['wasi:random/', { kind: 'capability', key: 'random' }],
  ['wasi:sockets/', SOCKETS],
  // the brane's own [brane.X.config] table, and log records to its log: nothing to grant
  ['wasi:config/store', ALWAYS],
  ['wasi:logging/logging', ALWAYS],
  ['omega:brane/types', ALWAYS],
  ['omega:brane/log', ALWAYS],
  ['omega:brane/state', { kind: 'capability', key: 'state' }],
  // the same replicated map as omega:brane/state (the watcher interface is an export)
  ['wasi:keyvalue/', { kind: 'capability', key: 'state' }],
  ['omega:brane/emit', { kind: 'capability', key: 'emit' }]
]

/**
 * The interfaces this runtime has an implementation for (unversioned). An import can
 * be allowed by the rules and still be missing here (e.g. `wasi:clocks/timezone`).
 * `omega:brane/state` is provided, but answers `unavailable` until the mesh's state
 * service exists.
 */
export const PROVIDED_INTERFACES: ReadonlySet<string> = new Set([
  'wasi:io/error', 'wasi:io/poll', 'wasi:io/streams',
  'wasi:http/types', 'wasi:http/outgoing-handler',
  'wasi:cli/stdout', 'wasi:cli/stderr', 'wasi:cli/stdin', 'wasi:cli/exit', 'wasi:cli/environment',
  'wasi:cli/terminal-input', 'wasi:cli/terminal-output',
  'wasi:cli/terminal-stdin', 'wasi:cli/terminal-stdout', 'wasi:cli/terminal-stderr',
  'wasi:clocks/monotonic-clock', 'wasi:clocks/wall-clock',
  'wasi:random/random', 'wasi:random/insecure', 'wasi:random/insecure-seed',
  'wasi:filesystem/types', 'wasi:filesystem/preopens',
  'wasi:config/store', 'wasi:logging/logging',
  'wasi:keyvalue/store', 'wasi:keyvalue/atomics', 'wasi:keyvalue/batch',
  'omega:brane/types', 'omega:brane/log', 'omega:brane/emit', 'omega:brane/state'
])

/**
 * The interface name without its version: `wasi:http/types@0.2.3` → `wasi:http/types`.
 * jco wants import object keys in this form.
 */
export function unversioned (name: string): string {
  const at = name.indexOf('@')
  return at === -1 ? name : name.slice(0, at)
}

/** How Omega treats the import `name` (versioned or not) */
export function importRule (name: string): ImportRule {
  const iface = unversioned(name)
  for (const [pattern, rule] of RULES) {
    if (pattern.endsWith('/') ? iface.startsWith(pattern) : iface === pattern) {
      return rule
    }
  }
  return UNKNOWN
}

/**
 * Every import of `imports` that `grants` does not allow, in the order given.
 *
 * @param imports - the component's imported interfaces (`LoadedComponent.imports`)
 * @param grants - the brane's capability keys
 */
export function findUngranted (imports: readonly string[], grants: ReadonlySet<string>): UngrantedImport[] {
  const ungranted: UngrantedImport[] = []
  for (const name of imports) {
    const rule = importRule(name)
    switch (rule.kind) {
      case 'always':
        break
      case 'capability':
        if (!isGranted(rule, grants)) {
          ungranted.push({
            name,
            capability: rule.key,
            reason: rule.key === 'emit'
              ? 'which needs an outgoing edge in [graph].edges (emitting is granted by edges)'
              : `which needs capability "${rule.key}"`
          })
        }
        break
      case 'never':
        ungranted.push({ name, reason: rule.reason })
        break
      case 'unknown':
        ungranted.push({ name, reason: 'which Omega does not host' })
        break
    }
  }
  return ungranted
}

/** Whether `grants` link an import of a `capability` rule */
export function isGranted (rule: ImportRule & { kind: 'capability' }, grants: ReadonlySet<string>): boolean {
  return grants.has(rule.key) || (rule.alsoBy?.some((key) => grants.has(key)) ?? false)
}

/** Options of {@link checkImports} */
export interface CheckImportsOptions {
  /** the brane's name, for the message and the manifest key it names */
  readonly brane: string
  /**
   * what grants `key`, for the message, when it is not the manifest's
   * `[brane.NAME.capability]` (`omega run` names its flags)
   */
  readonly grantedBy?: (key: CapabilityKey) => string
  /** what is being linked, for the message @default `brane "NAME"` */
  readonly subject?: string
}

/**
 * Refuses to link a component whose imports are not all granted, before any of its
 * code runs. The error names every ungranted import and the manifest key that would
 * grant it.
 *
 * @example
 * ```ts
 * checkImports(loaded.imports, new Set(['random']), { brane: 'api' })
 * // CapabilityDeniedError: Cannot link brane "api": component imports
 * // "wasi:clocks/monotonic-clock@0.2.12", which needs [brane.api.capability] "clock"
 * ```
 * @throws CapabilityDeniedError when an import is not granted
 */
export function checkImports (imports: readonly string[], grants: ReadonlySet<string>, options: CheckImportsOptions): void {
  const ungranted = findUngranted(imports, grants)
  if (ungranted.length === 0) {
    return
  }
  const table = `[brane.${options.brane}.capability]`
  const clauses = ungranted.map((u) => {
    if (u.capability === undefined) {
      return `"${u.name}", ${u.reason}`
    }
    if (options.grantedBy !== undefined) {
      return `"${u.name}", which needs ${options.grantedBy(u.capability)}`
    }
    if (u.capability === 'emit') {
      // not a capability key one writes: outgoing edges grant it
      return `"${u.name}", which needs an outgoing edge: emitting is granted by edges from "${options.brane}" in [graph].edges (e.g. { from = "${options.brane}", to = "<brane>", on = "<topic>" })`
    }
    return `"${u.name}", which needs ${table} "${u.capability}"`
  })
  throw new CapabilityDeniedError(`Cannot link ${options.subject ?? `brane "${options.brane}"`}: component imports ${clauses.join('; ')}`)
}

/** The imports this runtime has no implementation for (whatever the grants) */
export function findUnprovided (imports: readonly string[]): string[] {
  return imports.filter((name) => !PROVIDED_INTERFACES.has(unversioned(name)))
}

/**
 * A warning when `bytes` look like a componentize-js component that answers HTTP through
 * a `fetch` event listener and `lifecycle` reuses instances: StarlingMonkey never resets
 * its fetch event, so such an instance fails every request after its first. The test
 * is on the JavaScript source componentize-js embeds, so it is a warning, not a refusal.
 */
export function fetchEventReuseWarning (bytes: Uint8Array, lifecycle: string): string | undefined {
  if (lifecycle === 'ephemeral') {
    return undefined
  }
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buffer.indexOf("addEventListener('fetch'") === -1 && buffer.indexOf('addEventListener("fetch"') === -1) {
    return undefined
  }
  return `this looks like a JavaScript component that answers through a fetch event listener: StarlingMonkey serves one request per such instance, so a ${lifecycle} instance fails every request after its first. Use lifecycle = "ephemeral", or export wasi:http/incoming-handler itself (see examples/js-hello)`
}

/** The TOML each capability key is granted with in a written block: the narrowest sane start */
const GRANT_TEMPLATES: Readonly<Record<CapabilityKey, string>> = {
  'net.http': '"net.http" = { allowlist = [] }  # list the hosts it may call, e.g. ["api.example.com"]',
  'fs.tmp': '"fs.tmp" = { quota = "64 MiB", lifetime = "request" }',
  clock: 'clock = { resolution = "ms" }',
  random: 'random = true',
  env: 'env = {}  # only the variables it may see, e.g. { LOG_LEVEL = "info" }',
  state: 'state = true',
  emit: ''
}

/**
 * The `[brane.NAME.capability]` block that `imports` need (what `omega grants FILE.wasm`
 * prints), from the same rules the link check applies; imports no key grants are
 * listed as comments saying why.
 */
export function grantsBlock (imports: readonly string[], brane = 'NAME'): string {
  const byKey = new Map<CapabilityKey, string[]>()
  const notes: string[] = []
  const unprovided = new Set(findUnprovided(imports))
  for (const name of imports) {
    const rule = importRule(name)
    if (rule.kind === 'capability' && rule.key === 'emit') {
      notes.push(`# ${name}: granted by an outgoing edge of "${brane}" in [graph].edges`)
    } else if (rule.kind === 'capability') {
      byKey.set(rule.key, [...byKey.get(rule.key) ?? [], name])
    } else if (rule.kind === 'never') {
      const why = /\((.*)\)$/.exec(rule.reason)?.[1] ?? rule.reason
      notes.push(`# ${name}: never linked, whatever the manifest says (${why})`)
    } else if (rule.kind === 'unknown' || unprovided.has(name)) {
      notes.push(`# ${name}: not an interface Omega provides; the component cannot run here`)
    }
  }
  const lines = [`[brane.${brane}.capability]`]
  for (const key of CAPABILITY_KEYS) {
    const names = byKey.get(key)
    if (names !== undefined) {
      lines.push(`# ${names.join(', ')}`, GRANT_TEMPLATES[key])
    }
  }
  if (byKey.size === 0) {
    lines.push('# nothing to grant: every import is linked for every brane')
  }
  return [...lines, ...notes].join('\n') + '\n'
}

/** What Omega serves, said in every refusal of a component it cannot run */
const WHAT_OMEGA_RUNS = 'Omega runs WASI 0.2 components that export wasi:http/incoming-handler (HTTP branes), omega:brane/handler or wasi:cli/run (event branes: a command runs once per event)'

/**
 * Whether a component is a `wasi:cli/run` command and nothing Omega serves otherwise (a
 * component that also exports a handler is served through the handler)
 */
export function isCommand (exports: readonly string[]): boolean {
  const names = exports.map(unversioned)
  return names.includes('wasi:cli/run') && !names.includes('wasi:http/incoming-handler') && !names.includes('omega:brane/handler')
}

/**
 * The capability keys a component is linked with: the brane's, plus `env` for a
 * command, whose environment carries the event (`OMEGA_TOPIC`, …) whatever the
 * manifest grants (the `env` grant only adds variables)
 */
export function linkGrantKeys (grantKeys: Iterable<string>, exports: readonly string[]): Set<string> {
  const keys = new Set(grantKeys)
  if (isCommand(exports)) {
    keys.add('env')
  }
  return keys
}

/** Options of {@link serveKind} */
export interface ServeKindOptions {
  /**
   * the manifest sends HTTP to the brane (it declares routes, or a resolver names it):
   * a command cannot answer it
   */
  readonly http?: boolean
}

/**
 * The interface a component is served through, from its exports: `http`, `event`
 * (omega:brane/handler) or `command` (wasi:cli/run, an event brane that runs once
 * per event). A component exporting a handler and run is served through the handler.
 *
 * @throws ComponentLoadError saying what the component is when Omega cannot serve it:
 * a `wasi:cli/run` command where HTTP is routed to it, a WASI 0.3 component, an HTTP
 * handler whose `wasi:http` types are its own (composed with WASI-Virt: no request
 * Omega makes would be its resource), or one exporting neither
 */
export function serveKind (exports: readonly string[], imports: readonly string[], what: string, options: ServeKindOptions = {}): 'http' | 'event' | 'command' {
  const names = exports.map(unversioned)
  if (names.includes('wasi:http/incoming-handler')) {
    if (!imports.some((name) => unversioned(name) === 'wasi:http/types')) {
      throw new ComponentLoadError(`${what} exports wasi:http/incoming-handler but does not import wasi:http/types: its HTTP types are its own (a component composed with WASI-Virt, for one), so no request Omega hands it would be a valid resource. Build it against the host's wasi:http/types. ${WHAT_OMEGA_RUNS}`)
    }
    return 'http'
  }
  if (names.includes('omega:brane/handler')) {
    return 'event'
  }
  const v3 = exports.find((name) => /^wasi:[a-z-]+\/[a-z-]+@0\.3\./.test(name))
  if (v3 !== undefined) {
    throw new ComponentLoadError(`${what} is a WASI 0.3 component (it exports ${v3}). ${WHAT_OMEGA_RUNS}`)
  }
  if (names.includes('wasi:cli/run')) {
    if (options.http === true) {
      throw new ComponentLoadError(`${what} is a wasi:cli/run command (a program with a main, as "wasmtime run" runs it), not a server: it cannot answer the HTTP routed to it (remove its trigger.http routes and feed it events over [graph].edges, or build it as an HTTP handler). ${WHAT_OMEGA_RUNS}`)
    }
    return 'command'
  }
  throw new ComponentLoadError(`${what} exports neither wasi:http/incoming-handler nor omega:brane/handler (it exports: ${exports.join(', ') || 'nothing'}). ${WHAT_OMEGA_RUNS}`)
}
