import type { Command } from 'commander'
import { watch } from 'node:fs'
import { hostname } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { homeOption, type CliContext } from '../context.ts'
import { otelOption, portOption, waitForAbort } from './up.ts'

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
    .description('Build the brane project in DIR (default: here) into a component: TypeScript (checked against the world\'s declarations, written to types/), then componentize-js (10-30 s)')
    .argument('[dir]', 'the project directory', '.')
    .option('--no-check', 'skip the type check against the world\'s declarations (syntax errors still stop the build)')
    .action(async (dir: string, opts: { check: boolean }) => {
      const { buildProject } = await import('../../authoring/index.ts')
      const path = resolve(ctx.cwd, dir)
      const output = await buildProject(path, {
        check: opts.check,
        progress: (line) => { ctx.stderr.write(`omega build: ${line}\n`) },
        ...(ctx.signal === undefined ? {} : { signal: ctx.signal })
      })
      ctx.stdout.write(`built ${relative(ctx.cwd, output) || output}\n`)
    })
  program.command('dev')
    .description('Build the brane project in DIR (default: here), serve it, and rebuild and hot-reload it whenever src/, wit/ or omega.toml change')
    .argument('[dir]', 'the project directory', '.')
    .option('-p, --port <port>', 'gateway port (0 picks a free one)', '8080')
    .action(async (dir: string, opts: { port: string }, command: Command) => {
      const { buildProject } = await import('../../authoring/index.ts')
      const { createLogging, telemetryFromEnv } = await import('../../observe/index.ts')
      const { startNode } = await import('../../daemon/index.ts')
      const port = portOption('--port', opts.port)
      const telemetry = otelOption(telemetryFromEnv, ctx.env)
      const project = resolve(ctx.cwd, dir)
      const manifest = join(project, 'omega.toml')
      const say = (line: string): void => { ctx.stderr.write(`omega dev: ${line}\n`) }
      await buildProject(project, { progress: say, ...(ctx.signal === undefined ? {} : { signal: ctx.signal }) })
      const lone = await startNode({
        lone: { files: [manifest] }, name: hostname(), substrate: 'habitat', home: ctx.home(homeOption(command)), port, logging: createLogging(ctx.stderr, { format: 'pretty', level: 'info' }), ...(telemetry === undefined ? {} : { telemetry })
      })
      const node = lone.local
      ctx.stdout.write(`omega: gateway ${node.url}\nWatching ${relative(ctx.cwd, project) || '.'} (src/, wit/, omega.toml). Press Ctrl-C to stop.\n`)
      // one rebuild at a time; changes meanwhile make one more
      let running: Promise<void> | undefined
      let again = false
      const rebuild = (): void => {
        if (running !== undefined) {
          again = true
          return
        }
        running = (async () => {
          try {
            await buildProject(project, { progress: say })
            const report = await node.reload(manifest)
            say(`reloaded: changed ${report.changed.join(', ') || '—'} · added ${report.added.join(', ') || '—'}`)
          } catch (err) {
            say(`still serving the previous build: ${err instanceof Error ? err.message : String(err)}`)
          }
        })().finally(() => {
          running = undefined
          if (again) {
            again = false
            rebuild()
          }
        })
      }
      let timer: NodeJS.Timeout | undefined
      const changed = (): void => {
        clearTimeout(timer)
        timer = setTimeout(rebuild, 200)
      }
      const watchers = [watch(join(project, 'src'), { recursive: true }, changed), watch(join(project, 'wit'), { recursive: true }, changed),
        watch(project, (_event, name) => { if (name === 'omega.toml') { changed() } })]
      await waitForAbort(ctx.signal)
      clearTimeout(timer)
      for (const w of watchers) {
        w.close()
      }
      await running
      ctx.stdout.write('omega: stopping\n')
      await lone.stop()
    })
}
