/**
 * A phi-accrual failure detector (Hayashibara et al. 2004, as in Akka and Cassandra):
 * it keeps a window of heartbeat inter-arrival times and says how suspicious the
 * current silence is as phi = -log10(P(next heartbeat arrives later than now)), with
 * inter-arrivals modelled as a normal distribution. phi 1 ≈ 10 % chance of a mistake,
 * phi 8 ≈ 10⁻⁸.
 */

export interface PhiSettings {
  /** heartbeat inter-arrival samples kept */
  window: number
  /** floor of the standard deviation, in ms, so that a very regular peer is not declared dead by one late heartbeat */
  minStdDevMs: number
  /** extra silence tolerated before phi grows (added to the mean), in ms */
  acceptablePauseMs: number
  /** the inter-arrival time assumed before the first two heartbeats, in ms */
  firstHeartbeatEstimateMs: number
}

export class PhiAccrualDetector {
  readonly #settings: PhiSettings
  readonly #samples: number[] = []
  #next = 0
  #sum = 0
  #sumSquares = 0
  #last: number

  /** `now` is the time monitoring began (counts as a first heartbeat) */
  constructor (settings: PhiSettings, now: number) {
    this.#settings = settings
    this.#last = now
    // seed like Akka: mean = estimate, std dev = estimate / 4
    const mean = settings.firstHeartbeatEstimateMs
    const dev = mean / 4
    this.#add(mean - dev)
    this.#add(mean + dev)
  }

  /** time of the last heartbeat */
  get last (): number {
    return this.#last
  }

  heartbeat (now: number): void {
    const interval = now - this.#last
    this.#last = now
    if (interval > 0) {
      this.#add(interval)
    }
  }

  #add (interval: number): void {
    if (this.#samples.length < this.#settings.window) {
      this.#samples.push(interval)
    } else {
      const old = this.#samples[this.#next] as number
      this.#sum -= old
      this.#sumSquares -= old * old
      this.#samples[this.#next] = interval
      this.#next = (this.#next + 1) % this.#settings.window
    }
    this.#sum += interval
    this.#sumSquares += interval * interval
  }

  /** phi at time `now` (0 right after a heartbeat, growing with silence) */
  phi (now: number): number {
    const n = this.#samples.length
    const mean = this.#sum / n
    const variance = Math.max(0, this.#sumSquares / n - mean * mean)
    const stdDev = Math.max(Math.sqrt(variance), this.#settings.minStdDevMs)
    const elapsed = now - this.#last
    const y = (elapsed - (mean + this.#settings.acceptablePauseMs)) / stdDev
    // logistic approximation of the normal CDF (as in Akka's PhiAccrualFailureDetector)
    const e = Math.exp(-y * (1.5976 + 0.070566 * y * y))
    if (elapsed > mean + this.#settings.acceptablePauseMs) {
      return -Math.log10(e / (1 + e))
    }
    return -Math.log10(1 - 1 / (1 + e))
  }
}
