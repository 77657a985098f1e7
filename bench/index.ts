/**
 * `npm run bench [-- FILTER… --quick --list --no-save --out DIR]`
 *
 * Runs every case of every suite below (or those whose `suite/case` name contains one of
 * the FILTER words), prints a table to stdout and progress to stderr, and writes the
 * figures to `bench/results/<date>.json` and `bench/results/latest.json`.
 *
 * To add a benchmark: write `bench/<name>.bench.ts` exporting `cases: BenchCase[]`, and
 * add it to SUITES.
 */
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { DEFAULT_BUDGET, runCase } from './harness.ts'
import type { BenchCase, Budget, CaseResult } from './harness.ts'
import { formatTable, gitInfo, machineInfo, writeReport } from './report.ts'
import * as hash from './hash.bench.ts'
import * as sign from './sign.bench.ts'
import * as wasm from './wasm.bench.ts'
import * as gateway from './gateway.bench.ts'
import * as events from './events.bench.ts'
import * as microvm from './microvm.bench.ts'
import * as trust from './trust.bench.ts'
import * as mesh from './mesh.bench.ts'
import * as biome from './biome.bench.ts'
import * as start from './start.bench.ts'
import * as sim from './sim.bench.ts'

/**
 * Every suite, by name; a case's full name is `suite/case`; `details`: printed after the
 * table; `optIn`: run only when named (`npm run bench -- sim`: the 10 000-node simulation
 * takes about 20 minutes)
 */
const SUITES: Record<string, { cases: readonly BenchCase[], details?: () => Promise<string>, optIn?: boolean }> = {
  hash,
  sign,
  gateway,
  events,
  wasm,
  microvm,
  trust,
  mesh,
  biome,
  start,
  sim: { ...sim, optIn: true }
}

const QUICK_BUDGET: Partial<Budget> = { rounds: 3, roundMs: 150, warmupMs: 100 }

/** The directory holding package.json, above this file (works from src and from dist) */
function repoRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) {
      return process.cwd()
    }
    dir = parent
  }
  return dir
}

async function main (argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      'no-save': { type: 'boolean', default: false },
      out: { type: 'string' },
      rounds: { type: 'string' },
      'round-ms': { type: 'string' }
    }
  })
  const selected: Array<{ name: string, bench: BenchCase }> = []
  for (const [suite, module] of Object.entries(SUITES)) {
    for (const bench of module.cases) {
      const name = `${suite}/${bench.name}`
      if (positionals.length === 0 ? module.optIn !== true : positionals.some((word) => name.includes(word))) {
        selected.push({ name, bench })
      }
    }
  }
  if (values.list) {
    process.stdout.write(selected.map((s) => `${s.name}${s.bench.description === undefined ? '' : `  ${s.bench.description}`}`).join('\n') + '\n')
    return 0
  }
  if (selected.length === 0) {
    process.stderr.write(`bench: no case matches ${positionals.map((p) => `"${p}"`).join(', ')}; try --list\n`)
    return 2
  }

  const budget: Partial<Budget> = values.quick ? { ...QUICK_BUDGET } : {}
  if (values.rounds !== undefined) {
    budget.rounds = Number.parseInt(values.rounds, 10)
  }
  if (values['round-ms'] !== undefined) {
    budget.roundMs = Number.parseInt(values['round-ms'], 10)
  }

  const controller = new AbortController()
  process.once('SIGINT', () => { controller.abort() })
  const results: CaseResult[] = []
  for (const { name, bench } of selected) {
    const started = Date.now()
    process.stderr.write(`bench: ${name} `)
    const result = await runCase({ ...bench, name }, {
      budget,
      signal: controller.signal,
      onRound: () => { process.stderr.write('.') }
    })
    process.stderr.write(` ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
    results.push(result)
  }

  process.stdout.write('\n' + formatTable(results))
  for (const module of new Set(selected.map((s) => SUITES[s.name.split('/')[0] as string]))) {
    const text = await module?.details?.()
    if (text !== undefined && text !== '') {
      process.stdout.write('\n' + text + '\n')
    }
  }
  if (!values['no-save']) {
    const root = repoRoot()
    const out = values.out === undefined ? join(root, 'bench', 'results') : resolve(values.out)
    const file = await writeReport(out, {
      schema: 1,
      date: new Date().toISOString(),
      machine: machineInfo(process.versions),
      git: gitInfo(root),
      budget: { ...DEFAULT_BUDGET, ...budget },
      filter: positionals,
      results
    })
    process.stderr.write(`bench: wrote ${file} and latest.json\n`)
  }
  return 0
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 1
  })
