/**
 * A brane worker started before its brane is known. Starting a worker thread (Node's
 * own bootstrap, the worker's modules, preview2-shim and its I/O helper thread) takes
 * ~70–100 ms here; `omega up` starts one first thing, so that this happens on another
 * core while the main thread loads the daemon and reads the manifest. The first worker
 * a brane starts takes it and sends it its {@link WorkerInit} as its first message;
 * worker-init.ts waits for that message in place of `workerData`.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads'
import type { WorkerInit } from './protocol.ts'

/** the brane worker's entry */
export const WORKER_URL = new URL('./worker.js', import.meta.url)

/** `workerData` of a worker waiting for its brane */
export const STANDBY = { standby: true } as const

/** How every brane worker is started (a standby is started the same way, with {@link STANDBY}) */
export function workerOptions (name: string, workerData: WorkerInit | typeof STANDBY): WorkerOptions {
  return {
    workerData,
    name,
    env: {}, // the guest sees no host environment, and neither does jco's glue
    stdout: true,
    stderr: true,
    // a backstop for host-side JS memory (linear memory is capped by mem_max)
    resourceLimits: { maxOldGenerationSizeMb: 512 }
  }
}

let standby: Worker | undefined

/**
 * Starts one brane worker ahead of need (at most one waits at a time). It does not
 * keep the process alive; {@link releaseStandbyWorker} stops it if no brane took it.
 */
export function prebootWorker (): void {
  if (standby !== undefined) {
    return
  }
  const worker = new Worker(WORKER_URL, workerOptions('brane', STANDBY))
  worker.unref()
  // a standby that fails is dropped: the brane then starts its own worker, which reports why
  worker.on('error', () => {})
  worker.once('exit', () => {
    if (standby === worker) {
      standby = undefined
    }
  })
  standby = worker
}

/** The waiting worker, if any (the caller sends it its WorkerInit and owns it from then on) */
export function takeStandbyWorker (): Worker | undefined {
  const worker = standby
  standby = undefined
  return worker
}

/** Stops the waiting worker, if no brane took it */
export async function releaseStandbyWorker (): Promise<void> {
  await takeStandbyWorker()?.terminate()
}
