/**
 * Authoring branes in TypeScript: `omega new http-ts|event-ts NAME` writes a project
 * (TypeScript source, its WIT with every dependency, a manifest with the least grants,
 * a package.json), and `omega build [DIR]` turns it into a component: TypeScript to
 * JavaScript (the `typescript` compiler, transpile only) with declarations for the world
 * written to `types/` for editors and a type check against them, then componentize-js,
 * each step in a process of its own (componentize.ts).
 */
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BuildError, UsageError } from '../errors.ts'
import type { AbortOptions } from '../interfaces/index.ts'
import type { CompileJob, CompileReport, ComponentizeJob, ComponentJob, StarlingMonkeyFeature } from './componentize.ts'
import { guestWitDeps } from './wit.ts'

export { forStarlingMonkey, guestWitDeps, STARLINGMONKEY_WASI, WIT_DIR, type WitDep } from './wit.ts'
export type { ComponentJob, StarlingMonkeyFeature } from './componentize.ts'

export const TEMPLATES = ['http-ts', 'event-ts'] as const
export type Template = typeof TEMPLATES[number]

/** What `omega build` reads from the project's package.json (`"omega": {…}`) */
export interface ProjectSettings {
  /** the TypeScript (or JavaScript) entry, relative to the project */
  readonly source: string
  /** `package:name/world` of wit/world.wit */
  readonly world: string
  /** the component to write, relative to the project */
  readonly output: string
  readonly disableFeatures: readonly StarlingMonkeyFeature[]
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/

const HTTP_SOURCE = `// An HTTP brane in TypeScript. It exports wasi:http/incoming-handler itself, so one
// instance serves request after request (lifecycle = "pooled" in omega.toml). The types
// of the imports come from the WIT: see types/ (written by \`omega build\`).
import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from 'wasi:http/types@0.2.10'
import type { IncomingRequest } from 'wasi:http/types@0.2.10'

const encoder = new TextEncoder()
let served = 0

function respond (out: ResponseOutparam, status: number, text: string): void {
  const headers = new Fields()
  headers.append('content-type', encoder.encode('text/plain'))
  const response = new OutgoingResponse(headers)
  response.setStatusCode(status)
  const body = response.body()
  const stream = body.write()
  stream.blockingWriteAndFlush(encoder.encode(text))
  // a child resource is dropped before its parent finishes
  stream[Symbol.dispose]()
  OutgoingBody.finish(body, undefined)
  ResponseOutparam.set(out, { tag: 'ok', val: response })
}

export const incomingHandler = {
  handle (request: IncomingRequest, out: ResponseOutparam): void {
    served++
    const path = request.pathWithQuery() ?? '/'
    // resources are not garbage-collected: drop what is done with
    request[Symbol.dispose]()
    respond(out, 200, \`hello from __NAME__: \${path} (request \${served} of this instance)\\n\`)
  }
}
`

const EVENT_SOURCE = `// An event brane in TypeScript: Omega delivers the events of its incoming edges
// ([graph].edges in omega.toml) to handler.handle. Throwing { tag: 'retry', val } asks
// for the event again later, { tag: 'reject', val } dead-letters it. The types of the
// imports come from the WIT: see types/ (written by \`omega build\`).
import { log } from 'omega:brane/log@0.1.0'
import type { Event } from 'omega:brane/types@0.1.0'

const decoder = new TextDecoder()

export const handler = {
  handle (event: Event): void {
    const text = decoder.decode(event.payload)
    if (text.trim() === '') {
      throw { tag: 'reject', val: \`event \${event.id} is empty\` }
    }
    log('info', \`__NAME__ got \${event.topic} \${event.id} (attempt \${event.attempt}): \${text}\`)
  }
}
`

interface TemplateFiles {
  readonly world: string
  readonly worldName: string
  readonly source: string
  readonly manifest: string
  readonly omega: boolean
  readonly disableFeatures: ProjectSettings['disableFeatures']
}

function templateFor (template: Template, name: string): TemplateFiles {
  const pkg = `local:${name}@0.1.0`
  if (template === 'http-ts') {
    return {
      worldName: `local:${name}/http`,
      world: `package ${pkg};\n\nworld http {\n  import wasi:http/types@0.2.10;\n  export wasi:http/incoming-handler@0.2.10;\n}\n`,
      source: HTTP_SOURCE.replaceAll('__NAME__', name),
      manifest: `[brane.${name}]\nimage = "${name}.wasm"\nlifecycle = "pooled"\ntrigger = { http = "/..." }\n\n` +
        '# StarlingMonkey\'s HTTP support imports outgoing HTTP too: granted with an empty\n' +
        '# allowlist, so no request leaves. List hosts here if the brane calls out.\n' +
        `[brane.${name}.capability]\n"net.http" = { allowlist = [] }\n`,
      omega: false,
      disableFeatures: ['random', 'clocks', 'stdio', 'fetch-event']
    }
  }
  return {
    worldName: `local:${name}/event`,
    world: `package ${pkg};\n\nworld event {\n  import omega:brane/log@0.1.0;\n  export omega:brane/handler@0.1.0;\n}\n`,
    source: EVENT_SOURCE.replaceAll('__NAME__', name),
    manifest: `# Events reach ${name} along [graph].edges from a brane that emits them. To try it,\n` +
      '# copy examples/pipeline/ingest.wasm from Omega here (it emits each POST body on\n' +
      '# raw.batch) and add:\n' +
      '#   [brane.ingest]\n#   image   = "ingest.wasm"\n#   trigger = { http = "/ingest" }\n' +
      '#   [brane.ingest.capability]\n#   "net.http" = { allowlist = [] }\n#   clock      = { resolution = "ms" }\n' +
      `#   [graph]\n#   edges = [{ from = "ingest", to = "${name}", on = "raw.batch" }]\n` +
      '# then: omega up omega.toml; curl --data hello http://127.0.0.1:8080/ingest\n\n' +
      `[brane.${name}]\nimage = "${name}.wasm"\nlifecycle = "pooled"\n`,
    omega: true,
    disableFeatures: ['random', 'clocks', 'stdio', 'http', 'fetch-event']
  }
}

/**
 * Write a new project for `template` into `dir` (created; refused when it exists and is
 * not empty). Its name is the directory's name. Returns the files written.
 *
 * @throws UsageError for an unknown template, a name Omega cannot use, or a directory in use
 */
export async function scaffold (template: string, dir: string): Promise<string[]> {
  if (!(TEMPLATES as readonly string[]).includes(template)) {
    throw new UsageError(`Unknown template "${template}": expected one of ${TEMPLATES.join(', ')}`)
  }
  const name = basename(resolvePath(dir))
  if (!NAME.test(name)) {
    throw new UsageError(`Cannot name a brane "${name}" (the directory's name): use lowercase letters, digits and "-", starting with a letter`)
  }
  const existing = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') {
      return []
    }
    if (err.code === 'ENOTDIR') {
      throw new UsageError(`${dir} is a file: "omega new" writes only into a new or empty directory`)
    }
    throw err
  })
  if (existing.length > 0) {
    throw new UsageError(`${dir} exists and is not empty: "omega new" writes only into a new or empty directory`)
  }
  const t = templateFor(template as Template, name)
  const settings: ProjectSettings = { source: 'src/index.ts', world: t.worldName, output: `${name}.wasm`, disableFeatures: t.disableFeatures }
  const files = new Map<string, string>([
    ['package.json', JSON.stringify({
      name,
      version: '0.1.0',
      private: true,
      type: 'module',
      scripts: { build: 'omega build', start: 'omega up omega.toml' },
      omega: settings
    }, null, 2) + '\n'],
    ['tsconfig.json', JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'ES2022', moduleResolution: 'bundler', strict: true, lib: ['ES2022', 'ESNext.Disposable', 'DOM'], types: [], noEmit: true },
      include: ['src', 'types']
    }, null, 2) + '\n'],
    ['src/index.ts', t.source],
    ['wit/world.wit', t.world],
    ['omega.toml', t.manifest],
    ['README.md', `# ${name}\n\n${template === 'http-ts' ? 'An HTTP' : 'An event'} brane in TypeScript.\n\n    omega build      # src/index.ts -> ${name}.wasm (types for editors in types/)\n    omega up omega.toml\n` +
      (template === 'http-ts' ? '    curl http://127.0.0.1:8080/hi\n\n' : '\nomega.toml says how to feed it events (an edge from a brane that emits).\n\n') +
      'wit/world.wit says what the brane imports and exports; wit/deps holds the WASI packages at\n' +
      'the version componentize-js implements (written by "omega new"; do not edit).\n'],
    ['.gitignore', `${name}.wasm\ntypes/\n.omega-build/\n`]
  ])
  for (const { dep, text } of await guestWitDeps({ omega: t.omega })) {
    files.set(`wit/deps/${dep}/package.wit`, text)
  }
  for (const [path, text] of files) {
    await mkdir(join(dir, path, '..'), { recursive: true })
    await writeFile(join(dir, path), text)
  }
  return [...files.keys()]
}

