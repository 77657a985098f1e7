/**
 * The benchmark harness. A bench file exports `cases: BenchCase[]`; each case measures a
 * subject and its baseline in the same run, in interleaved rounds (subject, baseline,
 * baseline, subject, …) so that noise from a shared machine falls on both alike.
 *
 * @example
 * ```ts
 * // bench/thing.bench.ts — then add it to SUITES in bench/index.ts
 * export const cases: BenchCase[] = [{
 *   name: 'thing-4KiB',
 *   metrics: ['ops/s', 'p50'],
 *   subject: { label: 'ours', op: () => ours(input) },
 *   baseline: { label: 'node built-in', op: () => builtin(input) }
 * }]
 * ```
 */
import { performance } from 'node:perf_hooks'
import { Reservoir, median, summarize } from './stats.ts'

/** A figure the table can show; `ops/s` and `MiB/s` are better higher, latencies lower */
export type Metric = 'ops/s' | 'MiB/s' | 'p50' | 'p90' | 'p99' | 'mean'

/** What a custom round reports */
export interface RoundSample {
  /** operations completed */
  ops: number
  /** wall time of the round, in ms */
  elapsedMs: number
  /** per-operation latencies in µs, when the side can observe them */
  latenciesUs?: ArrayLike<number>
  /**
   * the round's latency percentiles in µs, when its load generator reports only those
   * (autocannon): the side's figures are then the median over rounds (max: the largest)
   */
  latencySummaryUs?: { mean: number, p50: number, p90: number, p99: number, max: number }
}

/** The limits of one round */
export interface RoundBudget {
  durationMs: number
  maxOps: number
  signal: AbortSignal
}

/** One side of a comparison, measured by timing `op` (sync or async) one call at a time */
export interface OpSide {
  /** what runs, e.g. `identity.blake3Hex (hash-wasm)` */
  label: string
  op: () => unknown
}

/** One side measured by its own load generator (e.g. autocannon against a server) */
export interface RoundSide {
  label: string
  round: (budget: RoundBudget) => Promise<RoundSample>
}

export type Side = OpSide | RoundSide

/** A subject and its baseline */
export interface BenchCase {
  /** short kebab-case name, unique within its suite */
  name: string
  description?: string
  /** figures shown in the table (all figures go to the JSON) */
  metrics: readonly Metric[]
  /**
   * for cases that report a plain figure through the ops/s column (KiB, µs of CPU…): its
   * unit and direction, shown instead of "ops/s (higher is better)"
   */
  figure?: string
  subject: Side
  baseline: Side
  /** bytes processed per operation, to report MiB/s */
  bytesPerOp?: number
  /** ops timed together per latency sample, for operations too short to time one by one @default 1 */
  batch?: number
  /** runs before any round (start servers, build inputs) */
  setup?: () => unknown
  /** runs after the last round, even when a round failed */
  teardown?: () => unknown
  /** overrides of the run's budget for this case */
  budget?: Partial<Budget>
}

/** How long a case runs */
export interface Budget {
  /** measured rounds per side @default 5 */
  rounds: number
  /** length of one round per side, in ms @default 500 */
  roundMs: number
  /** unmeasured warm-up per side, in ms @default 300 */
  warmupMs: number
  /** cap on operations in one round @default 5_000_000 */
  maxOpsPerRound: number
  /** latency samples kept per side (uniform reservoir) @default 50_000 */
  maxSamples: number
}

export const DEFAULT_BUDGET: Budget = {
  rounds: 5,
  roundMs: 500,
  warmupMs: 300,
  maxOpsPerRound: 5_000_000,
  maxSamples: 50_000
}

/** Everything measured for one side */
export interface SideFigures {
  label: string
  /** median over rounds of ops/s (robust to one noisy round) */
  opsPerSec: number
  /** total ops / total time */
  meanOpsPerSec: number
  /** relative standard deviation of ops/s across rounds, in % */
  rsdPercent: number
  /** per-round ops/s, in the order run */
  roundOpsPerSec: number[]
  mibPerSec?: number
  totalOps: number
  /** latency figures in µs, when observed */
  latencyUs?: { n: number, min: number, mean: number, p50: number, p90: number, p99: number, max: number }
}

/** The outcome of one case */
export interface CaseResult {
  name: string
  description?: string
  metrics: readonly Metric[]
  figure?: string
  subject: SideFigures
  baseline: SideFigures
  /** subject ÷ baseline for every metric both sides have */
  ratios: Partial<Record<Metric, number>>
  budget: Budget
}

function isRoundSide (side: Side): side is RoundSide {
  return 'round' in side
}

function isPromiseLike (value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function'
}

/** Time `op` until the round's time or op budget is spent */
async function runOps (side: OpSide, budget: RoundBudget, batch: number): Promise<RoundSample> {
  const latencies: number[] = []
  const start = performance.now()
  const end = start + budget.durationMs
  let ops = 0
  let now = start
  while (now < end && ops < budget.maxOps && !budget.signal.aborted) {
    const t0 = performance.now()
    for (let i = 0; i < batch; i++) {
      const result = side.op()
      if (isPromiseLike(result)) {
        await result
      }
    }
    now = performance.now()
    latencies.push(((now - t0) * 1000) / batch)
    ops += batch
  }
  return { ops, elapsedMs: now - start, latenciesUs: latencies }
}

async function runRound (side: Side, budget: RoundBudget, batch: number): Promise<RoundSample> {
  return isRoundSide(side) ? side.round(budget) : runOps(side, budget, batch)
}

