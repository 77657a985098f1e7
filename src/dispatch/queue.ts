/**
 * The durable event queue: an embedded SQLite database (better-sqlite3, WAL). An event
 * and one delivery per matching edge are written in one transaction before `enqueue`
 * returns, so an acknowledged emit survives a killed process. Deliveries are claimed,
 * then acknowledged (done) or failed (retried with back-off and jitter, dead-lettered
 * after `maxAttempts`). On open, deliveries left in flight by a crash go back to pending,
 * counted as an attempt (so an event that crashes the node ends dead-lettered):
 * delivery is at least once, and a consumer sees a duplicate only for an event whose
 * delivery had started when the process died.
 *
 * Durability: `synchronous = NORMAL` in WAL mode survives a killed process (the write
 * is in the OS before the call returns) but not a power cut; set `durability: 'full'`
 * for that.
 */
import { statSync } from 'node:fs'
import Database from 'better-sqlite3'
import { QueueError } from '../errors.ts'
import { createSchema, DAMAGED_HINT, INSERT_EVENT, quickCheck } from './schema.ts'
import { Checkpointer } from '../util/index.ts'

export { QueueError }

export interface QueueInit {
  /** database file, or `:memory:` */
  path: string
  /** tries before a delivery is dead-lettered. @default 5 */
  maxAttempts?: number
  /** first retry delay; doubles per try, with ±50 % jitter. @default 100 */
  baseBackoffMs?: number
  /** @default 30_000 */
  maxBackoffMs?: number
  /** `normal` survives a killed process, `full` a power cut. @default 'normal' */
  durability?: 'normal' | 'full'
}

export interface QueuedEvent {
  /** e.g. `tensor.shard:b3:9af2…` */
  readonly id: string
  readonly topic: string
  /** the emitting brane (or `http` for the gateway) */
  readonly source: string
  readonly payload: Uint8Array
  readonly traceId: string
  /** the W3C trace context of the span that emitted it (OpenTelemetry export on), its delivery's parent */
  readonly traceparent?: string
  /** hops so far, JSON-serialisable */
  readonly hops: readonly unknown[]
  readonly createdAt: number
}

export interface DeliveryTarget {
  /** edge key, `from>to:on` */
  readonly edge: string
  readonly to: string
  /** 0–9, higher first */
  readonly priority: number
}

export interface Delivery {
  readonly id: number
  readonly event: QueuedEvent
  readonly edge: string
  readonly to: string
  readonly priority: number
  /** tries before this one */
  readonly attempts: number
}

/** One delivery of an event from one brane to another, as a trace records it */
/**
 * An undelivered delivery with its event, as it travels to another node: handed over by
 * a node that leaves, or held there as a replica (`durability = "replicated"`)
 */
export type DeliveryCopy = Omit<Delivery, 'id'>

export interface Hop {
  readonly traceId: string
  readonly eventId: string
  readonly from: string
  readonly to: string
  readonly topic: string
  readonly bytes: number
  readonly compressed: boolean
  readonly attempt: number
  /** ms since the epoch, with fractions */
  readonly startedAt: number
  readonly endedAt: number
  /** `ok`, or the error that failed it */
  readonly outcome: string
}

export interface DeadLetter {
  readonly id: number
  readonly eventId: string
  readonly edge: string
  readonly to: string
  readonly attempts: number
  readonly lastError: string
  readonly failedAt: number
}

interface DeliveryRow {
  id: number
  edge: string
  target: string
  priority: number
  attempts: number
  next_at: number
  event_id: string
  topic: string
  source: string
  payload: Buffer
  trace_id: string
  hops: string
  created_at: number
  traceparent: string | null
}

/** How long a delivery that is done, and its event, are kept (ms): a copy of the event heard again meanwhile is not queued twice */
export const DONE_RETENTION_MS = 60 * 60_000
/** How long the hops of a trace are kept (ms): what `omega trace` and the dashboard read */
export const TRACE_RETENTION_MS = 24 * 60 * 60_000

/** How often {@link EventQueue.prune} notes where the tables end, at most (ms) */
const MARK_EVERY_MS = 10_000

export interface PruneSettings {
  /** @default Date.now() */
  now?: number
  /** @default DONE_RETENTION_MS */
  doneMs?: number
  /** @default TRACE_RETENTION_MS */
  traceMs?: number
  /** most rows of each table read (deliveries, events) or removed (hops). @default 5000 */
  limit?: number
}

