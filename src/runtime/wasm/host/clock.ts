/**
 * `clock`: wasi:clocks wall-clock and monotonic-clock at the granted resolution, and
 * the virtual clock of deterministic branes.
 */
import { readyPollable, shim, type ImportInterface, type Pollable } from './shim.ts'
import { guestWaits } from './waits.ts'

/** A granted clock resolution */
export type ClockResolution = 'ns' | 'us' | 'ms' | 's'

/** Nanoseconds per unit of each resolution */
export const RESOLUTION_NS: Readonly<Record<ClockResolution, bigint>> = { ns: 1n, us: 1_000n, ms: 1_000_000n, s: 1_000_000_000n }

/** 2000-01-01T00:00:00Z: where the wall clock of a deterministic instance starts */
export const VIRTUAL_EPOCH_SECONDS = 946_684_800n

/** How far the virtual clock moves on every read: 1 ms */
export const VIRTUAL_STEP_NS = 1_000_000n

const NS_PER_S = 1_000_000_000n

interface Datetime { seconds: bigint, nanoseconds: number }

/** Where an instance's clocks read time from */
interface TimeSource {
  /** monotonic nanoseconds */
  monotonic: () => bigint
  /** wall-clock nanoseconds since the Unix epoch */
  wall: () => bigint
  /** a pollable ready `ns` nanoseconds from now */
  after: (ns: bigint) => Pollable
}

const REAL_TIME: TimeSource = {
  monotonic: () => process.hrtime.bigint(),
  wall: () => BigInt(Date.now()) * 1_000_000n,
  after: (ns) => {
    if (ns > 0n) {
      guestWaits() // the guest subscribes to block on it: a sleep
    }
    return (shim.monotonicClock['subscribeDuration'] as (d: bigint) => Pollable)(ns)
  }
}

/**
 * A clock that ignores real time: monotonic starts at 0 and wall at
 * {@link VIRTUAL_EPOCH_SECONDS}; every read moves both by {@link VIRTUAL_STEP_NS}, and
 * waiting moves them by the time waited (at once). The same calls give the same times.
 */
function virtualTime (): TimeSource {
  let elapsed = 0n
  return {
    monotonic: () => {
      elapsed += VIRTUAL_STEP_NS
      return elapsed
    },
    wall: () => {
      elapsed += VIRTUAL_STEP_NS
      return VIRTUAL_EPOCH_SECONDS * NS_PER_S + elapsed
    },
    after: (ns) => {
      if (ns > 0n) {
        elapsed += ns
      }
      return readyPollable()
    }
  }
}

/** Options of {@link clocksFor} */
export interface ClocksOptions {
  /** use a virtual clock (deterministic execution) */
  readonly virtual?: boolean
}

/**
 * wasi:clocks/monotonic-clock and wall-clock for one instance. Every time a guest
 * reads is rounded DOWN to `resolution`, and `resolution()` reports it.
 */
export function clocksFor (resolution: ClockResolution, options: ClocksOptions = {}): { monotonic: ImportInterface, wall: ImportInterface } {
  const step = RESOLUTION_NS[resolution]
  const source = options.virtual === true ? virtualTime() : REAL_TIME
  const floor = (ns: bigint): bigint => ns - (ns % step)
  const monotonic: ImportInterface = {
    resolution: (): bigint => step,
    now: (): bigint => floor(source.monotonic()),
    subscribeDuration: (duration: bigint): Pollable => source.after(BigInt(duration)),
    subscribeInstant: (instant: bigint): Pollable => {
      // instants are in this clock's time: wait until it reads `instant`
      const now = source.monotonic()
      return source.after(BigInt(instant) - now)
    }
  }
  const wall: ImportInterface = {
    resolution: (): Datetime => toDatetime(step),
    now: (): Datetime => toDatetime(floor(source.wall()))
  }
  return { monotonic, wall }
}

function toDatetime (ns: bigint): Datetime {
  return { seconds: ns / NS_PER_S, nanoseconds: Number(ns % NS_PER_S) }
}
