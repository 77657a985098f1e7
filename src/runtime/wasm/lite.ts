/**
 * The part of runtime/wasm a command loads before the rest: starting a brane worker
 * ahead of need (standby.ts), which loads nothing but `node:worker_threads` here; and the
 * message of an error jco throws (jco-error.ts, which loads nothing).
 */
export { prebootWorker, releaseStandbyWorker } from './standby.ts'
export { describe } from './jco-error.ts'
