/**
 * The thread of a {@link Checkpointer}: its own connection to the database, copying the WAL
 * into the database every few ms while it grows, and gone once it has stopped growing
 */
import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'
import { CHECKPOINT_EVERY_MS, CHECKPOINTER_IDLE_MS, RESTART_WAL_PAGES, type CheckpointerInit } from './checkpointer.ts'

const init = workerData as CheckpointerInit
const db = new Database(init.path, { fileMustExist: true })
let last = -1
let quietSince = Date.now()
let stopped = false
/** while the writer's connection copies the last pages (see below), this thread waits: until it says so, or this time */
let yieldUntil = 0

function stop (): void {
  if (!stopped) {
    stopped = true
    clearInterval(timer)
    db.close()
    const closed = new Int32Array(init.closed)
    Atomics.store(closed, 0, 1)
    Atomics.notify(closed, 0)
    parentPort?.close() // nothing keeps the thread: it ends
  }
}

const timer = setInterval(() => {
  if (Date.now() < yieldUntil) {
    return
  }
  // PASSIVE: copies what no reader still needs, never waits for a lock nor holds a writer
  const [result] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number, log: number, checkpointed: number }>
  const log = result?.log ?? 0
  if (log >= RESTART_WAL_PAGES && log !== last) {
    // SQLite starts the WAL over only at a write that finds it copied whole, and a writer
    // that never pauses always adds to it while it is copied: the writer's own thread
    // copies the last few pages between two of its transactions (see Checkpointer)
    parentPort?.postMessage('restart')
    yieldUntil = Date.now() + 200
  }
  if (log !== last || result?.checkpointed !== log) {
    last = log
    quietSince = Date.now()
  } else if (Date.now() - quietSince > CHECKPOINTER_IDLE_MS) {
    stop() // the queue starts another at its next write
  }
}, CHECKPOINT_EVERY_MS)

parentPort?.on('message', (message: 'stop' | 'copied') => {
  if (message === 'stop') {
    stop()
  } else {
    yieldUntil = 0
  }
})
