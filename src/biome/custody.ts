/**
 * Custody of queued events in a mesh: no event waits on a node that is gone.
 *
 * - **Hand-over.** A node that leaves first stops taking work, lets its running
 *   deliveries settle, then hands every pending delivery (with its event, attempts and
 *   each edge's order) to a live peer that runs the same deployment. The peer writes them
 *   to its own queue in one transaction before it answers; only then does the leaving
 *   node remove them. A delivery whose hand-over was not confirmed stays (at least once:
 *   both may deliver it, never neither).
 * - **Replicas** (`[graph] durability = "replicated"`). An emit is acknowledged only once
 *   a second node (the "holder": the live peer with the same deployment that ranks first
 *   by rendezvous hash with this node) has durably written a copy of each new delivery.
 *   Deliveries that are over (acknowledged or dead-lettered) are dropped from the holder
 *   in batches. When a node is declared dead (or leaves), every holder of its copies
 *   turns them into deliveries of its own queue, so a node killed and never restarted
 *   strands nothing. A new holder (the old one died) gets a copy of the backlog at once.
 *
 * Puts and drops travel in order, one call at a time, each carrying everything queued
 * meanwhile (group commit), so a drop never overtakes the put of the same delivery.
 */
import { createHash } from 'node:crypto'
import { TargetUnavailableError } from '../errors.ts'
import type { AbortOptions, Logger } from '../interfaces/index.ts'
import type { DeliveryCopy, EventQueue } from '../dispatch/index.ts'
import type { Member } from '../mesh/index.ts'
import { splitPayloads } from './forward.ts'
import type { Rpc } from './rpc.ts'

export interface CustodyComponents {
  readonly did: string
  readonly rpc: Rpc
  /** every member this node knows, itself included */
  readonly members: () => readonly Member[]
  /** the local queue, once the node runs */
  readonly queue: () => EventQueue | undefined
  /** the id of the deployment this node runs (a peer must run the same one) */
  readonly deployment: () => string | undefined
  /** edge keys of the running deployment: copies for any other edge are refused */
  readonly edges: () => ReadonlySet<string>
  /** adopted or promoted deliveries are waiting: look for work */
  readonly kick: () => void
  readonly logger: Logger
}

/** Most deliveries, and payload bytes, in one hand-over or replica call */
const MAX_COPIES_PER_CALL = 1024
const MAX_BYTES_PER_CALL = 4 * 2 ** 20
/** How long one replica or hand-over call may take before it counts as failed (ms) */
const CALL_TIMEOUT_MS = 10_000
/** Drops wait this long to travel together (ms) */
const DROP_DELAY_MS = 200

type DropKey = { readonly eventId: string, readonly edge: string }

type Op =
  | { readonly kind: 'put', readonly copies: readonly DeliveryCopy[], readonly resolve: () => void, readonly reject: (err: Error) => void }
  | { readonly kind: 'drop', readonly keys: readonly DropKey[] | 'all' }

/** One delivery on the wire (its payload travels in the call's body) */
interface WireCopy {
  id: string
  topic: string
  source: string
  traceId: string
  /** absent from an older node's copies, and while OpenTelemetry export is off */
  traceparent?: string
  hops: unknown[]
  createdAt: number
  edge: string
  to: string
  priority: number
  attempts: number
  bytes: number
}

export class EventCustody {
  readonly #c: CustodyComponents
  readonly #log: Logger
  readonly #ops: Op[] = []
  #flushing = false
  #dropTimer: NodeJS.Timeout | undefined
  /** the node holding this node's copies now */
  #holder: string | undefined
  #closed = false

