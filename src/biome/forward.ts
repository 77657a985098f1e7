/**
 * Forwarding: events and HTTP requests for a brane that runs on other nodes go to one of
 * its replicas there ({@link Forwarder}), and this node answers theirs.
 *
 * Event batches over the mesh: several events of one edge in one RPC frame (their
 * metadata in the header, their payloads back to back in the body), handled in order by
 * the node that runs the target brane, one outcome per event. Once one fails the rest are
 * not started (`SkippedEventError`), so the sender can keep the edge's order.
 */
import { createHash } from 'node:crypto'
import { OmegaError, PeerUnavailableError, RejectedEventError, RetryableEventError, SkippedEventError, TargetUnavailableError } from '../errors.ts'
import type { AbortOptions, BraneEvent, BraneHttpRequest, BraneHttpResponse, HttpHandler } from '../interfaces/index.ts'
import type { EventTarget } from '../dispatch/index.ts'
import { untilFirstFailure } from '../util/index.ts'
import { RemoteError, type Rpc } from './rpc.ts'

export const DELIVER_BATCH = 'deliverBatch'
/** How long a forwarded delivery may take beyond the target brane's own deadline (ms) */
const DELIVERY_GRACE_MS = 10_000
/** Most payload bytes of one batch frame; a larger batch goes as single deliveries */
export const MAX_BATCH_FRAME_BYTES = 4 * 2 ** 20
/** Most events of one batch frame */
export const MAX_BATCH_EVENTS = 256
/**
 * How long a busy edge to another node waits for a fuller batch (ms): a round trip over
 * the mesh costs more main-thread time than a local one (framing, Noise, yamux, on both
 * nodes), and a producer that emits one event at a time otherwise sends a few per frame
 */
export const REMOTE_LINGER_MS = 2

type EventMeta = Omit<BraneEvent, 'payload'> & { bytes: number }
interface Outcome { error?: string, message?: string }

/**
 * The payloads of a call's body, which holds them back to back, from their sizes as the
 * call's header gives them (untrusted: each must be a byte count, all within the body)
 *
 * @throws RangeError naming `what` when they are not
 */
export function splitPayloads (sizes: readonly unknown[], body: Uint8Array, what: string): Uint8Array[] {
  let at = 0
  return sizes.map((bytes) => {
    if (!Number.isSafeInteger(bytes) || (bytes as number) < 0 || at + (bytes as number) > body.byteLength) {
      throw new RangeError(`${what}: the payload sizes do not match the frame`)
    }
    const payload = body.subarray(at, at + (bytes as number))
    at += bytes as number
    return payload
  })
}

/**
 * Send `events` (one edge's, in order) to `brane` on `peer`; resolves with one outcome
 * per event, a failure as a RemoteError named like the error there.
 *
 * @throws what {@link Rpc.call} throws when the batch as a whole fails
 */
export async function sendEventBatch (rpc: Rpc, peer: string, brane: string, events: readonly BraneEvent[], options: AbortOptions & { timeoutMs: number }): Promise<Array<PromiseSettledResult<void>>> {
  // named fields: an object rest and spread per event cost more
  const metas: EventMeta[] = events.map((e) => e.traceparent === undefined
    ? { id: e.id, topic: e.topic, source: e.source, traceId: e.traceId, attempt: e.attempt, bytes: e.payload.byteLength }
    : { id: e.id, topic: e.topic, source: e.source, traceId: e.traceId, attempt: e.attempt, bytes: e.payload.byteLength, traceparent: e.traceparent })
  const reply = await rpc.call(peer, DELIVER_BATCH, { brane, events: metas }, Buffer.concat(events.map((e) => e.payload)), options)
  const outcomes = (reply.result as { outcomes?: unknown }).outcomes
  if (!Array.isArray(outcomes) || outcomes.length !== events.length) {
    throw new RemoteError('Error', `answered a batch of ${events.length} events with ${Array.isArray(outcomes) ? outcomes.length : 'no'} outcomes`)
  }
  return outcomes.map((o: Outcome) => o.error === undefined
    ? { status: 'fulfilled' as const, value: undefined }
    : { status: 'rejected' as const, reason: new RemoteError(String(o.error), String(o.message ?? '')) })
}

/**
 * Answer event batches from other nodes: `find` gives the handler of a brane here (or
 * throws why there is none)
 */
