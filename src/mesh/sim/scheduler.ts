/**
 * The virtual clock of a simulation: one queue of timed events (timers and message
 * deliveries) for every node, run in time order. Promise continuations (microtasks) run
 * between events of different milliseconds, as they would between the real event loop's
 * turns; within one millisecond they may run after the next event (like Date.now(), the
 * clock reads whole milliseconds).
 */
import type { Clock } from '../clock.ts'
import type { Prng } from './prng.ts'

/** Whose events these are: none run once the owner stopped running (a crashed process) */
export interface Owner {
  readonly running: boolean
}

/** A queued timer or delivery; clearing it sets `fn` to undefined */
export interface ScheduledEvent {
  at: number
  seq: number
  fn: (() => void) | undefined
  owner: Owner | undefined
}

/** The first virtual instant: 2026-01-01, so that incarnations look like real ones on the wire */
export const SIM_EPOCH_MS = Date.UTC(2026, 0, 1)

function earlier (a: ScheduledEvent, b: ScheduledEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

async function turn (): Promise<void> {
  await new Promise<void>((resolve) => { setImmediate(resolve) })
}

/** A binary heap of events in (time, insertion) order */
export class Scheduler {
  readonly #heap: ScheduledEvent[] = []
  readonly #random: Prng
  #now = SIM_EPOCH_MS
  #seq = 0
  #ran = 0

  constructor (random: Prng) {
    this.#random = random
  }

  /** virtual ms since the epoch (fractional) */
  get now (): number {
    return this.#now
  }

  /** events run so far */
  get ran (): number {
    return this.#ran
  }

  /** events queued (cancelled timers included until their time comes) */
  get queued (): number {
    return this.#heap.length
  }

  /** run `fn` `ms` from now (at least 1 ms, as Node's timers), unless `owner` stopped running by then */
  schedule (ms: number, fn: () => void, owner?: Owner): ScheduledEvent {
    return this.at(this.#now + Math.max(1, ms), fn, owner)
  }

  /** run `fn` at virtual time `at` (not before now) */
  at (at: number, fn: () => void, owner?: Owner): ScheduledEvent {
    const event: ScheduledEvent = { at: Math.max(at, this.#now), seq: this.#seq++, fn, owner }
    const heap = this.#heap
    heap.push(event)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = heap[parent] as ScheduledEvent
      if (!earlier(event, p)) {
        break
      }
      heap[i] = p
      i = parent
    }
    heap[i] = event
    return event
  }

  #pop (): ScheduledEvent | undefined {
    const heap = this.#heap
    const top = heap[0]
    const last = heap.pop()
    if (top === undefined || last === undefined || heap.length === 0) {
      return top
    }
    let i = 0
    const n = heap.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) {
        break
      }
      const r = l + 1
      const child = r < n && earlier(heap[r] as ScheduledEvent, heap[l] as ScheduledEvent) ? r : l
      const c = heap[child] as ScheduledEvent
      if (!earlier(c, last)) {
        break
      }
      heap[i] = c
      i = child
    }
    heap[i] = last
    return top
  }

  /** run every event up to virtual time `until` (absolute), then set the clock to it */
  async runUntil (until: number): Promise<void> {
    const heap = this.#heap
    while (heap.length > 0 && (heap[0] as ScheduledEvent).at <= until) {
      const bucketEnd = Math.floor((heap[0] as ScheduledEvent).at) + 1
      while (heap.length > 0 && (heap[0] as ScheduledEvent).at < bucketEnd && (heap[0] as ScheduledEvent).at <= until) {
        const event = this.#pop() as ScheduledEvent
        const fn = event.fn
        if (fn === undefined || (event.owner !== undefined && !event.owner.running)) {
          continue
        }
        event.fn = undefined
        this.#now = event.at
        this.#ran++
        fn()
      }
      // let the promise continuations of this millisecond run before time moves on
      await turn()
    }
    this.#now = Math.max(this.#now, until)
  }

  /** the {@link Clock} a node's protocol sees: timers die with their `owner` */
  clock (owner: Owner): Clock {
    return {
      now: () => Math.floor(this.#now),
      monotonic: () => this.#now,
      setTimeout: (fn, ms) => this.schedule(ms, fn, owner),
      clearTimeout: (timer) => {
        if (timer !== undefined && timer !== null) {
          (timer as ScheduledEvent).fn = undefined
        }
      },
      random: () => this.#random.next()
    }
  }
}
