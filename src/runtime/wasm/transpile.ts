/**
 * A component transpiled with jco into the cache (`cacheDir/<hash>/`: the glue module, its
 * core modules and `meta.json`), written beside the final directory and renamed into place
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import { ComponentLoadError } from '../../errors.ts'
import { dropCreatedReps, leanHostCalls, stripCalls } from './glue.ts'
import { describe } from './jco-error.ts'
import { unversioned } from './link.ts'

/** What `cacheDir/<hash>/meta.json` holds */
export interface CacheMeta {
  readonly format: 1
  readonly transpiler: string
  readonly id: string
  readonly size: number
  readonly imports: readonly string[]
  readonly exports: readonly string[]
  readonly entry: string
  readonly modules: readonly string[]
}

export const META_FILE = 'meta.json'
export const ENTRY_FILE = 'component.js'
export const MODULE_PACKAGE = '{ "type": "module" }\n'

/**
 * Replaces the glue at `file` with its lean version (glue.ts: no debug-log calls, no task
 * bookkeeping around synchronous host calls, no write-only set of resources), once the lean
 * version is shown to load as a module here; otherwise keeps jco's text
 */
async function leanGlue (file: string, original: Uint8Array): Promise<void> {
  const text = new TextDecoder().decode(original)
  const lean = dropCreatedReps(leanHostCalls(stripCalls(text)))
  if (lean === text) {
    return
  }
  await writeFile(file, lean)
  try {
    // 'async' instantiation: importing the glue defines functions and runs nothing
    await import(`${pathToFileURL(file).href}?check`)
  } catch {
    await writeFile(file, original)
  }
}

export async function readMeta (dir: string, version: string): Promise<CacheMeta | undefined> {
  let text: string
  try {
    text = await readFile(join(dir, META_FILE), 'utf8')
  } catch {
    return undefined
  }
  try {
    const meta = JSON.parse(text) as CacheMeta
    return meta.format === 1 && meta.transpiler === version ? meta : undefined
  } catch {
    return undefined
  }
}

/** What the transpile thread is given (transpile-worker.ts) */
export interface TranspileJob {
  readonly bytes: Uint8Array
  readonly hash: string
  readonly cacheDir: string
  readonly version: string
}

/** What it answers to the job with the same id */
export type TranspileResult = { readonly id: number } & ({ readonly meta: CacheMeta } | { readonly failure: string })

/** How long the transpile thread (~100 MB once jco is loaded) waits for more work */
const TRANSPILER_IDLE_MS = 30_000

interface Transpiler {
  readonly worker: Worker
  readonly pending: Map<number, { resolve: (meta: CacheMeta) => void, reject: (err: Error) => void }>
  idle?: NodeJS.Timeout
}

let transpiler: Transpiler | undefined
let nextJob = 0

function startTranspiler (): Transpiler {
  const worker = new Worker(new URL('./transpile-worker.js', import.meta.url), {
    name: 'omega-transpile',
    env: {},
    // a backstop for the transpiler's JS heap on a hostile component
    resourceLimits: { maxOldGenerationSizeMb: 1024 }
  })
  const t: Transpiler = { worker, pending: new Map() }
  const fail = (err: Error): void => {
    if (transpiler === t) {
      transpiler = undefined
    }
    clearTimeout(t.idle)
    for (const job of t.pending.values()) {
      job.reject(err)
    }
    t.pending.clear()
  }
  worker.on('message', (result: TranspileResult) => {
    const job = t.pending.get(result.id)
    t.pending.delete(result.id)
    'meta' in result ? job?.resolve(result.meta) : job?.reject(new ComponentLoadError(result.failure))
    if (t.pending.size === 0) {
      // an idle transpiler keeps nobody alive, and goes after a while
      worker.unref()
      t.idle = setTimeout(() => { fail(new ComponentLoadError('The transpiler was stopped')); worker.terminate().catch(() => {}) }, TRANSPILER_IDLE_MS).unref()
    }
  })
  worker.once('error', (err) => { fail(new ComponentLoadError(`Cannot load component: the transpiler failed: ${err.message}`, { cause: err })) })
  worker.once('exit', (code) => { fail(new ComponentLoadError(`Cannot load component: the transpiler stopped (code ${code})`)) })
  return t
}

/**
 * {@link transpileToCache} on a thread kept for the purpose, so that the caller's thread
 * keeps serving meanwhile (a reload of a 14 MiB componentize-js brane held it ~1 s)
 *
 * @throws ComponentLoadError when the component cannot be transpiled; the signal's
 * reason when it aborts first (the transpile goes on into the cache)
 */