function refuseEmptyQueue (path: string): void {
  if (path === ':memory:') {
    return
  }
  const main = statSync(path, { throwIfNoEntry: false })
  const wal = statSync(`${path}-wal`, { throwIfNoEntry: false })
  if (main?.isFile() === true && main.size === 0 && (wal === undefined || wal.size === 0)) {
    throw new QueueError(`The event queue ${path} exists but is empty (0 bytes): it was truncated, and its events are gone unless a backup has them. Remove the file to start with an empty queue`)
  }
}

export class EventQueue {
  readonly #db: Database.Database
  readonly #maxAttempts: number
  readonly #baseBackoff: number
  readonly #maxBackoff: number
  readonly #insertEvent: Database.Statement
  readonly #insertDelivery: Database.Statement
  readonly #markInflight: Database.Statement
  readonly #markDone: Database.Statement
  readonly #retry: Database.Statement
  readonly #kill: Database.Statement
  readonly #release: Database.Statement
  readonly #enqueueTx: (event: QueuedEvent, targets: readonly DeliveryTarget[]) => number
  readonly #enqueueManyTx: (items: ReadonlyArray<{ readonly event: QueuedEvent, readonly targets: readonly DeliveryTarget[] }>) => number
  /** pending and in-flight deliveries per edge, kept beside the table (no COUNT per emit) */
  #depth = new Map<string, number>()
  /** changes to #depth made by the transaction running now: applied once it commits */
  readonly #delta = new Map<string, number>()
  #writing = false
  readonly #statements = new Map<string, Database.Statement>()
  /** the newest row id of each table, noted at each prune (see {@link prune}) */
  readonly #marks: Array<{ at: number, delivery: number, event: number, hop: number }> = []
  /** where the next prune reads deliveries and events from (see {@link prune}) */
  readonly #pruneCursor = { delivery: 0, event: 0 }
  #pruneMore = false
  readonly #insertHop: Database.Statement
  readonly #adoptDelivery: Database.Statement
  readonly #adoptTx: (copies: readonly DeliveryCopy[], now: number) => number
  #acked = 0
  /** acknowledged and failed attempts per edge since this queue was opened (the dashboard's rates) */
  readonly #edgeTotals = new Map<string, { acked: number, failed: number }>()
  readonly #completeTx: (done: ReadonlyArray<{ readonly id: number, readonly hop: Hop }>, now: number) => void
  readonly #inTransaction: (work: () => unknown) => unknown
  readonly #claimTx: (edge: string, limit: number, now: number) => { rows: DeliveryRow[], nextDue: number | undefined }
  readonly #checkpointer: Checkpointer

