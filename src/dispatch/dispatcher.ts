/**
 * The dispatcher: routes emitted events along the manifest's edges through the durable
 * queue to the target branes.
 *
 * - An emit is acknowledged only after the event and one delivery per matching edge are
 *   in the queue (durable).
 * - Group commit: the emits, acknowledgements and claims of one event-loop turn are one
 *   transaction; the deliveries it claims start once it has committed.
 * - Per-edge order: an edge has at most one delivery (or batch) in flight and takes them
 *   in emit order; a failing delivery holds its edge until it succeeds or is
 *   dead-lettered. A busy edge to a target with `lingerMs` waits that long for a fuller
 *   batch.
 * - Priority: each target brane has a number of delivery slots; when several inbound
 *   edges have work, the one with the highest `priority` goes first (ties: the edge
 *   served least recently).
 * - A delivery that fails is retried with back-off and dead-lettered after the last
 *   attempt; one its consumer rejects (`RejectedEventError`) is dead-lettered at once.
 * - Back-pressure: when a brane's outgoing edges hold more than `highWatermark`
 *   undelivered events, its emits wait until they drain below `lowWatermark`, so a slow
 *   consumer slows its producers instead of growing anything without bound.
 * - Replication (`durability = "replicated"` in a mesh): with a `replicate` component an
 *   emit is acknowledged only once that also holds a copy of each new delivery (on another
 *   node); `settled` hears of every delivery that is over (acknowledged or dead-lettered),
 *   so that the copies can go.
 */
import { blake3Hex } from '../identity/index.ts'
import { UnknownTopicError } from '../errors.ts'

export { UnknownTopicError }
import type { AbortOptions, BraneEvent, Logger, Startable } from '../interfaces/index.ts'
import type { Edge } from '../manifest/index.ts'
import type { Delivery, DeliveryCopy, DeliveryTarget, EventQueue, Hop, QueuedEvent } from './queue.ts'

export type { BraneEvent }

/** Something that handles events for one brane */
export interface EventTarget {
  deliver: (event: BraneEvent, options?: AbortOptions) => Promise<void>
  /**
   * Delivers several events of one edge in order, in one round trip; once one fails the
   * rest are not started and fail with an error named `SkippedEventError`. One result per
   * event, in order. Optional: targets without it get one event at a time.
   */
  deliverBatch?: (events: readonly BraneEvent[]) => Promise<Array<PromiseSettledResult<void>>>
  /** most events per `deliverBatch` call (e.g. more to another node than to a local worker). @default the dispatcher's `batch` */
  maxBatch?: number
  /**
   * While an edge to this target is busy (its last delivery ended less than this long
   * ago), wait up to this long for a full batch before handing over a smaller one (ms).
   * For targets whose round trip costs more than waiting (another node): an edge that was
   * idle still delivers at once. @default 0
   */
  lingerMs?: number
}

export interface DispatcherComponents {
  readonly queue: EventQueue
  /** the handler of a brane, when it runs here */
  readonly target: (brane: string) => EventTarget | undefined
  readonly logger: Logger
  /** keeps a copy of new deliveries elsewhere; an emit resolves once it has */
  readonly replicate?: (copies: readonly DeliveryCopy[], options: AbortOptions) => Promise<void>
  /** deliveries that are over: acknowledged, or dead-lettered */
  readonly settled?: (over: ReadonlyArray<{ readonly eventId: string, readonly edge: string }>) => void
}

export interface DispatcherInit {
  readonly edges: readonly Edge[]
  /** deliveries running at once per target brane. @default 4 */
  slotsPerTarget?: number
  /**
   * Most deliveries of one edge handed over in one round trip, to a target that takes
   * batches (handled in order, the rest not started once one fails). @default 16
   */
  batch?: number
  /** undelivered events on a brane's outgoing edges before its emits wait. @default 10_000 */
  highWatermark?: number
  /** emits resume below this. @default highWatermark / 2 */
  lowWatermark?: number
}

export interface EmitOptions extends AbortOptions {
  /** continue this trace (default: a new trace starting at this event) */
  traceId?: string
  /**
   * the W3C trace context of the span that emits (OpenTelemetry export on): kept with the
   * event, the parent of its deliveries' spans
   */
  traceparent?: string
}