export async function transpileOffThread (job: TranspileJob, signal?: AbortSignal): Promise<CacheMeta> {
  signal?.throwIfAborted()
  const t = transpiler ??= startTranspiler()
  clearTimeout(t.idle)
  t.worker.ref()
  const id = nextJob++
  return new Promise<CacheMeta>((resolve, reject) => {
    const onAbort = (): void => { reject(signal?.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
    const settled = (): void => { signal?.removeEventListener('abort', onAbort) }
    t.pending.set(id, {
      resolve: (meta) => { settled(); resolve(meta) },
      reject: (err) => { settled(); reject(err) }
    })
    t.worker.postMessage({ id, job })
  })
}

export async function transpileToCache (bytes: Uint8Array, hash: string, cacheDir: string, version: string): Promise<CacheMeta> {
  // loaded on a cache miss only: importing jco-transpile costs ~50 ms
  const { transpileBytes } = await import('@bytecodealliance/jco-transpile')
  let result: Awaited<ReturnType<typeof transpileBytes>>
  try {
    // 'async' instantiation: the module exports instantiate(getCoreModule, imports),
    // imports are ours (no WASI shims baked in) and nothing runs at import time
    result = await transpileBytes(bytes, {
      name: 'component',
      instantiation: 'async',
      emitTypescriptDeclarations: false,
      base64Cutoff: 0
    })
  } catch (err) {
    throw new ComponentLoadError(`Cannot load component "b3:${hash}": transpilation failed: ${describe(err)}`, { cause: err })
  }
  const exports = exportNames(result.exports)
  const meta: CacheMeta = {
    format: 1,
    transpiler: version,
    id: `b3:${hash}`,
    size: bytes.length,
    imports: await versionedImports(bytes, result.imports),
    exports,
    entry: ENTRY_FILE,
    modules: Object.keys(result.files).filter((name) => name.endsWith('.wasm')).sort()
  }
  if (result.files[ENTRY_FILE] === undefined) {
    throw new ComponentLoadError(`Cannot load component "b3:${hash}": jco produced no ${ENTRY_FILE}`)
  }

  // Write beside the final directory and rename it into place, so a concurrent
  // process never sees half a cache entry; if another process won the race, use its.
  await mkdir(cacheDir, { recursive: true })
  const dir = join(cacheDir, hash)
  const tmp = join(cacheDir, `.tmp-${hash}-${process.pid}-${Math.random().toString(36).slice(2)}`)
  await mkdir(tmp)
  try {
    await writeFile(join(tmp, 'package.json'), MODULE_PACKAGE)
    for (const [name, data] of Object.entries(result.files)) {
      await writeFile(join(tmp, name), data)
    }
    await leanGlue(join(tmp, ENTRY_FILE), result.files[ENTRY_FILE])
    await writeFile(join(tmp, META_FILE), JSON.stringify(meta, null, 2) + '\n')
    try {
      await rename(tmp, dir)
    } catch (err) {
      if (await readMeta(dir, version) !== undefined) {
        return meta
      }
      // a stale entry (older transpiler or a broken write): replace it
      await rm(dir, { recursive: true, force: true })
      await rename(tmp, dir).catch((renameErr: unknown) => {
        throw new ComponentLoadError(`Cannot write component cache "${dir}": ${describe(renameErr)}`, { cause: err })
      })
    }
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
  return meta
}

/**
 * jco lists each exported interface twice (`incomingHandler` and
 * `wasi:http/incoming-handler@0.2.12`): keep the full names, and plain names with
 * no full-name twin (world-level functions and local interfaces).
 */
function exportNames (exports: ReadonlyArray<readonly [string, string]>): string[] {
  const full = exports.map(([name]) => name).filter((name) => name.includes(':'))
  const aliases = new Set(full.map((name) => camelCase(unversioned(name).split('/').pop() ?? name)))
  const plain = exports.map(([name]) => name).filter((name) => !name.includes(':') && !aliases.has(name))
  return [...full, ...plain]
}

function camelCase (kebab: string): string {
  return kebab.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase())
}

/**
 * jco reports imports without versions; the component's WIT has them. Messages name
 * the versioned interface, as the component's author wrote it.
 */
async function versionedImports (bytes: Uint8Array, imports: readonly string[]): Promise<string[]> {
  let wit = ''
  try {
    const { componentWit } = await import('@bytecodealliance/jco-transpile/wasm-tools')
    wit = await componentWit(bytes)
  } catch {
    // versions are a nicety: fall back to jco's names
  }
  const versioned = new Map<string, string>()
  for (const match of wit.matchAll(/^\s*import\s+([a-z0-9-]+:[a-z0-9-:]+\/[a-z0-9-]+@[^\s;]+)\s*;/gm)) {
    const name = match[1] as string
    versioned.set(unversioned(name), name)
  }
  return imports.map((name) => versioned.get(name) ?? name)
}
