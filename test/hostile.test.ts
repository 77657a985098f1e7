/**
 * The hostile-component suite, end to end through the gateway: every hostile brane is
 * contained and its caller gets a clear error, while a healthy brane served
 * concurrently keeps answering every request.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT, get } from './helpers.ts'

const FIXTURES = ['spin', 'bomb', 'oom', 'recurse', 'flood', 'trap', 'probe', 'sockets']

describe('hostile components', () => {
  let dir = ''
  let node: LocalNode | undefined
  let target: Server | undefined
  let targetPort = 0
  const hits: string[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-hostile-'))
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
    for (const name of FIXTURES) {
      await cp(join(ROOT, `build/fixtures/${name}.wasm`), join(dir, `${name}.wasm`))
    }
    target = createServer((req, res) => {
      hits.push(req.url ?? '')
      res.end('allowed')
    })
    await new Promise<void>((resolve) => { target?.listen(0, '127.0.0.1', resolve) })
    targetPort = (target.address() as AddressInfo).port
    const manifest = join(dir, 'omega.toml')
    await writeFile(manifest, `
[brane.hello]
image = "hello.wasm"
trigger = { http = "/hello" }

[brane.spin]
image = "spin.wasm"
trigger = { http = "/spin" }
limits = { deadline = "300ms" }

[brane.bomb]
image = "bomb.wasm"
trigger = { http = "/bomb" }
limits = { mem_max = "4 MiB" }

[brane.oom]
image = "oom.wasm"
trigger = { http = "/oom" }
limits = { mem_max = "2 MiB" }

[brane.recurse]
image = "recurse.wasm"
trigger = { http = "/recurse" }

[brane.flood]
image = "flood.wasm"
trigger = { http = "/flood" }
limits = { deadline = "60s" }

[brane.trap]
image = "trap.wasm"
trigger = { http = "/trap" }

[brane.probe]
image = "probe.wasm"
trigger = { http = { route = "/...", host = "probe.test" } }

[brane.probe.capability]
"net.http" = { allowlist = ["127.0.0.1:${targetPort}"] }
"fs.tmp" = { quota = "64 KiB", lifetime = "request" }
clock = true
random = true
env = {}
`)
    node = await LocalNode.start(manifest, { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
  })

  after(async () => {
    await node?.stop()
    await new Promise<void>((resolve) => { target === undefined ? resolve() : target.close(() => { resolve() }) })
    await rm(dir, { recursive: true, force: true })
  })

  it('contains every hostile brane while hello keeps answering', async () => {
    const base = node?.url ?? ''
    const healthy = { served: 0, failures: [] as string[], running: true }
    const deadline = Date.now() + 120_000
    const hello = (async () => {
      while (healthy.running && Date.now() < deadline && healthy.served < 50_000) {
        const reply = await get(base, '/hello')
        if (reply.status !== 200 || reply.body !== 'hello from omega: /hello\n') {
          healthy.failures.push(`${reply.status} ${reply.body}`)
        }
        healthy.served++
      }
    })()

    const probe = async (path: string): Promise<Record<string, unknown>> => {
      const reply = await get(base, path, 'probe.test')
      assert.equal(reply.status, 200, reply.body)
      return JSON.parse(reply.body) as Record<string, unknown>
    }

    const checks = {
      // infinite loop: stopped at the deadline
      spin: async () => {
        const reply = await get(base, '/spin')
        assert.equal(reply.status, 504)
        assert.match(reply.body, /"error":"DeadlineExceededError".*did not answer GET \/spin within its 300 ms deadline/)
      },
      // memory bomb: memory.grow fails at mem_max, the instance survives and answers
      bomb: async () => {
        for (let i = 0; i < 3; i++) {
          const reply = await get(base, '/bomb')
          assert.equal(reply.status, 200, reply.body)
        }
      },
      // out of memory: a trap at mem_max is a 507 whose body names the key
      oom: async () => {
        const reply = await get(base, '/oom')
        assert.equal(reply.status, 507)
        assert.match(reply.body, /"error":"MemoryLimitError".*reached 2097152 bytes and could not grow past mem_max \(2097152 bytes; raise \[brane\.oom\.limits\] mem_max/)
      },
      recurse: async () => {
        const reply = await get(base, '/recurse')
        assert.equal(reply.status, 502)
        assert.match(reply.body, /"error":"GuestError".*overflowed its stack/)
      },
      trap: async () => {
        const reply = await get(base, '/trap')
        assert.equal(reply.status, 502)
        assert.match(reply.body, /"error":"GuestError".*trapped: .*unreachable/)
      },
      // 1 GiB of stdout: the brane's log keeps only its per-request budget
      flood: async () => {
        const reply = await get(base, '/flood')
        assert.equal(reply.status, 200, reply.body)
        const lines = node?.logBook.query({ brane: 'flood', limit: 100_000 }).filter((r) => r.kind !== 'request') ?? []
        assert.ok(lines.length > 0 && lines.length < 20_000, `${lines.length} log lines kept`)
        const bytes = lines.reduce((n, r) => n + r.message.length, 0)
        assert.ok(bytes <= 2 * 2 ** 20, `${bytes} bytes of log kept`)
      },
      // outgoing HTTP: only the allowlisted host:port is reached
      net: async () => {
        for (const authority of ['evil.example.com', `127.0.0.1:${targetPort + 1}`, `localhost:${targetPort}`, `2130706433:${targetPort}`, '127.0.0.1']) {
          assert.deepEqual(await probe(`/http?authority=${encodeURIComponent(authority)}&path=/denied`), { error: { tag: 'HTTP-request-denied' } }, authority)
        }
        assert.deepEqual(await probe(`/http?authority=127.0.0.1:${targetPort}&path=/ok`), { status: 200, body: 'allowed' })
        assert.deepEqual(hits, ['/ok'])
      },
      // fs.tmp: writes past the quota fail inside the guest
      quota: async () => {
        const json = await probe('/fs/write?bytes=200000&chunk=10000')
        assert.equal(json.error, 'insufficient-space', JSON.stringify(json))
        assert.ok(Number(json.written) <= 64 * 1024)
        // lifetime = "request": the next request starts with an empty /tmp
        const again = await probe('/fs/write?bytes=1000')
        assert.equal(again.written, 1000)
      }
    }
    try {
      for (const [name, check] of Object.entries(checks)) {
        await check().catch((err: unknown) => { throw new Error(`${name}: ${String(err)}`, { cause: err }) })
      }
    } finally {
      healthy.running = false
      await hello
    }
    assert.deepEqual(healthy.failures, [])
    assert.ok(healthy.served > 0, 'hello never answered')
  })

  it('refuses a brane importing what no capability grants (raw sockets), naming the import', async () => {
    const manifest = join(dir, 'sockets.toml')
    await writeFile(manifest, '[brane.net]\nimage = "sockets.wasm"\n')
    await assert.rejects(LocalNode.start(manifest, { home: join(dir, 'home2'), port: 0, logging: silentLogging(), admin: false }), (err: Error) => {
      assert.equal(err.name, 'CapabilityDeniedError')
      assert.match(err.message, /^Cannot link brane "net": component imports /)
      assert.match(err.message, /"wasi:sockets\/network@0\.2\.12", which no capability grants \(raw sockets are not available to branes: use "net\.http" for outgoing HTTP\)/)
      assert.match(err.message, /"wasi:random\/random@0\.2\.12", which needs \[brane\.net\.capability\] "random"/)
      return true
    })
  })
})
