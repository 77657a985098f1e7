/**
 * Test support for runtime/wasm (not a test file): where the repository is, from the
 * sources or from the compiled tests under dist/.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadComponent, type LoadedComponent } from './load.ts'

function repoRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) {
      throw new Error('No package.json above the runtime tests')
    }
    dir = parent
  }
  return dir
}

/** The repository root: built components are under `examples/` and `build/fixtures/` */
export const ROOT = repoRoot()

/**
 * Loads components from the repository once per test file: `load('examples/hello/hello.wasm')`.
 * `cacheDir` is read at each call, so a suite can create it in `before`.
 */
export function componentLoader (cacheDir: () => string): (file: string) => Promise<LoadedComponent> {
  const components = new Map<string, LoadedComponent>()
  return async (file) => {
    let loaded = components.get(file)
    if (loaded === undefined) {
      loaded = await loadComponent(await readFile(join(ROOT, file)), { cacheDir: cacheDir() })
      components.set(file, loaded)
    }
    return loaded
  }
}
