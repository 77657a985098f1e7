/**
 * One componentize-js build, in a process of its own (`node componentize.js JSON`):
 * componentize-js takes 10–30 s and ~800 MB, freed at exit, and it reads files through
 * preview2-shim, whose preopens this process opens to `/` (nowhere else). It also writes
 * the guest's TypeScript declarations from the same WIT (jco `types --guest`).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/** What the parent asks for */
export interface ComponentizeJob {
  /** the bundled JavaScript module */
  readonly source: string
  /** the project's wit/ directory (world + deps) */
  readonly wit: string
  readonly world: string
  readonly output: string
  /** where to write .d.ts files for the world (omitted: none) */
  readonly types?: string
  /** StarlingMonkey features left out, so that the component imports only what its world says */
  readonly disableFeatures: ReadonlyArray<'stdio' | 'random' | 'clocks' | 'http' | 'fetch-event'>
}

async function run (job: ComponentizeJob): Promise<void> {
  const shim = await import('@bytecodealliance/preview2-shim/filesystem')
  // the Node build takes host paths by preopen name (its types show the browser build's)
  ;(shim._setPreopens as unknown as (preopens: Record<string, string>) => void)({ '/': '/' })
  if (job.types !== undefined) {
    const { types } = await import('@bytecodealliance/jco')
    const files = await types(job.wit, { guest: true, worldName: job.world }) as Record<string, Uint8Array>
    for (const [name, bytes] of Object.entries(files)) {
      await mkdir(dirname(join(job.types, name)), { recursive: true })
      await writeFile(join(job.types, name), bytes)
    }
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