  constructor (components: CustodyComponents) {
    this.#c = components
    this.#log = components.logger
    const rpc = components.rpc
    rpc.register('events.handover', async ({ params, body, from }) => {
      const queue = this.#accepting(from)
      const added = queue.adopt(this.#unpack(params, body, from))
      this.#c.kick()
      return { result: { added } }
    })
    rpc.register('replica.put', async ({ params, body, from }) => {
      const queue = this.#accepting(from)
      return { result: { held: queue.holdReplicas(from, this.#unpack(params, body, from)) } }
    })
    rpc.register('replica.drop', async ({ params, from }) => {
      const queue = this.#c.queue()
      const keys = (params as { keys?: unknown }).keys
      if (queue === undefined || this.#closed) {
        return { result: { dropped: 0 } }
      }
      if (keys === 'all') {
        return { result: { dropped: queue.dropReplicas(from, 'all') } }
      }
      if (!Array.isArray(keys) || !keys.every((k) => Array.isArray(k) && k.length === 2 && typeof k[0] === 'string' && typeof k[1] === 'string')) {
        throw new RangeError('replica.drop: keys must be [eventId, edge] pairs')
      }
      return { result: { dropped: queue.dropReplicas(from, (keys as Array<[string, string]>).map(([eventId, edge]) => ({ eventId, edge }))) } }
    })
  }

  /**
   * Keep a copy of new deliveries on the holder; resolves once it has them durably.
   * @throws TargetUnavailableError when no peer can hold them (the emit is not acknowledged)
   */
  async replicate (copies: readonly DeliveryCopy[], options: AbortOptions = {}): Promise<void> {
    options.signal?.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      this.#ops.push({ kind: 'put', copies, resolve, reject })
      this.#flush()
    })
  }

  /** Deliveries that are over: their copies can go */
  settled (keys: readonly DropKey[]): void {
    if (keys.length === 0 || this.#holder === undefined) {
      return
    }
    const last = this.#ops.at(-1)
    if (last?.kind === 'drop' && last.keys !== 'all' && last.keys.length < MAX_COPIES_PER_CALL) {
      (last.keys as DropKey[]).push(...keys)
    } else {
      this.#ops.push({ kind: 'drop', keys: [...keys] })
    }
    this.#dropTimer ??= setTimeout(() => {
      this.#dropTimer = undefined
      this.#flush()
    }, DROP_DELAY_MS)
  }

  /** A member changed: a node gone hands its copies here to this queue; a dead holder is replaced */
  memberChanged (member: Member, previous: Member['state'] | undefined): void {
    const gone = member.state === 'dead' || member.state === 'left'
    const wasGone = previous === 'dead' || previous === 'left'
    if (!gone || wasGone || member.did === this.#c.did) {
      return
    }
    const queue = this.#c.queue()
    if (queue !== undefined && !this.#closed) {
      try {
        const promoted = queue.promoteReplicas(member.did)
        if (promoted > 0) {
          this.#log.info({ node: member.name, events: promoted }, `took over ${promoted} queued deliveries of ${member.name}, which is ${member.state}`)
          this.#c.kick()
        }
      } catch (err) {
        // the copies stay held, undelivered from here, until that node is gone again
        this.#log.error({ node: member.name, err: (err as Error).message }, 'could not take over the queued deliveries of a node that is gone')
      }
    }
    if (member.did === this.#holder) {
      // choose a new holder and copy the backlog there now, not at the next emit
      this.#holder = undefined
      this.#ops.push({ kind: 'put', copies: [], resolve: () => {}, reject: (err) => { this.#log.warn({ err: err.message }, 'no new holder for this node\'s event copies') } })
      this.#flush()
    }
  }

  /**
   * Hand every pending delivery to a live peer running the same deployment, then drop
   * this node's copies on its holder. Call after the node stopped taking work. Returns
   * the deliveries handed over (those left here wait for this node's return).
   */
  async handOver (options: { timeoutMs: number, queue: EventQueue }): Promise<number> {
    const queue = options.queue
    const until = Date.now() + options.timeoutMs
    let handed = 0
    let after = 0
    // a peer that failed a hand-over is not asked again: the next one is
    const failed = new Set<string>()
    for (;;) {
      const batch = take(queue.undelivered(MAX_COPIES_PER_CALL, after))
      if (batch.length === 0) {
        break
      }
      const peer = this.#peers().find((m) => !failed.has(m.did))
      if (peer === undefined || Date.now() > until) {
        const left = queue.counts().pending
        this.#log.warn({ events: left }, `${left} queued deliveries stay on this node until it returns: ${peer === undefined ? 'no live peer running the same deployment took them' : 'the hand-over ran out of time'}`)
        break
      }
      const { params, body } = pack(batch)
      try {
        await this.#c.rpc.call(peer.did, 'events.handover', params, body, { timeoutMs: Math.max(1000, until - Date.now()) })
      } catch (err) {
        // the batch stays here; the next peer is asked for it
        this.#log.warn({ peer: peer.name, err: (err as Error).message }, 'a hand-over of queued events failed; trying another peer')
        failed.add(peer.did)
        continue
      }
      handed += queue.forget(batch.map((d) => d.id))
      after = (batch.at(-1) as { id: number }).id
    }
    if (handed > 0) {
      this.#log.info({ events: handed }, `handed ${handed} queued deliveries to the mesh before leaving`)
    }
    await this.#drain(until)
    if (this.#holder !== undefined) {
      await this.#c.rpc.call(this.#holder, 'replica.drop', { keys: 'all' }, undefined, { timeoutMs: Math.max(1000, until - Date.now()) }).catch(() => {})
    }
    return handed
  }

