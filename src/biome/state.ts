/**
 * Replicated brane state: one yjs document per brane, holding a map of byte values
 * (`omega:brane/state` get/set/delete) and append-only lists (append/range). Every
 * update is written to SQLite before the call returns, and handed to listeners (the
 * mesh sends it to the brane's other replicas). Updates from elsewhere merge in any
 * order, any number of times: the documents converge.
 */
import { createRequire } from 'node:module'
import Database from 'better-sqlite3'
import type * as Y from 'yjs'
import { BraneNotFoundError } from '../errors.ts'
import { Checkpointer } from '../util/index.ts'
import type { Logger } from '../interfaces/index.ts'
import type { StateCall, StateResult } from '../runtime/wasm/index.ts'
import type { Rpc } from './rpc.ts'

/**
 * yjs (and its ~30 lib0 modules: ~30 ms and ~10 MiB) is loaded at the first document
 * a store opens, not with this module: a node whose branes keep no state never loads
 * it. Its CommonJS build, so that the store's API stays synchronous; nothing else in
 * Omega imports yjs (an ESM copy beside this one would break yjs's constructor checks).
 */
let yjsModule: typeof Y | undefined
function yjs (): typeof Y {
  yjsModule ??= createRequire(import.meta.url)('yjs') as typeof Y
  return yjsModule
}

export interface StateStoreInit {
  /** the SQLite file */
  path: string
  logger: Logger
  /** most bytes of one value (a brane reads values back through a 1 MiB host-call answer, as base64). @default 512 KiB */
  maxValueBytes?: number
}

/** Where an update came from: this node, or the did of the peer that sent it */
export type UpdateOrigin = 'local' | string

export type UpdateListener = (brane: string, update: Uint8Array, origin: UpdateOrigin) => void

const LIST_PREFIX = 'list:'
const encoder = new TextEncoder()
const decoder = new TextDecoder()

export class StateStore {
  readonly #db: Database.Database
  readonly #docs = new Map<string, Y.Doc>()
  readonly #listeners = new Set<UpdateListener>()
  readonly #insert: Database.Statement<[string, Buffer]>
  readonly #log: Logger
  readonly #maxValue: number
  readonly #checkpointer: Checkpointer

  constructor (init: StateStoreInit) {
    this.#db = new Database(init.path)
    this.#db.pragma('journal_mode = WAL')
    this.#db.pragma('synchronous = NORMAL')
    this.#checkpointer = new Checkpointer(this.#db, init.path)
    this.#db.exec('CREATE TABLE IF NOT EXISTS updates (id INTEGER PRIMARY KEY, brane TEXT NOT NULL, data BLOB NOT NULL); CREATE INDEX IF NOT EXISTS updates_brane ON updates (brane, id)')
    this.#insert = this.#db.prepare('INSERT INTO updates (brane, data) VALUES (?, ?)')
    this.#log = init.logger
    this.#maxValue = init.maxValueBytes ?? 512 * 1024
  }

