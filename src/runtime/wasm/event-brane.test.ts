// Event branes (wit/brane/brane.wit) and omega:brane/emit, with the WAT fixtures
// src/runtime/wasm/fixtures/{sink,forward,flaky,reject,state,http-emit}.wat
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Grants } from '../../manifest/index.ts'
import { OmegaError } from '../../errors.ts'
import {
  EventBrane, HttpBrane, loadComponent,
  type BraneEventInput, type EventBraneOptions, type GuestLogLevel, type OnEmit, type OnEmitOptions, type OnState
} from './index.ts'
import { ROOT, componentLoader } from './testing.ts'

const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)

function event (payload: string, extra: Partial<BraneEventInput> = {}): BraneEventInput {
  return { id: 'raw.batch:b3:0001', topic: 'raw.batch', payload: encode(payload), source: 'ingest', traceId: 'raw.batch:b3:0000', attempt: 1, ...extra }
}

class UnknownTopicError extends OmegaError {
  static override name = 'UnknownTopicError'
  constructor (message: string) {
    super(message)
    this.name = 'UnknownTopicError'
  }
}

interface Emitted {
  readonly topic: string
  readonly payload: string
  readonly options: OnEmitOptions
}

/** An onEmit that records its calls and answers `topic:b3:<n>` */
function recorder (): { onEmit: OnEmit, calls: Emitted[] } {
  const calls: Emitted[] = []
  const onEmit: OnEmit = async (topic, payload, options) => {
    calls.push({ topic, payload: text(payload), options })
    return `${topic}:b3:${String(calls.length).padStart(4, '0')}`
  }
  return { onEmit, calls }
}

type Line = [string, string, GuestLogLevel | undefined]

