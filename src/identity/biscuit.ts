/**
 * Loads @biscuit-auth/biscuit-wasm on Node 20 without `--experimental-wasm-modules`.
 *
 * The package is a wasm-bindgen "bundler" build: its entry `module/biscuit.js` does
 * `import * as wasm from "./biscuit_bg.wasm"`, which Node 20 refuses (`Unknown file
 * extension ".wasm"`). This does by hand what that entry does: compile the `.wasm`,
 * instantiate it with the JS glue (`biscuit_bg.js`, plus the inline `performance_now`
 * snippet) as imports, hand the instance to the glue (`__wbg_set_wasm`) and run
 * `__wbindgen_start`. The glue's `console.log` import is silenced (the wasm prints
 * "biscuit-wasm loading" at start). The JS glue is imported with this module, the wasm
 * only when a token is first issued or verified (`omega up` with no token route never
 * compiles it).
 */
import { readdir } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import type * as BiscuitModule from '@biscuit-auth/biscuit-wasm'

type Exports = Record<string, unknown>
type Glue = typeof BiscuitModule & {
  __wbg_set_wasm: (exports: Exports) => void
} & Record<string, unknown>

/** The part of the global `WebAssembly` used here (the project compiles without DOM types) */
interface WasmApi {
  Module: (new (bytes: Uint8Array) => object) & { imports: (module: object) => Array<{ module: string, name: string }> }
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Exports }
}
const WASM = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

// The package's exports map only exposes the entry; resolve it (without loading it) to find its neighbours
const entry = new URL(import.meta.resolve('@biscuit-auth/biscuit-wasm'))
const glue = await import(new URL('biscuit_bg.js', entry).href) as Glue
/** wasm-bindgen's inline JS snippets, by URL: imported here, as only ESM can import them */
const snippets = new Map<string, Record<string, unknown>>()
for (const dir of await readdir(new URL('snippets/', entry), { withFileTypes: true }).catch(() => [])) {
  if (dir.isDirectory()) {
    for (const file of await readdir(new URL(`snippets/${dir.name}/`, entry))) {
      const url = new URL(`snippets/${dir.name}/${file}`, entry)
      if (file.endsWith('.js')) {
        snippets.set(url.href, await import(url.href) as Record<string, unknown>)
      }
    }
  }
}
let ready = false

/**
 * Compiles and instantiates the wasm (synchronously: ~10 ms for its 2 MB, once), so
 * that a process which never verifies a token never holds its code (~8 MiB RSS)
 */
function instantiate (): void {
  const module = new WASM.Module(readFileSync(new URL('biscuit_bg.wasm', entry)))
  const imports: Record<string, Record<string, unknown>> = {}
  for (const wanted of WASM.Module.imports(module)) {
    let value: unknown
    if (wanted.module.includes('/snippets/')) {
      value = snippets.get(new URL(wanted.module, entry).href)?.[wanted.name]
    } else if (wanted.name.startsWith('__wbg_log_')) {
      value = () => {}
    } else {
      value = glue[wanted.name]
    }
    if (typeof value !== 'function') {
      throw new Error(`Cannot load biscuit-wasm: import ${wanted.module}#${wanted.name} not found in its glue`)
    }
    imports[wanted.module] ??= {}
    imports[wanted.module]![wanted.name] = value
  }
  const instance = new WASM.Instance(module, imports)
  glue.__wbg_set_wasm(instance.exports)
  const start = instance.exports.__wbindgen_start
  if (typeof start === 'function') {
    start()
  }
}

/** The biscuit-wasm API (Biscuit, AuthorizerBuilder, PublicKey, PrivateKey, …), its wasm instantiated at the first call */
export function biscuit (): typeof BiscuitModule {
  if (!ready) {
    instantiate()
    ready = true
  }
  return glue
}
