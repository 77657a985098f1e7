import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { contentAddress } from '../identity/index.ts'
import { imageStore, parseImageRef } from './index.ts'

let root = ''
let counter = 0

async function freshHome (): Promise<string> {
  counter++
  const home = join(root, `home-${counter}`)
  await mkdir(home)
  return home
}

async function fixture (name: string, content: string | Uint8Array): Promise<{ path: string, bytes: Uint8Array }> {
  const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content
  const path = join(root, `${counter}-${name}`)
  await writeFile(path, bytes)
  return { path, bytes }
}

before(async () => { root = await mkdtemp(join(tmpdir(), 'omega-store-')) })
after(async () => { await rm(root, { recursive: true, force: true }) })

describe('parseImageRef', () => {
  it('accepts valid references and defaults the tag to latest', () => {
    assert.deepEqual(parseImageRef('hello'), { name: 'hello', tag: 'latest', ref: 'hello:latest' })
    assert.deepEqual(parseImageRef('hello:1'), { name: 'hello', tag: '1', ref: 'hello:1' })
    assert.equal(parseImageRef('ghcr.io/acme/hello-world_2:V1.2-rc_3').ref, 'ghcr.io/acme/hello-world_2:V1.2-rc_3')
    assert.equal(parseImageRef('0:' + 'x'.repeat(128)).tag.length, 128)
  })

  it('rejects malformed references with InvalidImageRefError', () => {
    for (const bad of ['', 'Hello:1', '-x', '.x', '/x', ':1', 'hello:', 'a:b:c', 'hello:' + 'x'.repeat(129), 'hello:1/2', 'he llo', 'hello:ü',
      'b3:' + 'a'.repeat(64)]) {
      assert.throws(() => parseImageRef(bad), { name: 'InvalidImageRefError' }, bad)
    }
  })
})

