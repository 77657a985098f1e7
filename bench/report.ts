import { execFileSync } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os'
import { join } from 'node:path'
import { metricValue } from './harness.ts'
import type { Budget, CaseResult, Metric } from './harness.ts'

/** Where and on what the benchmarks ran */
export interface MachineInfo {
  node: string
  v8: string
  platform: string
  release: string
  arch: string
  cpus: { count: number, model: string, speedMHz: number }
  totalMemMiB: number
  loadavg: number[]
}

/** The JSON written to `bench/results/` */
export interface BenchReport {
  schema: 1
  date: string
  machine: MachineInfo
  git: { commit: string | null, dirty: boolean | null }
  budget: Budget
  filter: string[]
  results: CaseResult[]
}

/** Facts about this machine and runtime */
export function machineInfo (versions: NodeJS.ProcessVersions): MachineInfo {
  const list = cpus()
  return {
    node: versions.node,
    v8: versions.v8,
    platform: platform(),
    release: release(),
    arch: arch(),
    cpus: { count: list.length, model: list[0]?.model.trim() ?? 'unknown', speedMHz: list[0]?.speed ?? 0 },
    totalMemMiB: Math.round(totalmem() / (1024 * 1024)),
    loadavg: loadavg().map((n) => Number(n.toFixed(2)))
  }
}

function git (cwd: string, args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 }).trim()
  } catch {
    return null
  }
}

/** The checked-out commit and whether the tree has changes (null when unknown, e.g. no commits yet) */
export function gitInfo (cwd: string): BenchReport['git'] {
  const commit = git(cwd, ['rev-parse', 'HEAD'])
  const status = git(cwd, ['status', '--porcelain', '--untracked-files=no'])
  return { commit, dirty: status === null ? null : status !== '' }
}

const HIGHER_IS_BETTER: ReadonlySet<Metric> = new Set(['ops/s', 'MiB/s'])

function formatNumber (value: number): string {
  if (!Number.isFinite(value)) {
    return String(value)
  }
  if (Math.abs(value) >= 1000) {
    return Math.round(value).toLocaleString('en-US')
  }
  return value.toPrecision(3)
}

/** Scale a latency in µs to µs or ms, choosing one unit for both sides of a row */
function latencyCells (subjectUs: number, baselineUs: number): [string, string, string] {
  if (Math.max(subjectUs, baselineUs) >= 1000) {
    return [formatNumber(subjectUs / 1000), formatNumber(baselineUs / 1000), 'ms']
  }
  return [formatNumber(subjectUs), formatNumber(baselineUs), 'µs']
}

/** The results as an aligned text table: name | subject | baseline | ratio | unit */
export function formatTable (results: readonly CaseResult[]): string {
  const rows: string[][] = [['name', 'subject', 'baseline', 'ratio', 'unit']]
  for (const result of results) {
    for (const metric of result.metrics) {
      const s = metricValue(result.subject, metric)
      const b = metricValue(result.baseline, metric)
      if (s === undefined || b === undefined) {
        rows.push([result.name, '-', '-', '-', metric])
        continue
      }
      const ratio = result.ratios[metric]
      const ratioCell = ratio === undefined ? '-' : `${ratio.toFixed(2)}x`
      if (HIGHER_IS_BETTER.has(metric)) {
        rows.push([result.name, formatNumber(s), formatNumber(b), ratioCell, metric === 'ops/s' && result.figure !== undefined ? result.figure : `${metric} (higher is better)`])
      } else {
        const [sc, bc, unit] = latencyCells(s, b)
        rows.push([result.name, sc, bc, ratioCell, `${unit} ${metric} (lower is better)`])
      }
    }
  }
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length))) ?? []
  const numeric = new Set([1, 2, 3])
  const lines = rows.map((row) => row.map((cell, col) => {
    const width = widths[col] ?? 0
    return numeric.has(col) ? cell.padStart(width) : cell.padEnd(width)
  }).join(' | ').trimEnd())
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('-|-'))
  const legend = results.map((r) =>
    `${r.name}: subject = ${r.subject.label} (±${r.subject.rsdPercent.toFixed(1)}% across rounds), baseline = ${r.baseline.label} (±${r.baseline.rsdPercent.toFixed(1)}%)`)
  return [...lines, '', ...legend].join('\n') + '\n'
}

/**
 * Write `report` to `<dir>/<date>.json` and `<dir>/latest.json`; returns the dated path.
 * Colons are replaced in the file name, which some file systems reject.
 */
export async function writeReport (dir: string, report: BenchReport): Promise<string> {
  await mkdir(dir, { recursive: true })
  const text = JSON.stringify(report, null, 2) + '\n'
  const dated = join(dir, `${report.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`)
  await writeFile(dated, text)
  await writeFile(join(dir, 'latest.json'), text)
  return dated
}
