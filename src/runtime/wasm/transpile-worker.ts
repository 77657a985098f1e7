/**
 * The thread that transpiles components into the cache (see transpileOffThread): jco's
 * transpiler and the glue rewriting are seconds of synchronous work for a large
 * component, which the serving thread must not wait through. One job at a time, in order.
 */
import { parentPort } from 'node:worker_threads'
import { describe } from './jco-error.ts'
import { transpileToCache, type TranspileJob, type TranspileResult } from './transpile.ts'

let queue = Promise.resolve()
parentPort?.on('message', ({ id, job }: { id: number, job: TranspileJob }) => {
  queue = queue.then(async () => {
    const result: TranspileResult = await transpileToCache(job.bytes, job.hash, job.cacheDir, job.version).then(
      (meta) => ({ id, meta }),
      (err: unknown) => ({ id, failure: err instanceof Error ? err.message : describe(err) })
    )
    parentPort?.postMessage(result)
  })
})
