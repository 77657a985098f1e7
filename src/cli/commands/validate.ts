import type { Command } from 'commander'
import { resolve } from 'node:path'
import { formatIssue, loadManifest } from '../../manifest/index.ts'
import type { ManifestIssue } from '../../errors.ts'
import type { CliContext } from '../context.ts'

export function validateCommand (program: Command, ctx: CliContext): void {
  program.command('validate')
    .description('Check manifests (TOML, JSON or YAML): structure, then meaning. Prints every problem found')
    .argument('<file...>', 'manifest files')
    .option('--json', 'print the result as JSON')
    .action(async (files: string[], opts: { json?: boolean }) => {
      const results: Array<{ file: string, ok: boolean, branes?: number, edges?: number, issues: readonly ManifestIssue[] }> = []
      for (const file of files) {
        try {
          const { plan, warnings } = await loadManifest(resolve(ctx.cwd, file), ctx.signal === undefined ? {} : { signal: ctx.signal })
          results.push({ file, ok: true, branes: plan.branes.length, edges: plan.edges.length, issues: warnings.map((w) => ({ ...w, file })) })
        } catch (err) {
          if (!(err instanceof Error) || err.name !== 'ManifestError') {
            throw err
          }
          const issues = (err as Error & { issues: readonly ManifestIssue[] }).issues.map((i) => ({ ...i, file }))
          results.push({ file, ok: false, issues })
          ctx.setExitCode(3)
        }
      }
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(results, null, 2) + '\n')
        return
      }
      for (const result of results) {
        for (const issue of result.issues) {
          ctx.stderr.write(formatIssue(issue) + '\n')
        }
        if (result.ok) {
          ctx.stdout.write(`✓ ${result.file}: valid (${plural(result.branes ?? 0, 'brane')}, ${plural(result.edges ?? 0, 'edge')})\n`)
        } else {
          const errors = result.issues.filter((i) => i.severity === 'error').length
          ctx.stdout.write(`✗ ${result.file}: invalid (${plural(errors, 'error')})\n`)
        }
      }
    })
}

export function plural (count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`
}
