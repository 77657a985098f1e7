import { describe, it, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import Database from 'better-sqlite3'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Dispatcher, EventQueue, signTrace, verifyTrace, type BraneEvent, type DeliveryCopy, type EventTarget, type Hop, type QueuedEvent } from './index.ts'
import { generateNodeKey } from '../identity/index.ts'
import { silentLogging } from '../observe/index.ts'
import type { Edge } from '../manifest/index.ts'

const logger = silentLogging().forComponent('test')
const edge = (from: string, to: string, on: string, priority = 5): Edge => ({ from, to, on, priority })
const text = (event: BraneEvent): string => Buffer.from(event.payload).toString()

/** Resolves when `check` holds, polling; fails after `ms` */
async function until (check: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error('condition not met in time')
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

describe('dispatcher', () => {
  const cleanups: Array<() => Promise<void> | void> = []
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup()
    }
  })

  async function setup (edges: Edge[], targets: Record<string, EventTarget>, init: { maxAttempts?: number, highWatermark?: number, slotsPerTarget?: number } = {}): Promise<{ dispatcher: Dispatcher, queue: EventQueue }> {
    const dir = await mkdtemp(join(tmpdir(), 'omega-dispatch-'))
    const queue = new EventQueue({ path: join(dir, 'queue.db'), baseBackoffMs: 2, maxBackoffMs: 20, ...(init.maxAttempts === undefined ? {} : { maxAttempts: init.maxAttempts }) })
    const dispatcher = new Dispatcher({ queue, target: (b) => targets[b], logger }, {
      edges,
      ...(init.highWatermark === undefined ? {} : { highWatermark: init.highWatermark }),
      ...(init.slotsPerTarget === undefined ? {} : { slotsPerTarget: init.slotsPerTarget })
    })
    dispatcher.start()
    cleanups.push(async () => {
      dispatcher.stop()
      queue.close()
      await rm(dir, { recursive: true, force: true })
    })
    return { dispatcher, queue }
  }

  it('carries 10 000 events through a 3-brane chain, every one arriving, in order per edge', async () => {
    const seenByC: string[] = []
    // b forwards what it gets: it needs the dispatcher, which exists after setup
    const wiring: { dispatcher?: Dispatcher } = {}
    const { queue, dispatcher: d } = await setup([edge('a', 'b', 'raw'), edge('b', 'c', 'cooked')], {
      b: { deliver: async (event) => { await wiring.dispatcher?.emit('b', 'cooked', event.payload, { traceId: event.traceId }) } },
      c: { deliver: async (event) => { seenByC.push(text(event)) } }
    })
    wiring.dispatcher = d
    const total = 10_000
    for (let i = 0; i < total; i++) {
      await d.emit('a', 'raw', Buffer.from(String(i)))
    }
    await until(() => seenByC.length >= total)
    assert.equal(seenByC.length, total)
    assert.deepEqual(seenByC, Array.from({ length: total }, (_, i) => String(i)), 'order per edge holds along the chain')
    // an acknowledgement is written in the group commit after its handler returns
    await until(() => queue.acked >= 2 * total)
    assert.deepEqual(queue.counts(), { pending: 0, inflight: 0, done: 2 * total, dead: 0 })
  })

  it('keeps per-edge order when deliveries fail and are retried', async () => {
    const received: string[] = []
    const failedOnce = new Set<string>()
    const { dispatcher } = await setup([edge('a', 'b', 'x')], {
      b: {
        deliver: async (event) => {
          const n = Number(text(event))
          if (n % 7 === 3 && !failedOnce.has(event.id)) {
            failedOnce.add(event.id)
            throw new Error('transient')
          }
          received.push(text(event))
        }
      }
    })
    for (let i = 0; i < 200; i++) {
      await dispatcher.emit('a', 'x', Buffer.from(String(i)))
    }
    await until(() => received.length >= 200)
    assert.deepEqual(received, Array.from({ length: 200 }, (_, i) => String(i)))
    assert.ok(failedOnce.size > 20)
  })

  it('keeps per-edge order with batches: a failure stops its batch, the rest come again unstarted and uncharged', async () => {
    const received: string[] = []
    const attempts = new Map<string, number[]>()
    const failedOnce = new Set<string>()
    let batches = 0
    const handle = (event: BraneEvent): void => {
      attempts.set(text(event), [...attempts.get(text(event)) ?? [], event.attempt])
      const n = Number(text(event))
      if (n % 7 === 3 && !failedOnce.has(event.id)) {
        failedOnce.add(event.id)
        throw new Error('transient')
      }
      received.push(text(event))
    }
    // a batching target as a brane's worker is: in order, stop at the first failure
    const target: EventTarget = {
      deliver: async (event) => { handle(event) },
      deliverBatch: async (events) => {
        batches++
        const results: Array<PromiseSettledResult<void>> = []
        for (const event of events) {
          if (results.some((r) => r.status === 'rejected')) {
            results.push({ status: 'rejected', reason: Object.assign(new Error('skipped'), { name: 'SkippedEventError' }) })
            continue
          }
          try {
            handle(event)
            results.push({ status: 'fulfilled', value: undefined })
          } catch (err) {
            results.push({ status: 'rejected', reason: err })
          }
        }
        return results
      }
    }
    const { dispatcher, queue } = await setup([edge('a', 'b', 'x')], { b: target })
    dispatcher.stop() // queue them all first, so that deliveries go out in batches
    for (let i = 0; i < 200; i++) {
      await dispatcher.emit('a', 'x', Buffer.from(String(i)))
    }
    dispatcher.start()
    // the last batch is acknowledged in the group commit after its handler returned
    await until(() => received.length >= 200 && queue.acked >= 200)
    assert.deepEqual(received, Array.from({ length: 200 }, (_, i) => String(i)), 'every event once, in emit order')
    assert.ok(batches < 100, `${batches} batches for 200 events`)
    // an event is charged an attempt only when it was started: skipped ones come again as attempt 1
    for (const [n, seen] of attempts) {
      assert.deepEqual(seen, Number(n) % 7 === 3 ? [1, 2] : [1], `attempts of event ${n}`)
    }
    assert.equal(queue.acked, 200)
  })

  it('dead-letters a delivery after the last attempt, and replays it', async () => {
    let healthy = false
    const attempts: number[] = []
    const delivered: string[] = []
    const { dispatcher, queue } = await setup([edge('a', 'b', 'x')], {
      b: {
        deliver: async (event) => {
          if (!healthy) {
            attempts.push(event.attempt)
            throw new Error('consumer is broken')
          }
          delivered.push(text(event))
        }
      }
    }, { maxAttempts: 3 })
    const id = await dispatcher.emit('a', 'x', Buffer.from('poison'))
    await until(() => queue.counts().dead === 1)
    assert.deepEqual(attempts, [1, 2, 3])
    const [dead] = queue.deadLetters()
    assert.equal(dead?.eventId, id)
    assert.equal(dead?.attempts, 3)
    assert.equal(dead?.lastError, 'Error: consumer is broken')
    healthy = true
    assert.equal(queue.replay(), 1)
    dispatcher.stop()
    dispatcher.start()
    await until(() => delivered.length === 1)
    assert.deepEqual(delivered, ['poison'])
  })

  it('slows a producer down when its consumer is slow, bounding the queue', async () => {
    let release: (() => void) | undefined
    let delivered = 0
    const { dispatcher, queue } = await setup([edge('a', 'b', 'x')], {
      b: {
        deliver: async () => {
          if (delivered === 0) {
            await new Promise<void>((resolve) => { release = resolve })
          }
          delivered++
        }
      }
    }, { highWatermark: 50, slotsPerTarget: 1 })
    let emitted = 0
    const producer = (async () => {
      for (let i = 0; i < 200; i++) {
        await dispatcher.emit('a', 'x', Buffer.from(String(i)))
        emitted++
      }
    })()
    await until(() => emitted >= 50 && release !== undefined)
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(emitted, 50, 'the producer waits at the high watermark')
    assert.ok((queue.depth().get('a>b:x') ?? 0) <= 50)
    release?.()
    await producer
    await until(() => delivered === 200)
  })

  it('serves the higher-priority edge first under contention', async () => {
    const order: string[] = []
    let gate: (() => void) | undefined
    const gateOpen = new Promise<void>((resolve) => { gate = resolve })
    const { dispatcher } = await setup([edge('low', 'sink', 'x', 1), edge('high', 'sink', 'y', 9), edge('first', 'sink', 'z', 5)], {
      sink: {
        deliver: async (event) => {
          if (event.topic === 'z') {
            await gateOpen
          }
          order.push(event.topic)
        }
      }
    }, { slotsPerTarget: 1 })
    await dispatcher.emit('first', 'z', Buffer.from('block'))
    for (let i = 0; i < 5; i++) {
      await dispatcher.emit('low', 'x', Buffer.from(String(i)))
      await dispatcher.emit('high', 'y', Buffer.from(String(i)))
    }
    gate?.()
    await until(() => order.length === 11)
    assert.deepEqual(order, ['z', 'y', 'y', 'y', 'y', 'y', 'x', 'x', 'x', 'x', 'x'])
  })

  it('hands a target the trace context an event was emitted with, and none when it had none', async () => {
    const seen: Array<string | undefined> = []
    const { dispatcher } = await setup([edge('a', 'b', 'x')], { b: { deliver: async (event) => { seen.push(event.traceparent) } } })
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    await dispatcher.emit('a', 'x', Buffer.from('1'), { traceparent })
    await dispatcher.emit('a', 'x', Buffer.from('2'))
    await until(() => seen.length === 2)
    assert.deepEqual(seen, [traceparent, undefined])
  })

  it('records the hops of a trace and signs an end record that verifies, and fails when tampered', async () => {
    const wiring: { dispatcher?: Dispatcher } = {}
    let done = false
    const { queue, dispatcher } = await setup([edge('ingest', 'transform', 'raw.batch'), edge('transform', 'train', 'tensor.shard')], {
      transform: { deliver: async (event) => { await wiring.dispatcher?.emit('transform', 'tensor.shard', Buffer.concat([event.payload, event.payload]), { traceId: event.traceId }) } },
      train: { deliver: async () => { done = true } }
    })
    wiring.dispatcher = dispatcher
    const id = await dispatcher.emit('ingest', 'raw.batch', Buffer.from('0123456789'))
    assert.match(id, /^raw\.batch:b3:[0-9a-f]{32}$/)
    await until(() => done && queue.trace(id)?.hops.length === 2)
    const trace = queue.trace(id.slice(0, 20))
    assert.ok(trace !== undefined)
    assert.equal(trace.traceId, id)
    const second = trace.hops[1]?.eventId ?? ''
    assert.notEqual(second, id)
    assert.equal(queue.trace(second)?.traceId, id, 'found by the id of a later event of the trace')
    assert.deepEqual(queue.prune({ doneMs: 0, traceMs: Infinity }), { deliveries: 2, events: 2, hops: 0 })
    assert.equal(queue.trace(second)?.traceId, id, 'and once that event is compacted away')
    assert.equal(queue.trace('tensor.shard:b3:ffffffff'), undefined)
    assert.deepEqual(trace.hops.map((h) => [h.from, h.to, h.topic, h.bytes, h.outcome]), [
      ['ingest', 'transform', 'raw.batch', 10, 'ok'],
      ['transform', 'train', 'tensor.shard', 20, 'ok']
    ])
    const key = generateNodeKey()
    const record = signTrace(trace.traceId, trace.hops, key)
    assert.deepEqual(verifyTrace(JSON.parse(JSON.stringify(record))), [])
    const tampered = JSON.parse(JSON.stringify(record))
    tampered.hops[1].bytes = 21
    assert.deepEqual(verifyTrace(tampered), ['the hops do not match hopsDigest', `the signature does not verify against ${key.did}`])
    const resigned = { ...record, node: generateNodeKey().did }
    assert.deepEqual(verifyTrace(resigned), [`the signature does not verify against ${resigned.node}`])
  })

  it('acknowledges a replicated emit only once its copy is kept, and reports each delivery that is over', async () => {
    const kept: string[] = []
    const over: string[] = []
    let keep: (() => void) | undefined
    let refuse = false
    const dir = await mkdtemp(join(tmpdir(), 'omega-dispatch-'))
    const queue = new EventQueue({ path: join(dir, 'queue.db') })
    const seen: string[] = []
    const dispatcher = new Dispatcher({
      queue,
      target: () => ({ deliver: async (event) => { seen.push(text(event)) } }),
      logger,
      replicate: async (copies) => {
        if (refuse) {
          throw new Error('no holder')
        }
        await new Promise<void>((resolve) => { keep = resolve })
        kept.push(...copies.map((c) => `${Buffer.from(c.event.payload).toString()}@${c.edge}`))
      },
      settled: (keys) => { over.push(...keys.map((k) => k.edge)) }
    }, { edges: [edge('a', 'b', 'x'), edge('a', 'c', 'x')] })
    dispatcher.start()
    cleanups.push(async () => {
      dispatcher.stop()
      queue.close()
      await rm(dir, { recursive: true, force: true })
    })
    let acknowledged = false
    const emitted = dispatcher.emit('a', 'x', Buffer.from('one')).then(() => { acknowledged = true })
    await until(() => keep !== undefined)
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(acknowledged, false, 'not acknowledged before the copy is kept')
    keep?.()
    await emitted
    assert.deepEqual(kept.sort(), ['one@a>b:x', 'one@a>c:x'])
    await until(() => over.length === 2)
    assert.deepEqual(over.sort(), ['a>b:x', 'a>c:x'])
    refuse = true
    await assert.rejects(dispatcher.emit('a', 'x', Buffer.from('two')), /no holder/)
  })

  it('group commit: an acknowledgement that cannot be written is rolled back alone; the emits of its turn and the next deliveries go on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-dispatch-'))
    const path = join(dir, 'queue.db')
    /** a queue whose first acknowledgement fails (as a full disk would fail it) after writing part of it */
    class FailingOnce extends EventQueue {
      failed = false
      override complete (...args: Parameters<EventQueue['complete']>): void {
        super.complete(...args)
        if (!this.failed) {
          this.failed = true
          throw new Error('disk I/O error')
        }
      }
    }
    const queue = new FailingOnce({ path })
    const seen: string[] = []
    const wiring: { d?: Dispatcher } = {}
    const dispatcher = new Dispatcher({
      queue,
      logger,
      target: (b) => b === 'b'
        ? { deliver: async (event) => { seen.push(text(event)); await wiring.d?.emit('b', 'y', event.payload) } }
        : b === 'c' ? { deliver: async (event) => { seen.push(`c:${text(event)}`) } } : undefined
    }, { edges: [edge('a', 'b', 'x'), edge('b', 'c', 'y')] })
    wiring.d = dispatcher
    dispatcher.start()
    cleanups.push(async () => {
      dispatcher.stop()
      queue.close()
      await rm(dir, { recursive: true, force: true })
    })
    for (const n of ['1', '2', '3']) {
      await dispatcher.emit('a', 'x', Buffer.from(n))
    }
    await until(() => seen.filter((s) => s.startsWith('c:')).length === 3)
    assert.deepEqual(seen.filter((s) => !s.startsWith('c:')), ['1', '2', '3'])
    // the last acknowledgement is written by the group commit after its delivery returns
    await until(() => queue.counts().done === 5)
    // the first acknowledgement was rolled back (its delivery stays in flight until the
    // node restarts), and only it: the depth counts it, the other five are done
    assert.deepEqual(queue.counts(), { pending: 0, inflight: 1, done: 5, dead: 0 })
    assert.deepEqual([...queue.depth().values()], [1])
    dispatcher.stop()
    queue.close()
    const reopened = new EventQueue({ path })
    cleanups.push(() => { reopened.close() })
    assert.deepEqual(reopened.counts(), { pending: 1, inflight: 0, done: 5, dead: 0 }, 'it comes again after a restart: at least once')
  })

  it('writes the acknowledgements still waiting for the group commit when flushed before its queue closes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-dispatch-'))
    cleanups.push(async () => { await rm(dir, { recursive: true, force: true }) })
    const path = join(dir, 'queue.db')
    const queue = new EventQueue({ path })
    let delivered: () => void = () => {}
    const handled = new Promise<void>((resolve) => { delivered = resolve })
    const dispatcher = new Dispatcher({ queue, logger, target: () => ({ deliver: async () => { delivered() } }) }, { edges: [edge('a', 'b', 'x')] })
    dispatcher.start()
    await dispatcher.emit('a', 'x', Buffer.from('1'))
    await handled
    for (let i = 0; i < 5; i++) {
      await null // the handler's promise settles: its acknowledgement waits for this turn's commit
    }
    dispatcher.stop()
    dispatcher.flush()
    queue.close()
    const reopened = new EventQueue({ path })
    cleanups.push(() => { reopened.close() })
    assert.deepEqual(reopened.counts(), { pending: 0, inflight: 0, done: 1, dead: 0 })
  })

  it('delivers at once on an idle edge, and gathers a full batch on a busy edge to a target that lingers', async () => {
    const batches: string[][] = []
    const target: EventTarget = {
      deliver: async (event) => { batches.push([text(event)]) },
      deliverBatch: async (events) => {
        batches.push(events.map(text))
        return events.map(() => ({ status: 'fulfilled' as const, value: undefined }))
      },
      maxBatch: 4,
      // long enough that here only a full batch can end the wait (another node's target waits ms)
      lingerMs: 600_000
    }
    const { dispatcher, queue } = await setup([edge('a', 'b', 'x')], { b: target })
    await dispatcher.emit('a', 'x', Buffer.from('0'))
    await until(() => queue.acked === 1)
    for (let i = 1; i <= 3; i++) {
      await dispatcher.emit('a', 'x', Buffer.from(String(i)))
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.deepEqual(batches, [['0']], 'the busy edge waits for more')
    await dispatcher.emit('a', 'x', Buffer.from('4'))
    await until(() => queue.acked === 5)
    assert.deepEqual(batches, [['0'], ['1', '2', '3', '4']])
  })

  it('drains: stops taking deliveries and waits for the running ones to settle', async () => {
    let finish: (() => void) | undefined
    const { dispatcher, queue } = await setup([edge('a', 'b', 'x')], {
      b: { deliver: async () => { await new Promise<void>((resolve) => { finish = resolve }) } }
    })
    await dispatcher.emit('a', 'x', Buffer.from('1'))
    await dispatcher.emit('a', 'x', Buffer.from('2'))
    await until(() => finish !== undefined)
    assert.equal(await dispatcher.drain(50), false, 'one delivery still runs')
    finish?.()
    assert.equal(await dispatcher.drain(5_000), true)
    assert.deepEqual(queue.counts(), { pending: 1, inflight: 0, done: 1, dead: 0 })
  })

  it('refuses a topic with no edge, naming the topics the brane has', async () => {
    const { dispatcher } = await setup([edge('a', 'b', 'x')], { b: { deliver: async () => {} } })
    await assert.rejects(dispatcher.emit('a', 'y', new Uint8Array()), {
      name: 'UnknownTopicError',
      message: 'Brane "a" cannot emit "y": no edge in [graph].edges carries it (its topics: x)'
    })
  })
})

