/**
 * Hot reload under continuous HTTP load: no request fails, a bad manifest changes
 * nothing, unchanged branes keep their instances.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

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
    assert.ok(served > 50, `only ${served} requests were served during the test`)
  })
})