  /** The document of `brane`, loaded from disk the first time */
  #doc (brane: string): Y.Doc {
    let doc = this.#docs.get(brane)
    if (doc !== undefined) {
      return doc
    }
    doc = new (yjs().Doc)({ gc: true })
    const rows = this.#db.prepare('SELECT data FROM updates WHERE brane = ? ORDER BY id').all(brane) as Array<{ data: Buffer }>
    yjs().transact(doc, () => {
      for (const row of rows) {
        yjs().applyUpdate(doc as Y.Doc, row.data, 'disk')
      }
    }, 'disk')
    doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin === 'disk') {
        return
      }
      this.#insert.run(brane, Buffer.from(update))
      this.#checkpointer.wrote()
      const from = typeof origin === 'string' ? origin : 'local'
      for (const listener of this.#listeners) {
        try {
          listener(brane, update, from)
        } catch (err) {
          this.#log.error({ err, brane }, 'state update listener failed')
        }
      }
    })
    this.#docs.set(brane, doc)
    return doc
  }

  /** One omega:brane/state call of `brane`, synchronously */
  call (brane: string, call: StateCall): StateResult {
    const doc = this.#doc(brane)
    switch (call.method) {
      case 'get': {
        const value = doc.getMap<Uint8Array>('kv').get(call.key)
        return value === undefined ? undefined : new Uint8Array(value)
      }
      case 'set':
        this.#checkSize(call.value)
        doc.transact(() => { doc.getMap<Uint8Array>('kv').set(call.key, new Uint8Array(call.value)) }, 'local')
        return undefined
      case 'delete':
        doc.transact(() => { doc.getMap<Uint8Array>('kv').delete(call.key) }, 'local')
        return undefined
      case 'append':
        this.#checkSize(call.value)
        doc.transact(() => { doc.getArray<Uint8Array>(LIST_PREFIX + call.key).push([new Uint8Array(call.value)]) }, 'local')
        return undefined
      case 'range': {
        const list = doc.getArray<Uint8Array>(LIST_PREFIX + call.key)
        const end = Math.min(call.end, list.length)
        return call.start >= end ? [] : list.slice(call.start, end).map((v) => new Uint8Array(v))
      }
      case 'keys': {
        const after = call.after
        const keys = [...doc.getMap<Uint8Array>('kv').keys()].filter((k) => k.startsWith(call.key) && (after === undefined || k > after)).sort()
        return keys.slice(0, Math.max(0, call.limit)).map((k) => encoder.encode(k))
      }
      case 'increment': {
        // one synchronous call on the node's one thread: no other write comes between the read and the write
        const map = doc.getMap<Uint8Array>('kv')
        const current = map.get(call.key)
        const text = current === undefined ? '0' : decoder.decode(current)
        if (!/^-?\d+$/.test(text) || !/^-?\d+$/.test(call.delta)) {
          throw new RangeError(`cannot increment "${call.key}": it holds ${JSON.stringify(text.slice(0, 40))}, not a decimal integer`)
        }
        const sum = encoder.encode((BigInt(text) + BigInt(call.delta)).toString())
        doc.transact(() => { map.set(call.key, sum) }, 'local')
        return sum
      }
      case 'swap': {
        const map = doc.getMap<Uint8Array>('kv')
        const current = map.get(call.key)
        const same = current === undefined || call.expected === undefined
          ? current === undefined && call.expected === undefined
          : Buffer.from(current).equals(Buffer.from(call.expected))
        if (!same) {
          return [new Uint8Array([0])]
        }
        this.#checkSize(call.value)
        doc.transact(() => { map.set(call.key, new Uint8Array(call.value)) }, 'local')
        return [new Uint8Array([1])]
      }
    }
  }

  #checkSize (value: Uint8Array): void {
    if (value.byteLength > this.#maxValue) {
      throw new RangeError(`a state value may hold at most ${this.#maxValue} bytes (got ${value.byteLength})`)
    }
  }

  /** Called with every update written to a document, local or merged from elsewhere */
  onUpdate (listener: UpdateListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /** Merge an update from `origin` (a peer's did); idempotent */
  apply (brane: string, update: Uint8Array, origin: string): void {
    yjs().applyUpdate(this.#doc(brane), update, origin)
  }

  /** What this node has of `brane`, as a yjs state vector */
  stateVector (brane: string): Uint8Array {
    return yjs().encodeStateVector(this.#doc(brane))
  }

  /** What a node with state vector `remote` lacks of `brane` (everything without one) */
  diff (brane: string, remote?: Uint8Array): Uint8Array {
    return yjs().encodeStateAsUpdate(this.#doc(brane), remote)
  }

  /** The map of `brane` as plain JSON-able values (for `omega state` and tests) */
  snapshot (brane: string): { map: Record<string, string>, lists: Record<string, number> } {
    const doc = this.#doc(brane)
    const map: Record<string, string> = {}
    for (const [key, value] of doc.getMap<Uint8Array>('kv').entries()) {
      map[key] = Buffer.from(value).toString('utf8')
    }
    const lists: Record<string, number> = {}
    for (const name of doc.share.keys()) {
      if (name.startsWith(LIST_PREFIX)) {
        lists[name.slice(LIST_PREFIX.length)] = doc.getArray(name).length
      }
    }
    return { map, lists }
  }

  /** The items of list `name` of `brane`, as UTF-8 text */
  list (brane: string, name: string): string[] {
    return this.#doc(brane).getArray<Uint8Array>(LIST_PREFIX + name).toArray().map((v) => Buffer.from(v).toString('utf8'))
  }

  /**
   * Garbage collection: replace the stored updates of each document with one update of
   * its current state (yjs drops deleted content from it). Returns the rows removed.
   */
  compact (): number {
    let removed = 0
    for (const [brane, doc] of this.#docs) {
      const whole = Buffer.from(yjs().encodeStateAsUpdate(doc))
      this.#db.transaction(() => {
        removed += this.#db.prepare('DELETE FROM updates WHERE brane = ?').run(brane).changes
        this.#insert.run(brane, whole)
      })()
      this.#checkpointer.wrote()
      removed--
    }
    return Math.max(0, removed)
  }

  close (): void {
    for (const doc of this.#docs.values()) {
      doc.destroy()
    }
    this.#docs.clear()
    this.#checkpointer.close()
    this.#db.close()
  }
}

/** What state sync needs from its node */
export interface StateSyncComponents {
  rpc: Rpc
  /** the node's state (throws while the node is starting) */
  store: () => StateStore
  /** the replicas of `brane` on other nodes, alive ones first */
  replicas: (brane: string) => string[]
  /** how many replicas a local update is pushed to at once */
  fanout: (brane: string) => number
  /** whether `brane` is granted `state` in the running deployment */
  stateful: (brane: unknown) => boolean
  /** the state of a member of the mesh, if known */
  member: (did: string) => string | undefined
  logger: Logger
}

/**
 * State sync over the mesh: a local update is pushed to the brane's other replicas at
 * once (`state.push`), and replicas reconcile what each lacks by state vectors
 * (`state.sync`): periodically, when a node comes back, and when a brane moves.
 */
export class StateSync {
  readonly #components: StateSyncComponents
  readonly #rpc: Rpc
  readonly #log: Logger

  constructor (components: StateSyncComponents) {
    this.#components = components
    this.#rpc = components.rpc
    this.#log = components.logger
  }

  /** send a local update of `brane` to its other replicas (anti-entropy carries what fails) */
  push (brane: string, update: Uint8Array): void {
    const fanout = this.#components.fanout(brane)
    for (const did of this.#components.replicas(brane).slice(0, fanout)) {
      this.#rpc.call(did, 'state.push', { brane }, update).catch((err: unknown) => {
        this.#log.debug({ brane, peer: did, err: (err as Error).message }, 'state push failed (anti-entropy will carry it)')
      })
    }
  }

  /** Exchange what each side lacks of `branes` with `peer` (only those it replicates, unless `anyPeer`) */
  async reconcileWith (peer: string, branes: readonly string[], settings: { anyPeer?: boolean } = {}): Promise<void> {
    for (const brane of branes) {
      if (settings.anyPeer !== true && !this.#components.replicas(brane).includes(peer)) {
        continue
      }
      try {
        const state = this.#components.store()
        const reply = await this.#rpc.call(peer, 'state.sync', { brane }, state.stateVector(brane))
        state.apply(brane, reply.body, peer)
        const theirs = Buffer.from((reply.result as { vector: string }).vector, 'base64')
        const missing = state.diff(brane, theirs)
        if (missing.byteLength > 2) {
          await this.#rpc.call(peer, 'state.push', { brane }, missing)
        }
      } catch (err) {
        this.#log.debug({ brane, peer, err: (err as Error).message }, 'state sync failed')
      }
    }
  }

  /** answer other replicas' pushes and syncs */
  serve (): void {
    this.#rpc.register('state.push', async ({ params, body, from }) => {
      const { brane } = params as { brane: string }
      this.#check(brane, from)
      this.#components.store().apply(brane, body, from)
      return {}
    })
    this.#rpc.register('state.sync', async ({ params, body, from }) => {
      // the caller sends its state vector; answer what it lacks, and our state vector
      const { brane } = params as { brane: string }
      this.#check(brane, from)
      const state = this.#components.store()
      return { result: { vector: Buffer.from(state.stateVector(brane)).toString('base64'), from }, body: state.diff(brane, body) }
    })
  }

  /**
   * State travels only for branes of the running deployment granted `state`, and only
   * between members of the mesh (a replica now, or one that held it before a move)
   */
  #check (brane: unknown, from: string): void {
    const stateful = this.#components.stateful(brane)
    const member = this.#components.member(from)
    if (!stateful || member === undefined || member === 'dead' || member === 'left') {
      throw new BraneNotFoundError(`No replicated state of brane "${String(brane)}" here for ${from}`)
    }
  }
}
