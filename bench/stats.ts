/**
 * Small statistics helpers for benchmarks: percentiles, summaries and a bounded sample
 * reservoir. Reusable by any bench (and by tests that report latency figures).
 */

/** Figures that describe a set of samples (in the samples' unit) */
export interface Summary {
  readonly n: number
  readonly min: number
  readonly max: number
  readonly mean: number
  /** sample standard deviation (n − 1); 0 for one sample */
  readonly stddev: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
}

/** An ascending copy of `values` as a Float64Array */
export function sortedCopy (values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values).sort()
}

/**
 * The `p`-th percentile (0–100) of ascending `sorted` samples, interpolating linearly
 * between the two nearest ranks (NumPy's default, Excel's PERCENTILE.INC).
 *
 * @throws {RangeError} if `sorted` is empty or `p` is outside 0–100
 * @example
 * ```ts
 * percentile([1, 2, 3, 4], 50) // 2.5
 * ```
 */
export function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) {
    throw new RangeError('Cannot compute a percentile of no samples')
  }
  if (!(p >= 0 && p <= 100)) {
    throw new RangeError(`Cannot compute percentile ${p}: expected 0 to 100`)
  }
  const rank = (p / 100) * (sorted.length - 1)
  const lower = Math.floor(rank)
  const upper = Math.ceil(rank)
  const low = sorted[lower] as number
  const high = sorted[upper] as number
  return low + (high - low) * (rank - lower)
}

/** The median of `values` (in any order) */
export function median (values: ArrayLike<number>): number {
  return percentile(sortedCopy(values), 50)
}

/**
 * Summary figures of `values` (in any order).
 *
 * @throws {RangeError} if `values` is empty
 */
export function summarize (values: ArrayLike<number>): Summary {
  const sorted = sortedCopy(values)
  const n = sorted.length
  if (n === 0) {
    throw new RangeError('Cannot summarize no samples')
  }
  let sum = 0
  for (const value of sorted) {
    sum += value
  }
  const mean = sum / n
  let squares = 0
  for (const value of sorted) {
    squares += (value - mean) ** 2
  }
  return {
    n,
    min: sorted[0] as number,
    max: sorted[n - 1] as number,
    mean,
    stddev: n > 1 ? Math.sqrt(squares / (n - 1)) : 0,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99)
  }
}

/**
 * A uniform random sample of at most `capacity` values from a stream of any length
 * (Vitter's algorithm R), so that long runs keep bounded memory while percentiles stay
 * unbiased.
 */
export class Reservoir {
  readonly #values: Float64Array
  readonly #random: () => number
  #seen = 0

  /** @param random - a source of uniform numbers in [0, 1); pass a seeded one for repeatable tests */
  constructor (capacity: number, random: () => number = Math.random) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Cannot create a reservoir of ${capacity} samples: expected a positive integer`)
    }
    this.#values = new Float64Array(capacity)
    this.#random = random
  }

  /** How many values were offered */
  get seen (): number {
    return this.#seen
  }

  add (value: number): void {
    if (this.#seen < this.#values.length) {
      this.#values[this.#seen] = value
    } else {
      const slot = Math.floor(this.#random() * (this.#seen + 1))
      if (slot < this.#values.length) {
        this.#values[slot] = value
      }
    }
    this.#seen++
  }

  /** The kept samples (a copy) */
  values (): Float64Array {
    return this.#values.slice(0, Math.min(this.#seen, this.#values.length))
  }
}
