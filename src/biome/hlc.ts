/**
 * Hybrid logical clocks (Kulkarni et al. 2014): a timestamp that follows wall time, never
 * goes backwards on one node, and is always later than every timestamp the node has seen.
 * Deployments are ordered by it; ties break on the node's did, so every node orders any
 * two timestamps the same way without talking to anyone.
 */

export interface HlcTime {
  /** ms since the epoch (the largest wall clock seen) */
  readonly wall: number
  /** orders events within the same `wall` */
  readonly logical: number
  /** did of the clock that made it: the last tie-breaker */
  readonly node: string
}

/** Most a remote timestamp may run ahead of our wall clock before we refuse it (ms) */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000

/** Negative when `a` is earlier than `b`, 0 when equal, positive when later */
export function compareHlc (a: HlcTime, b: HlcTime): number {
  if (a.wall !== b.wall) {
    return a.wall < b.wall ? -1 : 1
  }
  if (a.logical !== b.logical) {
    return a.logical < b.logical ? -1 : 1
  }
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0
}

/** `2026-11-29T04:40:00.123Z+2@did:key:z6Mk…` */
export function formatHlc (t: HlcTime): string {
  return `${new Date(t.wall).toISOString()}+${t.logical}@${t.node}`
}

export function isHlcTime (value: unknown): value is HlcTime {
  const t = value as Partial<HlcTime> | null
  return typeof t === 'object' && t !== null &&
    Number.isSafeInteger(t.wall) && (t.wall ?? -1) >= 0 &&
    Number.isSafeInteger(t.logical) && (t.logical ?? -1) >= 0 &&
    typeof t.node === 'string' && t.node.length > 0
}

export class HybridClock {
  readonly #node: string
  readonly #wallClock: () => number
  #last: { wall: number, logical: number } = { wall: 0, logical: 0 }

  constructor (node: string, wallClock: () => number = Date.now) {
    this.#node = node
    this.#wallClock = wallClock
  }

  /** A timestamp later than every one this clock made or observed */
  now (): HlcTime {
    const wall = this.#wallClock()
    this.#last = wall > this.#last.wall ? { wall, logical: 0 } : { wall: this.#last.wall, logical: this.#last.logical + 1 }
    return { ...this.#last, node: this.#node }
  }

  /**
   * Take in a timestamp from elsewhere, so the next `now()` is later than it.
   *
   * @throws RangeError when it runs more than {@link MAX_CLOCK_SKEW_MS} ahead of our wall clock
   */
  observe (remote: HlcTime): void {
    const wall = this.#wallClock()
    if (remote.wall - wall > MAX_CLOCK_SKEW_MS) {
      throw new RangeError(`Refusing a timestamp ${remote.wall - wall} ms ahead of this node's clock (${formatHlc(remote)}): check the clocks`)
    }
    const top = Math.max(wall, this.#last.wall, remote.wall)
    let logical = 0
    if (top === this.#last.wall && top === remote.wall) {
      logical = Math.max(this.#last.logical, remote.logical) + 1
    } else if (top === this.#last.wall) {
      logical = this.#last.logical + 1
    } else if (top === remote.wall) {
      logical = remote.logical + 1
    }
    this.#last = { wall: top, logical }
  }
}
