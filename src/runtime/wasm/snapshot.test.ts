import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HttpBrane, loadComponent, type HttpBraneOptions, type HttpRequest, type LoadedComponent } from './index.ts'
import { ROOT } from './testing.ts'

const PAGE = 65_536

function get (pathWithQuery: string): HttpRequest {
  return { method: 'GET', pathWithQuery, scheme: 'http', authority: 'localhost', headers: [], body: new Uint8Array() }
}

function ignoreLog (): void {}

/** counter.wat answers "<count> <pages>\n" */
async function hit (brane: HttpBrane): Promise<string> {
  const res = await brane.handle(get('/'))
  assert.equal(res.status, 200)
  return new TextDecoder().decode(res.body).trim()
}

describe('WorkerBrane snapshots', () => {
  let cacheDir = ''
  let counter: LoadedComponent
  let hello: LoadedComponent

  async function start (loaded: LoadedComponent, options: Partial<HttpBraneOptions> = {}): Promise<HttpBrane> {
    return HttpBrane.create(loaded, { name: 'counter', grants: {}, log: ignoreLog, lifecycle: 'pinned', spare: false, ...options })
  }

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'omega-snapshot-'))
    counter = await loadComponent(await readFile(join(ROOT, 'build/fixtures/counter.wasm')), { cacheDir })
    hello = await loadComponent(await readFile(join(ROOT, 'examples/hello/hello.wasm')), { cacheDir })
  })

  after(async () => {
    await rm(cacheDir, { recursive: true, force: true })
  })

  it('restores the memory of a pinned brane between calls, in the same brane and in a new one', async () => {
    const brane = await start(counter)
    try {
      assert.equal(await hit(brane), '1 2')
      assert.equal(await hit(brane), '2 3')
      assert.equal(await hit(brane), '3 4')
      const snapshot = await brane.snapshot()
      assert.equal(snapshot.brane, 'counter')
      assert.equal(snapshot.componentId, counter.id)
      assert.equal(snapshot.lifecycle, 'pinned')
      assert.equal(snapshot.memories.length, 1)
      assert.equal(snapshot.memories[0]?.byteLength, 4 * PAGE)
      assert.equal(await hit(brane), '4 5')
      assert.equal(await hit(brane), '5 6')

      await brane.restore(snapshot)
      // the count is back to 3 and the memory to 4 pages (the next request grows it to 5)
      assert.equal(await hit(brane), '4 5')

      const fresh = await start(counter)
      try {
        assert.equal(await hit(fresh), '1 2')
        await fresh.restore(snapshot)
        assert.equal(await hit(fresh), '4 5')
      } finally {
        await fresh.close()
      }
    } finally {
      await brane.close()
    }
  })

  it('queues a snapshot like a request: it never runs during a call', async () => {
    const brane = await start(counter)
    try {
      const before = [hit(brane), hit(brane), hit(brane)]
      const snapshot = brane.snapshot()
      const later = [hit(brane), hit(brane)]
      assert.deepEqual(await Promise.all([...before, ...later]), ['1 2', '2 3', '3 4', '4 5', '5 6'])
      const taken = await snapshot
      assert.equal(new DataView(taken.memories[0]?.buffer as ArrayBuffer).getUint32(512, true), 3)
      assert.equal(brane.stats.deadlineKills, 0)
    } finally {
      await brane.close()
    }
  })

  it('refuses a brane that is not pinned', async () => {
    const brane = await start(counter, { lifecycle: 'pooled' })
    try {
      await assert.rejects(brane.snapshot(), { name: 'SnapshotError', message: /lifecycle is "pooled".*pinned/ })
    } finally {
      await brane.close()
    }
  })

  it('refuses a snapshot of another component, or larger than mem_max, and keeps the state', async () => {
    const brane = await start(counter)
    const other = await start(hello, { name: 'hello' })
    const small = await start(counter, { memMaxBytes: 2 * PAGE })
    try {
      await hit(brane)
      await hit(brane)
      const snapshot = await brane.snapshot()
      await assert.rejects(other.restore(snapshot), { name: 'SnapshotError', message: /of component b3:.*the brane runs b3:/ })
      await assert.rejects(small.restore(snapshot), { name: 'SnapshotError', message: /memory 0 holds 196608 bytes, more than its mem_max of 131072 bytes/ })
      assert.equal(await hit(small), '1 2')
      // a snapshot the worker cannot apply (another number of memories) leaves the instance as it was
      await assert.rejects(brane.restore({ ...snapshot, memories: [] }), { name: 'SnapshotError', message: /0 memories/ })
      assert.equal(await hit(brane), '3 4')
    } finally {
      await Promise.all([brane.close(), other.close(), small.close()])
    }
  })
})