export function edgeKey (edge: Pick<Edge, 'from' | 'to' | 'on'>): string {
  return `${edge.from}>${edge.to}:${edge.on}`
}

interface EdgeState {
  readonly key: string
  readonly edge: Edge
  inFlight: boolean
  lastServed: number
  /** when its last delivery (or batch) ended, ms since the epoch */
  settledAt: number
}

interface TargetState {
  readonly brane: string
  readonly edges: EdgeState[]
  busy: number
  timer: NodeJS.Timeout | undefined
  /** when `timer` fires, ms since the epoch */
  timerAt: number
}

interface Unwritten {
  readonly event: QueuedEvent
  readonly targets: DeliveryTarget[]
  readonly edges: readonly EdgeState[]
  readonly resolve: () => void
  readonly reject: (err: Error) => void
}

interface Settle {
  readonly target: TargetState
  readonly state: EdgeState
  readonly bookkeeping: (over: Over[]) => void
}

/** A delivery that is over: acknowledged or dead-lettered */
interface Over {
  readonly eventId: string
  readonly edge: string
}

interface Deferred {
  readonly target: TargetState
  readonly state: EdgeState
  readonly start: () => void
}

let sequence = 0

/** How soon a delivery whose target was unavailable is tried again (ms) */
const UNAVAILABLE_RETRY_MS = 250

export class Dispatcher implements Startable {
  readonly #queue: EventQueue
  readonly #target: (brane: string) => EventTarget | undefined
  readonly #log: Logger
  readonly #replicate: DispatcherComponents['replicate']
  readonly #settledHook: DispatcherComponents['settled']
  readonly #slots: number
  readonly #batch: number
  readonly #high: number
  readonly #low: number
  readonly #bySource = new Map<string, EdgeState[]>()
  readonly #targets = new Map<string, TargetState>()
  readonly #waiters = new Set<() => void>()
  /** emits waiting for this turn's group commit */
  readonly #unwritten: Unwritten[] = []
  /** deliveries that are over, their outcomes waiting for this turn's group commit */
  readonly #unsettled: Settle[] = []
  #flushing = false
  #running = false
  #served = 0
  /** deliveries claimed by the transaction running now, started once it commits */
  #deferred: Deferred[] | undefined

  constructor (components: DispatcherComponents, init: DispatcherInit) {
    this.#queue = components.queue
    this.#target = components.target
    this.#log = components.logger
    this.#replicate = components.replicate
    this.#settledHook = components.settled
    this.#slots = init.slotsPerTarget ?? 4
    this.#batch = Math.max(1, init.batch ?? 16)
    this.#high = init.highWatermark ?? 10_000
    this.#low = init.lowWatermark ?? Math.floor(this.#high / 2)
    for (const edge of init.edges) {
      const state: EdgeState = { key: edgeKey(edge), edge, inFlight: false, lastServed: 0, settledAt: 0 }
      const out = this.#bySource.get(edge.from) ?? []
      out.push(state)
      this.#bySource.set(edge.from, out)
      let target = this.#targets.get(edge.to)
      if (target === undefined) {
        target = { brane: edge.to, edges: [], busy: 0, timer: undefined, timerAt: 0 }
        this.#targets.set(edge.to, target)
      }
      target.edges.push(state)
    }
  }

  start (): void {
    this.#running = true
    for (const target of this.#targets.values()) {
      this.#pump(target)
    }
  }

  /** Look for work on every target now (after a replay, or when a target appeared) */
  kick (): void {
    for (const target of this.#targets.values()) {
      this.#pump(target)
    }
  }

