/**
 * A JavaScript HTTP brane (componentize-js) that exports wasi:http/incoming-handler
 * itself, served by a pooled instance over real HTTP: one instance answers hundreds of
 * requests in turn (it counts them).
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT, cli } from './helpers.ts'

describe('a JavaScript HTTP brane, pooled', () => {
  let dir = ''
  let node: LocalNode
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-js-brane-'))
    await cp(join(ROOT, 'examples/js-hello'), join(dir, 'app'), { recursive: true })
    node = await LocalNode.start(join(dir, 'app/omega.toml'), { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
  })
  after(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('answers 300 requests in turn from one instance', async () => {
    const first = await (await fetch(`${node.url}/warm`)).text()
    const start = Number(/request (\d+) of this instance/.exec(first)?.[1])
    assert.ok(start >= 1, first)
    for (let i = 1; i <= 300; i++) {
      const method = i % 3 === 0 ? 'POST' : 'GET'
      const res = await fetch(`${node.url}/n/${i}?q=${i}`, { method, ...(method === 'POST' ? { body: `${i}` } : {}) })
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-type'), 'text/plain')
      assert.equal(await res.text(), `hello from a JS brane: ${method} /n/${i}?q=${i} (request ${start + i} of this instance)\n`)
    }
  })

  it('omega validate --link warns when a fetch-event component is pooled, and not for one that exports the handler', async () => {
    const manifest = (image: string, lifecycle: string): string => `[brane.web]\nimage = "${image}"\nlifecycle = "${lifecycle}"\n`
    const home = join(dir, 'validate-home')
    const check = async (image: string, lifecycle: string): Promise<string> => {
      const file = join(dir, `${lifecycle}-${image.replaceAll('/', '_')}.toml`)
      await writeFile(file, manifest(join(ROOT, image), lifecycle))
      const run = await cli(['validate', '--link', file], home)
      return run.err + run.out
    }
    assert.match(await check('examples/pipeline/ingest.wasm', 'pooled'), /warning: brane\.web\.lifecycle: this looks like a JavaScript component that answers through a fetch event listener/)
    assert.doesNotMatch(await check('examples/pipeline/ingest.wasm', 'ephemeral'), /fetch event listener/)
    assert.doesNotMatch(await check('examples/js-hello/hello.wasm', 'pooled'), /fetch event listener/)
  })
})