describe('imageStore', () => {
  it('adds a file and resolves it by tag and by content address', async () => {
    const home = await freshHome()
    const store = imageStore({ home })
    const { path, bytes } = await fixture('hello.wasm', 'hello component')
    const added = await store.add(path, 'hello:1')
    const hash = contentAddress(bytes)
    assert.equal(added.hash, hash)
    assert.equal(added.ref, 'hello:1')
    assert.equal(added.size, bytes.byteLength)
    assert.equal(added.path, join(home, 'images', 'blobs', hash.slice(3)))

    const resolved = await store.resolve('hello:1')
    assert.deepEqual(resolved, { path: added.path, hash, size: bytes.byteLength })
    assert.deepEqual(new Uint8Array(await readFile(resolved.path)), bytes)
    assert.deepEqual(await store.resolve(hash), resolved)
    assert.equal((await stat(resolved.path)).mode & 0o222, 0, 'blobs are read-only')
    assert.deepEqual(await readdir(join(home, 'images', 'tmp')), [], 'no temp files left behind')
  })

  it('uses the latest tag when none is given', async () => {
    const store = imageStore({ home: await freshHome() })
    const { path } = await fixture('a.wasm', 'a')
    assert.equal((await store.add(path, 'app')).ref, 'app:latest')
    assert.equal((await store.resolve('app')).hash, (await store.resolve('app:latest')).hash)
  })

  it('stores identical content once', async () => {
    const home = await freshHome()
    const store = imageStore({ home })
    const one = await fixture('one.wasm', 'same bytes')
    const two = await fixture('two.wasm', 'same bytes')
    const a = await store.add(one.path, 'a:1')
    const b = await store.add(two.path, 'b:2')
    assert.equal(a.path, b.path)
    assert.deepEqual(await readdir(join(home, 'images', 'blobs')), [a.hash.slice(3)])
  })

  it('names the add command when an image is missing', async () => {
    const home = await freshHome()
    const store = imageStore({ home })
    await assert.rejects(store.resolve('hello:1'), (err: Error) => {
      assert.equal(err.name, 'ImageNotFoundError')
      assert.equal(err.message, `Image "hello:1" is not in the store (${join(home, 'images')}): add it with "omega image add FILE hello:1"`)
      return true
    })
    await assert.rejects(store.resolve('b3:' + 'a'.repeat(64)), { name: 'ImageNotFoundError' })
    await assert.rejects(store.resolve('b3:nothex'), { name: 'InvalidImageRefError' })
    await assert.rejects(store.resolve('Bad:1'), { name: 'InvalidImageRefError' })
  })

  it('rejects a missing source file and a directory', async () => {
    const store = imageStore({ home: await freshHome() })
    await assert.rejects(store.add(join(root, 'does-not-exist.wasm'), 'x:1'), { name: 'ImageNotFoundError' })
    await assert.rejects(store.add(root, 'x:1'), { name: 'ImageNotFoundError' })
    await assert.rejects(store.add(join(root, 'does-not-exist.wasm'), 'X:1'), { name: 'InvalidImageRefError' })
  })

  it('lists tags sorted by ref', async () => {
    const store = imageStore({ home: await freshHome() })
    assert.deepEqual(await store.list(), [])
    const { path, bytes } = await fixture('l.wasm', 'list me')
    const before = Date.now()
    await store.add(path, 'zeta:1')
    await store.add(path, 'alpha:2')
    const list = await store.list()
    assert.deepEqual(list.map((e) => e.ref), ['alpha:2', 'zeta:1'])
    for (const entry of list) {
      assert.equal(entry.hash, contentAddress(bytes))
      assert.equal(entry.size, bytes.byteLength)
      assert.ok(Date.parse(entry.added) >= before - 1000)
    }
  })

  it('moves a tag on re-add and deletes the blob nothing points to', async () => {
    const home = await freshHome()
    const store = imageStore({ home })
    const v1 = await fixture('v1.wasm', 'version 1')
    const v2 = await fixture('v2.wasm', 'version 2')
    const first = await store.add(v1.path, 'app:stable')
    const second = await store.add(v2.path, 'app:stable')
    assert.equal((await store.resolve('app:stable')).hash, second.hash)
    assert.deepEqual(await readdir(join(home, 'images', 'blobs')), [second.hash.slice(3)])
    await assert.rejects(store.resolve(first.hash), { name: 'ImageNotFoundError' })
  })

  it('removes a tag, keeping the blob while another tag points to it', async () => {
    const home = await freshHome()
    const store = imageStore({ home })
    const { path } = await fixture('r.wasm', 'remove me')
    const added = await store.add(path, 'r:1')
    await store.add(path, 'r:2')
    const removed = await store.remove('r:1')
    assert.equal(removed.ref, 'r:1')
    assert.equal(removed.hash, added.hash)
    await assert.rejects(store.resolve('r:1'), { name: 'ImageNotFoundError' })
    assert.equal((await store.resolve('r:2')).path, added.path)
    await store.remove('r:2')
    assert.deepEqual(await readdir(join(home, 'images', 'blobs')), [])
    assert.deepEqual(await store.list(), [])
    await assert.rejects(store.remove('r:2'), { name: 'ImageNotFoundError' })
  })

  it('persists across instances', async () => {
    const home = await freshHome()
    const { path } = await fixture('p.wasm', 'persist')
    const added = await imageStore({ home }).add(path, 'p:1')
    assert.equal((await imageStore({ home }).resolve('p:1')).hash, added.hash)
  })

  it('repairs a damaged blob when the same content is added again', async () => {
    const home = await freshHome()
    const store = imageStore({ home })
    const { path, bytes } = await fixture('d.wasm', 'pristine bytes')
    const added = await store.add(path, 'd:1')
    await chmod(added.path, 0o644)
    await writeFile(added.path, 'rotten bytes!!')
    await store.add(path, 'd:1')
    assert.deepEqual(new Uint8Array(await readFile(added.path)), bytes)
  })

  it('reports a blob whose size no longer matches the index', async () => {
    const store = imageStore({ home: await freshHome() })
    const { path } = await fixture('t.wasm', 'truncate me')
    const added = await store.add(path, 't:1')
    await chmod(added.path, 0o644)
    await writeFile(added.path, 'short')
    await assert.rejects(store.resolve('t:1'), { name: 'ImageStoreError' })
  })

  it('reports a corrupt index naming the file', async () => {
    const home = await freshHome()
    await mkdir(join(home, 'images'))
    const indexFile = join(home, 'images', 'index.json')
    await writeFile(indexFile, '{ not json')
    const store = imageStore({ home })
    await assert.rejects(store.resolve('x:1'), (err: Error) => {
      assert.equal(err.name, 'ImageStoreError')
      assert.ok(err.message.includes(indexFile), err.message)
      return true
    })
    await writeFile(indexFile, JSON.stringify({ version: 1, images: { 'x:1': { hash: 'nope' } } }))
    await assert.rejects(store.list(), { name: 'ImageStoreError' })
  })

  it('loses no tag when writers race, in one process and across store instances', async () => {
    const home = await freshHome()
    const stores = [imageStore({ home }), imageStore({ home })]
    const files = await Promise.all(Array.from({ length: 12 }, async (_, i) => fixture(`c${i}.wasm`, `content ${i % 4}`)))
    await Promise.all(files.map(async (file, i) => stores[i % 2]?.add(file.path, `c:${i}`)))
    const list = await stores[0]?.list()
    assert.equal(list?.length, 12)
    assert.equal((await readdir(join(home, 'images', 'blobs'))).length, 4)
    assert.deepEqual(await readdir(join(home, 'images', 'tmp')), [])
  })

  it('breaks a lock left by a process that no longer exists', async () => {
    const home = await freshHome()
    await mkdir(join(home, 'images'))
    // a pid above Linux's pid_max limit cannot be alive
    await writeFile(join(home, 'images', 'index.lock'), JSON.stringify({ pid: 2 ** 30, host: hostname(), created: new Date().toISOString() }))
    const store = imageStore({ home, lockTimeoutMs: 5_000 })
    const { path } = await fixture('s.wasm', 'stale lock')
    assert.equal((await store.add(path, 's:1')).ref, 's:1')
  })

  it('times out on a lock held by a live process', async () => {
    const home = await freshHome()
    await mkdir(join(home, 'images'))
    // our own pid: alive, so only the age rule could break it
    await writeFile(join(home, 'images', 'index.lock'), JSON.stringify({ pid: process.pid, host: hostname(), created: new Date().toISOString() }))
    const store = imageStore({ home, lockTimeoutMs: 100 })
    const { path } = await fixture('h.wasm', 'held lock')
    await assert.rejects(store.add(path, 'h:1'), { name: 'ImageStoreError' })
  })

  it('sweeps temp files abandoned by a crash, not fresh ones', async () => {
    const home = await freshHome()
    const tmp = join(home, 'images', 'tmp')
    await mkdir(tmp, { recursive: true })
    await writeFile(join(tmp, 'old.tmp'), 'partial')
    await writeFile(join(tmp, 'fresh.tmp'), 'in progress')
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000)
    await utimes(join(tmp, 'old.tmp'), twoDaysAgo, twoDaysAgo)
    const { path } = await fixture('w.wasm', 'sweep')
    await imageStore({ home }).add(path, 'w:1')
    assert.deepEqual(await readdir(tmp), ['fresh.tmp'])
  })
})
