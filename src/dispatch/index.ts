/**
 * Dispatch: typed events between branes along the manifest's edges, through a durable
 * queue, at least once, in order per edge, with priorities and back-pressure.
 */
export { EventQueue, QueueError, type QueueInit, type QueuedEvent, type Delivery, type DeliveryCopy, type DeliveryTarget, type DeadLetter } from './queue.ts'
export { checkQueue, salvageQueue, type QueueCheck, type SalvageReport } from './salvage.ts'
export { Dispatcher, UnknownTopicError, edgeKey, type BraneEvent, type EventTarget, type DispatcherInit, type DispatcherComponents, type EmitOptions } from './dispatcher.ts'
export { signTrace, verifyTrace, type TraceEndRecord } from './trace.ts'
/** @deprecated import it from identity, where signed documents live */
export { canonicalJson } from '../identity/index.ts'
export type { Hop } from './queue.ts'
