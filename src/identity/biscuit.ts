/**
 * Loads @biscuit-auth/biscuit-wasm on Node 20 without `--experimental-wasm-modules`.
 *
 * The package is a wasm-bindgen "bundler" build: its entry `module/biscuit.js` does
 * `import * as wasm from "./biscuit_bg.wasm"`, which Node 20 refuses (`Unknown file
 * extension ".wasm"`). This does by hand what that entry does: compile the `.wasm`,
 * instantiate it with the JS glue (`biscuit_bg.js`, plus the inline `performance_now`
 * snippet) as imports, hand the instance to the glue (`__wbg_set_wasm`) and run
 * `__wbindgen_start`. The glue's `console.log` import is silenced (the wasm prints
 * "biscuit-wasm loading" at start). All of it happens when a token is first issued or
 * verified, not at import: `omega up` with no token route never loads it.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
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

/**
 * The glue and its snippets are ES modules, loaded with require() (Node >= 20.19 loads
 * ES modules without top-level await that way) so that nothing here is asynchronous
 */
const require = createRequire(import.meta.url)
let glue: Glue | undefined

/**
 * Loads the glue, compiles and instantiates the wasm (synchronously: ~15 ms for
 * its 2 MB, once), so that a process which never issues or verifies a token loads none
 * of it (~8 MiB RSS and ~20 ms at start)
 */
function instantiate (): Glue {
  // The package's exports map only exposes the entry; resolve it (without loading it) to find its neighbours
  const entry = new URL(import.meta.resolve('@biscuit-auth/biscuit-wasm'))
  const loaded = require(fileURLToPath(new URL('biscuit_bg.js', entry))) as Glue
  const module = new WASM.Module(readFileSync(new URL('biscuit_bg.wasm', entry)))
  const imports: Record<string, Record<string, unknown>> = {}
  for (const wanted of WASM.Module.imports(module)) {
    let value: unknown
    if (wanted.module.includes('/snippets/')) {
      const snippet = require(fileURLToPath(new URL(wanted.module, entry))) as Record<string, unknown>
      value = snippet[wanted.name]
    } else if (wanted.name.startsWith('__wbg_log_')) {
      value = () => {}
    } else {
      value = loaded[wanted.name]
    }
    if (typeof value !== 'function') {
      throw new Error(`Cannot load biscuit-wasm: import ${wanted.module}#${wanted.name} not found in its glue`)
    }
    imports[wanted.module] ??= {}
    imports[wanted.module]![wanted.name] = value
  }
  const instance = new WASM.Instance(module, imports)
  loaded.__wbg_set_wasm(instance.exports)
  const start = instance.exports.__wbindgen_start
  if (typeof start === 'function') {
    start()
  }
  return loaded
}

/** The biscuit-wasm API (Biscuit, AuthorizerBuilder, PublicKey, PrivateKey, …), its wasm instantiated at the first call */
export function biscuit (): typeof BiscuitModule {
  glue ??= instantiate()
  return glue
}
