import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { loadComponent } from './load.ts'
import { ROOT } from './testing.ts'

const HELLO = join(ROOT, 'examples/hello/hello.wasm')

describe('loadComponent', () => {
  let cacheDir = ''
  let hello = new Uint8Array()

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'omega-load-'))
    hello = await readFile(HELLO)
  })

  after(async () => {
    await rm(cacheDir, { recursive: true, force: true })
  })

  it('transpiles once, then loads from the cache', async () => {
    const first = await loadComponent(hello, { cacheDir })
    assert.equal(first.cache, 'miss')
    assert.match(first.hash, /^[0-9a-f]{64}$/)
    assert.equal(first.id, `b3:${first.hash}`)
    assert.equal(first.size, hello.length)
    assert.deepEqual(first.imports, ['wasi:http/types@0.2.12', 'wasi:io/error@0.2.12', 'wasi:io/streams@0.2.12'])
    assert.deepEqual(first.exports, ['wasi:http/incoming-handler@0.2.12'])
    assert.ok(existsSync(join(cacheDir, first.hash, 'meta.json')))
    assert.ok(first.modules.size > 0)

    const second = await loadComponent(hello, { cacheDir })
    assert.equal(second.cache, 'hit')
    assert.equal(second.id, first.id)
    assert.deepEqual(second.imports, first.imports)
    // compiled once per process
    assert.equal(second.modules, first.modules)
  })

  it('lets another process use the cache without transpiling', async () => {
    await loadComponent(hello, { cacheDir })
    const script = `
      import { readFile } from 'node:fs/promises'
      import { loadComponent } from ${JSON.stringify(new URL('./load.js', import.meta.url).href)}
      const loaded = await loadComponent(await readFile(${JSON.stringify(HELLO)}), { cacheDir: ${JSON.stringify(cacheDir)} })
      process.stdout.write(loaded.cache + ' ' + loaded.id)`
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script])
    const [cache, id] = stdout.split(' ')
    assert.equal(cache, 'hit')
    assert.match(id ?? '', /^b3:[0-9a-f]{64}$/)
  })

  it('transpiles again when the cache was written by another transpiler version', async () => {
    const fresh = await mkdtemp(join(tmpdir(), 'omega-load-'))
    try {
      const first = await loadComponent(hello, { cacheDir: fresh })
      const metaFile = join(fresh, first.hash, 'meta.json')
      const meta = JSON.parse(await readFile(metaFile, 'utf8')) as Record<string, unknown>
      await writeFile(metaFile, JSON.stringify({ ...meta, transpiler: 'jco-transpile@0.0.1' }))
      const again = await loadComponent(hello, { cacheDir: fresh })
      assert.equal(again.cache, 'miss')
      assert.equal((await loadComponent(hello, { cacheDir: fresh })).cache, 'hit')
    } finally {
      await rm(fresh, { recursive: true, force: true })
    }
  })

  it('rejects bytes that are not a component', async () => {
    await assert.rejects(loadComponent(new TextEncoder().encode('#!/bin/sh\necho hi\n'), { cacheDir }), {
      name: 'ComponentLoadError',
      message: /not a WebAssembly file/
    })
    await assert.rejects(loadComponent(new Uint8Array(0), { cacheDir }), { name: 'ComponentLoadError' })
    const core = Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00)
    await assert.rejects(loadComponent(core, { cacheDir }), {
      name: 'ComponentLoadError',
      message: /core WebAssembly module, not a component/
    })
  })

  it('rejects a component that jco cannot read', async () => {
    // a valid preamble followed by garbage
    const broken = Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0xff, 0x13, 0x37)
    await assert.rejects(loadComponent(broken, { cacheDir }), {
      name: 'ComponentLoadError',
      message: /^Cannot load component "b3:[0-9a-f]{64}": transpilation failed: /
    })
  })
})