  /**
   * Stop, then wait (at most `timeoutMs`) for the deliveries in flight to settle.
   * Resolves whether every delivery settled.
   */
  async drain (timeoutMs: number): Promise<boolean> {
    this.stop()
    const until = Date.now() + timeoutMs
    const busy = (): boolean => [...this.#targets.values()].some((t) => t.busy > 0)
    while (busy() && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    return !busy()
  }

  stop (): void {
    this.#running = false
    for (const target of this.#targets.values()) {
      clearTimeout(target.timer)
      target.timer = undefined
    }
    for (const wake of this.#waiters) {
      wake()
    }
  }

  /** The topics `brane` may emit (those of its outgoing edges) */
  topicsOf (brane: string): string[] {
    return [...new Set((this.#bySource.get(brane) ?? []).map((s) => s.edge.on))]
  }

  /**
   * Emit `payload` on `topic` from `source`. Resolves with the event id once the event is
   * durably queued for every edge `source → * on topic`; waits first while those edges
   * are over the high watermark.
   *
   * @throws UnknownTopicError when no edge of `source` carries `topic`
   */
  async emit (source: string, topic: string, payload: Uint8Array, options: EmitOptions = {}): Promise<string> {
    const edges = (this.#bySource.get(source) ?? []).filter((s) => s.edge.on === topic)
    if (edges.length === 0) {
      const topics = this.topicsOf(source)
      throw new UnknownTopicError(`Brane "${source}" cannot emit "${topic}": no edge in [graph].edges carries it (its topics: ${topics.length === 0 ? 'none' : topics.join(', ')})`)
    }
    await this.#backPressure(edges, options)
    const id = eventId(source, topic, payload)
    const traced = { id, topic, source, payload, traceId: options.traceId ?? id, hops: [], createdAt: Date.now() }
    const event: QueuedEvent = options.traceparent === undefined ? traced : { ...traced, traceparent: options.traceparent }
    const targets = edges.map((s) => ({ edge: s.key, to: s.edge.to, priority: s.edge.priority }))
    await new Promise<void>((resolve, reject) => {
      this.#unwritten.push({ event, targets, edges, resolve, reject })
      this.#scheduleFlush()
    })
    return id
  }

  /**
   * Write what waits for this turn's group commit now (acknowledgements, emits): before
   * the queue closes, so that nothing settled is left unwritten
   */
  flush (): void {
    this.#flush()
  }

  #scheduleFlush (): void {
    if (!this.#flushing) {
      this.#flushing = true
      setImmediate(() => { this.#flush() })
    }
  }

  /**
   * Group commit: the settled deliveries and the emits of one event-loop turn are written
   * in one transaction, with the claims of the deliveries that became due (those start
   * once it has committed). Emits keep their order; each resolves once that transaction
   * (and, when replicated, the copy elsewhere) is durable. One write that fails is rolled
   * back alone (a savepoint): a failed acknowledgement leaves its delivery to come again
   * (at least once), failed emits are rejected.
   */
  #flush (): void {
    this.#flushing = false
    if (this.#unsettled.length === 0 && this.#unwritten.length === 0) {
      return // nothing waits (written early by flush())
    }
    const settles = this.#unsettled.splice(0)
    const emits = this.#unwritten.splice(0)
    let emitError: Error | undefined
    const over: Over[] = []
    try {
      this.#transaction(() => {
        for (const settle of settles) {
          try {
            const settled: Over[] = []
            this.#queue.atomically(() => { settle.bookkeeping(settled) })
            over.push(...settled)
          } catch (err) {
            this.#log.error({ err, edge: settle.state.key }, 'could not record the outcome of a delivery: it will be delivered again')
          }
          this.#settled(settle.target, settle.state)
        }
        if (emits.length > 0) {
          try {
            this.#queue.enqueueMany(emits)
          } catch (err) {
            emitError = err as Error
          }
          try {
            if (emitError === undefined) {
              this.#wake(new Set(emits.flatMap((emit) => emit.edges)))
            }
          } catch (err) {
            // the events are written: a claim that failed now is tried again at the next wake
            this.#log.error({ err }, 'could not start deliveries after an emit')
          }
        }
      })
    } catch (err) {
      // the commit failed: nothing of this turn is written
      this.#log.error({ err }, 'could not write the queue\'s changes of this turn')
      emitError ??= err as Error
      over.length = 0
      for (const settle of settles) {
        if (settle.state.inFlight) {
          this.#settled(settle.target, settle.state)
        }
      }
    }
    if (over.length > 0) {
      this.#settledHook?.(over)
    }
    if (emits.length > 0) {
      this.#answer(emits, emitError)
    }
  }

  /** The emits of a group commit are durable here (or failed): copy them elsewhere when replicated, then resolve them */
  #answer (emits: Unwritten[], error: Error | undefined): void {
    const answer = (err?: Error): void => {
      for (const emit of emits) {
        if (err === undefined) {
          emit.resolve()
        } else {
          emit.reject(err)
        }
      }
    }
    if (error !== undefined || this.#replicate === undefined) {
      answer(error)
      return
    }
    const copies = emits.flatMap(({ event, targets }) => targets.map((t) => ({ event, edge: t.edge, to: t.to, priority: t.priority, attempts: 0 })))
    // delivery from here has started; the emit waits for the copy elsewhere
    this.#replicate(copies, {}).then(() => { answer() }, (err: unknown) => { answer(err as Error) })
  }

  #wake (edges: Iterable<EdgeState>): void {
    const targets = new Set<TargetState>()
    for (const state of edges) {
      const target = this.#targets.get(state.edge.to)
      if (target !== undefined) {
        targets.add(target)
      }
    }
    for (const target of targets) {
      this.#pump(target)
    }
  }

  /** Undelivered events per edge */
  depth (): Map<string, number> {
    return this.#queue.depth()
  }

  async #backPressure (edges: readonly EdgeState[], options: AbortOptions): Promise<void> {
    const over = (limit: number): boolean => edges.some((s) => this.#queue.edgeDepth(s.key) >= limit)
    if (!over(this.#high)) {
      return
    }
    while (this.#running && over(this.#low)) {
      options.signal?.throwIfAborted()
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          this.#waiters.delete(done)
          clearTimeout(timer)
          options.signal?.removeEventListener('abort', aborted)
          resolve()
        }
        const aborted = (): void => {
          done()
          reject(options.signal?.reason)
        }
        // re-check now and then even without a wake-up (e.g. deliveries by another process)
        const timer = setTimeout(done, 250)
        this.#waiters.add(done)
        options.signal?.addEventListener('abort', aborted, { once: true })
      })
    }
  }

