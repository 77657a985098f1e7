import { isCommand } from './link.ts'
import type { LoadedComponent } from './load.ts'
import type { BraneEventInput, RequestTiming } from './protocol.ts'
import { WorkerBrane, type BraneOptions, type ServeKind } from './worker-brane.ts'

/** Options of {@link EventBrane.create} */
export interface EventBraneOptions extends BraneOptions {
  /**
   * A wasi:cli/run command's stdout (`[brane.X] stdout`): its log, or emit records
   * (`TOPIC LENGTH\n` then LENGTH bytes), emitted when it exits 0. Ignored for an
   * omega:brane/handler component.
   * @default 'log'
   */
  readonly stdout?: 'log' | 'emit'
}

/** Options of {@link EventBrane.deliver} */
export interface DeliverOptions {
  /** abandons the delivery: rejected with `signal.reason` (a running guest runs on to its deadline) */
  readonly signal?: AbortSignal
}

/** A delivery the handler accepted */
export interface Delivered {
  /** where the time and memory went (time blocked in emits is not CPU) */
  readonly timing: RequestTiming
}

const EVENTS: ServeKind = { kind: 'event', handlerInterface: 'omega:brane/handler', verb: 'deliver events to' }
const COMMANDS: ServeKind = { kind: 'event', handlerInterface: 'wasi:cli/run', verb: 'deliver events to' }

/**
 * Delivers events to an `omega:brane/handler` component (wit/brane/brane.wit), in
 * worker threads with the same pool, lifecycles and limits as an HTTP brane (see
 * {@link WorkerBrane}). The guest's omega:brane/emit calls `onEmit` with the trace
 * id of the event it handles and returns once that resolves (durably queued);
 * omega:brane/log records go to `log` with their level; omega:brane/state answers
 * `unavailable` until the mesh's state service exists.
 *
 * Fits the dispatcher's `EventTarget`: `{ deliver: (event, options) => brane.deliver(event, options) }`.
 *
 * @example
 * ```ts
 * const brane = await EventBrane.create(await loadComponent(bytes, { cacheDir }), {
 *   name: 'transform', grants: plan.grants, log, lifecycle: 'pooled',
 *   onEmit: (topic, payload, options) => dispatcher.emit('transform', topic, payload, options)
 * })
 * await brane.deliver({ id, topic: 'raw.batch', payload, source: 'ingest', traceId, attempt: 1 })
 * await brane.close()
 * ```
 */
export class EventBrane extends WorkerBrane {
  /**
   * Links `loaded` against the brane's grants (nothing runs if an import is not
   * granted), applies its memory cap and starts its first worker.
   *
   * @throws CapabilityDeniedError when the component imports what the grants do not allow
   * (emit without an outgoing edge, among others)
   * @throws ComponentLoadError when it imports what Omega does not provide, does not
   * export `omega:brane/handler`, its memory cannot be capped, or its worker cannot start
   * @throws RangeError for a limit that is not a positive number
   */
  static async create (loaded: LoadedComponent, options: EventBraneOptions): Promise<EventBrane> {
    if (isCommand(loaded.exports)) {
      return EventBrane.#createCommand(loaded, options)
    }
    const prepared = await WorkerBrane.prepare(loaded, options, EVENTS)
    const brane = new EventBrane(prepared.loaded, options, { kind: 'event', handlerExport: prepared.handlerExport, maxBodyBytes: 0 })
    await brane.start(options.signal)
    return brane
  }

  /**
   * A wasi:cli/run command as an event brane: each event runs it once, in an instance
   * that never ran before (lifecycle `ephemeral` whatever the options say: its main
   * runs once, and wasi:cli/exit unwinds it mid-stack, so its memory is not fit for a
   * second run). Its environment is always linked (it carries the event's
   * `OMEGA_*` variables); the `env` grant adds to it.
   */
  static async #createCommand (loaded: LoadedComponent, options: EventBraneOptions): Promise<EventBrane> {
    const command: EventBraneOptions = { ...options, grants: { ...options.grants, env: options.grants.env ?? {} }, lifecycle: 'ephemeral' }
    const prepared = await WorkerBrane.prepare(loaded, command, COMMANDS)
    const brane = new EventBrane(prepared.loaded, command, { kind: 'event', handlerExport: prepared.handlerExport, maxBodyBytes: 0, command: { stdout: options.stdout ?? 'log' } })
    await brane.start(options.signal)
    return brane
  }

  /**
   * Runs `event` through the handler of an instance chosen by the lifecycle; resolves
   * when it returned ok.
   *
   * @throws RetryableEventError when the handler returned `retry` (deliver again later)
   * @throws RejectedEventError when it returned `reject` (dead-letter the event)
   * @throws GuestError when the guest traps or fails
   * @throws DeadlineExceededError when it runs past the deadline
   * @throws BraneClosedError when the brane is closing
   */
  /**
   * Delivers `events` (of one edge, in order) in one worker, sent together: each is
   * handled as `deliver` would, and once one fails the rest are not started (they fail
   * with SkippedEventError). One result per event, in order.
   */
  async deliverBatch (events: readonly BraneEventInput[]): Promise<Array<PromiseSettledResult<Delivered>>> {
    const results = await this.runBatch(events.map((event) => ({
      work: { type: 'event' as const, event },
      what: `handle event "${event.id}" on "${event.topic}"`,
      traceId: event.traceId,
      ...(event.traceparent === undefined ? {} : { traceparent: event.traceparent })
    })))
    return results.map((r) => r.status === 'fulfilled' ? { status: 'fulfilled', value: { timing: r.value.timing } } : r)
  }

  async deliver (event: BraneEventInput, options: DeliverOptions = {}): Promise<Delivered> {
    const result = await this.run({ type: 'event', event }, {
      what: `handle event "${event.id}" on "${event.topic}"`,
      traceId: event.traceId,
      ...(event.traceparent === undefined ? {} : { traceparent: event.traceparent }),
      ...(options.signal === undefined ? {} : { signal: options.signal })
    })
    return { timing: result.timing }
  }
}
