/**
 * Time and chance as the membership protocol sees them. A node uses the real ones
 * ({@link REAL_CLOCK}); a simulation gives every {@link Swim} a virtual clock and a seeded
 * random source, so that thousands of nodes run the real protocol in one process,
 * reproducibly and faster than real time.
 */

/** The clock and timers the membership protocol uses */
export interface Clock {
  /** wall-clock ms (as Date.now()) */
  now: () => number
  /** ms for measuring durations (as performance.now()) */
  monotonic: () => number
  /** run `fn` once after `ms`; the timer does not keep the process alive */
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (timer: unknown) => void
  /** uniform in [0, 1) (as Math.random()) */
  random: () => number
}

/** Date.now(), performance.now(), unref'd Node timers and Math.random() */
export const REAL_CLOCK: Clock = Object.freeze({
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms).unref(),
  clearTimeout: (timer: unknown) => { clearTimeout(timer as NodeJS.Timeout | undefined) },
  random: () => Math.random()
})
