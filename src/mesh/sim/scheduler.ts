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

/** A queued timer or delivery */
export interface ScheduledEvent {
  at: number
  seq: number
  fn: (() => void) | undefined
  owner: Owner | undefined
  /** its place in the heap, -1 once run or cancelled */
  index: number
}

/** The first virtual instant: 2026-01-01, so that incarnations look like real ones on the wire */
export const SIM_EPOCH_MS = Date.UTC(2026, 0, 1)

function earlier (a: ScheduledEvent, b: ScheduledEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

async function turn (): Promise<void> {
  await new Promise<void>((resolve) => { setImmediate(resolve) })
}

/**
 * A binary heap of events in (time, insertion) order. A cancelled timer leaves the heap at
 * once (most timers are: a probe's timeout is cleared by its ack), so that it does not
 * live on until its time and age into the old generation of the garbage collector.
 */
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

  /** events queued */
  get queued (): number {
    return this.#heap.length
  }

  /** run `fn` `ms` from now (at least 1 ms, as Node's timers), unless `owner` stopped running by then */
  schedule (ms: number, fn: () => void, owner?: Owner): ScheduledEvent {
    return this.at(this.#now + Math.max(1, ms), fn, owner)
  }

  /** run `fn` at virtual time `at` (not before now) */
  at (at: number, fn: () => void, owner?: Owner): ScheduledEvent {
    const event: ScheduledEvent = { at: Math.max(at, this.#now), seq: this.#seq++, fn, owner, index: this.#heap.length }
    this.#heap.push(event)
    this.#up(event.index)
    return event
  }

  /** take `event` out of the queue (it will not run) */
  cancel (event: ScheduledEvent): void {
    event.fn = undefined
    const i = event.index
    if (i < 0) {
      return
    }
    event.index = -1
    const heap = this.#heap
    const last = heap.pop() as ScheduledEvent
    if (i < heap.length) {
      heap[i] = last
      last.index = i
      this.#down(i)
      this.#up(last.index)
    }
  }

  #up (start: number): void {
    const heap = this.#heap
    const event = heap[start] as ScheduledEvent
    let i = start
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = heap[parent] as ScheduledEvent
      if (!earlier(event, p)) {
        break
      }
      heap[i] = p
      p.index = i
      i = parent
    }
    heap[i] = event
    event.index = i
  }

  #down (start: number): void {
    const heap = this.#heap
    const n = heap.length
    const event = heap[start] as ScheduledEvent
    let i = start
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) {
        break
      }
      const r = l + 1
      const child = r < n && earlier(heap[r] as ScheduledEvent, heap[l] as ScheduledEvent) ? r : l
      const c = heap[child] as ScheduledEvent
      if (!earlier(c, event)) {
        break
      }
      heap[i] = c
      c.index = i
      i = child
    }
    heap[i] = event
    event.index = i
  }

  #pop (): ScheduledEvent | undefined {
    const heap = this.#heap
    const top = heap[0]
    if (top === undefined) {
      return undefined
    }
    top.index = -1
    const last = heap.pop() as ScheduledEvent
    if (heap.length > 0) {
      heap[0] = last
      last.index = 0
      this.#down(0)
    }
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
          this.cancel(timer as ScheduledEvent)
        }
      },
      random: () => this.#random.next()
    }
  }
}