  /**
   * Opens (or creates) the queue. One that exists but is empty, cannot be read, or fails
   * SQLite's quick_check is refused with a QueueError saying what to do: nothing is
   * started over a queue that may have lost events.
   */
  constructor (init: QueueInit) {
    refuseEmptyQueue(init.path)
    try {
      this.#db = new Database(init.path)
    } catch (err) {
      throw new QueueError(`Cannot open the event queue ${init.path}: ${(err as Error).message}`, { cause: err })
    }
    this.#maxAttempts = init.maxAttempts ?? 5
    this.#baseBackoff = init.baseBackoffMs ?? 100
    this.#maxBackoff = init.maxBackoffMs ?? 30_000
    try {
      this.#db.pragma('busy_timeout = 5000')
      const problems = quickCheck(this.#db)
      if (problems.length > 0) {
        throw new QueueError(`The event queue ${init.path} is damaged (SQLite's quick_check: ${problems.slice(0, 3).join('; ')}): ${DAMAGED_HINT}`)
      }
      this.#db.pragma('journal_mode = WAL')
      this.#db.pragma(`synchronous = ${init.durability === 'full' ? 'FULL' : 'NORMAL'}`)
      createSchema(this.#db)
      // statement journals (savepoints of a group commit) in memory, not in temporary files
      this.#db.pragma('temp_store = MEMORY')
      this.#checkpointer = new Checkpointer(this.#db, init.path)
    } catch (err) {
      this.#db.close()
      if (err instanceof QueueError) {
        throw err
      }
      throw new QueueError(`Cannot open the event queue ${init.path}: ${(err as Error).message}: ${DAMAGED_HINT}`, { cause: err })
    }
    // a crash leaves claimed deliveries in flight: they go out again (at least once)
    // a delivery that was running counts as an attempt: an event that kills the node on
    // every delivery ends in the dead-letter queue instead of a crash loop
    this.#db.prepare(`UPDATE deliveries SET state = CASE WHEN attempts + 1 >= ? THEN 'dead' ELSE 'pending' END, attempts = attempts + 1,
      last_error = 'the node stopped while delivering it (a crash, a kill, or the event itself)', updated_at = ? WHERE state = 'inflight'`).run(this.#maxAttempts, Date.now())
    this.#insertEvent = this.#db.prepare(INSERT_EVENT)
    this.#insertDelivery = this.#db.prepare("INSERT OR IGNORE INTO deliveries (event_id, edge, target, priority, state, next_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)")
    // a claim takes the first pending deliveries of an edge: they are its pending ones up to the last id taken
    this.#markInflight = this.#db.prepare("UPDATE deliveries SET state = 'inflight', updated_at = ? WHERE state = 'pending' AND edge = ? AND id <= ?")
    // the ids as a JSON array: one statement for a batch
    this.#markDone = this.#db.prepare("UPDATE deliveries SET state = 'done', updated_at = ? WHERE id IN (SELECT value FROM json_each(?)) AND state = 'inflight' RETURNING edge")
    this.#retry = this.#db.prepare("UPDATE deliveries SET state = 'pending', attempts = attempts + 1, next_at = ?, last_error = ?, updated_at = ? WHERE id = ?")
    this.#release = this.#db.prepare("UPDATE deliveries SET state = 'pending', next_at = ?, last_error = ?, updated_at = ? WHERE id = ?")
    this.#kill = this.#db.prepare("UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ?")
    this.#insertHop = this.#db.prepare('INSERT INTO hops (trace_id, event_id, source, target, topic, bytes, compressed, attempt, started_at, ended_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    this.#inTransaction = this.#db.transaction((work: () => unknown) => work())
    // one transaction for the rows a claim marks in flight (not one per row)
    this.#claimTx = this.#ownTransaction((edge: string, limit: number, now: number) => {
      // rows as arrays (no object per row), in the column order of DeliveryRow
      const pending = (this.#dueStatement(limit).all(edge) as DueRow[]).map(dueRow)
      const firstLater = pending.findIndex((row) => row.next_at > now)
      const rows = firstLater === -1 ? pending : pending.slice(0, firstLater)
      const last = rows.at(-1)
      if (last !== undefined) {
        this.#markInflight.run(now, edge, last.id)
      }
      return { rows, nextDue: pending[firstLater]?.next_at }
    })
    this.#completeTx = this.#ownTransaction((done: ReadonlyArray<{ readonly id: number, readonly hop: Hop }>, now: number) => {
      if (done.length === 0) {
        return
      }
      for (const { hop } of done) {
        this.recordHop(hop)
      }
      for (const row of this.#markDone.all(now, JSON.stringify(done.map(({ id }) => id))) as Array<{ edge: string }>) {
        this.#acked++
        this.#totals(row.edge).acked++
        this.#count(row.edge, -1)
      }
    })
    this.#enqueueTx = this.#ownTransaction((event: QueuedEvent, targets: readonly DeliveryTarget[]) => {
      this.#writeEvent(event)
      let added = 0
      for (const target of targets) {
        const changes = this.#insertDelivery.run(event.id, target.edge, target.to, target.priority, event.createdAt, event.createdAt).changes
        this.#count(target.edge, changes)
        added += changes
      }
      return added
    })
    this.#enqueueManyTx = this.#db.transaction((items: ReadonlyArray<{ readonly event: QueuedEvent, readonly targets: readonly DeliveryTarget[] }>) =>
      items.reduce((added, { event, targets }) => added + this.#enqueueTx(event, targets), 0))
    this.#adoptDelivery = this.#db.prepare("INSERT OR IGNORE INTO deliveries (event_id, edge, target, priority, state, attempts, next_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)")
    this.#adoptTx = this.#db.transaction((copies: readonly DeliveryCopy[], now: number) => {
      let added = 0
      for (const copy of copies) {
        this.#writeEvent(copy.event)
        const changes = this.#adoptDelivery.run(copy.event.id, copy.edge, copy.to, copy.priority, copy.attempts, now, now).changes
        this.#count(copy.edge, changes)
        added += changes
      }
      return added
    })
    this.#recount()
  }

  /**
   * `work` in a transaction of its own, or as part of the one running (a savepoint per
   * call would cost more than the work: callers that need one use {@link atomically})
   */
  #ownTransaction<A extends unknown[], R> (work: (...args: A) => R): (...args: A) => R {
    const transaction = this.#db.transaction(work)
    return (...args: A): R => this.#db.inTransaction ? work(...args) : transaction(...args)
  }

  /**
   * A statement prepared once, on first use (for the writes of hand-over and replicas,
   * and the claim query per limit); `raw`: its rows come as arrays
   */
  #prepare (sql: string, raw = false): Database.Statement {
    let statement = this.#statements.get(sql)
    if (statement === undefined) {
      statement = this.#db.prepare(sql)
      if (raw) {
        statement.raw(true)
      }
      this.#statements.set(sql, statement)
    }
    return statement
  }

  /** The claim query: its LIMIT a literal (one bound as a parameter makes SQLite prepare the statement again at every run) */
  #dueStatement (limit: number): Database.Statement {
    return this.#prepare(`
        SELECT d.id, d.edge, d.target, d.priority, d.attempts, d.next_at, e.id AS event_id, e.topic, e.source, e.payload, e.trace_id, e.hops, e.created_at, e.traceparent
        FROM deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.state = 'pending' AND d.edge = ?
        ORDER BY d.id LIMIT ${Math.max(1, Math.floor(limit))}`, true)
  }

  #count (edge: string, delta: number): void {
    if (delta !== 0) {
      this.#delta.set(edge, (this.#delta.get(edge) ?? 0) + delta)
    }
  }

  /**
   * Run a write; its changes to the depth per edge count once the outermost write has
   * returned (committed). A nested write that throws was rolled back to its savepoint:
   * its changes do not count.
   */
  #counted<T> (write: () => T): T {
    if (this.#writing) {
      const before = new Map(this.#delta)
      try {
        return write()
      } catch (err) {
        this.#delta.clear()
        for (const [edge, delta] of before) {
          this.#delta.set(edge, delta)
        }
        throw err
      }
    }
    this.#writing = true
    try {
      const result = write()
      for (const [edge, delta] of this.#delta) {
        this.#depth.set(edge, (this.#depth.get(edge) ?? 0) + delta)
      }
      this.#checkpointer.wrote()
      return result
    } finally {
      this.#writing = false
      this.#delta.clear()
    }
  }

  /**
   * Run `work` (calls of this queue) in one transaction: one commit, all or nothing. The
   * dispatcher acknowledges a delivery and claims the next of its edge in one.
   */
  atomically<T> (work: () => T): T {
    return this.#counted(() => this.#inTransaction(work) as T)
  }

  #recount (): void {
    const rows = this.#db.prepare("SELECT edge, COUNT(*) AS n FROM deliveries WHERE state IN ('pending', 'inflight') GROUP BY edge").all() as Array<{ edge: string, n: number }>
    this.#depth = new Map(rows.map((r) => [r.edge, r.n]))
  }

  #writeEvent (event: QueuedEvent): void {
    this.#insertEvent.run(event.id, event.topic, event.source, Buffer.from(event.payload.buffer, event.payload.byteOffset, event.payload.byteLength), event.traceId, event.hops.length === 0 ? '[]' : JSON.stringify(event.hops), event.createdAt, event.traceparent ?? null)
  }

  /**
   * Write an event and its deliveries durably, in one transaction. Idempotent: the same
   * event id enqueued twice adds nothing the second time. Returns the deliveries added.
   */
  enqueue (event: QueuedEvent, targets: readonly DeliveryTarget[]): number {
    return this.#counted(() => this.#enqueueTx(event, targets))
  }

  /**
   * Write several events and their deliveries durably, in order, in one transaction
   * (group commit: one commit for every emit of an event-loop turn). Returns the
   * deliveries added.
   */
  enqueueMany (items: ReadonlyArray<{ readonly event: QueuedEvent, readonly targets: readonly DeliveryTarget[] }>): number {
    return this.#counted(() => this.#enqueueManyTx(items))
  }

  /**
   * Claim up to `limit` deliveries of one edge, oldest first, marking them in flight. The
   * edge's order holds: a delivery waiting for its retry time blocks the ones after it.
   * Callers keep the order by claiming again only after the previous claim is settled.
   */
  claim (edge: string, limit: number, now = Date.now()): Delivery[] {
    return this.claimDue(edge, limit, now).deliveries
  }

  /**
   * {@link claim}, also saying when the edge's head is due when it is pending but not due
   * yet (one query for both)
   */
  claimDue (edge: string, limit: number, now = Date.now()): { deliveries: Delivery[], nextDue: number | undefined } {
    const { rows, nextDue } = this.#claimTx(edge, limit, now)
    if (rows.length > 0) {
      this.#checkpointer.wrote()
    }
    return { deliveries: rows.map(deliveryOf), nextDue }
  }

  /** Deliveries that succeeded: their hops and acknowledgements, in one transaction */
  complete (done: ReadonlyArray<{ readonly id: number, readonly hop: Hop }>, now = Date.now()): void {
    this.#counted(() => { this.#completeTx(done, now) })
  }

  /** Deliveries acknowledged since this queue was opened: a counter, not a query */
  get acked (): number {
    return this.#acked
  }

  /**
   * The delivery failed: retry after a back-off with jitter, or dead-letter it after
   * `maxAttempts` (at once when `final`: the consumer rejected it). Returns what happened.
   */
  fail (delivery: Delivery, error: string, options: { final?: boolean, now?: number } = {}): 'retry' | 'dead' {
    const now = options.now ?? Date.now()
    this.#totals(delivery.edge).failed++
    if (options.final === true || delivery.attempts + 1 >= this.#maxAttempts) {
      // counted like every other write: it takes effect when its transaction commits
      this.#counted(() => { this.#count(delivery.edge, -this.#kill.run(error, now, delivery.id).changes) })
      return 'dead'
    }
    const backoff = Math.min(this.#maxBackoff, this.#baseBackoff * 2 ** delivery.attempts)
    const jittered = Math.round(backoff * (0.5 + Math.random()))
    this.#retry.run(now + jittered, error, now, delivery.id)
    this.#checkpointer.wrote()
    return 'retry'
  }

  /**
   * The delivery could not be tried (no node runs its target right now): put it back,
   * due again after `delayMs`, without counting an attempt
   */
  release (delivery: Delivery, reason: string, delayMs: number, now = Date.now()): void {
    this.#release.run(now + delayMs, reason, now, delivery.id)
    this.#checkpointer.wrote()
  }

  #totals (edge: string): { acked: number, failed: number } {
    let totals = this.#edgeTotals.get(edge)
    if (totals === undefined) {
      totals = { acked: 0, failed: 0 }
      this.#edgeTotals.set(edge, totals)
    }
    return totals
  }

  /** Per edge: deliveries acknowledged and attempts failed since this queue was opened (counters, not queries) */
  edgeTotals (): ReadonlyMap<string, { readonly acked: number, readonly failed: number }> {
    return this.#edgeTotals
  }

  /**
   * The latest traces this node recorded a hop of, newest first: each with the topic,
   * source and target of its latest hop
   */
  recentTraces (limit: number): Array<{ traceId: string, eventId: string, topic: string, source: string, target: string, at: number }> {
    const rows = this.#prepare('SELECT trace_id, event_id, topic, source, target, started_at FROM hops ORDER BY id DESC LIMIT 500').all() as Array<{ trace_id: string, event_id: string, topic: string, source: string, target: string, started_at: number }>
    const seen = new Set<string>()
    const out = []
    for (const row of rows) {
      if (seen.has(row.trace_id)) {
        continue
      }
      seen.add(row.trace_id)
      out.push({ traceId: row.trace_id, eventId: row.event_id, topic: row.topic, source: row.source, target: row.target, at: row.started_at })
      if (out.length === limit) {
        break
      }
    }
    return out
  }

  /** Pending and in-flight deliveries per edge */
  depth (): Map<string, number> {
    return new Map([...this.#depth].filter(([, n]) => n > 0))
  }

  /** Pending and in-flight deliveries of one edge (with the writes of the transaction running now) */
  edgeDepth (edge: string): number {
    return (this.#depth.get(edge) ?? 0) + (this.#delta.get(edge) ?? 0)
  }

  /**
   * Whether `edge` may have pending deliveries, counting the writes of the transaction
   * running now: false means a claim would find nothing (no query needed)
   */
  mayHavePending (edge: string): boolean {
    return this.edgeDepth(edge) > 0
  }

  /** The dead-letter queue */
  deadLetters (limit = 1000): DeadLetter[] {
    const rows = this.#db.prepare("SELECT id, event_id, edge, target, attempts, last_error, updated_at FROM deliveries WHERE state = 'dead' ORDER BY id LIMIT ?").all(limit) as Array<{ id: number, event_id: string, edge: string, target: string, attempts: number, last_error: string, updated_at: number }>
    return rows.map((r) => ({ id: r.id, eventId: r.event_id, edge: r.edge, to: r.target, attempts: r.attempts, lastError: r.last_error, failedAt: r.updated_at }))
  }

  /** Put dead deliveries back in the queue (all, or the given ids); returns how many */
  replay (ids?: readonly number[], now = Date.now()): number {
    try {
      if (ids === undefined) {
        return this.#db.prepare("UPDATE deliveries SET state = 'pending', attempts = 0, next_at = ?, updated_at = ? WHERE state = 'dead'").run(now, now).changes
      }
      const stmt = this.#db.prepare("UPDATE deliveries SET state = 'pending', attempts = 0, next_at = ?, updated_at = ? WHERE state = 'dead' AND id = ?")
      return this.#db.transaction(() => ids.reduce((n, id) => n + stmt.run(now, now, id).changes, 0))()
    } finally {
      this.#recount()
      this.#checkpointer.wrote()
    }
  }

  /** Record one hop of a trace */
  recordHop (hop: Hop): void {
    this.#insertHop.run(hop.traceId, hop.eventId, hop.from, hop.to, hop.topic, hop.bytes, hop.compressed ? 1 : 0, hop.attempt, hop.startedAt, hop.endedAt, hop.outcome)
    this.#checkpointer.wrote()
  }

  /**
   * The hops of a trace, in order. `id` is a trace id or the id of any event in it (an
   * unambiguous prefix of either works too).
   */
  trace (id: string): { traceId: string, hops: Hop[] } | undefined {
    const hopsOf = (traceId: string): Hop[] => (this.#db.prepare('SELECT * FROM hops WHERE trace_id = ? ORDER BY started_at, id').all(traceId) as HopRow[]).map(hopOfRow)
    // a trace id, or the id of an event still in the queue (hops are indexed by trace only:
    // one index less to write per delivery)
    const event = this.#db.prepare('SELECT trace_id FROM events WHERE id = ?').get(id) as { trace_id: string } | undefined
    for (const traceId of new Set([id, event?.trace_id ?? id])) {
      const hops = hopsOf(traceId)
      if (hops.length > 0) {
        return { traceId, hops }
      }
    }
    // a prefix, or an event compacted away since: a scan
    const found = this.#db.prepare("SELECT DISTINCT trace_id FROM hops WHERE trace_id LIKE ? ESCAPE '\\' OR event_id LIKE ? ESCAPE '\\' LIMIT 2").all(`${escapeLike(id)}%`, `${escapeLike(id)}%`) as Array<{ trace_id: string }>
    const traceId = found.length === 1 ? found[0]?.trace_id : undefined
    return traceId === undefined ? undefined : { traceId, hops: hopsOf(traceId) }
  }

  /** Counts by state, for status and tests */
  counts (): Record<'pending' | 'inflight' | 'done' | 'dead', number> {
    const out = { pending: 0, inflight: 0, done: 0, dead: 0 }
    for (const row of this.#db.prepare('SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state').all() as Array<{ state: keyof typeof out, n: number }>) {
      out[row.state] = row.n
    }
    return out
  }

  /**
   * Forget what is over, so that the queue does not grow without end: deliveries done
   * (and their events, once no delivery needs them) `doneMs` after they were queued, and
   * the hops of traces `traceMs` after they were recorded. Dead letters and undelivered
   * events stay. At most `limit` rows of each table are read per call (a short transaction
   * on the serving thread); call it again while {@link pruneMore} says so.
   *
   * Age is told by row id: each call notes the newest id of each table, and a row is old
   * once an id at least as large was noted that long ago (rows are only ever appended), so
   * a call reads old rows only. After a restart, rows become old one period after the
   * first call.
   */
  prune (settings: PruneSettings = {}): { deliveries: number, events: number, hops: number } {
    const now = settings.now ?? Date.now()
    const doneMs = settings.doneMs ?? DONE_RETENTION_MS
    const traceMs = settings.traceMs ?? TRACE_RETENTION_MS
    const limit = settings.limit ?? 5_000
    const newest = (table: string): number => (this.#prepare(`SELECT COALESCE(MAX(rowid), 0) AS n FROM ${table}`).get() as { n: number }).n
    const last = this.#marks.at(-1)
    if (last === undefined || now - last.at >= MARK_EVERY_MS) {
      this.#marks.push({ at: now, delivery: newest('deliveries'), event: newest('events'), hop: newest('hops') })
    }
    const mark = (age: number): { delivery: number, event: number, hop: number } | undefined => this.#marks.findLast((m) => m.at <= now - age)
    const done = mark(doneMs)
    const traced = mark(traceMs)
    // keep the marks that a later call may still need
    const oldest = this.#marks.findLastIndex((m) => m.at <= now - Math.max(doneMs, traceMs))
    if (oldest > 0) {
      this.#marks.splice(0, oldest)
    }
    // deliveries and events are read a window of `limit` ids at a time from a cursor that
    // wraps at the cutoff: rows still owed (a backlog, dead letters) are passed over, not
    // scanned again at every call
    const window = (table: 'delivery' | 'event', cutoff: number): [number, number] => {
      const from = this.#pruneCursor[table] >= cutoff ? 0 : this.#pruneCursor[table]
      const to = Math.min(cutoff, from + limit)
      this.#pruneCursor[table] = to >= cutoff ? 0 : to
      return [from, to]
    }
    const removed = this.#db.transaction(() => {
      if (done === undefined) {
        return { deliveries: 0, events: 0 }
      }
      const [d0, d1] = window('delivery', done.delivery)
      const [e0, e1] = window('event', done.event)
      return {
        deliveries: this.#prepare("DELETE FROM deliveries WHERE id > ? AND id <= ? AND state = 'done'").run(d0, d1).changes,
        events: this.#prepare('DELETE FROM events WHERE rowid IN (SELECT e.rowid FROM events e WHERE e.rowid > ? AND e.rowid <= ? AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id))').run(e0, e1).changes
      }
    })()
    const hops = traced === undefined ? 0 : this.#prepare('DELETE FROM hops WHERE id IN (SELECT id FROM hops WHERE id <= ? ORDER BY id LIMIT ?)').run(traced.hop, limit).changes
    this.#pruneMore = this.#pruneCursor.delivery !== 0 || this.#pruneCursor.event !== 0 || hops === limit
    if (removed.deliveries + removed.events + hops > 0) {
      this.#checkpointer.wrote()
    }
    return { ...removed, hops }
  }

  /** Whether the last {@link prune} left old rows to look at: call it again */
  get pruneMore (): boolean {
    return this.#pruneMore
  }

  /**
   * Pending deliveries (and in-flight ones with `inflight`) with their events, in queue
   * order (each edge's order), from the one after `afterId`: what a node that leaves
   * hands over, or copies to another node
   */
  undelivered (limit: number, afterId = 0, options: { inflight?: boolean } = {}): Delivery[] {
    const rows = this.#prepare(`
      SELECT d.id, d.edge, d.target, d.priority, d.attempts, d.next_at, e.id AS event_id, e.topic, e.source, e.payload, e.trace_id, e.hops, e.created_at, e.traceparent
      FROM deliveries d JOIN events e ON e.id = d.event_id
      WHERE d.state IN ('pending', ?) AND d.id > ? ORDER BY d.id LIMIT ?`).all(options.inflight === true ? 'inflight' : 'pending', afterId, limit) as DeliveryRow[]
    return rows.map(deliveryOf)
  }

  /**
   * Remove pending deliveries that another node has taken (and their events once no
   * delivery needs them), in one transaction. Returns the deliveries removed.
   */
  forget (ids: readonly number[]): number {
    const remove = this.#prepare("DELETE FROM deliveries WHERE id = ? AND state = 'pending' RETURNING event_id, edge")
    const orphan = this.#prepare('DELETE FROM events WHERE id = ? AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?)')
    return this.#counted(() => this.#db.transaction(() => {
      let removed = 0
      for (const id of ids) {
        const row = remove.get(id) as { event_id: string, edge: string } | undefined
        if (row !== undefined) {
          removed++
          this.#count(row.edge, -1)
          orphan.run(row.event_id, row.event_id)
        }
      }
      return removed
    })())
  }

  /**
   * Take deliveries handed over by another node, durably, in one transaction and in the
   * order given, keeping their attempts; one this queue has already (same event and
   * edge) adds nothing. Returns the deliveries added.
   */
  adopt (copies: readonly DeliveryCopy[], now = Date.now()): number {
    return this.#counted(() => this.#adoptTx(copies, now))
  }

  /**
   * Hold copies of another node's (`origin`'s) undelivered deliveries, durably: they are
   * not delivered from here unless {@link promoteReplicas} is called when that node is gone
   */
  holdReplicas (origin: string, copies: readonly DeliveryCopy[]): number {
    const insert = this.#prepare(`INSERT OR IGNORE INTO replicas (origin, event_id, edge, target, priority, attempts, topic, source, payload, trace_id, hops, created_at, traceparent)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    const held = this.#db.transaction(() => copies.reduce((n, c) => n + insert.run(origin, c.event.id, c.edge, c.to, c.priority, c.attempts, c.event.topic, c.event.source,
      Buffer.from(c.event.payload.buffer, c.event.payload.byteOffset, c.event.payload.byteLength), c.event.traceId, JSON.stringify(c.event.hops), c.event.createdAt, c.event.traceparent ?? null).changes, 0))()
    this.#checkpointer.wrote()
    return held
  }

  /** Drop held copies of `origin`'s deliveries (delivered there), or all of them. Returns how many */
  dropReplicas (origin: string, keys: ReadonlyArray<{ readonly eventId: string, readonly edge: string }> | 'all'): number {
    const drop = this.#prepare('DELETE FROM replicas WHERE origin = ? AND event_id = ? AND edge = ?')
    const dropped = keys === 'all'
      ? this.#prepare('DELETE FROM replicas WHERE origin = ?').run(origin).changes
      : this.#db.transaction(() => keys.reduce((n, k) => n + drop.run(origin, k.eventId, k.edge).changes, 0))()
    this.#checkpointer.wrote()
    return dropped
  }

  /**
   * `origin` is gone: its held deliveries become this queue's own (pending, in the order
   * they were held), in one transaction. Returns the deliveries added.
   */
  promoteReplicas (origin: string, now = Date.now()): number {
    const rows = this.#prepare('SELECT 0 AS id, edge, target, priority, attempts, 0 AS next_at, event_id, topic, source, payload, trace_id, hops, created_at, traceparent FROM replicas WHERE origin = ? ORDER BY seq')
    return this.#counted(() => this.#db.transaction(() => {
      const added = this.#adoptTx((rows.all(origin) as DeliveryRow[]).map(deliveryOf), now)
      this.dropReplicas(origin, 'all')
      return added
    })())
  }

  /** Held copies per origin node */
  replicaCounts (): Map<string, number> {
    const rows = this.#db.prepare('SELECT origin, COUNT(*) AS n FROM replicas GROUP BY origin').all() as Array<{ origin: string, n: number }>
    return new Map(rows.map((r) => [r.origin, r.n]))
  }

  close (): void {
    this.#checkpointer.close()
    this.#db.close()
  }
}

