/**
 * `omega queue check` and `omega queue salvage`: what a damaged queue still holds, and a
 * new queue made of every event and delivery that can still be read from it, row by
 * row, so that one bad page loses only what is on it. The damaged file is kept.
 */
import { existsSync, renameSync, rmSync, statSync } from 'node:fs'
import Database from 'better-sqlite3'
import { QueueError } from './queue.ts'
import { createSchema, INSERT_EVENT, quickCheck } from './schema.ts'

export interface QueueCheck {
  readonly path: string
  readonly bytes: number
  /** quick_check's findings; empty when the file is sound */
  readonly problems: readonly string[]
}

export interface SalvageReport {
  readonly events: number
  readonly deliveries: number
  /** rows that could not be read */
  readonly lost: number
  /** where the damaged file (and its -wal) now are */
  readonly damaged: string
}

/** Opens a queue file read-only, as it is, for a look */
function openReadOnly (path: string): Database.Database {
  if (!existsSync(path)) {
    throw new QueueError(`No event queue at ${path}`)
  }
  try {
    return new Database(path, { readonly: true, fileMustExist: true })
  } catch (err) {
    throw new QueueError(`Cannot open the event queue ${path}: ${(err as Error).message}`, { cause: err })
  }
}

/** What SQLite says of the queue at `path` (a file that cannot even be read is one problem) */
export function checkQueue (path: string): QueueCheck {
  const bytes = statSync(path, { throwIfNoEntry: false })?.size ?? 0
  if (bytes === 0) {
    return { path, bytes, problems: existsSync(path) ? ['the file is empty (0 bytes): it was truncated'] : [`no file at ${path}`] }
  }
  let db: Database.Database | undefined
  try {
    db = openReadOnly(path)
    return { path, bytes, problems: quickCheck(db) }
  } catch (err) {
    return { path, bytes, problems: [(err as Error).message] }
  } finally {
    db?.close()
  }
}

/** Each row of `table` that can be read, by rowid (a failing read skips that row only) */
function * readableRows (db: Database.Database, table: 'events' | 'deliveries', lost: { count: number }): Generator<Record<string, unknown>> {
  let max = 0
  try {
    max = (db.prepare(`SELECT max(rowid) AS max FROM ${table}`).get() as { max: number | null }).max ?? 0
  } catch {
    // the table's last page is unreadable: try every rowid its sequence (deliveries) or
    // the file's size (events: at least 16 bytes a row) allows
    try {
      max = table === 'deliveries'
        ? (db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'").get() as { seq?: number } | undefined)?.seq ?? 0
        : Math.floor((db.pragma('page_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number) / 16)
    } catch {}
  }
  const one = db.prepare(`SELECT rowid AS _rowid, * FROM ${table} WHERE rowid = ?`)
  for (let rowid = 1; rowid <= max; rowid++) {
    try {
      const row = one.get(rowid) as Record<string, unknown> | undefined
      if (row !== undefined) {
        yield row
      }
    } catch {
      lost.count++
    }
  }
}

/**
 * Copies every readable event and delivery of the queue at `path` into a new queue, then
 * moves the damaged file aside (`<path>.damaged-<time>`) and puts the new one in its
 * place. Deliveries in flight go back to pending (at least once); traces are not kept.
 * The node must not be running.
 */
export function salvageQueue (path: string, now = new Date()): SalvageReport {
  const source = openReadOnly(path)
  const stamp = now.toISOString().replace(/[:.]/g, '-')
  const fresh = `${path}.salvage-${stamp}`
  const target = new Database(fresh)
  const lost = { count: 0 }
  let events = 0
  let deliveries = 0
  try {
    target.pragma('journal_mode = WAL')
    createSchema(target)
    const insertEvent = target.prepare(INSERT_EVENT)
    const insertDelivery = target.prepare('INSERT OR IGNORE INTO deliveries (id, event_id, edge, target, priority, state, attempts, next_at, last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    const known = new Set<string>()
    target.transaction(() => {
      for (const e of readableRows(source, 'events', lost)) {
        if (typeof e.id !== 'string' || !(e.payload instanceof Uint8Array)) {
          lost.count++
          continue
        }
        insertEvent.run(e.id, e.topic, e.source, e.payload, e.trace_id, e.hops, e.created_at, typeof e.traceparent === 'string' ? e.traceparent : null)
        known.add(e.id)
        events++
      }
      for (const d of readableRows(source, 'deliveries', lost)) {
        if (typeof d.event_id !== 'string' || !known.has(d.event_id)) {
          lost.count++
          continue
        }
        const state = d.state === 'inflight' ? 'pending' : d.state
        insertDelivery.run(d.id, d.event_id, d.edge, d.target, d.priority, state, d.attempts, d.next_at, d.last_error, d.updated_at)
        deliveries++
      }
    })()
    target.pragma('wal_checkpoint(TRUNCATE)')
  } finally {
    target.close()
    source.close()
  }
  const damaged = `${path}.damaged-${stamp}`
  renameSync(path, damaged)
  for (const suffix of ['-wal', '-shm']) {
    if (existsSync(path + suffix)) {
      renameSync(path + suffix, damaged + suffix)
    }
  }
  renameSync(fresh, path)
  rmSync(`${fresh}-wal`, { force: true })
  rmSync(`${fresh}-shm`, { force: true })
  return { events, deliveries, lost: lost.count, damaged }
}
