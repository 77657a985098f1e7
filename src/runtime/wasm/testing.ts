/**
 * Test support for runtime/wasm (not a test file): where the repository is, from the
 * sources or from the compiled tests under dist/.
 */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

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
