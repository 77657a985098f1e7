/**
 * The event queue's SQLite schema: its tables, the columns added since (to queues written
 * before them), the insert every writer of events shares, and the integrity check a queue
 * must pass to be opened
 */
import type Database from 'better-sqlite3'

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  id TEXT PRIMARY KEY,
  topic TEXT NOT NULL,
  source TEXT NOT NULL,
  payload BLOB NOT NULL,
  trace_id TEXT NOT NULL,
  hops TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  traceparent TEXT
);
CREATE TABLE IF NOT EXISTS deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL REFERENCES events(id),
  edge TEXT NOT NULL,
  target TEXT NOT NULL,
  priority INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'inflight', 'done', 'dead')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER NOT NULL,
  last_error TEXT,
  updated_at INTEGER NOT NULL,
  UNIQUE (event_id, edge)
);
DROP INDEX IF EXISTS deliveries_due;
DROP INDEX IF EXISTS deliveries_edge;
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (edge, id) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS hops (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  trace_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  source TEXT NOT NULL,
  target TEXT NOT NULL,
  topic TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  compressed INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  started_at REAL NOT NULL,
  ended_at REAL NOT NULL,
  outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hops_trace ON hops (trace_id, id);
DROP INDEX IF EXISTS hops_event;
CREATE TABLE IF NOT EXISTS replicas (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  origin TEXT NOT NULL,
  event_id TEXT NOT NULL,
  edge TEXT NOT NULL,
  target TEXT NOT NULL,
  priority INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  topic TEXT NOT NULL,
  source TEXT NOT NULL,
  payload BLOB NOT NULL,
  trace_id TEXT NOT NULL,
  hops TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  traceparent TEXT,
  UNIQUE (origin, event_id, edge)
);
`

/**
 * Columns added since the first schema, each nullable: a queue written by an older
 * Omega gets them when it is opened (its rows hold NULL), and an older Omega still
 * reads and writes a queue that has them (it names its columns)
 */
const ADDED_COLUMNS: ReadonlyArray<readonly [table: string, column: string, type: string]> = [
  ['events', 'traceparent', 'TEXT'],
  ['replicas', 'traceparent', 'TEXT']
]

/** {@link SCHEMA}, and the columns an older queue lacks */
export function createSchema (db: Database.Database): void {
  db.exec(SCHEMA)
  for (const [table, column, type] of ADDED_COLUMNS) {
    const columns = db.prepare(`SELECT name FROM pragma_table_info('${table}')`).pluck().all() as string[]
    if (!columns.includes(column)) {
      db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`)
    }
  }
}

/** An event row, written once (an event id seen again adds nothing) */
export const INSERT_EVENT = 'INSERT OR IGNORE INTO events (id, topic, source, payload, trace_id, hops, created_at, traceparent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'

export const DAMAGED_HINT = 'the node refuses to start over it so that no stored event is lost; "omega queue check" says what is wrong, "omega queue salvage" copies every readable event into a new queue and keeps the damaged file beside it'

/** SQLite's quick_check of `db`: its problems, none when it is sound */
export function quickCheck (db: Database.Database): string[] {
  const rows = db.pragma('quick_check(20)') as Array<{ quick_check: string }>
  const found = rows.flatMap((row) => row.quick_check.split('\n')).map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('*** in database'))
  return found.length === 1 && found[0] === 'ok' ? [] : found
}

/**
 * A queue file that exists with no bytes was truncated (SQLite writes its header when
 * it creates one): starting over it would silently drop every stored event
 */