  close (): void {
    this.#closed = true
    clearTimeout(this.#dropTimer)
    for (const op of this.#ops.splice(0)) {
      if (op.kind === 'put') {
        op.reject(new TargetUnavailableError('The node is stopping: the event has no copy on another node'))
      }
    }
  }

  /** Live peers running this node's deployment, best holder first (rendezvous order) */
  #peers (): Member[] {
    const ours = this.#c.deployment()
    const rank = (did: string): number => createHash('sha256').update(`${this.#c.did}\u0000${did}`).digest().readUInt32BE(0)
    return this.#c.members()
      .filter((m) => m.did !== this.#c.did && m.state === 'alive' && m.meta.heal !== '1' && ours !== undefined && m.meta.deploy === ours)
      .sort((a, b) => rank(b.did) - rank(a.did))
  }

  #accepting (from: string): EventQueue {
    const queue = this.#c.queue()
    const member = this.#c.members().find((m) => m.did === from)
    if (queue === undefined || this.#closed) {
      throw new TargetUnavailableError('This node is not running')
    }
    if (member === undefined || member.state === 'dead' || member.state === 'left') {
      throw new TargetUnavailableError(`${from} is not a live member of this mesh`)
    }
    return queue
  }

  #unpack (params: unknown, body: Uint8Array, from: string): DeliveryCopy[] {
    const copies = unpack(params, body)
    const edges = this.#c.edges()
    const unknown = copies.find((c) => !edges.has(c.edge))
    if (unknown !== undefined) {
      throw new TargetUnavailableError(`Edge ${unknown.edge} (from ${from}) is not an edge of the deployment this node runs`)
    }
    return copies
  }

  /** Wait for the puts and drops queued so far to travel (at most until `until`) */
  async #drain (until: number): Promise<void> {
    clearTimeout(this.#dropTimer)
    this.#dropTimer = undefined
    this.#flush()
    while ((this.#flushing || this.#ops.length > 0) && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  /** Send the queued operations, in order, one call at a time */
  #flush (): void {
    if (this.#flushing || this.#ops.length === 0) {
      return
    }
    this.#flushing = true
    this.#run().catch((err: unknown) => {
      this.#log.error({ err }, 'replica bookkeeping failed')
    }).finally(() => {
      this.#flushing = false
      // anything still queued (as the run ended, or after a failed run)
      if (this.#ops.length > 0) {
        this.#flush()
      }
    })
  }

  async #run (): Promise<void> {
    while (this.#ops.length > 0 && !this.#closed) {
      const head = this.#ops[0] as Op
      if (head.kind === 'drop') {
        this.#ops.shift()
        await this.#sendDrop(head.keys)
        continue
      }
      // every put queued meanwhile, up to the call's limits
      const puts: Array<Extract<Op, { kind: 'put' }>> = []
      let count = 0
      let bytes = 0
      while (this.#ops[0]?.kind === 'put') {
        const op = this.#ops[0]
        const size = op.copies.reduce((n, c) => n + c.event.payload.byteLength, 0)
        if (puts.length > 0 && (count + op.copies.length > MAX_COPIES_PER_CALL || bytes + size > MAX_BYTES_PER_CALL)) {
          break
        }
        this.#ops.shift()
        puts.push(op)
        count += op.copies.length
        bytes += size
      }
      try {
        await this.#sendPut(puts.flatMap((op) => op.copies))
        for (const op of puts) {
          op.resolve()
        }
      } catch (err) {
        for (const op of puts) {
          op.reject(err as Error)
        }
      }
    }
  }

  async #sendPut (copies: readonly DeliveryCopy[]): Promise<void> {
    const holder = this.#peers()[0]
    if (holder === undefined) {
      throw new TargetUnavailableError('[graph] durability = "replicated": no other live node runs this deployment to hold a copy of the event, so it is not acknowledged')
    }
    if (holder.did !== this.#holder) {
      // a new holder has none of the backlog: copy it first, then free the old one
      const old = this.#holder
      this.#holder = holder.did
      try {
        await this.#copyBacklog(holder)
      } catch (err) {
        this.#holder = undefined
        throw new TargetUnavailableError(`[graph] durability = "replicated": ${holder.name} could not take this node's event copies (${(err as Error).message}), so the event is not acknowledged`, { cause: err })
      }
      if (old !== undefined) {
        await this.#c.rpc.call(old, 'replica.drop', { keys: 'all' }, undefined, { timeoutMs: CALL_TIMEOUT_MS }).catch(() => {})
      }
    }
    if (copies.length === 0) {
      return
    }
    const { params, body } = pack(copies)
    try {
      await this.#c.rpc.call(holder.did, 'replica.put', params, body, { timeoutMs: CALL_TIMEOUT_MS })
    } catch (err) {
      this.#holder = undefined
      throw new TargetUnavailableError(`[graph] durability = "replicated": ${holder.name} could not keep a copy of the event (${(err as Error).message}), so it is not acknowledged`, { cause: err })
    }
  }

  /** Copy every undelivered delivery of this node to a new holder */
  async #copyBacklog (holder: Member): Promise<void> {
    const queue = this.#c.queue()
    if (queue === undefined) {
      return
    }
    let after = 0
    let copied = 0
    for (;;) {
      const batch = queue.undelivered(MAX_COPIES_PER_CALL, after, { inflight: true })
      if (batch.length === 0) {
        break
      }
      const part = take(batch)
      after = (part.at(-1) as { id: number }).id
      const { params, body } = pack(part)
      await this.#c.rpc.call(holder.did, 'replica.put', params, body, { timeoutMs: CALL_TIMEOUT_MS })
      copied += part.length
    }
    if (copied > 0) {
      this.#log.info({ holder: holder.name, events: copied }, `copied ${copied} undelivered deliveries to ${holder.name}, the new holder of this node's copies`)
    }
  }

  async #sendDrop (keys: readonly DropKey[] | 'all'): Promise<void> {
    if (this.#holder === undefined) {
      return
    }
    const wire = keys === 'all' ? 'all' : keys.map((k) => [k.eventId, k.edge])
    await this.#c.rpc.call(this.#holder, 'replica.drop', { keys: wire }, undefined, { timeoutMs: CALL_TIMEOUT_MS }).catch((err: unknown) => {
      // kept there: delivered again only if this node dies (at least once)
      this.#log.debug({ err: (err as Error).message }, 'could not drop copies of delivered events')
    })
  }
}

