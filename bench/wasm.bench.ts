/**
 * runtime/wasm: what a request pays for an instance. Targets: fresh instantiation
 * P50 ≤ 1.2 ms, pooled/pre-warmed acquire P50 ≤ 0.3 ms.
 *
 * Where each figure is measured is in its label: "main thread" cases run the worker's
 * own code (InstanceFactory) in the bench process; "worker" cases read the timing a
 * brane worker reports with each response (`timing.acquireMs`, …), so they include
 * nothing of the message round trip; "round trip" cases time `HttpBrane.handle()`.
 */
import { existsSync, rmSync } from 'node:fs'
import { mkdtemp, readFile } from 'node:fs/promises'
import { freemem, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { HttpBrane, loadComponent, type HttpBraneOptions, type HttpRequest, type LoadedComponent, type RequestTiming } from '../src/runtime/wasm/index.ts'
import { InstanceFactory, type GuestInstance } from '../src/runtime/wasm/instance.ts'
import type { BenchCase, RoundBudget, RoundSample, RoundSide } from './harness.ts'

const REQUEST: HttpRequest = { method: 'GET', pathWithQuery: '/bench', scheme: 'http', authority: 'localhost', headers: [], body: new Uint8Array() }

// (module (memory (export "memory") 1) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
const SMALL_CORE_MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f,
  0x03, 0x02, 0x01, 0x00,
  0x05, 0x03, 0x01, 0x00, 0x01,
  0x07, 0x11, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x04, 0x67, 0x72, 0x6f, 0x77, 0x00, 0x00,
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x20, 0x00, 0x40, 0x00, 0x0b
])
const Wasm = (globalThis as unknown as { WebAssembly: { Instance: new (m: object) => object, Module: new (b: Uint8Array) => object } }).WebAssembly

function repoRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    dir = dirname(dir)
  }
  return dir
}

let loading: Promise<LoadedComponent> | undefined
async function hello (): Promise<LoadedComponent> {
  loading ??= (async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'omega-bench-'))
    // shared by every case of this file: removed when the bench process ends
    process.once('exit', () => { rmSync(cacheDir, { recursive: true, force: true }) })
    return loadComponent(await readFile(join(repoRoot(), 'examples/hello/hello.wasm')), { cacheDir })
  })()
  return loading
}

let factoryPromise: Promise<InstanceFactory> | undefined
async function factory (): Promise<InstanceFactory> {
  factoryPromise ??= (async () => {
    const loaded = await hello()
    const handlerExport = loaded.exports.find((name) => name.startsWith('wasi:http/incoming-handler')) ?? ''
    return InstanceFactory.create({ brane: 'hello', entry: loaded.entry, modules: loaded.modules, imports: loaded.imports, grants: {}, handlerExport, maxBodyBytes: 1 << 20, memMaxBytes: loaded.memMaxBytes })
  })()
  return factoryPromise
}

function ignoreLog (): void {}

/**
 * A side that sends requests to a brane one after another and records a figure of
 * each response's timing (µs) as its latency; `gapMs` paces the requests.
 */
function braneSide (label: string, options: Partial<HttpBraneOptions>, figure: (t: RequestTiming) => number | undefined, gapMs = 0): RoundSide & { close: () => Promise<void> } {
  let brane: HttpBrane | undefined
  return {
    label,
    async round (budget: RoundBudget): Promise<RoundSample> {
      brane ??= await HttpBrane.create(await hello(), { name: 'hello', grants: {}, log: ignoreLog, maxWorkers: 1, ...options })
      const latenciesUs: number[] = []
      const start = performance.now()
      let ops = 0
      while (performance.now() - start < budget.durationMs && ops < budget.maxOps && !budget.signal.aborted) {
        const t0 = performance.now()
        const res = await brane.handle(REQUEST)
        const value = figure(res.timing)
        latenciesUs.push((value ?? (performance.now() - t0)) * 1000)
        ops++
        if (gapMs > 0) {
          await new Promise((resolve) => setTimeout(resolve, gapMs))
        }
      }
      return { ops, elapsedMs: performance.now() - start, latenciesUs }
    },
    async close () {
      await brane?.close()
      brane = undefined
    }
  }
}