export function serveEventBatches (rpc: Rpc, find: (brane: string, options: AbortOptions) => Promise<EventTarget>): void {
  rpc.register(DELIVER_BATCH, async ({ params, body }, options) => {
    const { brane, events } = params as { brane: string, events: EventMeta[] }
    if (!Array.isArray(events) || events.length > MAX_BATCH_EVENTS) {
      throw new RangeError(`${DELIVER_BATCH}: events must be a list of at most ${MAX_BATCH_EVENTS}`)
    }
    const target = await find(brane, options)
    const payloads = splitPayloads(events.map((e) => e.bytes), body, DELIVER_BATCH)
    const whole = events.map(({ bytes: _bytes, traceparent, ...event }, i): BraneEvent => ({
      ...event,
      payload: payloads[i] as Uint8Array,
      // a trace context is only ever a short string (a receiver parses it, and ignores a malformed one)
      ...(typeof traceparent === 'string' && traceparent.length <= 64 ? { traceparent } : {})
    }))
    const results = await deliverInOrder(target, whole)
    return { result: { outcomes: results.map((r): Outcome => r.status === 'fulfilled' ? {} : { error: errorName(r.reason), message: errorMessage(r.reason) }) } }
  })
}

/** `events` delivered in order by `target`, in one batch when it takes batches; none after a failure */
export async function deliverInOrder (target: EventTarget, events: readonly BraneEvent[]): Promise<Array<PromiseSettledResult<void>>> {
  if (target.deliverBatch !== undefined) {
    return target.deliverBatch(events)
  }
  return untilFirstFailure(events.length, async (i) => { await target.deliver(events[i] as BraneEvent) },
    (i) => new SkippedEventError(`Event "${events[i]?.id ?? ''}" was not started: an earlier event of its batch failed`))
}

export function errorName (err: unknown): string {
  return err instanceof Error ? err.name : 'Error'
}

export function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** What forwarding needs from its node */
export interface ForwarderComponents {
  rpc: Rpc
  /** this node's name, in errors */
  name: string
  /** the nodes other than this one that run `brane`, alive ones first, then suspect ones */
  replicas: (brane: string) => string[]
  /** whether a member is alive */
  alive: (did: string) => boolean
  /** the handler of `brane` here, waiting for one that the placement just moved here */
  localEvents: (brane: string, options: AbortOptions) => Promise<EventTarget | undefined>
  localHttp: (brane: string, options: AbortOptions) => Promise<HttpHandler | undefined>
  /** why no node runs `brane` now (the placement's reason) */
  unplaced: (brane: string) => string
  /** the deadline of `brane` in the running deployment (ms) */
  deadlineMs: (brane: string) => number
  /** a member's name, for messages */
  nameOf: (did: string) => string
}

/** Events and requests for branes that run elsewhere, sent to one of their replicas */
export class Forwarder {
  readonly #components: ForwarderComponents
  readonly #rpc: Rpc
  /** requests forwarded so far (spreads them over the replicas) */
  #requests = 0

  constructor (components: ForwarderComponents) {
    this.#components = components
    this.#rpc = components.rpc
  }

  /**
   * The replica to send `key`'s call to: spread over the alive replicas by `key` (an event
   * id: a retry after a failure goes to the same node only while nothing changed)
   */
  #pick (brane: string, key: string): string | undefined {
    const nodes = this.#components.replicas(brane)
    const alive = nodes.filter((did) => this.#components.alive(did))
    const pool = alive.length > 0 ? alive : nodes
    return pool.length === 0 ? undefined : pool[createHash('sha256').update(key).digest().readUInt32BE(0) % pool.length]
  }