class SideRecorder {
  readonly #label: string
  readonly #reservoir: Reservoir
  readonly #rounds: number[] = []
  readonly #summaries: NonNullable<RoundSample['latencySummaryUs']>[] = []
  #ops = 0
  #ms = 0

  constructor (label: string, maxSamples: number) {
    this.#label = label
    this.#reservoir = new Reservoir(maxSamples)
  }

  record (sample: RoundSample): void {
    this.#ops += sample.ops
    this.#ms += sample.elapsedMs
    this.#rounds.push(sample.elapsedMs > 0 ? (sample.ops * 1000) / sample.elapsedMs : 0)
    if (sample.latencySummaryUs !== undefined) {
      this.#summaries.push(sample.latencySummaryUs)
    }
    if (sample.latenciesUs !== undefined) {
      for (let i = 0; i < sample.latenciesUs.length; i++) {
        this.#reservoir.add(sample.latenciesUs[i] as number)
      }
    }
  }

  figures (bytesPerOp: number | undefined): SideFigures {
    const opsPerSec = this.#rounds.length > 0 ? median(this.#rounds) : 0
    const spread = this.#rounds.length > 1 ? summarize(this.#rounds) : undefined
    const figures: SideFigures = {
      label: this.#label,
      opsPerSec,
      meanOpsPerSec: this.#ms > 0 ? (this.#ops * 1000) / this.#ms : 0,
      rsdPercent: spread !== undefined && spread.mean > 0 ? (spread.stddev / spread.mean) * 100 : 0,
      roundOpsPerSec: [...this.#rounds],
      totalOps: this.#ops
    }
    if (bytesPerOp !== undefined) {
      figures.mibPerSec = (opsPerSec * bytesPerOp) / (1024 * 1024)
    }
    const samples = this.#reservoir.values()
    if (samples.length > 0) {
      const s = summarize(samples)
      figures.latencyUs = { n: this.#reservoir.seen, min: s.min, mean: s.mean, p50: s.p50, p90: s.p90, p99: s.p99, max: s.max }
    } else if (this.#summaries.length > 0) {
      const of = (key: 'mean' | 'p50' | 'p90' | 'p99'): number => median(this.#summaries.map((r) => r[key]))
      figures.latencyUs = { n: this.#ops, min: 0, mean: of('mean'), p50: of('p50'), p90: of('p90'), p99: of('p99'), max: Math.max(...this.#summaries.map((r) => r.max)) }
    }
    return figures
  }
}

/** The value of `metric` in `figures`, if measured */
export function metricValue (figures: SideFigures, metric: Metric): number | undefined {
  switch (metric) {
    case 'ops/s': return figures.opsPerSec
    case 'MiB/s': return figures.mibPerSec
    case 'p50': return figures.latencyUs?.p50
    case 'p90': return figures.latencyUs?.p90
    case 'p99': return figures.latencyUs?.p99
    case 'mean': return figures.latencyUs?.mean
  }
}

const ALL_METRICS: readonly Metric[] = ['ops/s', 'MiB/s', 'p50', 'p90', 'p99', 'mean']

/** Options for {@link runCase} */
export interface RunCaseOptions {
  budget?: Partial<Budget>
  signal?: AbortSignal
  /** called before each round, for progress output */
  onRound?: (round: number, side: 'subject' | 'baseline') => void
}

/**
 * Run one case: warm up both sides, then `rounds` interleaved rounds, alternating which
 * side goes first.
 */
export async function runCase (bench: BenchCase, options: RunCaseOptions = {}): Promise<CaseResult> {
  const budget: Budget = { ...DEFAULT_BUDGET, ...options.budget, ...bench.budget }
  const signal = options.signal ?? new AbortController().signal
  const batch = bench.batch ?? 1
  const gc = (globalThis as { gc?: () => void }).gc
  const subject = new SideRecorder(bench.subject.label, budget.maxSamples)
  const baseline = new SideRecorder(bench.baseline.label, budget.maxSamples)
  await bench.setup?.()
  try {
    const warm: RoundBudget = { durationMs: budget.warmupMs, maxOps: budget.maxOpsPerRound, signal }
    await runRound(bench.subject, warm, batch)
    await runRound(bench.baseline, warm, batch)
    const round: RoundBudget = { durationMs: budget.roundMs, maxOps: budget.maxOpsPerRound, signal }
    for (let r = 0; r < budget.rounds; r++) {
      const order = r % 2 === 0 ? (['subject', 'baseline'] as const) : (['baseline', 'subject'] as const)
      for (const which of order) {
        signal.throwIfAborted()
        gc?.()
        options.onRound?.(r, which)
        const sample = await runRound(bench[which], round, batch)
        ;(which === 'subject' ? subject : baseline).record(sample)
      }
    }
  } finally {
    await bench.teardown?.()
  }
  const s = subject.figures(bench.bytesPerOp)
  const b = baseline.figures(bench.bytesPerOp)
  const ratios: Partial<Record<Metric, number>> = {}
  for (const metric of ALL_METRICS) {
    const sv = metricValue(s, metric)
    const bv = metricValue(b, metric)
    if (sv !== undefined && bv !== undefined && bv !== 0) {
      ratios[metric] = sv / bv
    }
  }
  const result: CaseResult = { name: bench.name, metrics: bench.metrics, ...(bench.figure === undefined ? {} : { figure: bench.figure }), subject: s, baseline: b, ratios, budget }
  if (bench.description !== undefined) {
    result.description = bench.description
  }
  return result
}
