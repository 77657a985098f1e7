import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { httpTypesFor } from './http.ts'

interface Readable { read: (len: bigint) => Uint8Array }
interface RequestLike {
  method: () => { tag: string, val?: string }
  pathWithQuery: () => string | undefined
  scheme: () => { tag: string } | undefined
  authority: () => string | undefined
  headers: () => { entries: () => Array<[string, Uint8Array]>, append: (n: string, v: Uint8Array) => void }
  consume: () => { stream: () => Readable }
}
type Ctor<T> = new (...args: never[]) => T
interface FieldsLike { append: (n: string, v: Uint8Array) => void }
interface ResponseLike { setStatusCode: (s: number) => void, body: () => { write: () => { blockingWriteAndFlush: (b: Uint8Array) => void } } }

const encode = (s: string): Uint8Array => new TextEncoder().encode(s)

describe('httpTypesFor', () => {
  const { types, exchange } = httpTypesFor({ maxBodyBytes: 8 })
  const request = { method: 'PATCH', pathWithQuery: '/a?b', scheme: 'https', authority: 'example.test', headers: [['x-one', '1'], ['host', 'dropped']] as const, body: encode('0123456789') }

  it('gives the guest the request, with immutable headers and a readable body', () => {
    const ex = exchange(request)
    const req = ex.request as RequestLike
    assert.deepEqual(req.method(), { tag: 'patch' })
    assert.equal(req.pathWithQuery(), '/a?b')
    assert.deepEqual(req.scheme(), { tag: 'HTTPS' })
    assert.equal(req.authority(), 'example.test')
    assert.deepEqual(req.headers().entries().map(([n, v]) => [n, new TextDecoder().decode(v)]), [['x-one', '1']])
    assert.throws(() => { req.headers().append('x-two', encode('2')) }, (err: { payload?: unknown }) => {
      assert.deepEqual(err.payload, { tag: 'immutable' })
      return true
    })
    const stream = req.consume().stream()
    assert.deepEqual(new TextDecoder().decode(stream.read(4n)), '0123')
    assert.deepEqual(new TextDecoder().decode(stream.read(100n)), '456789')
    assert.throws(() => stream.read(1n), (err: { payload?: unknown }) => {
      assert.deepEqual(err.payload, { tag: 'closed' })
      return true
    })
    assert.throws(() => req.consume(), (err: object) => Object.hasOwn(err, 'payload'))
  })

  it('collects what the guest sets and writes', () => {
    const ex = exchange(request)
    assert.equal(ex.response(), undefined)
    const Fields = types['Fields'] as Ctor<FieldsLike>
    const OutgoingResponse = types['OutgoingResponse'] as new (h: FieldsLike) => ResponseLike
    const ResponseOutparam = types['ResponseOutparam'] as { set: (p: object, r: { tag: string, val: unknown }) => void }
    const OutgoingBody = types['OutgoingBody'] as { finish: (b: unknown, t: unknown) => void }
    const fields = new Fields()
    fields.append('content-type', encode('text/plain'))
    const response = new OutgoingResponse(fields)
    response.setStatusCode(201)
    const body = response.body()
    assert.ok(body instanceof (types['OutgoingBody'] as Ctor<object>))
    const out = body.write()
    out.blockingWriteAndFlush(encode('1234'))
    out.blockingWriteAndFlush(encode('5678'))
    // past maxBodyBytes: a stream error for the guest, not a trap
    assert.throws(() => { out.blockingWriteAndFlush(encode('9')) }, (err: { payload?: { tag: string } }) => err.payload?.tag === 'last-operation-failed')
    OutgoingBody.finish(body, undefined)
    ResponseOutparam.set(ex.outparam, { tag: 'ok', val: response })
    const answer = ex.response()
    assert.ok(answer?.tag === 'ok')
    assert.equal(answer.status, 201)
    assert.deepEqual(answer.headers, [['content-type', 'text/plain']])
    assert.equal(new TextDecoder().decode(answer.body), '12345678')
    assert.equal(answer.finished, true)
  })
})
