import type { Command } from 'commander'
import { resolve } from 'node:path'
import type { ManifestIssue } from '../../errors.ts'
import { homeOption, type CliContext } from '../context.ts'

export function validateCommand (program: Command, ctx: CliContext): void {
  program.command('validate')
    .description('Check manifests (TOML, JSON or YAML): structure, then meaning. Prints every problem found')
    .argument('<file...>', 'manifest files')
    .option('--json', 'print the result as JSON')
    .option('--link', 'also load each standard brane\'s component and check its imports against its grants')
    .action(async (files: string[], opts: { json?: boolean, link?: boolean }, command: Command) => {
      const { formatIssue, loadManifest } = await import('../../manifest/index.ts')
      const results: Array<{ file: string, ok: boolean, branes?: number, edges?: number, issues: readonly ManifestIssue[] }> = []
      for (const file of files) {
        try {
          const path = resolve(ctx.cwd, file)
          const { plan, warnings } = await loadManifest(path, ctx.signal === undefined ? {} : { signal: ctx.signal })
          const issues: ManifestIssue[] = warnings.map((w) => ({ ...w, file }))
          if (opts.link === true) {
            const { linkCheck } = await import('../../daemon/index.ts')
            for (const result of await linkCheck(plan, path, ctx.home(homeOption(command)), ctx.signal === undefined ? {} : { signal: ctx.signal })) {
              if (result.outcome === 'failed') {
                issues.push({ file, path: `brane.${result.brane}.image`, message: result.message, severity: 'error' })
              }
              if (result.warning !== undefined) {
                issues.push({ file, path: `brane.${result.brane}.lifecycle`, message: result.warning, severity: 'warning' })
              }
            }
          }
          const ok = !issues.some((i) => i.severity === 'error')
          if (!ok) {
            ctx.setExitCode(3)
          }
          results.push({ file, ok, branes: plan.branes.length, edges: plan.edges.length, issues })
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
