import type { Command } from 'commander'
import { writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { CliContext } from '../context.ts'

export function schemaCommand (program: Command, ctx: CliContext): void {
  program.command('schema')
    .description('Print the JSON Schema of a ZGraph manifest (for editors such as taplo / Even Better TOML)')
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .action(async (opts: { output?: string }) => {
      const { manifestJsonSchema } = await import('../../manifest/index.ts')
      const text = JSON.stringify(await manifestJsonSchema(), null, 2) + '\n'
      if (opts.output === undefined) {
        ctx.stdout.write(text)
      } else {
        await writeFile(resolve(ctx.cwd, opts.output), text)
      }
    })
}
