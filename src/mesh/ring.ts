/**
 * The membership ring: self and the live members ordered by a hash of their did, a node's
 * monitored successors on it and its Chord-style fingers (see {@link MembershipSettings}).
 */
import { createHash } from 'node:crypto'
import type { MembershipSettings } from './membership.ts'

export function ringHash (did: string): number {
  return createHash('sha256').update(did).digest().readUInt32BE(0)
}

/**
 * Ring positions of the dids seen in this process: a pure function of the did, so every
 * node of the process shares them (a simulation runs thousands); a did forgotten by one
 * node is hashed again by the next that needs it
 */
const HASHES = new Map<string, number>()

/** `did`'s position on the ring (ringHash, from the process-wide cache) */
export function ringPosition (did: string): number {
  return hashOf(did)
}

function hashOf (did: string): number {
  let h = HASHES.get(did)
  if (h === undefined) {
    h = ringHash(did)
    HASHES.set(did, h)
  }
  return h
}

/** ring sort keys hold the member's index below this */
const INDEX_SPAN = 2 ** 20

/** ring order: by hash, then by did */
function before (ha: number, a: string, hb: number, b: string): boolean {
  return ha < hb || (ha === hb && a < b)
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
 * This node's view of the ring: built from `members` (the alive/suspect members other than
 * self, not isolated) on first use and after {@link Ring.invalidate}, and kept up to date
 * by {@link Ring.add} and {@link Ring.remove} in between (a binary search and a splice, not
 * a sort of the whole membership at every change).
 */
export class Ring {
  readonly #did: string
  readonly #members: () => string[]
  readonly #settings: Pick<MembershipSettings, 'monitors'>
  #order: string[] | undefined
  /** the ring hash of each did of #order, in the same order */
  #orderHashes: number[] = []
  #fingers: string[] | undefined
  #successors: string[] | undefined

  constructor (did: string, members: () => string[], settings: Pick<MembershipSettings, 'monitors'>) {
    this.#did = did
    this.#members = members
    this.#settings = settings
  }

  /** membership changed in a way add/remove do not tell (isolation, a restart): order again on next use */
  invalidate (): void {
    this.#order = undefined
  }

  /** a member forgotten for good: drop its cached hash */
  forget (did: string): void {
    HASHES.delete(did)
  }

  /** where `did` is or would go in the order */
  #position (did: string, h: number): number {
    const order = this.#order ?? []
    const hashes = this.#orderHashes
    let lo = 0
    let hi = order.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (before(hashes[mid] as number, order[mid] as string, h, did)) {
        lo = mid + 1
      } else {
        hi = mid
      }
    }
    return lo
  }

  /** `did` became alive or suspect */
  add (did: string): void {
    if (this.#order === undefined || did === this.#did) {
      return
    }
    const h = hashOf(did)
    const at = this.#position(did, h)
    if (this.#order[at] !== did) {
      this.#order.splice(at, 0, did)
      this.#orderHashes.splice(at, 0, h)
      this.#fingers = undefined
      this.#successors = undefined
    }
  }

  /** `did` is no longer alive or suspect */
  remove (did: string): void {
    if (this.#order === undefined || did === this.#did) {
      return
    }
    const at = this.#position(did, hashOf(did))
    if (this.#order[at] === did) {
      this.#order.splice(at, 1)
      this.#orderHashes.splice(at, 1)
      this.#fingers = undefined
      this.#successors = undefined
    }
  }

  /** self and the alive/suspect members, ordered by ring hash (cached until membership changes) */
  order (): string[] {
    if (this.#order !== undefined) {
      return this.#order
    }
    const candidates = this.#members()
    candidates.push(this.#did)
    if (candidates.length >= INDEX_SPAN) {
      throw new RangeError(`Cannot order the ring: ${candidates.length} members exceeds ${INDEX_SPAN}`)
    }
    // sort numbers, not objects: hash × 2^20 + index is exact in a double (a simulation
    // orders thousands of rings of thousands); equal hashes are then ordered by did
    const n = candidates.length
    const keys = new Float64Array(n)
    for (let i = 0; i < n; i++) {
      keys[i] = hashOf(candidates[i] as string) * INDEX_SPAN + i
    }
    keys.sort()
    const order: string[] = new Array<string>(n)
    const hashes: number[] = new Array<number>(n)
    for (let i = 0; i < n; i++) {
      const key = keys[i] as number
      const index = key % INDEX_SPAN
      order[i] = candidates[index] as string
      hashes[i] = (key - index) / INDEX_SPAN
    }
    for (let i = 1; i < n; i++) {
      if (hashes[i] === hashes[i - 1] && (order[i] as string) < (order[i - 1] as string)) {
        // insertion step within a run of equal hashes (32-bit collisions are rare)
        let j = i
        while (j > 0 && hashes[j] === hashes[j - 1] && (order[j] as string) < (order[j - 1] as string)) {
          const t = order[j] as string
          order[j] = order[j - 1] as string
          order[j - 1] = t
          j--
        }
      }
    }
    this.#order = order
    this.#orderHashes = hashes
    this.#fingers = undefined
    this.#successors = undefined
    return this.#order
  }

  #hash (did: string): number {
    return hashOf(did)
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
    if (this.#successors !== undefined) {
      return this.#successors
    }
    const at = this.#position(this.#did, hashOf(this.#did))
    const out: string[] = []
    for (let i = 1; i < candidates.length && out.length < this.#settings.monitors; i++) {
      out.push(candidates[(at + i) % candidates.length] as string)
    }
    this.#successors = out
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
    const hashes = this.#orderHashes
    const own = hashOf(this.#did)
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
