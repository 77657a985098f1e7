/**
 * Events per second through a 2-edge chain (a → b → c), beside the same SQLite writes
 * and reads done directly, without Omega: what the durable queue costs at least.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { LocalNode } from '../src/daemon/index.ts'
import { Dispatcher, EventQueue } from '../src/dispatch/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import type { BenchCase, RoundBudget, RoundSample } from './harness.ts'
import { loadRound } from './load.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PAYLOAD = Buffer.alloc(100, 0x61)
/** events emitted per measured batch; a round runs batches until its time is spent */
const BATCH = 500

const dirs: string[] = []
async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'omega-bench-events-'))
  dirs.push(dir)
  return dir
}
async function cleanup (): Promise<void> {
  for (const dir of dirs.splice(0)) {
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * Emit batches of `batch` events and wait for each to drain through a 2-edge chain
 * (`done()` counts finished deliveries: 2 per event); events/s = delivered to the end
 */
export async function chainRound (budget: RoundBudget, emit: (payload: Uint8Array) => Promise<unknown>, done: () => number, batch = BATCH): Promise<RoundSample> {
  const start = performance.now()
  let ops = 0
  while (performance.now() - start < budget.durationMs && ops < budget.maxOps) {
    const target = done() + 2 * batch
    for (let i = 0; i < batch; i++) {
      await emit(PAYLOAD)
    }
    const deadline = Date.now() + 60_000
    while (done() < target) {
      if (Date.now() > deadline) {
        throw new Error('the chain did not drain within 60 s')
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
    ops += batch
  }
  return { ops, elapsedMs: performance.now() - start }
}

/** The SQL an event costs along a 2-edge chain, run directly: enqueue, claim, ack, per edge */
function sqliteBaseline (): { round: (budget: RoundBudget) => Promise<RoundSample>, close: () => void, path: string } {
  const path = join(tmpdir(), `omega-bench-sqlite-${process.pid}-${Date.now()}.db`)
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.exec(`CREATE TABLE events (id TEXT PRIMARY KEY, topic TEXT, source TEXT, payload BLOB, trace_id TEXT, hops TEXT, created_at INTEGER);
    CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT, edge TEXT, target TEXT, priority INTEGER, state TEXT, attempts INTEGER DEFAULT 0, next_at INTEGER, updated_at INTEGER, UNIQUE (event_id, edge));
    CREATE INDEX d_edge ON deliveries (edge, state, id);
    CREATE TABLE hops (id INTEGER PRIMARY KEY AUTOINCREMENT, trace_id TEXT, event_id TEXT, source TEXT, target TEXT, topic TEXT, bytes INTEGER, started_at REAL, ended_at REAL, outcome TEXT)`)
  const insertEvent = db.prepare('INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)')
  const insertDelivery = db.prepare("INSERT INTO deliveries (event_id, edge, target, priority, state, next_at, updated_at) VALUES (?, ?, ?, 5, 'pending', ?, ?)")
  const claim = db.prepare("SELECT d.id, e.payload FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.state = 'pending' AND d.edge = ? ORDER BY d.id LIMIT 1")
  const inflight = db.prepare("UPDATE deliveries SET state = 'inflight', updated_at = ? WHERE id = ?")
  const ack = db.prepare("UPDATE deliveries SET state = 'done', updated_at = ? WHERE id = ?")
  const hop = db.prepare("INSERT INTO hops (trace_id, event_id, source, target, topic, bytes, started_at, ended_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ok')")
  const enqueue = db.transaction((id: string, topic: string, source: string, edge: string, to: string, payload: Uint8Array) => {
    const now = Date.now()
    insertEvent.run(id, topic, source, payload, id, '[]', now)
    insertDelivery.run(id, edge, to, now, now)
  })
  let n = 0
  const deliverOne = (edge: string, to: string): Uint8Array | undefined => {
    const row = claim.get(edge) as { id: number, payload: Buffer } | undefined
    if (row === undefined) {
      return undefined
    }
    const now = Date.now()
    inflight.run(now, row.id)
    hop.run('t', 'e', 'a', to, 'x', row.payload.length, now, now)
    ack.run(now, row.id)
    return row.payload
  }
  return {
    path,
    close: () => { db.close() },
    round: async (budget) => {
      const start = performance.now()
      let ops = 0
      while (performance.now() - start < budget.durationMs && ops < budget.maxOps) {
        for (let i = 0; i < BATCH; i++) {
          enqueue(`a${++n}`, 'hits', 'a', 'a>b:hits', 'b', PAYLOAD)
        }
        for (let i = 0; i < BATCH; i++) {
          const payload = deliverOne('a>b:hits', 'b')
          if (payload !== undefined) {
            enqueue(`b${n}-${i}`, 'out', 'b', 'b>c:out', 'c', payload)
          }
          deliverOne('b>c:out', 'c')
        }
        ops += BATCH
      }
      return { ops, elapsedMs: performance.now() - start }
    }
  }
}

let baseline: ReturnType<typeof sqliteBaseline> | undefined
let node: LocalNode | undefined
let queue: EventQueue | undefined
let dispatcher: Dispatcher | undefined
let jsDone = 0

let bare: Server | undefined

/** web → mid → end on one node, pooled WASI event branes */
async function startChain (): Promise<void> {
  const dir = await tempDir()
  for (const name of ['http-emit', 'forward', 'sink']) {
    await cp(join(ROOT, `build/fixtures/${name}.wasm`), join(dir, `${name}.wasm`))
  }
  await writeFile(join(dir, 'omega.toml'), '[brane.web]\nimage = "http-emit.wasm"\nlifecycle = "pooled"\n\n[brane.mid]\nimage = "forward.wasm"\nlifecycle = "pooled"\n\n[brane.end]\nimage = "sink.wasm"\nlifecycle = "pooled"\n\n[graph]\nedges = [{ from = "web", to = "mid", on = "hits" }, { from = "mid", to = "end", on = "out" }]\n')
  node = await LocalNode.start(join(dir, 'omega.toml'), { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
}

/** events delivered to the end of the chain, per second (each event makes 2 deliveries) */
const CHAIN_SUBJECT = {
  label: 'omega: dispatcher + queue + 2 WASI branes',
  round: async (budget: RoundBudget): Promise<RoundSample> => chainRound(budget, async (payload) => node?.emit('web', 'hits', payload), () => node?.acked ?? 0)
}

export const cases: BenchCase[] = [
  {
    name: 'chain-2-edges-wasm',
    description: `Events/s through web → mid → end (forward.wasm, sink.wasm: WASI event branes in worker threads, pooled), ${PAYLOAD.length}-byte payloads, emitted in batches of ${BATCH} and drained, vs the same SQLite statements (enqueue, claim, hop, ack per edge) run directly in one thread`,
    metrics: ['ops/s'],
    budget: { rounds: 3, roundMs: 2000, warmupMs: 500 },
    setup: async () => {
      await startChain()
      baseline = sqliteBaseline()
    },
    teardown: async () => {
      await node?.stop()
      baseline?.close()
      await Promise.all(['', '-wal', '-shm'].map(async (suffix) => rm(`${baseline?.path ?? ''}${suffix}`, { force: true })))
      await cleanup()
    },
    subject: CHAIN_SUBJECT,
    baseline: { label: 'SQLite alone (same statements)', round: async (budget) => (baseline as ReturnType<typeof sqliteBaseline>).round(budget) }
  },
  {
    name: 'chain-2-edges-wasm-vs-http',
    description: 'The same chain as events/chain-2-edges-wasm (durable events/s delivered to the end of the chain), beside the requests/s of a bare node:http hello server under 32 connections from autocannon: the ratio the data-path issue sets targets for',
    metrics: ['ops/s'],
    budget: { rounds: 3, roundMs: 2000, warmupMs: 500 },
    setup: async () => {
      await startChain()
      bare = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('hello\n') })
      await new Promise<void>((resolve) => { bare?.listen(0, '127.0.0.1', resolve) })
    },
    teardown: async () => {
      await node?.stop()
      await new Promise<void>((resolve) => { bare === undefined ? resolve() : bare.close(() => { resolve() }) })
      await cleanup()
    },
    subject: CHAIN_SUBJECT,
    baseline: { label: 'bare node:http req/s', round: async (budget) => loadRound(`http://127.0.0.1:${(bare?.address() as AddressInfo).port}/`, budget) }
  },
  {
    name: 'chain-2-edges-dispatch',
    description: `The dispatcher and durable queue alone: a → b → c with in-process JavaScript consumers (no WASI), ${PAYLOAD.length}-byte payloads, vs the same SQLite statements run directly`,
    metrics: ['ops/s'],
    budget: { rounds: 3, roundMs: 2000, warmupMs: 500 },
    setup: async () => {
      const dir = await tempDir()
      queue = new EventQueue({ path: join(dir, 'queue.db') })
      const wiring: { d?: Dispatcher } = {}
      dispatcher = new Dispatcher({
        queue,
        logger: silentLogging().forComponent('bench'),
        target: (brane) => brane === 'b'
          ? { deliver: async (event) => { await wiring.d?.emit('b', 'out', event.payload, { traceId: event.traceId }) } }
          : { deliver: async () => { jsDone++ } }
      }, { edges: [{ from: 'a', to: 'b', on: 'hits', priority: 5 }, { from: 'b', to: 'c', on: 'out', priority: 5 }] })
      wiring.d = dispatcher
      dispatcher.start()
      baseline = sqliteBaseline()
    },
    teardown: async () => {
      dispatcher?.stop()
      queue?.close()
      baseline?.close()
      await Promise.all(['', '-wal', '-shm'].map(async (suffix) => rm(`${baseline?.path ?? ''}${suffix}`, { force: true })))
      await cleanup()
    },
    subject: {
      label: 'omega: dispatcher + queue (JS consumers)',
      round: async (budget) => chainRound(budget, async (payload) => dispatcher?.emit('a', 'hits', payload), () => 2 * jsDone)
    },
    baseline: { label: 'SQLite alone (same statements)', round: async (budget) => (baseline as ReturnType<typeof sqliteBaseline>).round(budget) }
  }
]
