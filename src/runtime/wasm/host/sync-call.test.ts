import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { answerHostCall, hostCallBuffer, HOST_CALL_ANSWER_BYTES, type HostCallMessage } from './sync-call.ts'

const MODULE = new URL('./sync-call.js', import.meta.url).href

// The worker makes one call per entry of `timeouts` and posts each outcome
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
import(workerData.module).then(({ HostCaller }) => {
  const caller = new HostCaller(workerData.buffer, (message, transfer) => { parentPort.postMessage(message, transfer) })
  workerData.timeouts.forEach((timeoutMs, i) => {
    const start = Date.now()
    const answer = caller.call(7, { op: 'emit', topic: 't' + i, payload: new Uint8Array([i]) }, timeoutMs)
    parentPort.postMessage({ type: 'outcome', answer: answer === undefined ? null : answer, waitedMs: Date.now() - start })
  })
})
`

interface Outcome { readonly type: 'outcome', readonly answer: unknown, readonly waitedMs: number }

/** Starts a worker making calls; returns its messages as they come */
function caller (timeouts: number[]): { worker: Worker, buffer: SharedArrayBuffer, next: () => Promise<HostCallMessage | Outcome> } {
  const buffer = hostCallBuffer()
  const worker = new Worker(WORKER, { eval: true, workerData: { module: MODULE, buffer, timeouts } })
  const queue: Array<HostCallMessage | Outcome> = []
  const waiting: Array<(message: HostCallMessage | Outcome) => void> = []
  worker.on('message', (message: HostCallMessage | Outcome) => {
    const wake = waiting.shift()
    if (wake === undefined) {
      queue.push(message)
    } else {
      wake(message)
    }
  })
  const next = async (): Promise<HostCallMessage | Outcome> => {
    const queued = queue.shift()
    return queued ?? new Promise((resolve) => { waiting.push(resolve) })
  }
  return { worker, buffer, next }
}

describe('host calls (SharedArrayBuffer + Atomics.wait)', () => {
  it('blocks the worker until the main thread answers, asynchronously', async () => {
    const { worker, buffer, next } = caller([10_000, 10_000])
    try {
      const first = await next() as HostCallMessage
      assert.equal(first.type, 'host-call')
      assert.equal(first.job, 7)
      assert.equal(first.call.op, 'emit')
      assert.equal(first.call.op === 'emit' && first.call.topic, 't0')
      assert.deepEqual(first.call.op === 'emit' && [...first.call.payload], [0])
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.equal(answerHostCall(buffer, first.seq, { ok: true, value: 'id-0' }), true)
      const outcome = await next() as Outcome
      assert.deepEqual(outcome.answer, { ok: true, value: 'id-0' })
      assert.ok(outcome.waitedMs >= 45)
      const second = await next() as HostCallMessage
      assert.equal(second.seq, first.seq + 1)
      answerHostCall(buffer, second.seq, { ok: false, error: { tag: 'unavailable', val: 'queue closed' } })
      assert.deepEqual((await next() as Outcome).answer, { ok: false, error: { tag: 'unavailable', val: 'queue closed' } })
    } finally {
      await worker.terminate()
    }
  })

  it('gives up at its timeout, and a late answer lands nowhere', async () => {
    const { worker, buffer, next } = caller([100, 10_000])
    try {
      const first = await next() as HostCallMessage
      const outcome = await next() as Outcome
      assert.equal(outcome.answer, null)
      assert.ok(outcome.waitedMs >= 95)
      const second = await next() as HostCallMessage
      // the answer to the withdrawn call is refused, the next call gets its own
      assert.equal(answerHostCall(buffer, first.seq, { ok: true, value: 'late' }), false)
      assert.equal(answerHostCall(buffer, second.seq, { ok: true, value: 'on time' }), true)
      assert.deepEqual((await next() as Outcome).answer, { ok: true, value: 'on time' })
    } finally {
      await worker.terminate()
    }
  })

  it('terminates a worker blocked in a call; answering afterwards is harmless', async () => {
    const { worker, buffer, next } = caller([60_000])
    const call = await next() as HostCallMessage
    const start = Date.now()
    await worker.terminate()
    assert.ok(Date.now() - start < 30_000, 'terminate() does not wait out the 60 s Atomics.wait')
    assert.equal(answerHostCall(buffer, call.seq, { ok: true, value: 'nobody reads this' }), true)
  })

  it('refuses an answer too large for the buffer with unavailable', async () => {
    const { worker, buffer, next } = caller([10_000])
    try {
      const call = await next() as HostCallMessage
      answerHostCall(buffer, call.seq, { ok: true, value: 'x'.repeat(HOST_CALL_ANSWER_BYTES + 1) })
      const outcome = await next() as Outcome
      assert.deepEqual(outcome.answer, { ok: false, error: { tag: 'unavailable', val: `the node's answer was over ${HOST_CALL_ANSWER_BYTES} bytes` } })
    } finally {
      await worker.terminate()
    }
  })
})
