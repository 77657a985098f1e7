/**
 * Worker thread entry of `omega run` (see run.ts): runs a wasi:cli/run command once,
 * with the host process's stdin, stdout and stderr descriptors, and posts its exit
 * status (or why it failed). The main thread terminates this thread at the deadline.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { FdInputStream, writeAllSync } from './host/streams.ts'
import { Failure, InstanceFactory } from './instance.ts'
import type { CommandWorkerInit, FromCommandWorker } from './run.ts'

const port = parentPort
if (port === null) {
  throw new Error('command-worker.ts must run in a worker thread')
}
const init = workerData as CommandWorkerInit

function post (message: FromCommandWorker): void {
  port?.postMessage(message)
}

const factory = await InstanceFactory.create(init)
try {
  const instance = await factory.instantiate()
  instance.invocation = { args: init.args, env: [], stdin: () => new FdInputStream(init.stdio.stdin) }
  instance.stdoutTo = (bytes) => { writeAllSync(init.stdio.stdout, bytes) }
  instance.stderrTo = (bytes) => { writeAllSync(init.stdio.stderr, bytes) }
  post({ type: 'exit', code: factory.runMain(instance) })
} catch (err) {
  const failure = err instanceof Failure ? err : factory.classify(err)
  post({ type: 'error', name: failure.kind, message: failure.message })
}