describe('event queue', () => {
  it('puts deliveries left in flight by a crash back in the queue', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-queue-'))
    try {
      const path = join(dir, 'q.db')
      const first = new EventQueue({ path })
      first.enqueue({ id: 'e1', topic: 't', source: 'a', payload: Buffer.from('1'), traceId: 'e1', hops: [], createdAt: Date.now() }, [{ edge: 'a>b:t', to: 'b', priority: 5 }])
      assert.equal(first.claim('a>b:t', 10).length, 1)
      assert.equal(first.counts().inflight, 1)
      first.close()
      const second = new EventQueue({ path })
      assert.deepEqual(second.counts(), { pending: 1, inflight: 0, done: 0, dead: 0 })
      // enqueueing the same event again adds nothing (idempotent)
      assert.equal(second.enqueue({ id: 'e1', topic: 't', source: 'a', payload: Buffer.from('1'), traceId: 'e1', hops: [], createdAt: Date.now() }, [{ edge: 'a>b:t', to: 'b', priority: 5 }]), 0)
      second.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('prunes what is over once it is old: done deliveries and their events, then traces; never what is still owed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-queue-'))
    const queue = new EventQueue({ path: join(dir, 'q.db'), maxAttempts: 1 })
    try {
      const event = (id: string): QueuedEvent => ({ id, topic: 't', source: 'a', payload: Buffer.from(id), traceId: id, hops: [], createdAt: 1 })
      const hop = (id: string): Hop => ({ traceId: id, eventId: id, from: 'a', to: 'b', topic: 't', bytes: 2, compressed: false, attempt: 1, startedAt: 1, endedAt: 2, outcome: 'ok' })
      const edge = [{ edge: 'a>b:t', to: 'b', priority: 5 }]
      for (const id of ['done1', 'done2', 'dead', 'owed']) {
        queue.enqueue(event(id), edge)
      }
      const [done1, done2, dead] = queue.claim('a>b:t', 3)
      assert.ok(done1 !== undefined && done2 !== undefined && dead !== undefined)
      queue.complete([{ id: done1.id, hop: hop('done1') }, { id: done2.id, hop: hop('done2') }])
      assert.equal(queue.fail(dead, 'boom'), 'dead')
      const hour = 3_600_000
      // the first call only notes where the tables end: nothing is old yet
      assert.deepEqual(queue.prune({ now: 0, doneMs: hour, traceMs: 24 * hour }), { deliveries: 0, events: 0, hops: 0 })
      queue.enqueue(event('later'), edge)
      // an hour on: the done deliveries noted an hour ago go, with their events, one row per call here
      assert.deepEqual(queue.prune({ now: hour, doneMs: hour, traceMs: 24 * hour, limit: 1 }), { deliveries: 1, events: 1, hops: 0 })
      assert.deepEqual(queue.prune({ now: hour + 1, doneMs: hour, traceMs: 24 * hour }), { deliveries: 1, events: 1, hops: 0 })
      assert.deepEqual(queue.counts(), { pending: 2, inflight: 0, done: 0, dead: 1 }, 'the dead letter and the owed events stay')
      assert.equal(queue.deadLetters().length, 1)
      assert.equal(queue.trace('done1')?.hops.length, 1, 'the trace outlives its event')
      assert.deepEqual(queue.prune({ now: 24 * hour, doneMs: hour, traceMs: 24 * hour }), { deliveries: 0, events: 0, hops: 2 })
      assert.equal(queue.trace('done1'), undefined)
      assert.deepEqual(queue.claim('a>b:t', 10).map((d) => d.event.id), ['owed', 'later'])
    } finally {
      queue.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('hands deliveries over: the next node adopts them in order with their attempts, the first forgets them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-queue-'))
    const from = new EventQueue({ path: join(dir, 'from.db') })
    const to = new EventQueue({ path: join(dir, 'to.db') })
    try {
      for (let i = 0; i < 5; i++) {
        from.enqueue({ id: `e${i}`, topic: 't', source: 'a', payload: Buffer.from(`p${i}`), traceId: `e${i}`, hops: [], createdAt: 1000 + i },
          [{ edge: 'a>b:t', to: 'b', priority: 5 }, { edge: 'a>c:t', to: 'c', priority: 7 }])
      }
      // one delivery failed once; one is in flight (not handed over while it runs)
      const [first] = from.claim('a>b:t', 1)
      assert.ok(first !== undefined)
      from.fail(first, 'boom')
      from.claim('a>c:t', 1)
      const pending = from.undelivered(100)
      assert.equal(pending.length, 9)
      assert.equal(from.undelivered(100, 0, { inflight: true }).length, 10)
      assert.equal(to.adopt(pending), 9)
      assert.equal(to.adopt(pending), 0, 'adopting twice adds nothing')
      assert.equal(from.forget(pending.map((d) => d.id)), 9)
      assert.deepEqual(from.counts(), { pending: 0, inflight: 1, done: 0, dead: 0 })
      const adopted = to.claim('a>b:t', 10, Date.now() + 60_000)
      assert.deepEqual(adopted.map((d) => [d.event.id, d.attempts, Buffer.from(d.event.payload).toString()]),
        [['e0', 1, 'p0'], ['e1', 0, 'p1'], ['e2', 0, 'p2'], ['e3', 0, 'p3'], ['e4', 0, 'p4']])
      assert.deepEqual(to.claim('a>c:t', 10).map((d) => [d.event.id, d.priority]), [['e1', 7], ['e2', 7], ['e3', 7], ['e4', 7]])
    } finally {
      from.close()
      to.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('holds copies of another node\'s deliveries durably, drops the delivered ones, and promotes the rest when that node is gone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-queue-'))
    const path = join(dir, 'holder.db')
    const copy = (i: number): DeliveryCopy => ({
      edge: 'a>b:t',
      to: 'b',
      priority: 5,
      attempts: 0,
      event: { id: `e${i}`, topic: 't', source: 'a', payload: Buffer.from(`p${i}`), traceId: `e${i}`, hops: [], createdAt: 1000 + i }
    })
    let holder = new EventQueue({ path })
    try {
      assert.equal(holder.holdReplicas('did:key:origin', [0, 1, 2, 3].map(copy)), 4)
      assert.equal(holder.holdReplicas('did:key:other', [copy(9)]), 1)
      assert.equal(holder.dropReplicas('did:key:origin', [{ eventId: 'e1', edge: 'a>b:t' }]), 1)
      assert.deepEqual(holder.counts(), { pending: 0, inflight: 0, done: 0, dead: 0 }, 'copies are not deliveries')
      // the holder restarts: its copies are still there
      holder.close()
      holder = new EventQueue({ path })
      assert.deepEqual([...holder.replicaCounts()], [['did:key:origin', 3], ['did:key:other', 1]])
      assert.equal(holder.promoteReplicas('did:key:origin'), 3)
      assert.deepEqual(holder.claim('a>b:t', 10).map((d) => d.event.id), ['e0', 'e2', 'e3'])
      assert.deepEqual([...holder.replicaCounts()], [['did:key:other', 1]])
      assert.equal(holder.dropReplicas('did:key:other', 'all'), 1)
    } finally {
      holder.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('keeps an event\'s trace context through the queue, a hand-over and held copies, and reads a queue written before it had one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-queue-'))
    try {
      // a queue as an older Omega wrote it: no traceparent columns
      const path = join(dir, 'old.db')
      const old = new Database(path)
      old.exec(`CREATE TABLE events (id TEXT PRIMARY KEY, topic TEXT NOT NULL, source TEXT NOT NULL, payload BLOB NOT NULL, trace_id TEXT NOT NULL, hops TEXT NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL REFERENCES events(id), edge TEXT NOT NULL, target TEXT NOT NULL, priority INTEGER NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('pending', 'inflight', 'done', 'dead')), attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, last_error TEXT, updated_at INTEGER NOT NULL, UNIQUE (event_id, edge));
        CREATE TABLE replicas (seq INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, event_id TEXT NOT NULL, edge TEXT NOT NULL, target TEXT NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL,
          topic TEXT NOT NULL, source TEXT NOT NULL, payload BLOB NOT NULL, trace_id TEXT NOT NULL, hops TEXT NOT NULL, created_at INTEGER NOT NULL, UNIQUE (origin, event_id, edge));
        INSERT INTO events VALUES ('old', 't', 'a', x'6f6c64', 'old', '[]', 1);
        INSERT INTO deliveries (event_id, edge, target, priority, state, next_at, updated_at) VALUES ('old', 'a>b:t', 'b', 5, 'pending', 0, 0);`)
      old.close()
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
      const queue = new EventQueue({ path })
      const other = new EventQueue({ path: join(dir, 'other.db') })
      try {
        queue.enqueue({ id: 'new', topic: 't', source: 'a', payload: Buffer.from('new'), traceId: 'new', traceparent, hops: [], createdAt: 2 }, [{ edge: 'a>b:t', to: 'b', priority: 5 }])
        const claimed = queue.claim('a>b:t', 10)
        assert.deepEqual(claimed.map((d) => [d.event.id, Buffer.from(d.event.payload).toString(), d.event.traceparent]), [['old', 'old', undefined], ['new', 'new', traceparent]])
        assert.equal('traceparent' in (claimed[0]?.event ?? {}), false, 'an event without one has no such field')
        assert.equal(other.adopt(queue.undelivered(10, 0, { inflight: true })), 2)
        assert.deepEqual(other.claim('a>b:t', 10).map((d) => d.event.traceparent), [undefined, traceparent])
        assert.equal(other.holdReplicas('did:key:origin', claimed), 2)
        assert.equal(other.promoteReplicas('did:key:origin'), 0, 'the same deliveries, adopted already')
        const third = new EventQueue({ path: join(dir, 'third.db') })
        try {
          third.holdReplicas('did:key:origin', claimed)
          assert.equal(third.promoteReplicas('did:key:origin'), 2)
          assert.deepEqual(third.claim('a>b:t', 10).map((d) => d.event.traceparent), [undefined, traceparent])
        } finally {
          third.close()
        }
      } finally {
        queue.close()
        other.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
