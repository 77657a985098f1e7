import type { Command } from 'commander'
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { UsageError } from '../../errors.ts'
import { homeOption, type CliContext } from '../context.ts'

export function grantsCommand (program: Command, ctx: CliContext): void {
  program.command('grants')
    .description('Print the [brane.NAME.capability] block a component\'s imports need (the narrowest start: review each line)')
    .argument('<file>', 'a WASI 0.2 component (.wasm)')
    .option('--brane <name>', 'the brane name to write in the block', 'NAME')
    .action(async (file: string, opts: { brane: string }, command: Command) => {
      const path = resolve(ctx.cwd, file)
      const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
        throw new UsageError(`Cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
      })
      const { grantsBlock, loadComponent } = await import('../../runtime/wasm/index.ts')
      const loaded = await loadComponent(bytes, { cacheDir: join(ctx.home(homeOption(command)), 'cache', 'components'), ...(ctx.signal === undefined ? {} : { signal: ctx.signal }) })
      ctx.stdout.write(`# ${file} (${loaded.id}) imports ${loaded.imports.length} interfaces\n${grantsBlock(loaded.imports, opts.brane)}`)
    })
}