/** A row of the claim query in raw mode: its columns in the order of {@link DeliveryRow} */
type DueRow = [number, string, string, number, number, number, string, string, string, Buffer, string, string, number, string | null]

function dueRow (r: DueRow): DeliveryRow {
  return { id: r[0], edge: r[1], target: r[2], priority: r[3], attempts: r[4], next_at: r[5], event_id: r[6], topic: r[7], source: r[8], payload: r[9], trace_id: r[10], hops: r[11], created_at: r[12], traceparent: r[13] }
}

function deliveryOf (row: DeliveryRow): Delivery {
  return {
    id: row.id,
    edge: row.edge,
    to: row.target,
    priority: row.priority,
    attempts: row.attempts,
    event: eventOfRow(row)
  }
}

function eventOfRow (row: DeliveryRow): QueuedEvent {
  const event: QueuedEvent = {
    id: row.event_id,
    topic: row.topic,
    source: row.source,
    payload: new Uint8Array(row.payload.buffer, row.payload.byteOffset, row.payload.byteLength),
    traceId: row.trace_id,
    hops: row.hops === '[]' ? [] : JSON.parse(row.hops) as unknown[],
    createdAt: row.created_at
  }
  // a row of an older queue has no such column (undefined), a newer one NULL
  return row.traceparent === null || row.traceparent === undefined ? event : { ...event, traceparent: row.traceparent }
}

interface HopRow {
  trace_id: string
  event_id: string
  source: string
  target: string
  topic: string
  bytes: number
  compressed: number
  attempt: number
  started_at: number
  ended_at: number
  outcome: string
}

function hopOfRow (r: HopRow): Hop {
  return { traceId: r.trace_id, eventId: r.event_id, from: r.source, to: r.target, topic: r.topic, bytes: r.bytes, compressed: r.compressed === 1, attempt: r.attempt, startedAt: r.started_at, endedAt: r.ended_at, outcome: r.outcome }
}

function escapeLike (text: string): string {
  return text.replace(/[\\%_]/g, (ch) => `\\${ch}`)
}
