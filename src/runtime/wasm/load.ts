import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { blake3Hex, toHex } from '../../identity/index.ts'
import { ComponentLoadError } from '../../errors.ts'
import { checkImports, findUnprovided, unversioned } from './link.ts'
import { grantKeys, type BraneOptions, type ServeKind } from './brane-options.ts'
import { capMemoryMax } from './memory-cap.ts'
import { wasm, type CoreModule } from './wasm-api.ts'
import { describe } from './jco-error.ts'
import { MODULE_PACKAGE, readMeta, transpileOffThread } from './transpile.ts'

/** The `mem_max` a component gets when nobody says otherwise: 64 MiB */
export const DEFAULT_MEM_MAX_BYTES = 64 * 2 ** 20

/** Options of {@link loadComponent} */
export interface LoadComponentOptions {
  /** where transpiled components are kept, one directory per BLAKE3 hash */
  readonly cacheDir: string
  /**
   * Cap on each linear memory, patched into the core modules' memory maximum
   * (`[brane.X.limits] mem_max`); see {@link withMemoryCap} to change it later.
   * @default 67108864 (64 MiB)
   */
  readonly memMaxBytes?: number
  readonly signal?: AbortSignal
}

/** A component transpiled to JS + core modules, with its core modules compiled */
export interface LoadedComponent {
  /** content address: `b3:<hex>` */
  readonly id: string
  /** BLAKE3 of the component bytes, hex */
  readonly hash: string
  /** size of the component in bytes */
  readonly size: number
  /** imported interfaces, versioned where the component says, e.g. `wasi:http/types@0.2.12` */
  readonly imports: readonly string[]
  /** exported interfaces and functions, e.g. `wasi:http/incoming-handler@0.2.12` */
  readonly exports: readonly string[]
  /** absolute path of the transpiled ES module (exports `instantiate`) */
  readonly entry: string
  /** compiled core modules by the file name the transpiled module asks for */
  readonly modules: ReadonlyMap<string, CoreModule>
  /** the cap patched into every memory the core modules define, in bytes */
  readonly memMaxBytes: number
  /** `hit` when the transpiled files came from `cacheDir`, `miss` when transpiled now */
  readonly cache: 'hit' | 'miss'
}

const COMPONENT_PREAMBLE = Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00)
const CORE_PREAMBLE = Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00)

// Core modules are compiled once per process and shared by every brane (and sent to
// worker threads, which accept compiled modules). Keyed by component hash and memory cap.
const compiled = new Map<string, Promise<ReadonlyMap<string, CoreModule>>>()

let transpilerVersion: Promise<string> | undefined

/**
 * Loads a WebAssembly component: hashes it (BLAKE3), transpiles it with jco once per
 * content (the result is kept under `cacheDir/<hash>/` for every later process), and
 * compiles its core modules once per process. Nothing of the component runs here.
 *
 * @example
 * ```ts
 * const loaded = await loadComponent(await readFile('hello.wasm'), { cacheDir: '.omega/components' })
 * loaded.id       // 'b3:9f2c…'
 * loaded.imports  // ['wasi:http/types@0.2.12', 'wasi:io/error@0.2.12', 'wasi:io/streams@0.2.12']
 * ```
 * @throws ComponentLoadError when the bytes are not a component or cannot be transpiled
 */
export async function loadComponent (bytes: Uint8Array, options: LoadComponentOptions): Promise<LoadedComponent> {
  options.signal?.throwIfAborted()
  checkPreamble(bytes)
  const hash = blake3Hex(bytes)
  const dir = join(options.cacheDir, hash)
  const version = await getTranspilerVersion()
  let meta = await readMeta(dir, version)
  let cache: 'hit' | 'miss' = 'hit'
  if (meta === undefined) {
    options.signal?.throwIfAborted()
    cache = 'miss'
    meta = await transpileOffThread({ bytes, hash, cacheDir: options.cacheDir, version }, options.signal)
  }
  // the glue is an ES module written as .js: say so beside it, whatever package.json
  // (e.g. "type": "commonjs") sits above $OMEGA_HOME (entries cached before this lack it)
  if (!existsSync(join(dir, 'package.json'))) {
    await writeFile(join(dir, 'package.json'), MODULE_PACKAGE)
  }
  const memMaxBytes = options.memMaxBytes ?? DEFAULT_MEM_MAX_BYTES
  const modules = await compileModules(hash, dir, meta.modules, { fromCache: cache === 'hit', memMaxBytes })
  return {
    id: meta.id,
    hash,
    size: meta.size,
    imports: meta.imports,
    exports: meta.exports,
    entry: join(dir, meta.entry),
    modules,
    memMaxBytes,
    cache
  }
}