  /**
   * Start as many deliveries for `target` as it has free slots and due work. Inside
   * {@link #transaction} the claims are part of that transaction and the deliveries start
   * once it has committed.
   */
  #pump (target: TargetState): void {
    if (!this.#running) {
      return
    }
    const handler = this.#target(target.brane)
    if (handler === undefined) {
      return // not hosted here: its events wait in the queue
    }
    const limit = handler.deliverBatch === undefined ? 1 : Math.max(1, handler.maxBatch ?? this.#batch)
    const linger = handler.deliverBatch === undefined ? 0 : (handler.lingerMs ?? 0)
    let soonest = Infinity
    while (target.busy < this.#slots) {
      const now = Date.now()
      const candidates = target.edges
        .filter((s) => !s.inFlight && this.#queue.mayHavePending(s.key))
        .sort((a, b) => b.edge.priority - a.edge.priority || a.lastServed - b.lastServed)
      let started = false
      for (const state of candidates) {
        if (linger > 0 && now < state.settledAt + linger && this.#queue.edgeDepth(state.key) < limit) {
          // a busy edge to a costly target: gather a fuller batch for a moment
          soonest = Math.min(soonest, state.settledAt + linger)
          continue
        }
        const { deliveries: claimed, nextDue } = this.#queue.claimDue(state.key, limit, now)
        const delivery = claimed[0]
        if (delivery === undefined) {
          if (nextDue !== undefined) {
            soonest = Math.min(soonest, nextDue)
          }
          continue
        }
        state.inFlight = true
        state.lastServed = ++this.#served
        target.busy++
        started = true
        const deliverBatch = handler.deliverBatch
        const start = claimed.length > 1 && deliverBatch !== undefined
          ? () => { this.#deliverBatch(target, state, deliverBatch.bind(handler), claimed) }
          : () => { this.#deliver(target, state, handler, delivery) }
        if (this.#deferred === undefined) {
          start()
        } else {
          this.#deferred.push({ target, state, start })
        }
        break
      }
      if (!started) {
        break
      }
    }
    if (soonest !== Infinity) {
      this.#pumpAt(target, soonest)
    }
  }

  /** Look for work on `target` at `at` (sooner than planned, if need be) */
  #pumpAt (target: TargetState, at: number): void {
    if (target.timer === undefined || at < target.timerAt) {
      clearTimeout(target.timer)
      target.timerAt = at
      target.timer = setTimeout(() => {
        target.timer = undefined
        this.#pump(target)
      }, Math.max(0, at - Date.now()))
    }
  }

  /**
   * Run `work` (queue writes and claims) in one transaction; the deliveries it claimed
   * start once that has committed. When it fails nothing was claimed: the edges are free
   * again and their targets look for work a little later.
   */
  #transaction (work: () => void): void {
    const deferred: Deferred[] = this.#deferred = []
    try {
      this.#queue.atomically(work)
    } catch (err) {
      for (const { target, state } of deferred) {
        state.inFlight = false
        target.busy--
        this.#pumpAt(target, Date.now() + UNAVAILABLE_RETRY_MS)
      }
      throw err
    } finally {
      this.#deferred = undefined
    }
    for (const { start } of deferred) {
      start()
    }
  }

  #deliver (target: TargetState, state: EdgeState, handler: EventTarget, delivery: Delivery): void {
    const event = eventOf(delivery)
    const startedAt = performance.timeOrigin + performance.now()
    handler.deliver(event).then(() => {
      this.#settleWith(target, state, (over) => {
        this.#queue.complete([{ id: delivery.id, hop: hopOf(event, target.brane, startedAt, 'ok') }])
        over.push({ eventId: event.id, edge: delivery.edge })
      })
    }, (err: unknown) => {
      this.#settleWith(target, state, (over) => {
        this.#failed(target, state, delivery, event, startedAt, err, over)
      })
    }).catch((err: unknown) => {
      this.#log.error({ err }, 'dispatcher bookkeeping failed')
    })
  }

  /**
   * Several deliveries of one edge in one round trip, in order: the successful ones are
   * acknowledged together, the first failure is a failure as alone, and those after it
   * (never started) go back to the queue without spending an attempt
   */
  #deliverBatch (target: TargetState, state: EdgeState, deliverBatch: NonNullable<EventTarget['deliverBatch']>, deliveries: readonly Delivery[]): void {
    const events = deliveries.map(eventOf)
    const startedAt = performance.timeOrigin + performance.now()
    deliverBatch(events).then((results) => {
      this.#settleWith(target, state, (over) => {
        const done: Array<{ id: number, hop: Hop }> = []
        let failedAt = -1
        results.forEach((result, i) => {
          const delivery = deliveries[i] as Delivery
          const event = events[i] as BraneEvent
          if (failedAt !== -1) {
            return
          }
          if (result.status === 'fulfilled') {
            done.push({ id: delivery.id, hop: hopOf(event, target.brane, startedAt, 'ok') })
          } else {
            failedAt = i
            this.#failed(target, state, delivery, event, startedAt, result.reason, over)
          }
        })
        this.#queue.complete(done)
        over.push(...done.map(({ hop }) => ({ eventId: hop.eventId, edge: state.key })))
        const skipped = failedAt === -1 ? deliveries.slice(results.length) : deliveries.slice(failedAt + 1)
        for (const delivery of skipped) {
          this.#queue.release(delivery, 'not started: an earlier event of its edge failed', 0)
        }
      })
    }, (err: unknown) => {
      // the batch as a whole failed: the first delivery fails, the others were not started
      this.#settleWith(target, state, (over) => {
        this.#failed(target, state, deliveries[0] as Delivery, events[0] as BraneEvent, startedAt, err, over)
        for (const delivery of deliveries.slice(1)) {
          this.#queue.release(delivery, 'not started: an earlier event of its edge failed', 0)
        }
      })
    }).catch((err: unknown) => {
      this.#log.error({ err }, 'dispatcher bookkeeping failed')
    })
  }

  /** A delivery failed: retried, dead-lettered, or (no node could take it) put back as it was */
  #failed (target: TargetState, state: EdgeState, delivery: Delivery, event: BraneEvent, startedAt: number, err: unknown, over: Over[]): void {
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
    if (err instanceof Error && err.name === 'TargetUnavailableError') {
      // nobody could take it (e.g. its node just died): no attempt is spent
      this.#queue.release(delivery, message, UNAVAILABLE_RETRY_MS)
      this.#log.debug({ event: event.id, edge: state.key, error: message }, 'target unavailable, will retry')
      return
    }
    this.#queue.recordHop(hopOf(event, target.brane, startedAt, message))
    // a consumer that rejects an event will reject it again: no retries
    const outcome = this.#queue.fail(delivery, message, { final: err instanceof Error && err.name === 'RejectedEventError' })
    if (outcome === 'dead') {
      over.push({ eventId: event.id, edge: delivery.edge })
    }
    this.#log[outcome === 'dead' ? 'error' : 'warn']({ event: event.id, edge: state.key, attempt: event.attempt, error: message },
      outcome === 'dead' ? 'delivery dead-lettered' : 'delivery failed, will retry')
  }

  /**
   * A delivery (or batch) is over: its outcome (`bookkeeping`) is written with this
   * turn's group commit, which also claims the edge's next deliveries; the deliveries it
   * says are over (acknowledged or dead-lettered) are told to `settled` once committed
   */
  #settleWith (target: TargetState, state: EdgeState, bookkeeping: (over: Over[]) => void): void {
    this.#unsettled.push({ target, state, bookkeeping })
    this.#scheduleFlush()
  }

  /** The edge's delivery (or batch) is over: the edge and the target's slot are free again */
  #settled (target: TargetState, state: EdgeState): void {
    state.inFlight = false
    state.settledAt = Date.now()
    target.busy--
    this.#wakeProducers(state)
    this.#pump(target)
  }

  /**
   * Emits waiting for back-pressure look again once `state`'s edge is below the low
   * watermark: its depth drops only when it settles, and a wake-up on every settle cost
   * each of them a timer and a promise per batch
   */
  #wakeProducers (state: EdgeState): void {
    if (this.#waiters.size > 0 && this.#queue.edgeDepth(state.key) < this.#low) {
      for (const wake of this.#waiters) {
        wake()
      }
    }
  }
}

