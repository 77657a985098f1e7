/**
 * The ZGraph manifest: read a file (TOML, JSON or YAML), validate it in two passes and
 * compile it to a Plan.
 *
 * @example
 * ```ts
 * const { plan, warnings } = await loadManifest('examples/hello/omega.toml')
 * ```
 */
import { readFile, stat } from 'node:fs/promises'
import { ManifestError, type ManifestIssue } from '../errors.ts'
import { parseManifestText, type ManifestFormat } from './parse.ts'
import { validateManifest, formatKeyPath } from './validate.ts'
import { compilePlan, type Plan } from './plan.ts'
import type { Manifest } from './schema.ts'
import type { AbortOptions } from '../interfaces/index.ts'
import { MANIFEST_LIMITS } from './limits.ts'

export { CAPABILITY_KEYS, SUBSTRATES, PROFILES, LIFECYCLES, RESOLVER_MODES, AUTH_MODES } from './vocabulary.ts'
export type { Manifest, BraneSpec, CapabilityKey, Substrate, Profile, Lifecycle, StdoutMode } from './schema.ts'
export { compilePlan, DEFAULTS } from './plan.ts'
export type { Plan, BranePlan, Grants, Limits, HttpRoute, Edge, ReplicaRule, ResolverPlan } from './plan.ts'
export { parseSize, parseDuration, parseCpuQuota, formatSize, formatDuration } from './quantity.ts'
export { formatOf, type ManifestFormat } from './parse.ts'
export { appNameOf, combineApps, isAppName, type AppPlan, type CombinedApps } from './apps.ts'
export { formatKeyPath }
export { MANIFEST_LIMITS, checkManifestBounds } from './limits.ts'

export interface LoadedManifest {
  readonly manifest: Manifest
  readonly plan: Plan
  /** non-fatal issues (unknown keys, likely mistakes) */
  readonly warnings: readonly ManifestIssue[]
}

export interface CheckOptions {
  /** the format, when the file name does not say (default: by extension, TOML otherwise) */
  format?: ManifestFormat
}

/**
 * Validate manifest text and compile it. Throws a `ManifestError` listing every error
 * of the file (with warnings after them).
 */
export function checkManifest (text: string, file: string, options: CheckOptions = {}): LoadedManifest {
  const parsed = parseManifestText(text, file, options.format)
  const issues = validateManifest(parsed)
  const errors = issues.filter((i) => i.severity === 'error')
  const warnings = issues.filter((i) => i.severity === 'warning')
  if (errors.length > 0) {
    const count = errors.length === 1 ? '1 error' : `${errors.length} errors`
    throw new ManifestError(`Invalid manifest ${file} (${count}):\n${formatIssues(errors)}`, [...errors, ...warnings])
  }
  const manifest = parsed.data as Manifest
  return { manifest, plan: compilePlan(manifest, file), warnings }
}

/** The JSON Schema (draft-07) of a manifest, generated from its TypeBox description (loaded now) */
export async function manifestJsonSchema (): Promise<Record<string, unknown>> {
  return (await import('./schema.ts')).manifestJsonSchema()
}

/** Read, validate and compile a manifest file */
export async function loadManifest (file: string, options: CheckOptions & AbortOptions = {}): Promise<LoadedManifest> {
  let text: string
  try {
    // a file far past the bound is refused before it is read whole
    const { size } = await stat(file)
    if (size > MANIFEST_LIMITS.maxBytes) {
      const why = `the file holds ${size} bytes, more than a manifest may (${MANIFEST_LIMITS.maxBytes})`
      throw new ManifestError(`Cannot read manifest ${file}: ${why}`, [{ file, path: '', message: why, severity: 'error' }])
    }
    text = await readFile(file, { encoding: 'utf8', ...(options.signal === undefined ? {} : { signal: options.signal }) })
  } catch (err) {
    if (err instanceof ManifestError) {
      throw err
    }
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : String(err)
    throw new ManifestError(`Cannot read manifest ${file}: ${why}`, [{ file, path: '', message: why, severity: 'error' }], { cause: err })
  }
  return checkManifest(text, file, options)
}

/** One line per issue: `file:line:col: severity: key.path: message` */
export function formatIssues (issues: readonly ManifestIssue[]): string {
  return issues.map(formatIssue).join('\n')
}

export function formatIssue (issue: ManifestIssue): string {
  const where = issue.line === undefined ? issue.file : `${issue.file}:${issue.line}:${issue.column ?? 1}`
  const path = issue.path === '' ? '' : `${issue.path}: `
  return `${where}: ${issue.severity}: ${path}${issue.message}`
}