/** RSS per idle hello instance on the main thread, and how many fit */
async function idleInstanceFootprint (count: number): Promise<string> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const make = await factory()
  await make.instantiate() // load everything once
  gc()
  const before = process.memoryUsage()
  const held: GuestInstance[] = []
  for (let i = 0; i < count; i++) {
    held.push(await make.instantiate())
  }
  gc()
  const after = process.memoryUsage()
  const rssPer = (after.rss - before.rss) / count
  const heapPer = (after.heapUsed - before.heapUsed) / count
  const linear = held[0]?.memBytes ?? 0
  const fit = (bytes: number): number => Math.floor(bytes / rssPer)
  held.length = 0
  return `idle hello instance (main thread, ${count} held): ${(rssPer / 1024).toFixed(0)} KiB RSS each ` +
    `(JS heap ${(heapPer / 1024).toFixed(0)} KiB, linear memory ${linear / 1024} KiB reserved, touched pages only count); ` +
    `${fit(256 * 2 ** 20)} fit in 256 MiB, ${fit(freemem())} in the ${(freemem() / 2 ** 30).toFixed(1)} GiB free now ` +
    '(V8 also reserves ~10 GiB of address space per linear memory: ~12 K memories per process at most)'
}

const prewarmed = braneSide('worker: ephemeral pre-warmed acquire (requests 3 ms apart)', { lifecycle: 'ephemeral', prewarm: 2 }, (t) => t.acquireMs, 3)
const coldAcquire = braneSide('worker: ephemeral cold acquire (prewarm 0: instantiates)', { lifecycle: 'ephemeral', prewarm: 0 }, (t) => t.acquireMs)
const pooledAcquire = braneSide('worker: pooled acquire (reused instance, back to back)', { lifecycle: 'pooled' }, (t) => t.acquireMs)
const coldAcquire2 = braneSide('worker: ephemeral cold acquire (prewarm 0: instantiates)', { lifecycle: 'ephemeral', prewarm: 0 }, (t) => t.acquireMs)
const warmExec = braneSide('worker: execMs, reused instance (pooled)', { lifecycle: 'pooled' }, (t) => t.execMs)
const coldExec = braneSide('worker: acquireMs + execMs, fresh instance (prewarm 0)', { lifecycle: 'ephemeral', prewarm: 0 }, (t) => t.acquireMs + t.execMs)
const pooledTrip = braneSide('round trip: HttpBrane.handle, pooled', { lifecycle: 'pooled' }, () => undefined)
const ephemeralTrip = braneSide('round trip: HttpBrane.handle, ephemeral (back to back)', { lifecycle: 'ephemeral' }, () => undefined)

let footprint = ''

export const cases: BenchCase[] = [
  {
    name: 'instantiate-hello',
    description: 'Fresh instance of the hello component (jco instantiate: import object, 3 core instances, per-instance glue) vs a plain new WebAssembly.Instance of a 1-function core module; main thread, core modules compiled once. Target: P50 ≤ 1.2 ms',
    metrics: ['p50', 'p99'],
    async setup () { await factory() },
    async teardown () {
      // after the rounds, so that its garbage does not land in them
      footprint = await idleInstanceFootprint(2000)
      process.stderr.write(`\nbench: ${footprint}\n`)
      this.description += `. ${footprint}`
    },
    subject: { label: 'main thread: InstanceFactory.instantiate (hello)', op: async () => (await factory()).instantiate() },
    baseline: {
      label: 'main thread: new WebAssembly.Instance (small core module)',
      op: (() => {
        const module = new Wasm.Module(SMALL_CORE_MODULE)
        return () => new Wasm.Instance(module)
      })()
    }
  },
  {
    name: 'acquire-prewarmed',
    description: 'Instance acquire inside the worker, as timing.acquireMs reports it: ephemeral from the pre-warmed set (background refill keeps up at this pace) vs instantiating on the request. Target: P50 ≤ 0.3 ms',
    metrics: ['p50', 'p99'],
    subject: prewarmed,
    baseline: coldAcquire,
    async teardown () { await prewarmed.close(); await coldAcquire.close() }
  },
  {
    name: 'acquire-pooled',
    description: 'Instance acquire inside the worker (timing.acquireMs): pooled (reuse) vs instantiating on the request. Target: P50 ≤ 0.3 ms',
    metrics: ['p50', 'p99'],
    subject: pooledAcquire,
    baseline: coldAcquire2,
    async teardown () { await pooledAcquire.close(); await coldAcquire2.close() }
  },
  {
    name: 'warm-call',
    description: 'One hello request inside the worker, as timing reports it: execMs on a reused instance (pooled) vs acquireMs + execMs on an instance made for the request (prewarm 0)',
    metrics: ['p50', 'p99'],
    subject: warmExec,
    baseline: coldExec,
    async teardown () { await warmExec.close(); await coldExec.close() }
  },
  {
    name: 'roundtrip',
    description: 'HttpBrane.handle end to end (postMessage to the worker and back, one worker, back to back): pooled vs ephemeral',
    metrics: ['ops/s', 'p50', 'p99'],
    subject: pooledTrip,
    baseline: ephemeralTrip,
    async teardown () { await pooledTrip.close(); await ephemeralTrip.close() }
  }
]