/**
 * `topic:b3:<32 hex>`, time-ordered like a UUIDv7: 12 hex digits of the emit time (ms since
 * the epoch), then 20 of a BLAKE3 of the source, topic, payload, a process-unique counter
 * and randomness. Ids of one topic sort by time, so the queue's indexes keyed by event id
 * grow at their end (a random key dirtied a random page of each per event: ~30 % of the
 * events/s of a chain).
 */
function eventId (source: string, topic: string, payload: Uint8Array): string {
  const now = Date.now()
  const unique = Buffer.from(`${source}\u0000${topic}\u0000${process.pid}\u0000${now}\u0000${++sequence}\u0000${Math.random()}\u0000`)
  return `${topic}:b3:${now.toString(16).padStart(12, '0')}${blake3Hex(unique, payload).slice(0, 20)}`
}

/** The event a delivery carries, as its target receives it */
function eventOf (delivery: Delivery): BraneEvent {
  const event: BraneEvent = {
    id: delivery.event.id,
    topic: delivery.event.topic,
    payload: delivery.event.payload,
    source: delivery.event.source,
    traceId: delivery.event.traceId,
    attempt: delivery.attempts + 1
  }
  const traceparent = delivery.event.traceparent
  return traceparent === undefined ? event : { ...event, traceparent }
}

/** The hop a delivery of `event` to `to` made, ending now */
function hopOf (event: BraneEvent, to: string, startedAt: number, outcome: string): Hop {
  return {
    traceId: event.traceId,
    eventId: event.id,
    from: event.source,
    to,
    topic: event.topic,
    bytes: event.payload.byteLength,
    compressed: false,
    attempt: event.attempt,
    startedAt,
    endedAt: performance.timeOrigin + performance.now(),
    outcome
  }
}