/**
 * `loaded` with its core modules compiled again under another memory cap (compiled
 * once per component and cap per process). Returns `loaded` when the cap is the same.
 *
 * @throws RangeError when `memMaxBytes` is less than one page
 * @throws ComponentLoadError when a memory's minimum is above the cap
 */
export async function withMemoryCap (loaded: LoadedComponent, memMaxBytes: number): Promise<LoadedComponent> {
  if (loaded.memMaxBytes === memMaxBytes) {
    return loaded
  }
  const modules = await compileModules(loaded.hash, dirname(loaded.entry), [...loaded.modules.keys()], { fromCache: true, memMaxBytes })
  return { ...loaded, modules, memMaxBytes }
}

function checkPreamble (bytes: Uint8Array): void {
  if (startsWith(bytes, COMPONENT_PREAMBLE)) {
    return
  }
  if (startsWith(bytes, CORE_PREAMBLE)) {
    throw new ComponentLoadError('Cannot load component: this is a core WebAssembly module, not a component (wrap it with `wasm-tools component new`)')
  }
  if (startsWith(bytes, COMPONENT_PREAMBLE.subarray(0, 4))) {
    const version = toHex(bytes.subarray(4, 8))
    throw new ComponentLoadError(`Cannot load component: unsupported WebAssembly version or layer 0x${version} (expected a component, 0x0d000100)`)
  }
  throw new ComponentLoadError(`Cannot load component: not a WebAssembly file (${bytes.length} bytes, no "\\0asm" header)`)
}

function startsWith (bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) {
    return false
  }
  return prefix.every((b, i) => bytes[i] === b)
}

async function getTranspilerVersion (): Promise<string> {
  transpilerVersion ??= (async () => {
    // the package's exports map hides package.json: find it beside the entry point
    const entry = new URL(import.meta.resolve('@bytecodealliance/jco-transpile'))
    const pkg = JSON.parse(await readFile(new URL('../package.json', entry), 'utf8')) as { version: string }
    // `+glue4`: the glue is post-processed (glue.ts); entries made before are made again
    return `jco-transpile@${pkg.version}+glue4`
  })()
  return transpilerVersion
}

async function compileModules (
  hash: string, dir: string, names: readonly string[], options: { fromCache: boolean, memMaxBytes: number }
): Promise<ReadonlyMap<string, CoreModule>> {
  const key = `${hash}:${options.memMaxBytes}`
  let pending = compiled.get(key)
  if (pending === undefined) {
    pending = (async () => {
      const modules = new Map<string, CoreModule>()
      for (const name of names) {
        const file = join(dir, name)
        // a bad cap is the caller's error, not the component's: let it through as is
        const bytes = capMemoryMax(await readFile(file), options.memMaxBytes, { module: name })
        try {
          modules.set(name, await wasm.compile(bytes))
        } catch (err) {
          const where = options.fromCache ? ` (cached in "${dir}": delete it to transpile again)` : ''
          throw new ComponentLoadError(`Cannot load component "b3:${hash}": core module "${name}" does not compile${where}: ${describe(err)}`, { cause: err })
        }
      }
      return modules
    })()
    compiled.set(key, pending)
    pending.catch(() => compiled.delete(key))
  }
  return pending
}

/**
 * Links `loaded` against a brane's grants (nothing runs if an import is not granted),
 * checks that it exports what `serve` calls and applies its memory cap.
 *
 * @throws CapabilityDeniedError when the component imports what the grants do not allow
 * @throws ComponentLoadError when it imports what Omega does not provide, does not
 * export the handler, or its memory cannot be capped
 */
export async function prepareComponent (loaded: LoadedComponent, options: Pick<BraneOptions, 'name' | 'grants' | 'memMaxBytes' | 'signal'>, serve: ServeKind): Promise<{ loaded: LoadedComponent, handlerExport: string }> {
  options.signal?.throwIfAborted()
  checkImports(loaded.imports, grantKeys(options.grants), { brane: options.name })
  const unprovided = findUnprovided(loaded.imports)
  if (unprovided.length > 0) {
    throw new ComponentLoadError(`Cannot link brane "${options.name}": Omega does not provide ${unprovided.map((name) => `"${name}"`).join(', ')}`)
  }
  const handlerExport = loaded.exports.find((name) => unversioned(name) === serve.handlerInterface)
  if (handlerExport === undefined) {
    const exported = loaded.exports.length === 0 ? 'nothing' : loaded.exports.map((name) => `"${name}"`).join(', ')
    throw new ComponentLoadError(`Cannot ${serve.verb} brane "${options.name}": component does not export "${serve.handlerInterface}" (it exports ${exported})`)
  }
  const capped = options.memMaxBytes === undefined ? loaded : await withMemoryCap(loaded, options.memMaxBytes)
  return { loaded: capped, handlerExport }
}
