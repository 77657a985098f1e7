/**
 * Event batches over the mesh: several events of one edge in one RPC frame (their
 * metadata in the header, their payloads back to back in the body), handled in order by
 * the node that runs the target brane, one outcome per event. Once one fails the rest are
 * not started (`SkippedEventError`), so the sender can keep the edge's order.
 */
import { SkippedEventError } from '../errors.ts'
import type { AbortOptions, BraneEvent } from '../interfaces/index.ts'
import type { EventTarget } from '../dispatch/index.ts'
import { untilFirstFailure } from '../util/index.ts'
import { RemoteError, type Rpc } from './rpc.ts'

export const DELIVER_BATCH = 'deliverBatch'
/** Most payload bytes of one batch frame; a larger batch goes as single deliveries */
export const MAX_BATCH_FRAME_BYTES = 4 * 2 ** 20
/** Most events of one batch frame */
export const MAX_BATCH_EVENTS = 256

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
  const metas: EventMeta[] = events.map(({ payload, ...meta }) => ({ ...meta, bytes: payload.byteLength }))
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
    const whole = events.map(({ bytes: _bytes, ...event }, i) => ({ ...event, payload: payloads[i] as Uint8Array }))
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
