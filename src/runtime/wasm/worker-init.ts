/**
 * What a brane worker serves: its `workerData`, or, for a worker started ahead of its
 * brane (standby.ts), the first message it receives. worker.ts imports this last, so
 * that a standby has loaded every other module (preview2-shim included) while it waits.
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { WorkerInit } from './protocol.ts'

function isStandby (data: unknown): boolean {
  return typeof data === 'object' && data !== null && (data as { standby?: unknown }).standby === true
}

export const init: WorkerInit = isStandby(workerData)
  ? await new Promise<WorkerInit>((resolve) => { parentPort?.once('message', resolve) })
  : workerData as WorkerInit
