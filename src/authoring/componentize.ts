/**
 * One step of a guest build, in a process of its own (`node componentize.js JSON`), so
 * that a build never holds the thread of a node serving beside it (`omega dev`):
 * `compile` transpiles the TypeScript, writes the TypeScript declarations of the world
 * (jco `types --guest`) and type-checks the project against them (together, several
 * seconds of synchronous work), and `component` runs componentize-js, which takes
 * 10–30 s and ~800 MB (freed at exit). Both read files through preview2-shim, whose
 * preopens this process alone opens to `/` (preview2-shim starts with none, and the CLI
 * cannot grant any). The parent runs `component` with the source's directory as cwd:
 * componentize-js maps the cwd into the engine and mangles the source path when the cwd
 * is `/`. The child tells the parent how it goes in JSON lines on stdout
 * ({@link CompileReport}); what it writes on stderr is the error of a failure.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative } from 'node:path'
import type { Diagnostic } from 'typescript'
import { describe } from '../runtime/wasm/lite.ts'

/** The StarlingMonkey features a build can leave out */
export type StarlingMonkeyFeature = 'stdio' | 'random' | 'clocks' | 'http' | 'fetch-event'

/**
 * `source` (TypeScript) to JavaScript at `js`, declarations for `world` of `wit` written
 * under `types`, then, given a tsconfig.json, a type check of the project against them
 */
export interface CompileJob {
  readonly kind: 'compile'
  /** the project: paths in errors are relative to it */
  readonly dir: string
  /** the entry, relative to `dir` */
  readonly source: string
  readonly js: string
  /** the project's wit/ directory (world + deps) */
  readonly wit: string
  readonly world: string
  readonly types: string
  readonly tsconfig?: string
}

/** One JSON line a `compile` child writes on stdout */
export type CompileReport =
  | { readonly progress: string }
  /** the source does not compile: `errors` in all, the first ones as `file:line:column: error TSn: text` */
  | { readonly errors: number, readonly lines: readonly string[] }
  /** jco cannot read the world */
  | { readonly world: string }

/** The component for `world` from the bundled JavaScript module `source` */
export interface ComponentJob {
  readonly kind: 'component'
  readonly source: string
  readonly wit: string
  readonly world: string
  readonly output: string
  /** StarlingMonkey features left out, so that the component imports only what its world says */
  readonly disableFeatures: readonly StarlingMonkeyFeature[]
}

export type ComponentizeJob = CompileJob | ComponentJob

async function openFilesystem (): Promise<void> {
  const shim = await import('@bytecodealliance/preview2-shim/filesystem')
  // the Node build takes host paths by preopen name (its types show the browser build's)
  ;(shim._setPreopens as unknown as (preopens: Record<string, string>) => void)({ '/': '/' })
}

function report (line: CompileReport): void {
  process.stdout.write(JSON.stringify(line) + '\n')
}

type TypeScript = typeof import('typescript')

async function compile (job: CompileJob): Promise<void> {
  report({ progress: `compiling ${job.source}` })
  const ts = (await import('typescript')).default
  const source = await readFile(join(job.dir, job.source), 'utf8')
  const out = ts.transpileModule(source, {
    fileName: job.source,
    reportDiagnostics: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022 }
  })
  if (reportErrors(ts, job.dir, out.diagnostics ?? [])) {
    return
  }
  await mkdir(dirname(job.js), { recursive: true })
  await writeFile(job.js, out.outputText)
  report({ progress: `types/ from wit/ (world ${job.world})` })
  try {
    const { types } = await import('@bytecodealliance/jco')
    const files = await types(job.wit, { guest: true, worldName: job.world }) as Record<string, Uint8Array>
    for (const [name, bytes] of Object.entries(files)) {
      await mkdir(dirname(join(job.types, name)), { recursive: true })
      await writeFile(join(job.types, name), bytes)
    }
  } catch (err) {
    report({ world: describe(err) })
    return
  }
  if (job.tsconfig === undefined) {
    report({ progress: 'no tsconfig.json: types not checked' })
    return
  }
  report({ progress: 'checking types (tsconfig.json)' })
  reportErrors(ts, job.dir, typeCheck(ts, job.tsconfig))
}

/** The project's errors under its tsconfig.json (every file it includes) */
function typeCheck (ts: TypeScript, config: string): readonly Diagnostic[] {
  const configErrors: Diagnostic[] = []
  const parsed = ts.getParsedCommandLineOfConfigFile(config, { noEmit: true }, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => { configErrors.push(d) }
  })
  if (parsed === undefined) {
    return configErrors
  }
  const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options, configFileParsingDiagnostics: parsed.errors })
  return [...parsed.errors, ...ts.getPreEmitDiagnostics(program)]
}

/** Reports the errors among `diagnostics` (the first 20 as `file:line:column: message`, paths relative to the project); false when there are none */
function reportErrors (ts: TypeScript, dir: string, diagnostics: readonly Diagnostic[]): boolean {
  const errors = diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error)
  if (errors.length === 0) {
    return false
  }
  const lines = errors.slice(0, 20).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n  ')
    if (d.file === undefined || d.start === undefined) {
      return `error TS${d.code}: ${text}`
    }
    const at = d.file.getLineAndCharacterOfPosition(d.start)
    const file = isAbsolute(d.file.fileName) ? relative(dir, d.file.fileName) : d.file.fileName
    return `${file}:${at.line + 1}:${at.character + 1}: error TS${d.code}: ${text}`
  })
  report({ errors: errors.length, lines })
  return true
}

async function run (job: ComponentizeJob): Promise<void> {
  await openFilesystem()
  if (job.kind === 'compile') {
    await compile(job)
    return
  }
  const { componentize } = await import('@bytecodealliance/componentize-js')
  const { component } = await componentize({ sourcePath: job.source, witPath: job.wit, worldName: job.world, disableFeatures: [...job.disableFeatures] })
  await mkdir(dirname(job.output), { recursive: true })
  await writeFile(job.output, component)
}

const argument = process.argv[2]
if (argument !== undefined && process.argv[1]?.endsWith('componentize.js') === true) {
  run(JSON.parse(argument) as ComponentizeJob).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  })
}
