/**
 * The node's receipts, in `$OMEGA_HOME/settle.db` (SQLite, WAL, `synchronous = FULL`: a
 * receipt is on disk when `append` returns). Rows keep the receipt's canonical JSON
 * exactly as signed.
 */
import Database from 'better-sqlite3'
import { canonicalJson } from '../identity/index.ts'
import type { Receipt } from './receipt.ts'

export const SETTLE_DB = 'settle.db'

export class ReceiptStore {
  readonly #db: Database.Database

  /** `readonly` opens an existing store for export (the daemon may be writing) */
  constructor (path: string, options: { readonly?: boolean } = {}) {
    this.#db = new Database(path, options.readonly === true ? { readonly: true, fileMustExist: true } : {})
    if (options.readonly !== true) {
      this.#db.pragma('journal_mode = WAL')
      this.#db.pragma('synchronous = FULL')
      this.#db.exec('CREATE TABLE IF NOT EXISTS receipts (seq INTEGER PRIMARY KEY, node TEXT NOT NULL, period_to TEXT NOT NULL, body TEXT NOT NULL)')
    }
    this.#db.pragma('busy_timeout = 5000')
  }

  /** The last receipt, to chain the next one to */
  last (): Receipt | undefined {
    const row = this.#db.prepare('SELECT body FROM receipts ORDER BY seq DESC LIMIT 1').get() as { body: string } | undefined
    return row === undefined ? undefined : JSON.parse(row.body) as Receipt
  }

  append (receipt: Receipt): void {
    this.#db.prepare('INSERT INTO receipts (seq, node, period_to, body) VALUES (?, ?, ?, ?)').run(receipt.seq, receipt.node, receipt.to, canonicalJson(receipt))
  }

  /** Receipts whose period ends at or after `since` (ISO 8601), in chain order */
  list (since?: string): Receipt[] {
    const rows = (since === undefined
      ? this.#db.prepare('SELECT body FROM receipts ORDER BY seq').all()
      : this.#db.prepare('SELECT body FROM receipts WHERE period_to >= ? ORDER BY seq').all(since)) as Array<{ body: string }>
    return rows.map((r) => JSON.parse(r.body) as Receipt)
  }

  close (): void {
    this.#db.close()
  }
}
