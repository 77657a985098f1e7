/**
 * One step of a guest build, in a process of its own (`node componentize.js JSON`):
 * `types` writes the TypeScript declarations of a world (jco `types --guest`), and
 * `component` runs componentize-js, which takes 10–30 s and ~800 MB (freed at exit).
 * Both read files through preview2-shim, whose preopens this process alone opens to `/`
 * (preview2-shim starts with none, and the CLI cannot grant any). The parent runs it
 * with the source's directory as cwd: componentize-js maps the cwd into the engine and
 * mangles the source path when the cwd is `/`.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/** The StarlingMonkey features a build can leave out */
export type StarlingMonkeyFeature = 'stdio' | 'random' | 'clocks' | 'http' | 'fetch-event'

/** Declarations for `world` of `wit`, written under `types` */
export interface TypesJob {
  readonly kind: 'types'
  /** the project's wit/ directory (world + deps) */
  readonly wit: string
  readonly world: string
  readonly types: string
}

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

export type ComponentizeJob = TypesJob | ComponentJob

async function openFilesystem (): Promise<void> {
  const shim = await import('@bytecodealliance/preview2-shim/filesystem')
  // the Node build takes host paths by preopen name (its types show the browser build's)
  ;(shim._setPreopens as unknown as (preopens: Record<string, string>) => void)({ '/': '/' })
}

async function run (job: ComponentizeJob): Promise<void> {
  await openFilesystem()
  if (job.kind === 'types') {
    const { types } = await import('@bytecodealliance/jco')
    const files = await types(job.wit, { guest: true, worldName: job.world }) as Record<string, Uint8Array>
    for (const [name, bytes] of Object.entries(files)) {
      await mkdir(dirname(join(job.types, name)), { recursive: true })
      await writeFile(join(job.types, name), bytes)
    }
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
