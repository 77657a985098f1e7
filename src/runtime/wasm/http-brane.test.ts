import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Grants } from '../../manifest/index.ts'
import { HttpBrane, type HttpRequest, type LoadedComponent } from './index.ts'
import { componentLoader } from './testing.ts'

function get (pathWithQuery: string): HttpRequest {
  return { method: 'GET', pathWithQuery, scheme: 'http', authority: 'localhost:8080', headers: [['accept', 'text/plain']], body: new Uint8Array() }
}

const text = (body: Uint8Array): string => new TextDecoder().decode(body)

/** Polls `check` until it holds (or fails the test after `ms`) */
async function waitFor (check: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms
  while (!check()) {
    assert.ok(Date.now() < until, `condition not met within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
const NO_GRANTS: Grants = {}
function ignoreLog (): void {}

describe('HttpBrane', () => {
  let cacheDir = ''

  const load = componentLoader(() => cacheDir)

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'omega-brane-'))
  })

  after(async () => {
    await rm(cacheDir, { recursive: true, force: true })
  })

  it('serves the hello component', async () => {
    const brane = await HttpBrane.create(await load('examples/hello/hello.wasm'), { name: 'hello', grants: NO_GRANTS, log: ignoreLog })
    try {
      for (const path of ['/', '/a/b?c=d', '/x']) {
        const res = await brane.handle(get(path))
        assert.equal(res.status, 200)
        assert.deepEqual(res.headers, [['content-type', 'text/plain']])
        assert.equal(text(res.body), `hello from omega: ${path}\n`)
      }
      // concurrent requests queue for the worker
      const paths = Array.from({ length: 8 }, (_, i) => `/concurrent/${i}`)
      const bodies = await Promise.all(paths.map(async (path) => text((await brane.handle(get(path))).body)))
      assert.deepEqual(bodies, paths.map((path) => `hello from omega: ${path}\n`))
    } finally {
      await brane.close()
    }
  })

  it('fails a trapping request with GuestError and keeps serving', async () => {
    const trap = await HttpBrane.create(await load('build/fixtures/trap.wasm'), { name: 'trap', grants: NO_GRANTS, log: ignoreLog })
    const hello = await HttpBrane.create(await load('examples/hello/hello.wasm'), { name: 'hello', grants: NO_GRANTS, log: ignoreLog })
    try {
      await assert.rejects(trap.handle(get('/')), { name: 'GuestError', message: /^Brane "trap" trapped: .*unreachable/ })
      // the trapping brane answers the next request (with the same trap), it does not die
      await assert.rejects(trap.handle(get('/again')), { name: 'GuestError' })
      assert.equal(text((await hello.handle(get('/after'))).body), 'hello from omega: /after\n')
    } finally {
      await trap.close()
      await hello.close()
    }
  })

  it('sends stdout and stderr to the brane log, not to the process', async () => {
    const lines: Array<[string, string]> = []
    const brane = await HttpBrane.create(await load('build/fixtures/log.wasm'), {
      name: 'logger', grants: NO_GRANTS, log: (stream, line) => { lines.push([stream, line]) }
    })
    try {
      // this guest writes logs and never sets a response
      await assert.rejects(brane.handle(get('/')), { name: 'GuestError', message: 'Brane "logger" returned without setting a response' })
      assert.deepEqual(lines, [['stdout', 'line one'], ['stdout', 'line two'], ['stderr', 'no newline at the end']])
    } finally {
      await brane.close()
    }
  })

  it('terminates a guest past its deadline and replaces its worker', async () => {
    const brane = await HttpBrane.create(await load('build/fixtures/spin.wasm'), {
      name: 'spin', grants: NO_GRANTS, log: ignoreLog, deadlineMs: 200
    })
    try {
      await waitFor(() => brane.stats.spareReady)
      await assert.rejects(brane.handle(get('/')), {
        name: 'DeadlineExceededError',
        message: 'Brane "spin" did not answer GET / within its 200 ms deadline: the call was stopped'
      })
      // the warm spare took the stopped worker's place at once: no start-up wait
      assert.equal(brane.stats.idle, 1)
      assert.equal(brane.stats.deadlineKills, 1)
      // it takes the next request (and meets the same fate)
      await assert.rejects(brane.handle(get('/')), { name: 'DeadlineExceededError' })
    } finally {
      await brane.close()
    }
  })

  it('refuses to link a component whose imports are not granted', async () => {
    const sockets = await load('build/fixtures/sockets.wasm')
    assert.deepEqual([...sockets.imports].sort(), [
      'wasi:clocks/monotonic-clock@0.2.12', 'wasi:random/random@0.2.12',
      'wasi:sockets/instance-network@0.2.12', 'wasi:sockets/network@0.2.12'
    ])
    await assert.rejects(HttpBrane.create(sockets, { name: 'api', grants: { clock: { resolution: 'ms' } }, log: ignoreLog }), (err: Error) => {
      assert.equal(err.name, 'CapabilityDeniedError')
      assert.match(err.message, /^Cannot link brane "api": component imports /)
      assert.match(err.message, /"wasi:random\/random@0\.2\.12", which needs \[brane\.api\.capability\] "random"/)
      assert.match(err.message, /"wasi:sockets\/instance-network@0\.2\.12", which no capability grants .*use "net\.http"/)
      assert.doesNotMatch(err.message, /monotonic-clock/)
      return true
    })
  })

  it('refuses a component that does not export wasi:http/incoming-handler', async () => {
    const hello = await load('examples/hello/hello.wasm')
    const noHandler: LoadedComponent = { ...hello, exports: ['wasi:cli/run@0.2.12'] }
    await assert.rejects(HttpBrane.create(noHandler, { name: 'cli', grants: NO_GRANTS, log: ignoreLog }), {
      name: 'ComponentLoadError',
      message: 'Cannot serve HTTP with brane "cli": component does not export "wasi:http/incoming-handler" (it exports "wasi:cli/run@0.2.12")'
    })
  })

  it('drops a queued request when its signal aborts, and refuses requests once closed', async () => {
    const brane = await HttpBrane.create(await load('examples/hello/hello.wasm'), { name: 'hello', grants: NO_GRANTS, log: ignoreLog })
    const controller = new AbortController()
    const first = brane.handle(get('/first'))
    const second = brane.handle(get('/second'), { signal: controller.signal })
    controller.abort(new Error('client went away'))
    await assert.rejects(second, { message: 'client went away' })
    assert.equal(text((await first).body), 'hello from omega: /first\n')
    await brane.close()
    await assert.rejects(brane.handle(get('/late')), { name: 'BraneClosedError' })
  })
})
