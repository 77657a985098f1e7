/**
 * Events between real WASI branes through the node's durable queue: every event
 * arrives, in order per edge, failures are retried and dead-lettered, and traces are
 * signed.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { LocalNode } from '../src/daemon/index.ts'
import { verifyTrace } from '../src/dispatch/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { CHAIN, cli, copyFixtures, until } from './helpers.ts'

/** The dead-letter queue as `brane:attempts`, sorted */
async function deadLetterSummary (node: LocalNode): Promise<string[]> {
  await until(() => node.deadLetters().length === 2, 10_000, 'two dead letters')
  return node.deadLetters().map((d) => `${d.to}:${d.attempts}`).sort()
}

describe('events between branes', () => {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-events-'))
    await copyFixtures(dir, ['http-emit', 'forward', 'sink', 'flaky', 'reject'])
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('carries 10 000 events through a 3-brane chain, every one arriving, in order per edge', async () => {
    await writeFile(join(dir, 'chain.toml'), CHAIN)
    const home = join(dir, 'chain-home')
    const node = await LocalNode.start(join(dir, 'chain.toml'), { home, port: 0, logging: silentLogging(), admin: false })
    const total = 10_000
    const ids: string[] = []
    const db = new Database(join(home, 'queue.db'), { readonly: true })
    try {
      // an HTTP request starts a pipeline too
      const res = await fetch(`${node.url}/e/first`)
      assert.equal(res.status, 200)
      assert.match(await res.text(), /^hits:b3:[0-9a-f]{32}\n$/)
      for (let i = 0; i < total; i++) {
        ids.push(await node.emit('web', 'hits', Buffer.from(`event ${i}`)))
      }
      const open = db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE state IN ('pending', 'inflight')")
      await until(() => (open.get() as { n: number }).n === 0, 180_000, 'the queue to drain')
      const delivered = db.prepare("SELECT trace_id FROM hops WHERE target = 'end' AND outcome = 'ok' ORDER BY started_at, id").all() as Array<{ trace_id: string }>
      const seen = new Set(delivered.map((r) => r.trace_id))
      for (const id of ids) {
        assert.ok(seen.has(id), `event ${id} never reached "end"`)
      }
      // per-edge order: "end" saw the events in the order they were emitted
      const order = delivered.map((r) => r.trace_id).filter((id) => id.startsWith('hits:') && ids.includes(id))
      assert.deepEqual(order, ids)
      assert.deepEqual(db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE state = 'dead'").get(), { n: 0 })
      // the trace of one event: two hops, signed, verifiable
      const record = node.trace(ids[42] ?? '')
      assert.ok(record !== undefined)
      assert.deepEqual(record.hops.map((h) => `${h.from}>${h.to}:${h.topic}:${h.bytes}:${h.outcome}`), ['web>mid:hits:8:ok', 'mid>end:out:8:ok'])
      assert.deepEqual(verifyTrace(JSON.parse(JSON.stringify(record))), [])
    } finally {
      db.close()
      await node.stop()
    }
  })

  it('shows a real event\'s trace with the CLI, and the saved record verifies until it is tampered with', async () => {
    await writeFile(join(dir, 'trace.toml'), CHAIN)
    const home = join(dir, 'trace-home')
    const node = await LocalNode.start(join(dir, 'trace.toml'), { home, port: 0, logging: silentLogging() })
    try {
      const id = (await (await fetch(`${node.url}/e/traced`)).text()).trim()
      await until(() => (node.trace(id)?.hops.length ?? 0) === 2, 30_000, 'two hops')
      const file = join(dir, 'trace.json')
      const shown = await cli(['trace', id.slice(0, 20), '-o', file, '--home', home])
      assert.equal(shown.code, 0, shown.err)
      assert.match(shown.out, new RegExp(`^trace ${id.replace(/[.]/g, '\\.')}: 2 hops, 18 B, `, 'm'))
      assert.match(shown.out, /^1\s+web\s+mid\s+hits\s+9\s+1\s+\S+ms\s+ok$/m)
      assert.match(shown.out, /^2\s+mid\s+end\s+out\s+9\s+1\s+\S+ms\s+ok$/m)
      assert.match(shown.out, /^end record signed by did:key:z6Mk\S+ at \S+: signature ok$/m)
      const verified = await cli(['trace', 'verify', file])
      assert.equal(verified.code, 0, verified.err)
      const record = JSON.parse(await readFile(file, 'utf8')) as { hops: Array<{ bytes: number }> }
      const first = record.hops[0]
      assert.ok(first !== undefined)
      first.bytes = 10
      await writeFile(file, JSON.stringify(record))
      const refused = await cli(['trace', 'verify', file])
      assert.equal(refused.code, 12)
      assert.match(refused.err, /does not verify: the hops do not match hopsDigest; the signature does not verify against did:key:/)
    } finally {
      await node.stop()
    }
  })

  it('retries a failing consumer, dead-letters it after the last attempt, and dead-letters a rejected event at once', async () => {
    await writeFile(join(dir, 'dlq.toml'), `
[brane.web]
image = "http-emit.wasm"
trigger = { http = "/e/*" }

[brane.flaky]
image = "flaky.wasm"

[brane.picky]
image = "reject.wasm"

[graph]
edges = [
  { from = "web", to = "flaky", on = "hits" },
  { from = "web", to = "picky", on = "hits" },
]
`)
    const node = await LocalNode.start(join(dir, 'dlq.toml'), { home: join(dir, 'dlq-home'), port: 0, logging: silentLogging(), admin: false })
    try {
      const id = await node.emit('web', 'hits', Buffer.from('x'))
      await until(() => (node.trace(id)?.hops.length ?? 0) >= 6, 60_000, 'five attempts and one rejection')
      const hops = node.trace(id)?.hops ?? []
      const picky = hops.filter((h) => h.to === 'picky')
      assert.deepEqual(picky.map((h) => h.attempt), [1])
      assert.match(picky[0]?.outcome ?? '', /^RejectedEventError: Brane "picky" rejected event "hits:b3:[0-9a-f]+": bad payload$/)
      const flaky = hops.filter((h) => h.to === 'flaky')
      assert.deepEqual(flaky.map((h) => h.attempt), [1, 2, 3, 4, 5])
      for (const hop of flaky) {
        assert.match(hop.outcome, /^RetryableEventError: .*not yet$/)
      }
      const dead = await deadLetterSummary(node)
      assert.deepEqual(dead, ['flaky:5', 'picky:1'])
    } finally {
      await node.stop()
    }
  })
})
