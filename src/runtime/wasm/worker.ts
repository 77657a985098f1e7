/**
 * Worker thread entry of an HTTP brane: imports the transpiled component, then for
 * each request builds a fresh instance (ephemeral lifecycle), calls its
 * `wasi:http/incoming-handler` and posts the buffered response back. Requests are
 * handled one at a time; a guest that spins blocks only this thread, and the main
 * thread terminates it at the deadline.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { buildImports, GuestExit } from './host/imports.ts'
import { httpTypesFor, type GuestResponse } from './host/http.ts'
import { LineSplitter, SinkOutputStream } from './host/streams.ts'
import { wasm, type CoreImports, type CoreInstance, type CoreModule } from './wasm-api.ts'
import type { FromWorker, HttpRequest, HttpResponse, ToWorker, WorkerErrorName, WorkerInit } from './protocol.ts'

type Instantiate = (
  getCoreModule: (name: string) => CoreModule,
  imports: Record<string, unknown>,
  instantiateCore: (module: CoreModule, imports?: CoreImports) => CoreInstance
) => unknown

interface IncomingHandler {
  handle: (request: object, outparam: object) => void
}

/** A failure to report to the caller, as an OmegaError name and message */
class Failure extends Error {
  readonly kind: WorkerErrorName
  constructor (kind: WorkerErrorName, message: string, options?: ErrorOptions) {
    super(message, options)
    this.kind = kind
  }
}

const port = parentPort
if (port === null) {
  throw new Error('worker.ts must run in a worker thread')
}
const init = workerData as WorkerInit
const grants = new Set(Object.keys(init.grants).filter((key) => init.grants[key as keyof typeof init.grants] !== undefined))
const http = httpTypesFor({ maxBodyBytes: init.maxBodyBytes })
const { instantiate } = await import(pathToFileURL(init.entry).href) as { instantiate: Instantiate }

function post (message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(message, transfer)
}

function getCoreModule (name: string): CoreModule {
  const module = init.modules.get(name)
  if (module === undefined) {
    throw new Failure('ComponentLoadError', `Cannot instantiate brane "${init.brane}": missing core module "${name}"`)
  }
  return module
}

// Synchronous core instantiation: the modules are compiled already, and with
// synchronous callbacks jco's instantiate() finishes without awaiting anything.
function instantiateCore (module: CoreModule, imports?: CoreImports): CoreInstance {
  return new wasm.Instance(module, imports)
}

async function serve (id: number, request: HttpRequest): Promise<void> {
  const start = performance.now()
  const outLines = new LineSplitter((line) => { post({ type: 'log', stream: 'stdout', line }) })
  const errLines = new LineSplitter((line) => { post({ type: 'log', stream: 'stderr', line }) })
  const stdout = new SinkOutputStream((bytes) => { outLines.push(bytes) })
  const stderr = new SinkOutputStream((bytes) => { errLines.push(bytes) })
  let instantiated = start
  let outcome: FromWorker
  let transfer: ArrayBuffer[] = []
  try {
    const imports = buildImports(init.imports, grants, { stdout, stderr, httpTypes: http.types })
    const instance = await instantiate(getCoreModule, imports, instantiateCore) as Record<string, IncomingHandler | undefined>
    const handler = instance[init.handlerExport]
    if (handler === undefined) {
      throw new Failure('ComponentLoadError', `Cannot instantiate brane "${init.brane}": no export "${init.handlerExport}"`)
    }
    instantiated = performance.now()
    const exchange = http.exchange(request)
    try {
      handler.handle(exchange.request, exchange.outparam)
    } catch (err) {
      // exit(ok) after answering is a normal end of a command-style guest
      if (!(err instanceof GuestExit && err.ok && exchange.response() !== undefined)) {
        throw err
      }
    }
    const response = toResponse(exchange.response(), {
      instantiateMs: instantiated - start,
      handleMs: performance.now() - instantiated
    })
    outcome = { type: 'response', id, response }
    transfer = [response.body.buffer as ArrayBuffer]
  } catch (err) {
    const failure = classify(err)
    outcome = { type: 'error', id, name: failure.kind, message: failure.message }
  }
  // the instance is done: its last log lines go out before its answer
  stdout.close()
  stderr.close()
  outLines.end()
  errLines.end()
  post(outcome, transfer)
}

function toResponse (answer: GuestResponse | undefined, timing: HttpResponse['timing']): HttpResponse {
  if (answer === undefined) {
    throw new Failure('GuestError', `Brane "${init.brane}" returned without setting a response`)
  }
  if (answer.tag === 'err') {
    throw new Failure('GuestError', `Brane "${init.brane}" answered with an error: ${describeValue(answer.error)}`)
  }
  return { status: answer.status, headers: answer.headers, body: answer.body, timing }
}

function classify (err: unknown): Failure {
  if (err instanceof Failure) {
    return err
  }
  if (err instanceof Error && err.name === 'ComponentLoadError') {
    return new Failure('ComponentLoadError', err.message)
  }
  if (err instanceof wasm.RuntimeError) {
    return new Failure('GuestError', `Brane "${init.brane}" trapped: ${err.message}`)
  }
  if (err instanceof GuestExit) {
    return new Failure('GuestError', `Brane "${init.brane}" exited (${err.ok ? 'success' : 'failure'}) without a response`)
  }
  // jco's bindings throw TypeError/Error for ABI misuse (bad handles, bad values):
  // the guest broke the contract
  return new Failure('GuestError', `Brane "${init.brane}" failed: ${describeValue(err)}`)
}

function describeValue (value: unknown): string {
  if (value instanceof Error) {
    return value.message
  }
  try {
    return JSON.stringify(value, (_key, v: unknown) => typeof v === 'bigint' ? v.toString() : v) ?? String(value)
  } catch {
    return String(value)
  }
}

/** serve() reports guest failures itself: anything else is a bug here, so die and be replaced */
function crash (err: unknown): never {
  process.stderr.write(`omega brane worker: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
}

port.on('message', (message: ToWorker) => {
  if (message.type === 'request') {
    // handled one at a time: the main thread sends the next request after the answer
    serve(message.id, message.request).catch(crash)
  }
})
post({ type: 'ready' })
