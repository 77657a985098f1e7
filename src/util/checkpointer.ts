/**
 * Checkpoints of a SQLite database's WAL (the event queue's, the state store's) on a
 * thread of their own. SQLite's automatic checkpoint runs inside the commit that crosses
 * 1 000 pages of WAL, on the thread that commits: half the cost of a small transaction
 * (an emit's) was that copy. The connection turns it off, says when it wrote
 * ({@link Checkpointer.wrote}), and a worker thread copies the WAL into the database
 * while it grows.
 * Durability does not depend on it (a commit is in the WAL before it returns); the WAL
 * only grows longer when no checkpoint runs, and the connection falls back to SQLite's
 * own checkpoints if the thread cannot run. Once the WAL passes 8 MiB (a writer that
 * never pauses keeps SQLite from starting it over), the connection copies the few pages
 * written since the thread's last copy itself.
 */
import { Worker } from 'node:worker_threads'
import type Database from 'better-sqlite3'

export interface CheckpointerInit {
  /** the database file */
  readonly path: string
  /** one Int32 the thread sets to 1 once it has closed its connection */
  readonly closed: SharedArrayBuffer
}

/** How often the thread checkpoints while it runs */
export const CHECKPOINT_EVERY_MS = 20
/** How long the WAL must stay unchanged (and all copied) before the thread goes */
export const CHECKPOINTER_IDLE_MS = 5_000
/** WAL pages (4 KiB) past which the writer's connection copies the last pages itself, so that its next write starts the WAL over (8 MiB) */
export const RESTART_WAL_PAGES = 2048
/** SQLite's default: the connection checkpoints itself past this many WAL pages */
const AUTOCHECKPOINT_PAGES = 1000
/** The longest {@link Checkpointer.close} waits for the thread to close its connection */
const CLOSE_WAIT_MS = 2_000

export class Checkpointer {
  readonly #db: Database.Database
  readonly #path: string
  #worker: Worker | undefined
  /** the running thread's {@link CheckpointerInit.closed} */
  #closedFlag = new Int32Array(new SharedArrayBuffer(4))
  /** the thread could not run: the connection checkpoints itself, as SQLite does by default */
  #fallback = false
  #closed = false

  constructor (db: Database.Database, path: string) {
    this.#db = db
    this.#path = path
    if (path === ':memory:' || path === '') {
      this.#fallback = true // nothing to share with a thread
      return
    }
    db.pragma('wal_autocheckpoint = 0')
  }

  /**
   * After a write: makes sure a thread copies the WAL (starts one if none runs). Every
   * method that writes must call it: with SQLite's own checkpoint off, a WAL written only
   * by a path that does not is never copied, and grows without end.
   */
  wrote (): void {
    if (this.#worker !== undefined || this.#fallback || this.#closed) {
      return
    }
    this.#closedFlag = new Int32Array(new SharedArrayBuffer(4))
    const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), {
      workerData: { path: this.#path, closed: this.#closedFlag.buffer as SharedArrayBuffer } satisfies CheckpointerInit,
      name: 'omega-checkpoint',
      env: {},
      resourceLimits: { maxOldGenerationSizeMb: 32 }
    })
    worker.unref()
    this.#worker = worker
    worker.on('message', (message: 'restart') => {
      if (message === 'restart' && !this.#closed) {
        // between two transactions of this connection: only the pages written since the
        // thread's copy are left, and once they are copied the next write starts the WAL over
        this.#db.pragma('wal_checkpoint(PASSIVE)')
        worker.postMessage('copied')
      }
    })
    worker.once('error', () => { this.#fallBack() })
    worker.once('exit', () => {
      if (this.#worker === worker) {
        this.#worker = undefined
      }
    })
  }

  #fallBack (): void {
    this.#worker = undefined
    if (!this.#fallback && !this.#closed) {
      this.#fallback = true
      this.#db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`)
    }
  }

  /**
   * Stops the thread and waits (up to 2 s, most often well under a millisecond) until it
   * has closed its connection, so that the caller's close of the last connection copies
   * what is left and removes the WAL: a stopped node leaves its database whole in one file
   */
  close (): void {
    this.#closed = true
    const worker = this.#worker
    this.#worker = undefined
    if (worker !== undefined) {
      worker.postMessage('stop')
      Atomics.wait(this.#closedFlag, 0, 0, CLOSE_WAIT_MS)
    }
  }
}
