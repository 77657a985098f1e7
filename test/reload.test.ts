/**
 * Hot reload under continuous HTTP load: no request fails, a bad manifest changes
 * nothing, unchanged branes keep their instances.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT, CHAIN, copyFixtures, until } from './helpers.ts'

const V1 = `
[brane.a]
image = "hello.wasm"
trigger = { http = "/a/*" }

[brane.b]
image = "hello.wasm"
trigger = { http = "/b/*" }
`
const V2 = V1 + `
[brane.b.limits]
deadline = "9s"

[brane.c]
image = "hello.wasm"
trigger = { http = "/c/*" }
`
const BAD = V2 + `
[graph]
edges = [{ from = "a", to = "ghost", on = "x" }]
`

describe('hot reload', () => {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-reload-'))
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('switches plans under load with zero failed requests', async () => {
    const manifest = join(dir, 'omega.toml')
    await writeFile(manifest, V1)
    const node = await LocalNode.start(manifest, { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
    const failures: string[] = []
    let served = 0
    const load = { running: true }
    const deadline = Date.now() + 30_000
    const client = async (path: string): Promise<void> => {
      while (load.running && Date.now() < deadline && served < 20_000) {
        try {
          const res = await fetch(`${node.url}${path}`)
          const body = await res.text()
          if (res.status !== 200 || body !== `hello from omega: ${path}\n`) {
            failures.push(`${path}: ${res.status} ${body}`)
          }
          served++
        } catch (err) {
          failures.push(`${path}: ${String(err)}`)
        }
      }
    }
    try {
      const clients = Promise.all([client('/a/1'), client('/a/2'), client('/b/1'), client('/b/2')])
      await new Promise((resolve) => setTimeout(resolve, 300))

      await writeFile(manifest, V2)
      const second = await node.reload()
      assert.deepEqual(second, { added: ['c'], changed: ['b'], removed: [], unchanged: ['a'] })
      assert.equal(await (await fetch(`${node.url}/c/x`)).text(), 'hello from omega: /c/x\n')

      await writeFile(manifest, BAD)
      await assert.rejects(node.reload(), (err: Error) => {
        assert.equal(err.name, 'ManifestError')
        assert.match(err.message, /graph\.edges\[0\]\.to: no brane named "ghost"/)
        return true
      })
      assert.equal((await fetch(`${node.url}/c/x`)).status, 200, 'a refused reload changes nothing')

      await writeFile(manifest, V1)
      assert.deepEqual(await node.reload(), { added: [], changed: ['b'], removed: ['c'], unchanged: ['a'] })
      assert.equal((await fetch(`${node.url}/c/x`)).status, 404)

      await new Promise((resolve) => setTimeout(resolve, 300))
      load.running = false
      await clients
    } finally {
      load.running = false
      await node.stop()
    }
    assert.deepEqual(failures, [])
    assert.ok(served > 0, 'no request was served during the test')
  })

  it('reloads a running event chain under load with no failed request and no lost event', async () => {
    await copyFixtures(dir, ['http-emit', 'forward', 'sink'])
    const manifest = join(dir, 'chain.toml')
    await writeFile(manifest, CHAIN)
    const home = join(dir, 'chain-home')
    const node = await LocalNode.start(manifest, { home, port: 0, logging: silentLogging(), admin: false })
    const acknowledged: string[] = []
    const failures: string[] = []
    const load = { running: true }
    const deadline = Date.now() + 60_000
    const client = async (n: number): Promise<void> => {
      for (let i = 0; load.running && Date.now() < deadline && i < 10_000; i++) {
        try {
          const res = await fetch(`${node.url}/e/${n}-${i}`)
          const body = (await res.text()).trim()
          if (res.status === 200 && body.startsWith('hits:b3:')) {
            acknowledged.push(body)
          } else {
            failures.push(`${res.status} ${body}`)
          }
        } catch (err) {
          failures.push(String(err))
        }
      }
    }
    const db = new Database(join(home, 'queue.db'), { readonly: true })
    try {
      const clients = Promise.all([client(1), client(2), client(3)])
      await until(() => acknowledged.length >= 100, 30_000, 'events before the first reload')
      // change the consumers of both edges while events flow
      await writeFile(manifest, CHAIN.replace('image = "forward.wasm"\nlifecycle = "pooled"', 'image = "forward.wasm"\nlifecycle = "ephemeral"').replace('image = "sink.wasm"\nlifecycle = "pooled"', 'image = "sink.wasm"\nlifecycle = "pooled"\nlimits = { deadline = "20s" }'))
      assert.deepEqual(await node.reload(), { added: [], changed: ['mid', 'end'], removed: [], unchanged: ['web'] })
      const atSecond = acknowledged.length
      await until(() => acknowledged.length >= atSecond + 100, 30_000, 'events between the reloads')
      await writeFile(manifest, CHAIN)
      assert.deepEqual(await node.reload(), { added: [], changed: ['mid', 'end'], removed: [], unchanged: ['web'] })
      const atThird = acknowledged.length
      await until(() => acknowledged.length >= atThird + 100, 30_000, 'events after the reloads')
      load.running = false
      await clients
      const open = db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE state IN ('pending', 'inflight')")
      await until(() => (open.get() as { n: number }).n === 0, 60_000, 'the queue to drain')
      const reached = new Set((db.prepare("SELECT DISTINCT trace_id FROM hops WHERE target = 'end' AND outcome = 'ok'").all() as Array<{ trace_id: string }>).map((r) => r.trace_id))
      const lost = acknowledged.filter((id) => !reached.has(id))
      assert.deepEqual(lost, [], `${lost.length} of ${acknowledged.length} acknowledged events were lost`)
      assert.deepEqual(db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE state = 'dead'").get(), { n: 0 })
    } finally {
      load.running = false
      db.close()
      await node.stop()
    }
    assert.deepEqual(failures, [])
  })
})