/** The longest prefix of `deliveries` that fits one call */
function take<T extends DeliveryCopy> (deliveries: readonly T[]): T[] {
  let bytes = 0
  const out: T[] = []
  for (const d of deliveries) {
    bytes += d.event.payload.byteLength
    if (out.length > 0 && bytes > MAX_BYTES_PER_CALL) {
      break
    }
    out.push(d)
  }
  return out
}

function pack (copies: readonly DeliveryCopy[]): { params: { copies: WireCopy[] }, body: Uint8Array } {
  return {
    params: {
      copies: copies.map((c) => ({
        id: c.event.id,
        topic: c.event.topic,
        source: c.event.source,
        traceId: c.event.traceId,
        ...(c.event.traceparent === undefined ? {} : { traceparent: c.event.traceparent }),
        hops: [...c.event.hops],
        createdAt: c.event.createdAt,
        edge: c.edge,
        to: c.to,
        priority: c.priority,
        attempts: c.attempts,
        bytes: c.event.payload.byteLength
      }))
    },
    body: Buffer.concat(copies.map((c) => c.event.payload))
  }
}

/** Deliveries from another node's call, checked field by field */
function unpack (params: unknown, body: Uint8Array): DeliveryCopy[] {
  const list = (params as { copies?: unknown } | null)?.copies
  if (!Array.isArray(list) || list.length > MAX_COPIES_PER_CALL) {
    throw new RangeError(`copies must be a list of at most ${MAX_COPIES_PER_CALL} deliveries`)
  }
  const payloads = splitPayloads(list.map((value: unknown) => (value as Partial<WireCopy> | null)?.bytes), body, 'delivery copies')
  return list.map((value: unknown, i) => {
    const w = value as Partial<WireCopy>
    const count = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0
    if (typeof w.id !== 'string' || typeof w.topic !== 'string' || typeof w.source !== 'string' ||
      typeof w.traceId !== 'string' || !Array.isArray(w.hops) || !count(w.createdAt) || typeof w.edge !== 'string' || typeof w.to !== 'string' ||
      !count(w.priority) || !count(w.attempts)) {
      throw new RangeError('a delivery copy is malformed')
    }
    const payload = payloads[i] as Uint8Array
    return {
      edge: w.edge,
      to: w.to,
      priority: w.priority,
      attempts: w.attempts,
      event: {
        id: w.id,
        topic: w.topic,
        source: w.source,
        payload,
        traceId: w.traceId,
        hops: w.hops,
        createdAt: w.createdAt,
        ...(typeof w.traceparent === 'string' && w.traceparent.length <= 64 ? { traceparent: w.traceparent } : {})
      }
    }
  })
}
