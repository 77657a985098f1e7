import type { Command } from 'commander'
import { resolve } from 'node:path'
import type { BranePlan, Grants, Plan } from '../../manifest/index.ts'
import { formatDuration, formatSize } from '../../manifest/lite.ts'
import type { CliContext } from '../context.ts'
import { table } from '../table.ts'
import { plural } from './validate.ts'

export function planCommand (program: Command, ctx: CliContext): void {
  program.command('plan')
    .description('Validate a manifest and show what it compiles to: per brane its substrate, profile, replicas, lifecycle, grants, limits and edges')
    .argument('<file>', 'manifest file')
    .option('--json', 'print the plan as JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const { formatIssue, loadManifest } = await import('../../manifest/index.ts')
      const { plan, warnings } = await loadManifest(resolve(ctx.cwd, file), ctx.signal === undefined ? {} : { signal: ctx.signal })
      for (const warning of warnings) {
        ctx.stderr.write(formatIssue({ ...warning, file }) + '\n')
      }
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify({ ...plan, file }, null, 2) + '\n')
        return
      }
      ctx.stdout.write(renderPlan(plan, file))
    })
}

/** The human form of a plan: a summary table, then one block per brane */
export function renderPlan (plan: Plan, file: string): string {
  let out = `${file}: ${plural(plan.branes.length, 'brane')}, ${plural(plan.edges.length, 'edge')}\n\n`
  out += table(['brane', 'substrate', 'profile', 'replicas', 'lifecycle', 'image'], plan.branes.map((b) => [
    b.name, b.substrate, b.profile, replicasText(b), b.lifecycle, b.image ?? b.guest ?? '—'
  ]))
  for (const brane of plan.branes) {
    out += `\nbrane ${brane.name}\n`
    out += table(['', ''], detailRows(brane)).split('\n').slice(1).map((line) => line === '' ? '' : `  ${line}`).join('\n')
  }
  if (plan.resolvers.length > 0) {
    out += '\n' + table(['resolver', 'host', 'mode', 'brane'], plan.resolvers.map((r) => [r.name, r.host, r.mode, r.brane ?? '(by route)']))
  }
  return out
}

function replicasText (brane: BranePlan): string {
  return brane.replicas.kind === 'fixed' ? String(brane.replicas.count) : `auto (${brane.replicas.min}–${brane.replicas.max})`
}

function detailRows (brane: BranePlan): string[][] {
  const placement = [
    brane.substrate,
    brane.peers === undefined ? '' : `peers ${brane.peers}`,
    brane.hosts.length === 0 ? '' : `hosts ${brane.hosts.join(', ')}`
  ].filter((s) => s !== '').join(' · ')
  const rows: string[][] = [
    ['substrate', placement],
    ['profile', brane.profile + (brane.gpu === 'passthrough' ? ' · gpu passthrough' : '') + (brane.guest === undefined ? '' : ` · guest ${brane.guest}`)],
    ['replicas', replicasText(brane)],
    ['lifecycle', brane.lifecycle + (brane.deterministic ? ' · deterministic' : '')],
    ['grants', grantsText(brane.grants)],
    ['limits', `mem ${formatSize(brane.limits.memMaxBytes)} · deadline ${formatDuration(brane.limits.deadlineMs)} · cpu ${brane.limits.cpuQuota} core`],
    ['routes', brane.routes.map((r) => `${r.host === undefined ? '' : r.host}${r.path}${r.wildcard ? '*' : ''}${r.methods === undefined ? '' : ` (${r.methods.join(',')})`}${r.declared ? '' : ' (default)'}`).join(', ')],
    ['edges in', brane.edgesIn.length === 0 ? '—' : brane.edgesIn.map((e) => `← ${e.from} on ${e.on}`).join(', ')],
    ['edges out', brane.edgesOut.length === 0 ? '—' : brane.edgesOut.map((e) => `→ ${e.to} on ${e.on}`).join(', ')]
  ]
  return rows
}

function grantsText (grants: Grants): string {
  const parts: string[] = []
  if (grants['net.http'] !== undefined) {
    parts.push(`net.http(${grants['net.http'].allowlist.join(', ')})`)
  }
  if (grants['fs.tmp'] !== undefined) {
    parts.push(`fs.tmp(${formatSize(grants['fs.tmp'].quotaBytes)}, per ${grants['fs.tmp'].lifetime})`)
  }
  if (grants.clock !== undefined) {
    parts.push(`clock(${grants.clock.resolution})`)
  }
  if (grants.random !== undefined) {
    parts.push('random')
  }
  if (grants.env !== undefined) {
    parts.push(`env(${Object.keys(grants.env).join(', ')})`)
  }
  if (grants.state !== undefined) {
    parts.push('state')
  }
  if (grants.emit !== undefined) {
    parts.push(`emit(${grants.emit.topics.join(', ')})`)
  }
  return parts.length === 0 ? 'none (0 ambient capabilities)' : parts.join(' · ')
}
