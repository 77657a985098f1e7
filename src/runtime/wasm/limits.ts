/**
 * Per-brane limits that are accounted rather than patched: the CPU quota (main
 * thread) and the per-request log budget (worker thread). `mem_max` lives in
 * memory-cap.ts, the deadline in worker-brane.ts.
 */

/** Options of {@link CpuThrottle} */
export interface CpuThrottleInit {
  /** fraction of one core, e.g. 0.25; `Infinity` turns the throttle off */
  readonly quota: number
  /** @default 100 (as Linux CFS's period: a brane over its quota waits tens of ms, not a second) */
  readonly windowMs?: number
  /** the clock, in ms (tests pass their own) @default performance.now */
  readonly now?: () => number
}

/**
 * The `cpu_quota` limit, as admission control over fixed windows.
 *
 * Semantics: time is cut into windows of `windowMs` (100 ms by default) and a brane may
 * use `quota × windowMs` ms of CPU per window (its budget). Each call's CPU time is
 * charged when the call ends, to the window it ends in. While the current window's
 * charge is at or above the budget, no new call of the brane is admitted: requests
 * wait in the brane's queue until a window opens with budget left. Overuse is debt:
 * at each window boundary the charge drops by one budget (not to zero), so a call
 * that used 5× the budget keeps the brane waiting for about 4 more windows. Over any
 * long stretch a brane therefore uses at most `quota` cores on average, plus one
 * call's overshoot per concurrently running worker. A running call is never
 * preempted for quota (the deadline bounds a single call), and other branes are
 * never affected.
 */
export class CpuThrottle {
  readonly #budget: number
  readonly #windowMs: number
  readonly #now: () => number
  #windowStart: number
  #charged = 0

  constructor (init: CpuThrottleInit) {
    if (!(init.quota > 0)) {
      throw new RangeError(`Cannot throttle CPU: quota must be above 0 (got ${init.quota})`)
    }
    this.#windowMs = init.windowMs ?? 100
    if (!(this.#windowMs > 0)) {
      throw new RangeError(`Cannot throttle CPU: window must be above 0 ms (got ${this.#windowMs})`)
    }
    this.#budget = init.quota * this.#windowMs
    this.#now = init.now ?? (() => performance.now())
    this.#windowStart = this.#now()
  }

  /** CPU ms a window allows */
  get budgetMs (): number {
    return this.#budget
  }

  /** CPU ms charged to the current window (including debt carried in) */
  get chargedMs (): number {
    this.#roll()
    return this.#charged
  }

  /** Adds a finished call's CPU time */
  charge (cpuMs: number): void {
    this.#roll()
    if (Number.isFinite(cpuMs) && cpuMs > 0) {
      this.#charged += cpuMs
    }
  }

  /** 0 when a call may start now, else the ms until the next window that may admit one */
  waitMs (): number {
    if (this.#budget === Infinity) {
      return 0
    }
    this.#roll()
    if (this.#charged < this.#budget) {
      return 0
    }
    const windows = Math.ceil((this.#charged - this.#budget + 1e-9) / this.#budget)
    return Math.max(1, this.#windowStart + windows * this.#windowMs - this.#now())
  }

  #roll (): void {
    const now = this.#now()
    const elapsed = Math.floor((now - this.#windowStart) / this.#windowMs)
    if (elapsed > 0) {
      this.#windowStart += elapsed * this.#windowMs
      this.#charged = Math.max(0, this.#charged - elapsed * this.#budget)
    }
  }
}

/** Options of {@link LogBudget} */
export interface LogBudgetInit {
  /** most bytes of stdout + stderr kept per request (each line costs its length + 1) */
  readonly maxBytes: number
  /** most lines kept per request */
  readonly maxLines: number
}

/**
 * What one request may write to the brane's log: past either cap, lines are dropped
 * and one marker line says so. Counts UTF-16 code units of the decoded line (close
 * enough to bytes for a cap).
 */
export class LogBudget {
  readonly #init: LogBudgetInit
  #bytes = 0
  #lines = 0
  #dropped = 0

  constructor (init: LogBudgetInit) {
    this.#init = init
  }

  /** whether `line` may go to the log; the first refusal is the caller's cue to write the marker */
  take (line: string): boolean {
    if (this.#dropped > 0 || this.#bytes + line.length + 1 > this.#init.maxBytes || this.#lines + 1 > this.#init.maxLines) {
      this.#dropped++
      return false
    }
    this.#bytes += line.length + 1
    this.#lines++
    return true
  }

  /** lines dropped so far */
  get dropped (): number {
    return this.#dropped
  }

  /** the one line that stands for everything dropped */
  marker (): string {
    return `[omega] log truncated: this request wrote more than ${this.#init.maxBytes} bytes or ${this.#init.maxLines} lines to stdout/stderr; the rest was dropped`
  }
}