async function waitFor (check: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms
  while (!check()) {
    assert.ok(Date.now() < until, `condition not met within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const EMIT_OUT: Grants = { emit: { topics: ['out'] } }

describe('EventBrane', () => {
  let cacheDir = ''
  const open: Array<{ close: () => Promise<void> }> = []

  const load = componentLoader(() => cacheDir)

  async function startBrane (fixture: string, options: Partial<EventBraneOptions> = {}): Promise<{ brane: EventBrane, lines: Line[] }> {
    const lines: Line[] = []
    const created = await EventBrane.create(await load(`build/fixtures/${fixture}.wasm`), {
      name: fixture, grants: {}, log: (stream, line, level) => { lines.push([stream, line, level]) }, ...options
    })
    open.push(created)
    return { brane: created, lines }
  }

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'omega-event-brane-'))
  })

  after(async () => {
    await Promise.all(open.map(async (b) => { await b.close() }))
    await rm(cacheDir, { recursive: true, force: true })
  })

  it('delivers an event: the guest sees every field and logs with levels', async () => {
    const { brane, lines } = await startBrane('sink')
    const done = await brane.deliver(event('hello', { attempt: 3 }))
    assert.equal(done.timing.cold, false)
    assert.ok(done.timing.execMs >= 0 && done.timing.cpuMs >= 0)
    assert.deepEqual(lines, [
      ['stdout', 'raw.batch:b3:0001', 'debug'],
      ['stdout', 'raw.batch', 'debug'],
      ['stdout', 'ingest', 'debug'],
      ['stdout', 'raw.batch:b3:0000', 'debug'],
      ['stdout', '3', 'debug'],
      ['stdout', 'hello', 'info']
    ])
  })

  it('maps handle-error retry and reject to RetryableEventError and RejectedEventError', async () => {
    const flaky = (await startBrane('flaky', { lifecycle: 'pooled' })).brane
    await assert.rejects(flaky.deliver(event('x')), {
      name: 'RetryableEventError', message: 'Brane "flaky" asked to retry event "raw.batch:b3:0001": not yet'
    })
    // a handle-error is an answer, not a failure: the pooled instance is kept
    await assert.rejects(flaky.deliver(event('x')), { name: 'RetryableEventError' })
    const reject = (await startBrane('reject')).brane
    await assert.rejects(reject.deliver(event('x')), {
      name: 'RejectedEventError', message: 'Brane "reject" rejected event "raw.batch:b3:0001": bad payload'
    })
  })

  it('delivers a batch in one worker, in order, and starts none after a failure', async () => {
    const { brane, lines } = await startBrane('sink', { lifecycle: 'pooled' })
    const batch = ['a', 'b', 'c', 'd'].map((payload, i) => ({ ...event(payload), id: `raw.batch:b3:000${i}` }))
    const done = await brane.deliverBatch(batch)
    assert.deepEqual(done.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'])
    assert.deepEqual(lines.filter(([, , level]) => level === 'info').map(([, line]) => line), ['a', 'b', 'c', 'd'])
    // flaky asks to retry every event: the first fails, the others are not started
    const flaky = (await startBrane('flaky', { lifecycle: 'pooled' })).brane
    const results = await flaky.deliverBatch(batch)
    assert.deepEqual(results.map((r) => r.status === 'rejected' ? (r.reason as Error).name : 'ok'), ['RetryableEventError', 'SkippedEventError', 'SkippedEventError', 'SkippedEventError'])
  })

  it('fails a trapping handler with GuestError and keeps delivering', async () => {
    const { brane, lines } = await startBrane('sink', { lifecycle: 'pooled' })
    await assert.rejects(brane.deliver(event('trap')), { name: 'GuestError', message: /^Brane "sink" trapped: .*unreachable/ })
    await brane.deliver(event('after'))
    assert.deepEqual(lines.at(-1), ['stdout', 'after', 'info'])
  })

  it('stops a handler past its deadline and replaces its worker', async () => {
    const { brane } = await startBrane('sink', { deadlineMs: 200 })
    await waitFor(() => brane.stats.spareReady)
    await assert.rejects(brane.deliver(event('spin', { id: 'raw.batch:b3:spin' })), {
      name: 'DeadlineExceededError',
      message: 'Brane "sink" did not handle event "raw.batch:b3:spin" on "raw.batch" within its 200 ms deadline: the call was stopped'
    })
    assert.equal(brane.stats.deadlineKills, 1)
    await brane.deliver(event('next'))
  })

  it('emits through onEmit with the trace of the handled event, and the guest gets the id', async () => {
    const { onEmit, calls } = recorder()
    const { brane, lines } = await startBrane('forward', { grants: EMIT_OUT, onEmit })
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    await brane.deliver(event('payload-1', { traceId: 'trace-A' }))
    await brane.deliver(event('payload-2', { traceId: 'trace-B', traceparent }))
    await brane.deliverBatch([event('payload-3', { traceId: 'trace-C', traceparent })])
    // the W3C context (its delivery's span, while OpenTelemetry export is on) goes with it
    assert.deepEqual(calls.map((c) => [c.topic, c.payload, c.options.traceId, c.options.traceparent]), [
      ['out', 'payload-1', 'trace-A', undefined],
      ['out', 'payload-2', 'trace-B', traceparent],
      ['out', 'payload-3', 'trace-C', traceparent]
    ])
    // forward logs the id its emit returned
    assert.deepEqual(lines, [['stdout', 'out:b3:0001', 'info'], ['stdout', 'out:b3:0002', 'info'], ['stdout', 'out:b3:0003', 'info']])
  })

  it('blocks the guest until onEmit resolves', async () => {
    const order: string[] = []
    const onEmit: OnEmit = async (topic) => {
      order.push('onEmit called')
      await new Promise((resolve) => setTimeout(resolve, 150))
      order.push('onEmit resolves')
      return `${topic}:b3:slow`
    }
    const { brane } = await EventBrane.create(await load('build/fixtures/forward.wasm'), {
      name: 'forward',
      grants: EMIT_OUT,
      onEmit,
      log: (_stream, line) => { order.push(`guest logged ${line}`) }
    }).then((b) => { open.push(b); return { brane: b } })
    const start = performance.now()
    const done = await brane.deliver(event('x'))
    order.push('delivered')
    assert.deepEqual(order, ['onEmit called', 'onEmit resolves', 'guest logged out:b3:slow', 'delivered'])
    assert.ok(performance.now() - start >= 140)
    // time blocked in the emit is not charged as CPU
    assert.ok(done.timing.cpuMs < done.timing.execMs, `cpu ${done.timing.cpuMs} exec ${done.timing.execMs}`)
  })

  it('maps what onEmit refuses to emit-error: unknown-topic, unavailable', async () => {
    let refusal: Error = new UnknownTopicError('Brane "forward" cannot emit "out": no edge in [graph].edges carries it (its topics: none)')
    const onEmit: OnEmit = async () => { throw refusal }
    const { brane } = await startBrane('forward', { grants: EMIT_OUT, onEmit })
    // forward answers reject(message) to unknown-topic and too-large, retry(message) to unavailable
    await assert.rejects(brane.deliver(event('x')), {
      name: 'RejectedEventError',
      message: 'Brane "forward" rejected event "raw.batch:b3:0001": Brane "forward" cannot emit "out": no edge in [graph].edges carries it (its topics: none)'
    })
    refusal = new Error('queue is closed')
    await assert.rejects(brane.deliver(event('x')), {
      name: 'RetryableEventError',
      message: 'Brane "forward" asked to retry event "raw.batch:b3:0001": Brane "forward" cannot emit on "out": queue is closed'
    })
  })

  it('refuses topics outside the grant and payloads over the cap without calling onEmit', async () => {
    const { onEmit, calls } = recorder()
    const other = (await startBrane('forward', { grants: { emit: { topics: ['elsewhere'] } }, onEmit })).brane
    await assert.rejects(other.deliver(event('x')), {
      name: 'RejectedEventError',
      message: /: Brane "forward" cannot emit "out": no edge in \[graph\]\.edges carries it \(its topics: elsewhere\)$/
    })
    const capped = (await startBrane('forward', { grants: EMIT_OUT, onEmit, maxEmitBytes: 8 })).brane
    await assert.rejects(capped.deliver(event('0123456789')), {
      name: 'RejectedEventError',
      message: /: Brane "forward" cannot emit 10 bytes on "out": the limit is 8 bytes$/
    })
    await capped.deliver(event('01234567'))
    assert.equal(calls.length, 1)
  })

  it('answers unavailable to an emit when no onEmit was given', async () => {
    const { brane } = await startBrane('forward', { grants: EMIT_OUT })
    await assert.rejects(brane.deliver(event('x')), {
      name: 'RetryableEventError', message: /cannot emit: this node gave it no event dispatcher$/
    })
  })

  it('answers every state call with unavailable when the node gave no state service', async () => {
    const { brane } = await startBrane('state', { grants: { state: true } })
    await assert.rejects(brane.deliver(event('v')), { name: 'RetryableEventError', message: /has no state: this node gave it no state service/ })
  })

  it('carries state calls to onState: append, set, get and range, values as bytes', async () => {
    const map = new Map<string, Uint8Array>()
    const lists = new Map<string, Uint8Array[]>()
    const calls: string[] = []
    const onState: OnState = (call) => {
      calls.push(`${call.method} ${call.key}`)
      switch (call.method) {
        case 'get': return map.get(call.key)
        case 'set': map.set(call.key, call.value.slice()); return undefined
        case 'delete': map.delete(call.key); return undefined
        case 'append': lists.set(call.key, [...(lists.get(call.key) ?? []), call.value.slice()]); return undefined
        case 'range': return (lists.get(call.key) ?? []).slice(call.start, call.end)
        default: throw new Error(`the fixture makes no ${call.method} call`)
      }
    }
    const { brane, lines } = await startBrane('state', { grants: { state: true }, onState })
    await brane.deliver(event('first'))
    await brane.deliver(event('second'))
    assert.deepEqual(calls, ['append seen', 'set last', 'get last', 'range seen', 'append seen', 'set last', 'get last', 'range seen'])
    assert.deepEqual(lines.map(([, line]) => line), ['first', 'first', 'second', 'first'])
    assert.deepEqual((lists.get('seen') ?? []).map(text), ['first', 'second'])
  })

  it('gives the guest a state-error when onState throws', async () => {
    const onState: OnState = () => { throw new RangeError('a state value may hold at most 4 bytes') }
    const { brane } = await startBrane('state', { grants: { state: true }, onState })
    await assert.rejects(brane.deliver(event('v')), { name: 'RetryableEventError', message: /state append "seen" failed: a state value may hold at most 4 bytes/ })
  })

  it('stays healthy when its worker is stopped in the middle of an emit', async () => {
    let release: ((id: string) => void) | undefined
    const signals: AbortSignal[] = []
    let hang = true
    const onEmit: OnEmit = async (topic, _payload, options) => {
      signals.push(options.signal)
      if (!hang) {
        return `${topic}:b3:fine`
      }
      // holds a ref'd handle, like a dispatcher waiting on back-pressure
      const keepAlive = setInterval(() => {}, 1_000)
      return new Promise<string>((resolve) => {
        release = (id) => { clearInterval(keepAlive); resolve(id) }
      })
    }
    const { brane, lines } = await startBrane('forward', { grants: EMIT_OUT, onEmit, deadlineMs: 1_500, lifecycle: 'pinned' })
    await waitFor(() => brane.stats.spareReady)
    try {
      await assert.rejects(brane.deliver(event('stuck')), { name: 'DeadlineExceededError' })
    } finally {
      // never leave the held emit (and its timer) behind, even when the assertion fails
      release?.('out:b3:late')
    }
    // the call's signal told the dispatcher nobody waits any more
    assert.equal(signals[0]?.aborted, true)
    // the late answer went nowhere, and the next event runs in the spare
    hang = false
    await brane.deliver(event('next'))
    assert.deepEqual(lines, [['stdout', 'out:b3:fine', 'info']])
    assert.equal(brane.stats.deadlineKills, 1)
  })

  it('refuses an emitting component without an outgoing edge, and a component without a handler', async () => {
    await assert.rejects(EventBrane.create(await load('build/fixtures/forward.wasm'), { name: 'forward', grants: {}, log: () => {} }), {
      name: 'CapabilityDeniedError',
      message: /^Cannot link brane "forward": component imports "omega:brane\/emit@0\.1\.0", which needs an outgoing edge: emitting is granted by edges from "forward" in \[graph\]\.edges/
    })
    await assert.rejects(EventBrane.create(await load('examples/hello/hello.wasm'), { name: 'hello', grants: {}, log: () => {} }), {
      name: 'ComponentLoadError',
      message: 'Cannot deliver events to brane "hello": component does not export "omega:brane/handler" (it exports "wasi:http/incoming-handler@0.2.12")'
    })
  })
})

describe('HttpBrane emitting', () => {
  let cacheDir = ''

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'omega-http-emit-'))
  })

  after(async () => {
    await rm(cacheDir, { recursive: true, force: true })
  })

  it('emits from an HTTP request on a new trace, a child of the request\'s span when it has one', async () => {
    const { onEmit, calls } = recorder()
    const loaded = await loadComponent(await readFile(join(ROOT, 'build/fixtures/http-emit.wasm')), { cacheDir })
    const brane = await HttpBrane.create(loaded, { name: 'ingest', grants: { emit: { topics: ['hits'] } }, log: () => {}, onEmit })
    try {
      const res = await brane.handle({ method: 'POST', pathWithQuery: '/ingest?n=1', scheme: 'http', authority: 'localhost', headers: [], body: new Uint8Array() })
      assert.equal(res.status, 200)
      assert.equal(text(res.body), 'hits:b3:0001\n')
      assert.deepEqual(calls.map((c) => [c.topic, c.payload, c.options.traceId]), [['hits', '/ingest?n=1', undefined]])
      assert.equal('traceId' in (calls[0]?.options ?? {}), false)
      assert.equal('traceparent' in (calls[0]?.options ?? {}), false)
      // served in a span (OpenTelemetry export on): the emit's event is its child
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
      await brane.handle({ method: 'POST', pathWithQuery: '/ingest?n=2', scheme: 'http', authority: 'localhost', headers: [], body: new Uint8Array() }, { traceparent })
      const streamed = await brane.stream({ method: 'POST', pathWithQuery: '/ingest?n=3', scheme: 'http', authority: 'localhost', headers: [], body: new Uint8Array() }, { traceparent })
      if (!(streamed.body instanceof Uint8Array)) {
        // the guest emits after it set its response: read its body to the end
        let bytes = 0
        for await (const chunk of streamed.body) {
          bytes += chunk.byteLength
        }
        assert.ok(bytes > 0)
      }
      assert.deepEqual(calls.slice(1).map((c) => [c.payload, c.options.traceId, c.options.traceparent]), [['/ingest?n=2', undefined, traceparent], ['/ingest?n=3', undefined, traceparent]])
    } finally {
      await brane.close()
    }
  })
})
