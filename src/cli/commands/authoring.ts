import type { Command } from 'commander'
import { relative, resolve } from 'node:path'
import type { CliContext } from '../context.ts'

export function authoringCommands (program: Command, ctx: CliContext): void {
  program.command('new')
    .description('Write a new brane project in TypeScript: http-ts (an HTTP brane, pooled) or event-ts (an event brane)')
    .argument('<template>', 'http-ts or event-ts')
    .argument('<dir>', 'the project directory (new or empty); its name is the brane\'s name')
    .action(async (template: string, dir: string) => {
      const { scaffold } = await import('../../authoring/index.ts')
      const path = resolve(ctx.cwd, dir)
      const files = await scaffold(template, path)
      ctx.stdout.write(`wrote ${files.length} files to ${dir}: src/index.ts, wit/world.wit (+ wit/deps), omega.toml, package.json\n` +
        `next: cd ${dir} && omega build && omega up omega.toml\n`)
    })
  program.command('build')
    .description('Build the brane project in DIR (default: here) into a component: TypeScript, then componentize-js (10-30 s)')
    .argument('[dir]', 'the project directory', '.')
    .action(async (dir: string) => {
      const { buildProject } = await import('../../authoring/index.ts')
      const path = resolve(ctx.cwd, dir)
      const output = await buildProject(path, {
        progress: (line) => { ctx.stderr.write(`omega build: ${line}\n`) },
        ...(ctx.signal === undefined ? {} : { signal: ctx.signal })
      })
      ctx.stdout.write(`built ${relative(ctx.cwd, output) || output}\n`)
    })
}