/** The `"omega"` settings of the project in `dir` */
export async function projectSettings (dir: string): Promise<ProjectSettings> {
  let pkg: { omega?: Partial<ProjectSettings> }
  try {
    pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as typeof pkg
  } catch (err) {
    throw new UsageError(`${dir} is not an Omega project: cannot read its package.json (${(err as Error).message}); "omega new" writes one`)
  }
  const o = pkg.omega
  if (o === undefined || typeof o.source !== 'string' || typeof o.world !== 'string' || typeof o.output !== 'string') {
    throw new UsageError(`${join(dir, 'package.json')} has no "omega" settings (source, world, output): "omega new" writes them`)
  }
  return { source: o.source, world: o.world, output: o.output, disableFeatures: Array.isArray(o.disableFeatures) ? o.disableFeatures : [] }
}

/** What `buildProject` reports and how far it checks */
export interface BuildOptions extends AbortOptions {
  /** one line per step (the build takes 10–30 s) */
  progress?: (line: string) => void
  /** type-check the project against its world's declarations (tsconfig.json) first (default true) */
  check?: boolean
}

/**
 * Build the project in `dir` (from any working directory): its TypeScript to JavaScript,
 * declarations for its world in `types/`, a type check against them (the project's
 * tsconfig.json), then the component with componentize-js: two child processes (see
 * componentize.ts), so that the caller's thread stays free (`omega dev` serves the
 * previous build meanwhile). Returns the component's path.
 *
 * @throws UsageError when `dir` is not a project; BuildError when the source does not
 * compile (each error as file:line:column) or componentize-js fails
 */
