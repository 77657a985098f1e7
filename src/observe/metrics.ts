/**
 * Metrics: counters and histograms with labels, rendered in the Prometheus text
 * exposition format (version 0.0.4). Histograms keep exact counts in fixed buckets for
 * Prometheus and a bounded reservoir of recent samples for percentiles (P50/P99).
 */

export type Labels = Readonly<Record<string, string>>

/** Keys of label objects seen before: a caller that reuses its labels pays the sort once */
const KEYS = new WeakMap<Labels, string>()

function labelKey (labels: Labels): string {
  let key = KEYS.get(labels)
  if (key === undefined) {
    key = Object.keys(labels).sort().map((k) => `${k}=${labels[k] ?? ''}`).join(',')
    if (Object.isFrozen(labels)) {
      KEYS.set(labels, key)
    }
  }
  return key
}

function renderLabels (labels: Labels, extra: Labels = {}): string {
  const all = { ...labels, ...extra }
  const keys = Object.keys(all).sort()
  if (keys.length === 0) {
    return ''
  }
  return `{${keys.map((k) => `${k}="${(all[k] ?? '').replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`).join(',')}}`
}

function formatNumber (value: number): string {
  if (value === Infinity) {
    return '+Inf'
  }
  return Number.isInteger(value) ? String(value) : String(Math.round(value * 1e6) / 1e6)
}

export class Counter {
  readonly name: string
  readonly help: string
  readonly #values = new Map<string, { labels: Labels, value: number }>()

  constructor (name: string, help: string) {
    this.name = name
    this.help = help
  }

  inc (labels: Labels = {}, by = 1): void {
    const key = labelKey(labels)
    const entry = this.#values.get(key)
    if (entry === undefined) {
      this.#values.set(key, { labels, value: by })
    } else {
      entry.value += by
    }
  }

  get (labels: Labels = {}): number {
    return this.#values.get(labelKey(labels))?.value ?? 0
  }

  /** The sum over every series whose labels include all of `match` */
  sum (match: Labels = {}): number {
    let total = 0
    for (const { labels, value } of this.#values.values()) {
      if (Object.entries(match).every(([k, v]) => labels[k] === v)) {
        total += value
      }
    }
    return total
  }

  /** Every series: its labels and value (for an exporter) */
  series (): Array<{ readonly labels: Labels, readonly value: number }> {
    return [...this.#values.values()].map(({ labels, value }) => ({ labels, value }))
  }

  render (): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`
    for (const { labels, value } of this.#values.values()) {
      out += `${this.name}${renderLabels(labels)} ${formatNumber(value)}\n`
    }
    return out
  }
}

/** Bucket bounds for durations in ms: 0.05 ms … 30 s */
export const MS_BUCKETS: readonly number[] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000]
/** Bucket bounds for sizes in bytes: 64 KiB … 4 GiB */
export const BYTE_BUCKETS: readonly number[] = [2 ** 16, 2 ** 18, 2 ** 20, 2 ** 22, 2 ** 24, 2 ** 26, 2 ** 28, 2 ** 30, 2 ** 32]

class Series {
  readonly labels: Labels
  readonly counts: number[]
  sum = 0
  count = 0
  /** the most recent samples, for percentiles */
  readonly recent: number[] = []
  next = 0

  constructor (labels: Labels, buckets: number) {
    this.labels = labels
    this.counts = new Array<number>(buckets).fill(0)
  }
}

export interface Summary {
  readonly count: number
  readonly p50: number
  readonly p99: number
  readonly mean: number
  readonly max: number
}

export class Histogram {
  readonly name: string
  readonly help: string
  readonly #buckets: readonly number[]
  readonly #window: number
  readonly #series = new Map<string, Series>()

  /** `window`: recent samples kept per series for percentiles (default 4096) */
  constructor (name: string, help: string, buckets: readonly number[] = MS_BUCKETS, window = 4096) {
    this.name = name
    this.help = help
    this.#buckets = buckets
    this.#window = window
  }

  observe (value: number, labels: Labels = {}): void {
    const key = labelKey(labels)
    let series = this.#series.get(key)
    if (series === undefined) {
      series = new Series(labels, this.#buckets.length)
      this.#series.set(key, series)
    }
    series.sum += value
    series.count++
    const index = this.#buckets.findIndex((bound) => value <= bound)
    if (index !== -1) {
      series.counts[index] = (series.counts[index] ?? 0) + 1
    }
    if (series.recent.length < this.#window) {
      series.recent.push(value)
    } else {
      series.recent[series.next] = value
      series.next = (series.next + 1) % this.#window
    }
  }

  /** P50/P99/mean/max over the recent window of one series */
  summary (labels: Labels = {}): Summary | undefined {
    const series = this.#series.get(labelKey(labels))
    if (series === undefined || series.recent.length === 0) {
      return undefined
    }
    const sorted = [...series.recent].sort((a, b) => a - b)
    const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0
    return { count: series.count, p50: at(0.5), p99: at(0.99), mean: series.sum / series.count, max: sorted[sorted.length - 1] ?? 0 }
  }

  /** The upper bounds of the buckets */
  get buckets (): readonly number[] {
    return this.#buckets
  }

  /**
   * Every series (for an exporter): its labels, its count per bucket (one more than the
   * bounds: the last counts what is above every bound), sum and count
   */
  series (): Array<{ readonly labels: Labels, readonly counts: number[], readonly sum: number, readonly count: number }> {
    return [...this.#series.values()].map((s) => {
      const inBuckets = s.counts.reduce((a, b) => a + b, 0)
      return { labels: s.labels, counts: [...s.counts, s.count - inBuckets], sum: s.sum, count: s.count }
    })
  }

  render (): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`
    for (const series of this.#series.values()) {
      let cumulative = 0
      this.#buckets.forEach((bound, i) => {
        cumulative += series.counts[i] ?? 0
        out += `${this.name}_bucket${renderLabels(series.labels, { le: formatNumber(bound) })} ${cumulative}\n`
      })
      out += `${this.name}_bucket${renderLabels(series.labels, { le: '+Inf' })} ${series.count}\n`
      out += `${this.name}_sum${renderLabels(series.labels)} ${formatNumber(series.sum)}\n`
      out += `${this.name}_count${renderLabels(series.labels)} ${series.count}\n`
    }
    return out
  }
}

/** A set of metrics rendered together */
export class MetricsRegistry {
  readonly #metrics: Array<Counter | Histogram> = []

  counter (name: string, help: string): Counter {
    const metric = new Counter(name, help)
    this.#metrics.push(metric)
    return metric
  }

  histogram (name: string, help: string, buckets?: readonly number[]): Histogram {
    const metric = new Histogram(name, help, buckets)
    this.#metrics.push(metric)
    return metric
  }

  /** Every metric, in the order they were made */
  get all (): ReadonlyArray<Counter | Histogram> {
    return this.#metrics
  }

  /** The Prometheus text exposition of every metric */
  render (): string {
    return this.#metrics.map((m) => m.render()).join('')
  }
}
