/**
 * WIT for guests built with componentize-js. StarlingMonkey implements WASI 0.2.10, and
 * its splicer refuses worlds whose WASI packages differ from its own: a guest's
 * `wit/deps` are Omega's `wit/deps` renumbered to 0.2.10 with `@unstable` gates removed
 * (the engine was built with those features on). Pre-release packages
 * (`wasi:config@0.2.0-draft`) keep their version. `omega:brane` (wit/brane/brane.wit) is
 * added for event branes. Used by `omega new` and by scripts/build-guests.js.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The WASI version StarlingMonkey (componentize-js) implements */
export const STARLINGMONKEY_WASI = '0.2.10'

/** Omega's wit/ directory (beside dist/ and src/) */
export const WIT_DIR = fileURLToPath(new URL('../../../wit/', import.meta.url))

/** One dependency package: its directory name under wit/deps and its text */
export interface WitDep {
  readonly dep: string
  readonly text: string
}

/** `text` with WASI 0.2.N renumbered to StarlingMonkey's version and `@unstable` gates removed */
export function forStarlingMonkey (text: string): string {
  return text.replace(/^\s*@unstable\([^)]*\)\s*\n/gm, '').replace(/@0\.2\.\d+(?![\d-])/g, `@${STARLINGMONKEY_WASI}`)
}

/** Omega's WASI deps as a componentize-js guest needs them, plus omega:brane when asked */
export async function guestWitDeps (options: { omega?: boolean, witDir?: string } = {}): Promise<WitDep[]> {
  const dir = options.witDir ?? WIT_DIR
  const names = (await readdir(join(dir, 'deps'), { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort()
  const deps: WitDep[] = []
  for (const dep of names) {
    deps.push({ dep, text: forStarlingMonkey(await readFile(join(dir, 'deps', dep, 'package.wit'), 'utf8')) })
  }
  if (options.omega === true) {
    deps.push({ dep: 'omega-brane', text: await readFile(join(dir, 'brane', 'brane.wit'), 'utf8') })
  }
  return deps
}
