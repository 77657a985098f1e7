import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AbortOptions } from '../interfaces/index.ts'
import type { Plan } from '../manifest/index.ts'
import { checkImports, fetchEventReuseWarning, loadComponent, serveKind } from '../runtime/wasm/index.ts'
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
      checkImports(loaded.imports, new Set(brane.grantKeys), { brane: brane.name })
      const kind = serveKind(loaded.exports, loaded.imports, `Brane "${brane.name}": component ${image.source}`)
      results.push({ brane: brane.name, outcome: 'ok', message: `${image.source} ${loaded.id}: ${kind === 'http' ? 'an HTTP' : 'an event'} brane, ${loaded.imports.length} imports, all granted`, ...(warning === undefined ? {} : { warning }) })
    } catch (err) {
      results.push({ brane: brane.name, outcome: 'failed', message: err instanceof Error ? err.message : String(err), ...(warning === undefined ? {} : { warning }) })
    }
  }
  return results
}