export async function buildProject (dir: string, options: BuildOptions = {}): Promise<string> {
  const started = Date.now()
  const settings = await projectSettings(dir)
  const progress = options.progress ?? (() => {})
  const sourcePath = join(dir, settings.source)
  await readFile(sourcePath).catch((err: Error) => { throw new UsageError(`Cannot read ${sourcePath}: ${err.message}`) })
  const wit = join(dir, 'wit')
  const tsconfig = join(dir, 'tsconfig.json')
  const check = options.check !== false && await stat(tsconfig).then(() => true, () => false)
  const js = join(dir, '.omega-build', 'index.js')
  const compile: CompileJob = { kind: 'compile', dir, source: settings.source, js, wit, world: settings.world, types: join(dir, 'types'), ...(check ? { tsconfig } : {}) }
  await runChild(compile, dir, options, (line) => {
    if ('progress' in line) {
      progress(line.progress)
    } else if ('world' in line) {
      throw new BuildError(`Cannot build ${dir}: cannot read world "${settings.world}" in ${wit}: ${line.world}`)
    } else {
      const more = line.errors > line.lines.length ? [`… and ${line.errors - line.lines.length} more`] : []
      throw new BuildError(`Cannot build ${dir}: the source does not compile (${line.errors} ${line.errors === 1 ? 'error' : 'errors'})\n${[...line.lines, ...more].join('\n')}`)
    }
  })
  const output = join(dir, settings.output)
  progress(`componentize-js: ${settings.world} -> ${settings.output} (10-30 s)`)
  await runChild({ kind: 'component', source: js, wit, world: settings.world, output, disableFeatures: settings.disableFeatures }, dir, options)
  const size = (await stat(output)).size
  progress(`wrote ${settings.output} (${(size / 1024 / 1024).toFixed(1)} MiB) in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return output
}

/**
 * componentize-js for `job` in a child process of its own (see componentize.ts: the
 * preview2-shim preopens it needs stay in that process). Used by `omega build` and by
 * scripts/build-guests.js. `what` names the build in errors (default: the output).
 *
 * @throws BuildError with the last lines componentize-js wrote
 */
export async function componentizeJs (job: ComponentJob, options: AbortOptions & { what?: string } = {}): Promise<void> {
  await runChild(job, options.what ?? job.output, options)
}

/**
 * One step of componentize.ts in a child process: `onReport` takes each line it reports
 * (and may throw, which becomes the step's error once the child has exited); its
 * stderr's last lines become the error of a failed exit
 */
async function runChild (job: ComponentizeJob, dir: string, options: AbortOptions, onReport: (line: CompileReport) => void = () => {}): Promise<void> {
  const script = fileURLToPath(new URL('./componentize.js', import.meta.url))
  // componentize-js maps its cwd into the engine: the source's own directory always works
  const cwd = job.kind === 'component' ? dirname(job.source) : job.dir
  await new Promise<void>((resolve, reject) => {
    let err = ''
    let failure: unknown
    const child = spawn(process.execPath, [script, JSON.stringify(job)], { cwd, stdio: ['ignore', 'pipe', 'pipe'], ...(options.signal === undefined ? {} : { signal: options.signal }) })
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (failure === undefined) {
        try {
          onReport(JSON.parse(line) as CompileReport)
        } catch (e) {
          failure = e
        }
      }
    })
    child.once('error', reject)
    child.once('close', (code) => {
      if (failure !== undefined) {
        reject(failure instanceof Error ? failure : new BuildError(`Cannot build ${dir}: ${String(failure)}`))
      } else if (code === 0) {
        resolve()
      } else {
        const said = err.trim().split('\n').slice(-12).join('\n') || `exit code ${String(code)}`
        reject(new BuildError(job.kind === 'compile'
          ? `Cannot build ${dir}: cannot compile ${job.source}: ${said}`
          : `Cannot build ${dir}: componentize-js could not build ${job.output}: ${said}`))
      }
    })
  })
}
