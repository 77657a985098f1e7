/**
 * The part of runtime/wasm a command loads before the rest: starting a brane worker
 * ahead of need (standby.ts), which loads nothing but `node:worker_threads` here.
 */
export { prebootWorker, releaseStandbyWorker } from './standby.ts'
