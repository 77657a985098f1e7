/**
 * The membership ring: self and the live members ordered by a hash of their did, a node's
 * monitored successors on it and its Chord-style fingers (see {@link MembershipSettings}).
 */
import { createHash } from 'node:crypto'
import type { MembershipSettings } from './membership.ts'

export function ringHash (did: string): number {
  return createHash('sha256').update(did).digest().readUInt32BE(0)
}

/** shuffle `items` in place with `random` (uniform in [0, 1), e.g. Math.random) */
export function shuffle<T> (random: () => number, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const a = items[i] as T
    items[i] = items[j] as T
    items[j] = a
  }
  return items
}

/**
 * This node's view of the ring, cached until {@link Ring.invalidate} (membership changed).
 * `members` lists the alive/suspect members other than self, not isolated.
 */
export class Ring {
  readonly #did: string
  readonly #members: () => string[]
  readonly #settings: Pick<MembershipSettings, 'monitors'>
  readonly #hashes = new Map<string, number>()
  #order: string[] | undefined
  #fingers: string[] | undefined

  constructor (did: string, members: () => string[], settings: Pick<MembershipSettings, 'monitors'>) {
    this.#did = did
    this.#members = members
    this.#settings = settings
  }

  /** membership changed: order again on next use */
  invalidate (): void {
    this.#order = undefined
  }

  /** a member forgotten for good: drop its cached hash */
  forget (did: string): void {
    this.#hashes.delete(did)
  }

  /** self and the alive/suspect members, ordered by ring hash (cached until membership changes) */
  order (): string[] {
    if (this.#order !== undefined) {
      return this.#order
    }
    const candidates = this.#members()
    candidates.push(this.#did)
    candidates.sort((a, b) => this.#hash(a) - this.#hash(b) || (a < b ? -1 : 1))
    this.#order = candidates
    this.#fingers = undefined
    return candidates
  }

  #hash (did: string): number {
    let h = this.#hashes.get(did)
    if (h === undefined) {
      h = ringHash(did)
      this.#hashes.set(did, h)
    }
    return h
  }

  /**
   * Chord-style broadcast: the arc of the ring from this node up to `until` (a ring
   * position; the whole ring when undefined) is split among the `links` that lie on it.
   * Each gets the part from itself to the next such link (the last: to `until`), and
   * passes the news on only within it, so that with consistent views every node hears it
   * once, in about log2(n) hops, instead of once from each node that links to it.
   */
  arcs (links: readonly string[], until?: number): Array<{ did: string, until: number }> {
    const own = this.#hash(this.#did)
    const distance = (h: number): number => (h - own + 2 ** 32) % 2 ** 32
    const limit = until === undefined ? 2 ** 32 : distance(until)
    const on = [...new Set(links)]
      .map((did) => ({ did, at: distance(this.#hash(did)) }))
      .filter(({ at }) => at > 0 && at < limit)
      .sort((a, b) => a.at - b.at)
    return on.map(({ did }, i) => ({ did, until: i + 1 < on.length ? this.#hash((on[i + 1] as { did: string }).did) : until ?? own }))
  }

  /** the `monitors` ring successors of this node */
  successors (): string[] {
    const candidates = this.order()
    const at = candidates.indexOf(this.#did)
    const out: string[] = []
    for (let i = 1; i < candidates.length && out.length < this.#settings.monitors; i++) {
      out.push(candidates[(at + i) % candidates.length] as string)
    }
    return out
  }

  /**
   * Ring fingers beyond the monitors, Chord style: the first member at or after
   * hash + 2^31, + 2^30, … (distinct ones, about log2(n)). Positions in hash space, not
   * indexes, so a join or a leave changes only the fingers whose interval it falls in.
   */
  fingers (): string[] {
    const ring = this.order()
    if (this.#fingers !== undefined) {
      return this.#fingers
    }
    const hashes = ring.map((did) => this.#hashes.get(did) ?? ringHash(did))
    const own = this.#hashes.get(this.#did) ?? ringHash(this.#did)
    const monitors = new Set(this.successors())
    const out: string[] = []
    for (let bit = 31; bit >= 0; bit--) {
      const target = (own + 2 ** bit) % 2 ** 32
      // first member whose hash is >= target (wrapping)
      let lo = 0
      let hi = hashes.length
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if ((hashes[mid] as number) < target) {
          lo = mid + 1
        } else {
          hi = mid
        }
      }
      const did = ring[lo % ring.length] as string
      if (did === this.#did || monitors.has(did)) {
        break
      }
      if (!out.includes(did)) {
        out.push(did)
      }
    }
    this.#fingers = out
    return out
  }
}
