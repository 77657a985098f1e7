// CPU profiles of a brane's workers: taken while requests run, without disturbing
// them; a worker that is stopped mid-profile contributes nothing.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HttpBrane, loadComponent, type HttpBraneOptions, type HttpRequest } from './index.ts'
import { ROOT } from './testing.ts'

function get (pathWithQuery: string): HttpRequest {
  return { method: 'GET', pathWithQuery, scheme: 'http', authority: 'localhost', headers: [], body: new Uint8Array() }
}

describe('WorkerBrane.profile', () => {
  let cacheDir = ''
  const open: HttpBrane[] = []

  async function brane (file: string, options: Partial<HttpBraneOptions> & { name: string }): Promise<HttpBrane> {
    const loaded = await loadComponent(await readFile(join(ROOT, file)), { cacheDir })
    const created = await HttpBrane.create(loaded, { grants: {}, log: () => {}, ...options })
    open.push(created)
    return created
  }

  before(async () => { cacheDir = await mkdtemp(join(tmpdir(), 'omega-profile-')) })
  after(async () => {
    await Promise.allSettled(open.map(async (b) => { await b.close() }))
    await rm(cacheDir, { recursive: true, force: true })
  })

  it('samples the workers while they serve, and every request is answered', async () => {
    const hello = await brane('examples/hello/hello.wasm', { name: 'hello', maxWorkers: 2 })
    let answered = 0
    let failed = 0
    const loadDone = new AbortController()
    const load = Array.from({ length: 2 }, async () => {
      while (!loadDone.signal.aborted) {
        const res = await hello.handle(get('/busy')).catch(() => undefined)
        if (res?.status === 200) {
          answered++
        } else {
          failed++
        }
      }
    })
    const started = performance.now()
    const profiles = await hello.profile({ durationMs: 700 })
    const took = performance.now() - started
    loadDone.abort()
    await Promise.all(load)

    assert.equal(failed, 0)
    assert.ok(answered > 0, `only ${answered} requests answered while profiling`)
    assert.ok(took >= 700, `profile took ${took} ms, less than it was asked to sample`)
    assert.ok(profiles.length >= 1)
    assert.equal(new Set(profiles.map((p) => p.threadId)).size, profiles.length)
    const frames = profiles.flatMap((p) => p.profile.nodes.map((n) => n.callFrame))
    const samples = profiles.reduce((sum, p) => sum + (p.profile.samples?.length ?? 0), 0)
    assert.ok(samples > 0, 'no samples')
    // the guest's core module runs in the worker: its frames are there, with the module URL
    assert.ok(frames.some((f) => f.url.startsWith('wasm://')), 'no wasm frame')
    assert.equal(profiles[0]?.intervalUs, 1000)
  })

  it('leaves out a worker stopped at its deadline mid-profile', async () => {
    const spin = await brane('build/fixtures/spin.wasm', { name: 'spin', deadlineMs: 200, maxWorkers: 1 })
    await waitFor(() => spin.stats.spareReady)
    const late = assert.rejects(spin.handle(get('/')), { name: 'DeadlineExceededError' })
    // the active worker spins until it is terminated; the warm spare answers
    const profiles = await spin.profile({ durationMs: 500 })
    await late
    assert.equal(profiles.length, 1)
  })

  it('refuses a duration out of bounds, and a closed brane', async () => {
    const hello = await brane('examples/hello/hello.wasm', { name: 'bounds' })
    await assert.rejects(hello.profile({ durationMs: 0 }), { name: 'RangeError' })
    await assert.rejects(hello.profile({ durationMs: 60_001 }), { name: 'RangeError' })
    await assert.rejects(hello.profile({ intervalUs: 0 }), { name: 'RangeError' })
    await assert.rejects(hello.profile({ signal: AbortSignal.abort() }), { name: 'AbortError' })
    // aborted mid-way: the workers stop sampling and the call rejects at once
    const controller = new AbortController()
    const started = performance.now()
    setTimeout(() => { controller.abort() }, 100)
    await assert.rejects(hello.profile({ durationMs: 10_000, signal: controller.signal }), { name: 'AbortError' })
    // it did not sample the whole 10 s it was asked for
    assert.ok(performance.now() - started < 9_000)
    await hello.close()
    await assert.rejects(hello.profile(), { name: 'BraneClosedError' })
  })
})

async function waitFor (check: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms
  while (!check()) {
    assert.ok(Date.now() < until, `condition not met within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
