/**
 * The log book: per-brane ring buffers of structured records (requests, guest output,
 * lifecycle events) that `omega logs` reads from a running daemon. Bounded in entries
 * and bytes per brane, so a guest printing without end cannot grow memory.
 */
import type { Logger } from '../interfaces/index.ts'

export type LogKind = 'request' | 'stdout' | 'stderr' | 'event'
export type LogLevel = 'info' | 'warn' | 'error'

export interface LogRecord {
  /** increases by one per record in this daemon */
  readonly seq: number
  /** milliseconds since the epoch */
  readonly time: number
  readonly brane: string
  readonly kind: LogKind
  readonly level: LogLevel
  /** the human line, e.g. `REQ GET /x · RES 200 … · END …` */
  readonly message: string
  readonly fields?: Readonly<Record<string, unknown>>
}

export interface LogQuery {
  /** only this brane */
  brane?: string
  /** only records at or after this time (ms since the epoch) */
  since?: number
  /** only records after this sequence number */
  after?: number
  /** at most this many (the newest). @default 1000 */
  limit?: number
}

export interface LogBookInit {
  /** records kept per brane. @default 5000 */
  maxEntries?: number
  /** bytes of messages kept per brane. @default 4 MiB */
  maxBytes?: number
}

export interface LogBookComponents {
  /**
   * every record is also written here, as structured JSON: guest output at its level,
   * request and event-delivery lines at `debug` (`warn`/`error` ones at theirs), so that
   * a busy brane does not write a line per call to the daemon's log at the default level
   */
  logger?: Logger
}

type Listener = (record: LogRecord) => void

/** What a record's message and fields say */
export interface RecordText {
  readonly message: string
  readonly fields: Readonly<Record<string, unknown>>
}

/**
 * A record whose message and fields are made when first read: request and event lines,
 * which are written at every call and mostly never read, keep the few values they are
 * made of until then (formatting each line as it was written cost ~10 % of a hello
 * gateway's requests/s). Serialises as a plain record.
 */
export abstract class DeferredRecord implements LogRecord {
  seq = 0
  readonly time: number
  readonly brane: string
  readonly kind: LogKind
  readonly level: LogLevel
  #text: RecordText | undefined

  constructor (brane: string, kind: LogKind, level: LogLevel, time = Date.now()) {
    this.brane = brane
    this.kind = kind
    this.level = level
    this.time = time
  }

  /** the bytes it counts for in the log book's bound before its message is made */
  abstract get size (): number

  /** its message and fields, made once, when first read */
  protected abstract text (): RecordText

  get message (): string {
    this.#text ??= this.text()
    return this.#text.message
  }

  get fields (): Readonly<Record<string, unknown>> {
    this.#text ??= this.text()
    return this.#text.fields
  }

  toJSON (): LogRecord {
    return { seq: this.seq, time: this.time, brane: this.brane, kind: this.kind, level: this.level, message: this.message, fields: this.fields }
  }
}

/** What a record counts for in a ring's byte bound */
function sizeOf (record: LogRecord): number {
  return record instanceof DeferredRecord ? record.size : record.message.length
}

class Ring {
  readonly records: LogRecord[] = []
  bytes = 0
}

export class LogBook {
  readonly #maxEntries: number
  readonly #maxBytes: number
  readonly #logger: Logger | undefined
  /** the levels the logger writes, asked once */
  readonly #logs: Readonly<Record<'debug' | LogLevel, boolean>>
  readonly #rings = new Map<string, Ring>()
  readonly #listeners = new Set<{ brane?: string, listener: Listener }>()
  #seq = 0

  constructor (components: LogBookComponents = {}, init: LogBookInit = {}) {
    const logger = components.logger
    this.#logger = logger
    const enabled = (level: string): boolean => logger !== undefined && (logger.isLevelEnabled?.(level) ?? true)
    this.#logs = { debug: enabled('debug'), info: enabled('info'), warn: enabled('warn'), error: enabled('error') }
    this.#maxEntries = init.maxEntries ?? 5000
    this.#maxBytes = init.maxBytes ?? 4 * 2 ** 20
  }

  /** Adds a record (a {@link DeferredRecord} as it is: its text is made when read) */
  append (entry: (Omit<LogRecord, 'seq' | 'time'> & { time?: number }) | DeferredRecord): LogRecord {
    let record: LogRecord
    if (entry instanceof DeferredRecord) {
      entry.seq = ++this.#seq
      record = entry
    } else {
      // one shape for every record (a spread of `entry` would make many)
      record = entry.fields === undefined
        ? { seq: ++this.#seq, time: entry.time ?? Date.now(), brane: entry.brane, kind: entry.kind, level: entry.level, message: entry.message }
        : { seq: ++this.#seq, time: entry.time ?? Date.now(), brane: entry.brane, kind: entry.kind, level: entry.level, message: entry.message, fields: entry.fields }
    }
    let ring = this.#rings.get(record.brane)
    if (ring === undefined) {
      ring = new Ring()
      this.#rings.set(record.brane, ring)
    }
    ring.records.push(record)
    ring.bytes += sizeOf(record)
    while (ring.records.length > this.#maxEntries || (ring.bytes > this.#maxBytes && ring.records.length > 1)) {
      const dropped = ring.records.shift()
      ring.bytes -= dropped === undefined ? 0 : sizeOf(dropped)
    }
    const level = record.level === 'info' && record.kind === 'request' ? 'debug' : record.level
    if (this.#logs[level]) {
      this.#logger?.[level]({ brane: record.brane, kind: record.kind, ...record.fields }, record.message)
    }
    for (const { brane, listener } of this.#listeners) {
      if (brane === undefined || brane === record.brane) {
        listener(record)
      }
    }
    return record
  }

  /** Records matching `query`, oldest first */
  query (query: LogQuery = {}): LogRecord[] {
    const rings = query.brane === undefined ? [...this.#rings.values()] : [this.#rings.get(query.brane)].filter((r) => r !== undefined)
    const since = query.since ?? 0
    const after = query.after ?? 0
    const matches = rings.flatMap((ring) => ring.records.filter((r) => r.time >= since && r.seq > after))
    matches.sort((a, b) => a.seq - b.seq)
    const limit = query.limit ?? 1000
    return matches.length > limit ? matches.slice(matches.length - limit) : matches
  }

  /** Call `listener` for every new record (of one brane, if given); returns the unsubscribe */
  subscribe (listener: Listener, brane?: string): () => void {
    const entry = brane === undefined ? { listener } : { brane, listener }
    this.#listeners.add(entry)
    return () => { this.#listeners.delete(entry) }
  }

  /** The branes that have records */
  get branes (): string[] {
    return [...this.#rings.keys()].sort()
  }
}
