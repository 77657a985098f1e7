/**
 * Loads @biscuit-auth/biscuit-wasm on Node 20 without `--experimental-wasm-modules`.
 *
 * The package is a wasm-bindgen "bundler" build: its entry `module/biscuit.js` does
 * `import * as wasm from "./biscuit_bg.wasm"`, which Node 20 refuses (`Unknown file
 * extension ".wasm"`). This does by hand what that entry does: compile the `.wasm`,
 * instantiate it with the JS glue (`biscuit_bg.js`, plus the inline `performance_now`
 * snippet) as imports, hand the instance to the glue (`__wbg_set_wasm`) and run
 * `__wbindgen_start`. The glue's `console.log` import is silenced (the wasm prints
 * "biscuit-wasm loading" at start).
 */
import { readFile } from 'node:fs/promises'
import type * as BiscuitModule from '@biscuit-auth/biscuit-wasm'

type Exports = Record<string, unknown>
type Glue = typeof BiscuitModule & {
  __wbg_set_wasm: (exports: Exports) => void
} & Record<string, unknown>

/** The part of the global `WebAssembly` used here (the project compiles without DOM types) */
interface WasmApi {
  Module: { imports: (module: object) => Array<{ module: string, name: string }> }
  compile: (bytes: Uint8Array) => Promise<object>
  instantiate: (module: object, imports: Record<string, Record<string, unknown>>) => Promise<{ exports: Exports }>
}
const WASM = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

async function load (): Promise<Glue> {
  // The package's exports map only exposes the entry; resolve it (without loading it) to find its neighbours
  const entry = new URL(import.meta.resolve('@biscuit-auth/biscuit-wasm'))
  const glue = await import(new URL('biscuit_bg.js', entry).href) as Glue
  const module = await WASM.compile(await readFile(new URL('biscuit_bg.wasm', entry)))
  const imports: Record<string, Record<string, unknown>> = {}
  for (const wanted of WASM.Module.imports(module)) {
    let value: unknown
    if (wanted.module.includes('/snippets/')) {
      const snippet = await import(new URL(wanted.module, entry).href) as Record<string, unknown>
      value = snippet[wanted.name]
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
  const instance = await WASM.instantiate(module, imports)
  glue.__wbg_set_wasm(instance.exports)
  const start = instance.exports.__wbindgen_start
  if (typeof start === 'function') {
    start()
  }
  return glue
}

/** The biscuit-wasm API (Biscuit, AuthorizerBuilder, PublicKey, PrivateKey, …) */
export const biscuit: typeof BiscuitModule = await load()
