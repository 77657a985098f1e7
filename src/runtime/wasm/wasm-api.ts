/**
 * WebAssembly's JS API, as far as runtime/wasm uses it. The project compiles without
 * DOM types, where TypeScript declares the `WebAssembly` namespace, so this module
 * types the global itself.
 */

/** A compiled core module (`WebAssembly.Module`); can be posted to worker threads */
export type CoreModule = object & { readonly __coreModule?: never }

/** Import object of a core instance */
export type CoreImports = Record<string, Record<string, unknown>>

/** An instantiated core module (`WebAssembly.Instance`) */
export interface CoreInstance {
  readonly exports: Record<string, unknown>
}

interface WebAssemblyApi {
  compile: (bytes: Uint8Array) => Promise<CoreModule>
  Instance: new (module: CoreModule, imports?: CoreImports) => CoreInstance
  RuntimeError: new (message?: string) => Error
}

/** The global `WebAssembly` object */
export const wasm = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly
