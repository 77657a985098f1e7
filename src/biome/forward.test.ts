import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { BraneEvent } from '../interfaces/index.ts'
import type { EventTarget } from '../dispatch/index.ts'
import { sendEventBatch, serveEventBatches } from './forward.ts'
import type { Rpc, RpcHandler } from './rpc.ts'

/** Two nodes' RPC in one: what one calls, the other's handler answers (JSON in between, as on the wire) */
function loopback (): Rpc {
  const handlers = new Map<string, RpcHandler>()
  return {
    register: (method: string, handler: RpcHandler) => { handlers.set(method, handler) },
    call: async (_peer: string, method: string, params: unknown, body: Uint8Array = new Uint8Array()) => {
      const handler = handlers.get(method)
      assert.ok(handler !== undefined)
      const reply = await handler({ params: JSON.parse(JSON.stringify(params)) as unknown, body, from: 'did:key:sender' }, {})
      return { result: reply.result, body: new Uint8Array() }
    }
  } as unknown as Rpc
}

describe('event batches to another node', () => {
  it('carry each event\'s trace context when it has one, and a malformed one not at all', async () => {
    const rpc = loopback()
    const received: BraneEvent[] = []
    const target: EventTarget = { deliver: async (event) => { received.push(event) } }
    serveEventBatches(rpc, async () => target)
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    const event = (id: string, extra: Partial<BraneEvent> = {}): BraneEvent => ({ id, topic: 't', source: 'a', payload: Buffer.from(id), traceId: id, attempt: 1, ...extra })
    const results = await sendEventBatch(rpc, 'peer', 'b', [event('e1', { traceparent }), event('e2'), event('e3', { traceparent: 'x'.repeat(100) })], { timeoutMs: 5_000 })
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled'])
    assert.deepEqual(received.map((e) => [e.id, Buffer.from(e.payload).toString(), e.traceparent]), [['e1', 'e1', traceparent], ['e2', 'e2', undefined], ['e3', 'e3', undefined]])
    assert.equal('traceparent' in (received[1] ?? {}), false)
  })
})
