import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AbortOptions } from '../interfaces/index.ts'
import type { BranePlan, Plan } from '../manifest/index.ts'
import { checkImports, fetchEventReuseWarning, linkGrantKeys, loadComponent, serveKind } from '../runtime/wasm/index.ts'
import { resolveImage } from './images.ts'

export interface LinkResult {
  readonly brane: string
  /** `skipped` for branes with nothing to link here (frontier, no image) */
  readonly outcome: 'ok' | 'failed' | 'skipped'
  readonly message: string
  /** something that will go wrong at run time although it links */
  readonly warning?: string
}

/**
 * Whether the manifest routes HTTP to `brane` (it declares trigger.http routes): a
 * wasi:cli/run command cannot be such a brane. `omega up` and the link check ask this.
 */
export function receivesHttp (brane: BranePlan): boolean {
  return brane.routes.some((route) => route.declared)
}

/**
 * A warning for settings that a component of this kind ignores (a command always runs
 * in a fresh instance; only a command's stdout can carry emit records)
 */
export function kindWarning (kind: 'http' | 'event' | 'command', brane: BranePlan): string | undefined {
  if (kind === 'command' && brane.lifecycle !== 'ephemeral') {
    return `lifecycle "${brane.lifecycle}" is ignored for a wasi:cli/run command: each event runs it once, in an instance that never ran before (its main runs once)`
  }
  if (kind !== 'command' && brane.stdout === 'emit') {
    return 'stdout = "emit" is only used by wasi:cli/run commands: this component emits through omega:brane/emit, and its stdout goes to the log'
  }
  return undefined
}

/**
 * The link stage without running anything: resolve every standard brane's image, load
 * the component (transpiled and cached like `omega up` does) and check its imports
 * against the brane's grants. `omega validate --link` reports this.
 */
export async function linkCheck (plan: Plan, manifestFile: string, home: string, options: AbortOptions = {}): Promise<LinkResult[]> {
  const results: LinkResult[] = []
  for (const brane of plan.branes) {
    if (brane.profile !== 'standard' || brane.image === undefined) {
      results.push({ brane: brane.name, outcome: 'skipped', message: brane.profile !== 'standard' ? 'not a WASI component (frontier)' : 'no image' })
      continue
    }
    let warning: string | undefined
    try {
      const image = await resolveImage(brane.name, brane.image, manifestFile, home, options)
      const bytes = await readFile(image.path, options.signal === undefined ? {} : { signal: options.signal })
      warning = fetchEventReuseWarning(bytes, brane.lifecycle)
      const loaded = await loadComponent(bytes, { cacheDir: join(home, 'cache', 'components'), memMaxBytes: brane.limits.memMaxBytes, ...(options.signal === undefined ? {} : { signal: options.signal }) })
      checkImports(loaded.imports, linkGrantKeys(brane.grantKeys, loaded.exports), { brane: brane.name })
      const kind = serveKind(loaded.exports, loaded.imports, `Brane "${brane.name}": component ${image.source}`, { http: receivesHttp(brane) })
      warning = warning ?? kindWarning(kind, brane)
      const what = kind === 'http' ? 'an HTTP brane' : kind === 'event' ? 'an event brane' : 'a command, run once per event'
      results.push({ brane: brane.name, outcome: 'ok', message: `${image.source} ${loaded.id}: ${what}, ${loaded.imports.length} imports, all granted`, ...(warning === undefined ? {} : { warning }) })
    } catch (err) {
      results.push({ brane: brane.name, outcome: 'failed', message: err instanceof Error ? err.message : String(err), ...(warning === undefined ? {} : { warning }) })
    }
  }
  return results
}
