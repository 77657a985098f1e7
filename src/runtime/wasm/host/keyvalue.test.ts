import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StateStore } from '../../../biome/index.ts'
import { silentLogging } from '../../../observe/index.ts'
import { keyvalueInterfaces } from './keyvalue.ts'

type Fn = (...args: unknown[]) => unknown
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (value: unknown): string => new TextDecoder().decode(value as Uint8Array)

describe('wasi:keyvalue on the replicated state', () => {
  let dir = ''
  let store: StateStore
  let kv: ReturnType<typeof keyvalueInterfaces>
  const open = (name: string): Record<string, Fn> => (kv.store.open as Fn)(name) as Record<string, Fn>
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-kv-'))
    store = new StateStore({ path: join(dir, 'state.db'), logger: silentLogging().forComponent('state') })
    kv = keyvalueInterfaces((call) => store.call('b', call))
  })
  after(async () => {
    store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('keeps bucket "default" as the map itself and other buckets as NAME/ keys', () => {
    const main = open('default')
    const users = open('users')
    ;(main.set as Fn)('a', bytes('1'))
    ;(users.set as Fn)('a', bytes('2'))
    assert.equal(text((main.get as Fn)('a')), '1')
    assert.equal(text((users.get as Fn)('a')), '2')
    assert.equal(text(store.call('b', { method: 'get', key: 'users/a' })), '2')
    assert.equal((users.exists as Fn)('nope'), false)
    ;(users.delete as Fn)('a')
    assert.equal((users.get as Fn)('a'), undefined)
    assert.throws(() => (kv.store.open as Fn)('a/b'), (err: { payload?: unknown }) => JSON.stringify(err.payload) === '{"tag":"no-such-store"}')
  })

  it('lists keys in pages of 1000 with a cursor, within the bucket', () => {
    const logs = open('logs')
    for (let i = 0; i < 1500; i++) {
      ;(logs.set as Fn)(`k${String(i).padStart(4, '0')}`, bytes('x'))
    }
    const first = (logs.listKeys as Fn)(undefined) as { keys: string[], cursor?: string }
    assert.equal(first.keys.length, 1000)
    assert.equal(first.keys[0], 'k0000')
    const second = (logs.listKeys as Fn)(first.cursor) as { keys: string[], cursor?: string }
    assert.equal(second.keys.length, 500)
    assert.equal(second.cursor, undefined)
    assert.equal(second.keys.at(-1), 'k1499')
  })

  it('increments atomically as decimal text, and refuses to increment what is not a number', () => {
    const main = open('default')
    assert.equal((kv.atomics.increment as Fn)(main, 'n', 5n), 5n)
    assert.equal((kv.atomics.increment as Fn)(main, 'n', -7n), -2n)
    assert.equal(text((main.get as Fn)('n')), '-2')
    ;(main.set as Fn)('word', bytes('hello'))
    assert.throws(() => (kv.atomics.increment as Fn)(main, 'word', 1n), (err: { payload?: { tag?: string, val?: string } }) => err.payload?.tag === 'other' && /not a decimal integer/.test(err.payload.val ?? ''))
  })

  it('swaps only what it saw, and answers cas-failed with a fresh cas otherwise', () => {
    const main = open('default')
    const Cas = kv.atomics.Cas as unknown as { new: Fn }
    const cas = Cas.new(main, 'c') as Record<string, Fn>
    assert.equal((cas.current as Fn)(), undefined)
    ;(kv.atomics.swap as Fn)(cas, bytes('one'))
    assert.equal(text((main.get as Fn)('c')), 'one')
    const stale = Cas.new(main, 'c')
    ;(main.set as Fn)('c', bytes('two'))
    assert.throws(() => (kv.atomics.swap as Fn)(stale, bytes('three')), (err: { payload?: { tag?: string, val?: Record<string, Fn> } }) =>
      err.payload?.tag === 'cas-failed' && text((err.payload.val?.current as Fn)()) === 'two')
    assert.equal(text((main.get as Fn)('c')), 'two')
  })

  it('does batches key by key', () => {
    const main = open('batch')
    ;(kv.batch.setMany as Fn)(main, [['x', bytes('1')], ['y', bytes('2')]])
    const got = (kv.batch.getMany as Fn)(main, ['x', 'missing', 'y']) as Array<[string, Uint8Array] | undefined>
    assert.deepEqual(got.map((e) => e === undefined ? null : [e[0], text(e[1])]), [['x', '1'], null, ['y', '2']])
    ;(kv.batch.deleteMany as Fn)(main, ['x', 'y'])
    assert.deepEqual((kv.batch.getMany as Fn)(main, ['x', 'y']), [undefined, undefined])
  })

  it('answers "other" on a node with no state service', () => {
    const none = keyvalueInterfaces(undefined)
    const bucket = (none.store.open as Fn)('default') as Record<string, Fn>
    assert.throws(() => (bucket.get as Fn)('a'), (err: { payload?: { tag?: string } }) => err.payload?.tag === 'other')
  })
})