  /** the event target of `brane`, which runs elsewhere (or is on its way here) */
  events (brane: string): EventTarget {
    const c = this.#components
    const remote: EventTarget = {
      deliver: async (event: BraneEvent, options: AbortOptions = {}) => {
        const target = this.#pick(brane, `${event.id}:${event.attempt}`)
        if (target === undefined) {
          // placed here now, and still starting
          const here = await c.localEvents(brane, options)
          if (here !== undefined) {
            await here.deliver(event, options)
            return
          }
          throw new TargetUnavailableError(`No node runs brane "${brane}" right now (${c.unplaced(brane)})`)
        }
        const { payload, ...meta } = event
        // the target's own deadline stops a late handler there; this only covers a node that never answers
        const deadlineMs = c.deadlineMs(brane)
        try {
          await this.#rpc.call(target, 'deliver', { brane, event: meta }, payload, { ...options, timeoutMs: deadlineMs + DELIVERY_GRACE_MS })
        } catch (err) {
          throw asLocalError(err, `brane "${brane}" on ${c.nameOf(target)}`)
        }
      },
      // several events of one edge in one frame, to one node, which handles them in order
      maxBatch: MAX_BATCH_EVENTS,
      lingerMs: REMOTE_LINGER_MS,
      deliverBatch: async (events: readonly BraneEvent[]): Promise<Array<PromiseSettledResult<void>>> => {
        if (events.reduce((sum, e) => sum + e.payload.byteLength, 0) > MAX_BATCH_FRAME_BYTES) {
          // large payloads: one frame each, as single deliveries
          return deliverInOrder({ deliver: remote.deliver }, events)
        }
        const first = events[0] as BraneEvent
        const target = this.#pick(brane, `${first.id}:${first.attempt}`)
        if (target === undefined) {
          const here = await c.localEvents(brane, {})
          if (here !== undefined) {
            return deliverInOrder(here, events)
          }
          throw new TargetUnavailableError(`No node runs brane "${brane}" right now (${c.unplaced(brane)})`)
        }
        const where = `brane "${brane}" on ${c.nameOf(target)}`
        const deadlineMs = c.deadlineMs(brane)
        try {
          const outcomes = await sendEventBatch(this.#rpc, target, brane, events, { timeoutMs: deadlineMs * events.length + DELIVERY_GRACE_MS })
          return outcomes.map((o) => o.status === 'fulfilled' ? o : { status: 'rejected' as const, reason: asLocalError(o.reason, where) })
        } catch (err) {
          throw asLocalError(err, where)
        }
      }
    }
    return remote
  }

  /** the HTTP handler of `brane`, which runs elsewhere (or is on its way here) */
  http (brane: string): HttpHandler {
    const c = this.#components
    return {
      handle: async (request: BraneHttpRequest, options: AbortOptions = {}): Promise<BraneHttpResponse> => {
        const target = this.#pick(brane, `${++this.#requests}`)
        if (target === undefined) {
          const here = await c.localHttp(brane, options)
          if (here !== undefined) {
            return here.handle(request, options)
          }
          throw new TargetUnavailableError(`No node runs brane "${brane}" right now (${c.unplaced(brane)})`)
        }
        const { body, ...meta } = request
        try {
          const reply = await this.#rpc.call(target, 'http', { brane, request: meta }, body, options)
          const result = reply.result as { status: number, headers: Array<[string, string]> }
          return { status: result.status, headers: result.headers, body: reply.body }
        } catch (err) {
          throw asLocalError(err, `brane "${brane}" on ${c.nameOf(target)}`)
        }
      }
    }
  }

  /** answer the events and requests other nodes forward to the branes that run here */
  serve (): void {
    const c = this.#components
    this.#rpc.register('deliver', async ({ params, body }, options) => {
      const { brane, event } = params as { brane: string, event: Omit<BraneEvent, 'payload'> }
      const target = await c.localEvents(brane, options)
      if (target === undefined) {
        throw new TargetUnavailableError(`Brane "${brane}" does not run on ${c.name}`)
      }
      await target.deliver({ ...event, payload: body }, options)
      return {}
    })
    serveEventBatches(this.#rpc, async (brane, options) => {
      const target = await c.localEvents(brane, options)
      if (target === undefined) {
        throw new TargetUnavailableError(`Brane "${brane}" does not run on ${c.name}`)
      }
      return target
    })
    this.#rpc.register('http', async ({ params, body }, options) => {
      const { brane, request } = params as { brane: string, request: Omit<BraneHttpRequest, 'body'> }
      const handler = await c.localHttp(brane, options)
      if (handler === undefined) {
        throw new TargetUnavailableError(`Brane "${brane}" does not run on ${c.name}`)
      }
      const response = await handler.handle({ ...request, body }, options)
      return { result: { status: response.status, headers: response.headers }, body: response.body }
    })
  }
}

/**
 * An error from another node, as the local caller should see it: unreachable nodes are
 * "unavailable" (the event waits, the request gets 503), and the remote handler's own
 * error keeps its name (retry, reject, deadline, …)
 */
export function asLocalError (err: unknown, where: string): Error {
  if (err instanceof PeerUnavailableError) {
    return new TargetUnavailableError(`Cannot reach ${where}: ${err.message}`, { cause: err })
  }
  if (err instanceof RemoteError) {
    switch (err.remoteName) {
      case 'TargetUnavailableError':
        return new TargetUnavailableError(`${where}: ${err.message}`, { cause: err })
      case 'RetryableEventError':
        return new RetryableEventError(err.message, { cause: err })
      case 'RejectedEventError':
        return new RejectedEventError(err.message, { cause: err })
      default: {
        const local = new OmegaError(`${where}: ${err.message}`, { cause: err })
        local.name = err.remoteName
        return local
      }
    }
  }
  return err instanceof Error ? err : new Error(String(err))
}
