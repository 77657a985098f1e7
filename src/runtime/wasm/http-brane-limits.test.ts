// Lifecycles, concurrency and limits of HttpBrane, with hostile guests: each must be
// contained, fail its own request with a clear error, and leave a healthy brane
// served beside it answering.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HttpBrane, type HttpBraneOptions, type HttpRequest } from './index.ts'
import { componentLoader } from './testing.ts'

const MIB = 1024 * 1024

function get (pathWithQuery: string): HttpRequest {
  return { method: 'GET', pathWithQuery, scheme: 'http', authority: 'localhost:8080', headers: [], body: new Uint8Array() }
}

const text = (body: Uint8Array): string => new TextDecoder().decode(body)
function ignoreLog (): void {}

async function waitFor (check: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms
  while (!check()) {
    assert.ok(Date.now() < until, `condition not met within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/**
 * Sends requests to `healthy` one after another until `during` settles; asserts that
 * every one answered, and returns how many did.
 */
async function keepsAnswering (healthy: HttpBrane, during: Promise<unknown>): Promise<{ count: number }> {
  const state = { done: false }
  during.then(() => { state.done = true }, () => { state.done = true })
  let count = 0
  while (!state.done || count === 0) {
    const res = await healthy.handle(get(`/beside/${count}`))
    assert.equal(res.status, 200)
    assert.equal(text(res.body), `hello from omega: /beside/${count}\n`)
    count++
  }
  return { count }
}

describe('HttpBrane limits and lifecycles', () => {
  let cacheDir = ''
  const open: HttpBrane[] = []
  let hello: HttpBrane

  const load = componentLoader(() => cacheDir)

  async function brane (file: string, options: Partial<HttpBraneOptions> & { name: string }): Promise<HttpBrane> {
    const created = await HttpBrane.create(await load(file), { grants: {}, log: ignoreLog, ...options })
    open.push(created)
    return created
  }

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'omega-limits-'))
    hello = await brane('examples/hello/hello.wasm', { name: 'healthy' })
  })

  after(async () => {
    await Promise.all(open.map(async (b) => { await b.close() }))
    await rm(cacheDir, { recursive: true, force: true })
  })

  it('ephemeral: every request gets a fresh, pre-warmed instance', async () => {
    const b = await brane('examples/hello/hello.wasm', { name: 'eph' })
    assert.equal(b.stats.lifecycle, 'ephemeral')
    const first = await b.handle(get('/1'))
    assert.equal(text(first.body), 'hello from omega: /1\n')
    const t = first.timing
    assert.equal(t.cold, false, 'the worker pre-warmed before it said ready')
    assert.equal(t.pooled, false)
    assert.equal(t.instantiateMs, 0)
    assert.ok(t.execMs > 0 && t.cpuMs > 0 && t.queueMs >= 0)
    assert.equal(t.memBytes, 65_536)
    for (let i = 0; i < 5; i++) {
      assert.equal((await b.handle(get('/n'))).timing.pooled, false)
    }
  })

  it('ephemeral without pre-warming instantiates on the request (cold)', async () => {
    const b = await brane('examples/hello/hello.wasm', { name: 'cold', prewarm: 0 })
    const t = (await b.handle(get('/'))).timing
    assert.equal(t.cold, true)
    assert.ok(t.instantiateMs > 0 && t.acquireMs >= t.instantiateMs)
  })

  it('pooled: instances are reused, and one that traps is discarded', async () => {
    const b = await brane('examples/hello/hello.wasm', { name: 'pool', lifecycle: 'pooled' })
    const first = await b.handle(get('/1'))
    assert.equal(first.timing.pooled, false)
    const second = await b.handle(get('/2'))
    assert.equal(second.timing.pooled, true)
    assert.equal(second.timing.cold, false)
    assert.equal(text(second.body), 'hello from omega: /2\n')
    const trap = await brane('build/fixtures/trap.wasm', { name: 'pooltrap', lifecycle: 'pooled' })
    for (let i = 0; i < 3; i++) {
      await assert.rejects(trap.handle(get('/')), { name: 'GuestError', message: /^Brane "pooltrap" trapped: .*unreachable/ })
    }
  })

  it('pinned: one worker and one instance serve every request in turn', async () => {
    const b = await brane('examples/hello/hello.wasm', { name: 'pin', lifecycle: 'pinned', maxWorkers: 4 })
    const responses = await Promise.all(Array.from({ length: 6 }, async (_, i) => b.handle(get(`/${i}`))))
    assert.equal(b.stats.workers, 1)
    assert.equal(responses.filter((r) => r.timing.pooled).length, 5, 'all but the first reused the instance')
  })

  it('adds workers under load and retires idle ones', async () => {
    const spin = await brane('build/fixtures/spin.wasm', { name: 'busy', deadlineMs: 300, maxWorkers: 2, idleWorkerMs: 200 })
    await waitFor(() => spin.stats.spareReady)
    const both = Promise.allSettled([spin.handle(get('/a')), spin.handle(get('/b'))])
    assert.equal(spin.stats.busy, 2, 'the warm spare took the second request at once')
    const results = await both
    assert.ok(results.every((r) => r.status === 'rejected' && (r.reason as Error).name === 'DeadlineExceededError'))
    await waitFor(() => spin.stats.workers === 1 && spin.stats.spareReady)
  })

  it('pipelines jobs in a worker: each runs once, in order, and all answer', async () => {
    // one worker, no spare: every request beyond the first waits inside that worker
    const counter = await brane('build/fixtures/counter.wasm', { name: 'piped', lifecycle: 'pinned', spare: false, pipeline: 4 })
    const answers = await Promise.all(Array.from({ length: 40 }, async (_, i) => counter.handle(get(`/${i}`))))
    // the instance counts its calls: 40 distinct counts, in the order sent
    assert.deepEqual(answers.map((r) => Number(text(r.body).split(' ')[0])), Array.from({ length: 40 }, (_, i) => i + 1))
    assert.ok(answers.some((r) => r.timing.queueMs > 0))
  })

  it('admission control: callers queued behind a spinning guest are answered at its deadline, not after their turn (D6)', async () => {
    const spin = await brane('build/fixtures/spin.wasm', { name: 'crowd', deadlineMs: 300, maxWorkers: 2, pipeline: 4 })
    await waitFor(() => spin.stats.spareReady)
    const outcomes = await Promise.all(Array.from({ length: 100 }, async (_, i) => {
      try {
        await spin.handle(get(`/${i}`))
        return 'answered'
      } catch (err) {
        return (err as Error).message.includes('waited') ? 'waited' : (err as Error).name
      }
    }))
    // a few ran and were stopped at their deadline; the rest were turned away at theirs,
    // whether they waited in the brane's queue or behind a spinning job in a worker
    const ran = outcomes.filter((o) => o === 'DeadlineExceededError').length
    assert.equal(ran + outcomes.filter((o) => o === 'waited').length, 100, outcomes.join(' '))
    assert.ok(ran >= 1 && ran <= 10, `${ran} calls ran (of 100: the others never waited longer than the deadline)`)
    assert.equal(spin.stats.deadlineKills, ran)
    assert.equal(spin.stats.queued, 0)
    // the workers stopped at their deadlines are replaced (on a loaded machine that can take
    // longer than the deadline, and a call meanwhile is turned away for waiting)
    await waitFor(() => spin.stats.idle >= 1)
    const [late] = await Promise.allSettled([spin.handle(get('/late'))])
    assert.match(String((late as PromiseRejectedResult).reason), /did not answer GET \/late within its 300 ms deadline/, 'the brane serves (and stops) the next call as usual')
  })

  it('pooled: an instance grown past 3/4 of mem_max is replaced before it reaches the cap', async () => {
    // counter.wat grows its memory one page (64 KiB) per request and traps when it cannot
    const counter = await brane('build/fixtures/counter.wasm', { name: 'leaky', lifecycle: 'pooled', maxWorkers: 1, memMaxBytes: 10 * 65_536 })
    const pages: number[] = []
    for (let i = 0; i < 30; i++) {
      const res = await counter.handle(get(`/${i}`))
      assert.equal(res.status, 200, `request ${i}`)
      pages.push(Number(text(res.body).split(' ')[1]))
    }
    // an instance at 8 pages (512 KiB, past 3/4 of 640 KiB) is not reused: a fresh one takes over
    assert.equal(Math.max(...pages), 8, pages.join(' '))
    assert.ok(pages.filter((p) => p === 2).length >= 3, `instances were replaced: ${pages.join(' ')}`)
  })

  it('caps the calls waiting for a worker: past the cap a call is refused at once (OverloadedError)', async () => {
    const spin = await brane('build/fixtures/spin.wasm', { name: 'capped', deadlineMs: 500, maxWorkers: 1, spare: false, pipeline: 1, maxQueued: 3 })
    const calls = Array.from({ length: 8 }, async (_, i) => spin.handle(get(`/${i}`)).then(() => 'answered', (err: Error) => err.name))
    const outcomes = await Promise.all(calls)
    // one runs (and is stopped), three wait (and are turned away at the deadline), four are refused at once
    assert.deepEqual(outcomes.filter((o) => o === 'OverloadedError').length, 4, outcomes.join(' '))
    assert.deepEqual(outcomes.filter((o) => o === 'DeadlineExceededError').length, 4, outcomes.join(' '))
    assert.equal(spin.stats.queued, 0)
  })

  it('contains an infinite loop: DeadlineExceededError, a warm replacement, a healthy neighbour', async () => {
    const spin = await brane('build/fixtures/spin.wasm', { name: 'loop', deadlineMs: 300 })
    await waitFor(() => spin.stats.spareReady)
    const call = spin.handle(get('/forever'))
    const beside = await keepsAnswering(hello, call)
    await assert.rejects(call, {
      name: 'DeadlineExceededError',
      message: 'Brane "loop" did not answer GET /forever within its 300 ms deadline: the call was stopped'
    })
    assert.equal(spin.stats.idle, 1, 'the spare replaced the stopped worker')
    assert.ok(beside.count > 0, `healthy brane answered ${beside.count} requests meanwhile`)
  })

  it('contains a trap', async () => {
    const trap = await brane('build/fixtures/trap.wasm', { name: 'trap' })
    const call = trap.handle(get('/'))
    const beside = await keepsAnswering(hello, call)
    await assert.rejects(call, { name: 'GuestError', message: /^Brane "trap" trapped: wasm trap: wasm `unreachable` instruction executed$/ })
    assert.ok(beside.count > 0)
  })

  it('contains deep recursion: the stack overflows, the brane keeps serving', async () => {
    const deep = await brane('build/fixtures/recurse.wasm', { name: 'deep', lifecycle: 'pooled' })
    const call = deep.handle(get('/'))
    const beside = await keepsAnswering(hello, call)
    await assert.rejects(call, { name: 'GuestError', message: /^Brane "deep" overflowed its stack \(recursion too deep\): Maximum call stack size exceeded/ })
    await assert.rejects(deep.handle(get('/again')), { name: 'GuestError', message: /overflowed its stack/ })
    assert.ok(beside.count > 0)
  })

  it('reports a guest that traps at mem_max as MemoryLimitError, naming the key and the size reached', async () => {
    const oom = await brane('build/fixtures/oom.wasm', { name: 'oom', memMaxBytes: 2 * MIB, lifecycle: 'pooled' })
    await assert.rejects(oom.handle(get('/')), {
      name: 'MemoryLimitError',
      message: /^Brane "oom" ran out of memory: its linear memory reached 2097152 bytes and could not grow past mem_max \(2097152 bytes; raise \[brane\.oom\.limits\] mem_max to allow more\), then it trapped: .*unreachable/
    })
    // a trap below the cap stays a plain GuestError
    const trap = await brane('build/fixtures/trap.wasm', { name: 'trapper', memMaxBytes: 2 * MIB })
    await assert.rejects(trap.handle(get('/')), (err: Error) => err.name === 'GuestError')
  })

  it('contains a memory bomb at mem_max: memory.grow fails, the instance answers', async () => {
    const bomb = await brane('build/fixtures/bomb.wasm', { name: 'bomb', memMaxBytes: 4 * MIB, lifecycle: 'pooled' })
    const call = bomb.handle(get('/grow'))
    const beside = await keepsAnswering(hello, call)
    const res = await call
    assert.equal(res.status, 200)
    assert.equal(text(res.body), 'hello from omega: /grow\n')
    assert.equal(res.timing.memBytes, 4 * MIB)
    // an instance at the cap is not reused (past 3/4 of mem_max): a fresh one answers, and is contained the same way
    const again = await bomb.handle(get('/again'))
    assert.equal(again.status, 200)
    assert.equal(again.timing.pooled, false)
    assert.equal(again.timing.memBytes, 4 * MIB)
    assert.ok(beside.count > 0)
    // the default cap is 64 MiB
    const big = await brane('build/fixtures/bomb.wasm', { name: 'bomb64' })
    assert.equal((await big.handle(get('/'))).timing.memBytes, 64 * MIB)
  })

  it('cuts a response body over maxBodyBytes (body_max), naming the key, and keeps serving', async () => {
    const echo = await brane('build/fixtures/echo-stream.wasm', { name: 'echo', maxBodyBytes: 64, lifecycle: 'pooled' })
    const request = (size: number): HttpRequest => ({ ...get('/'), method: 'POST', body: new Uint8Array(size).fill(0x61) })
    // "first\n", the body, "end\n": 10 bytes around it
    assert.equal(text((await echo.handle(request(54))).body), `first\n${'a'.repeat(54)}end\n`)
    await assert.rejects(echo.handle(request(55)), {
      name: 'GuestError',
      message: 'Brane "echo" wrote a response body over its limit of 64 bytes, so the response was cut off (raise [brane.echo.limits] body_max to allow more)'
    })
    assert.equal((await echo.handle(request(0))).status, 200)
    assert.equal(echo.bodyMax, 64)
  })

  it('refuses a memory cap below one page', async () => {
    await assert.rejects(HttpBrane.create(await load('examples/hello/hello.wasm'), { name: 'tiny', grants: {}, log: ignoreLog, memMaxBytes: 1000 }), { name: 'RangeError' })
  })

  it('contains 1 GiB of stdout: the log keeps 1 MiB and one marker line', async () => {
    const lines: Array<[string, string]> = []
    const flood = await brane('build/fixtures/flood.wasm', { name: 'flood', log: (stream, line) => { lines.push([stream, line]) } })
    const start = Date.now()
    const call = flood.handle(get('/'))
    const beside = await keepsAnswering(hello, call)
    const res = await call
    assert.equal(res.status, 200)
    const kept = lines.filter(([, line]) => line.startsWith('yyyy'))
    assert.ok(kept.length > 200 && kept.length <= 256, `kept ${kept.length} lines`)
    assert.ok(kept.every(([stream, line]) => stream === 'stdout' && line.length === 4095))
    const rest = lines.slice(kept.length)
    assert.equal(rest.length, 1)
    assert.deepEqual(rest[0], ['stderr', '[omega] log truncated: this request wrote more than 1048576 bytes or 10000 lines to stdout/stderr; the rest was dropped'])
    assert.ok(beside.count > 0)
    process.stderr.write(`# 1 GiB of stdout took ${Date.now() - start} ms\n`)
  })

  it('throttles admission past the CPU quota, per window, with debt', async () => {
    // budget 0.1 × 500 ms = 50 ms; a deadline kill is charged 100 ms: the next window
    // starts with 50 ms of debt (still at budget), the one after is free
    const spin = await brane('build/fixtures/spin.wasm', { name: 'quota', deadlineMs: 100, cpuQuota: 0.1, cpuWindowMs: 500 })
    const start = Date.now()
    await assert.rejects(spin.handle(get('/1')), { name: 'DeadlineExceededError' })
    const second = spin.handle(get('/2'))
    await waitFor(() => spin.stats.queued === 1 || Date.now() - start > 300)
    // held back: queued although a worker is free (when it ends depends on where the
    // windows fall, so no duration is asserted)
    assert.equal(spin.stats.queued, 1, 'the second request waits for quota')
    await assert.rejects(second, { name: 'DeadlineExceededError' })
    // a healthy brane without quota is not held back
    assert.equal((await hello.handle(get('/free'))).status, 200)
  })
})
