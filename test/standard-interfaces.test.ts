/**
 * Widely used interfaces that Spin and wasmCloud host, served end to end through the
 * gateway: wasi:config/store answers the brane's own [brane.X.config] table and
 * wasi:logging/logging records land in the brane's log, neither needing a grant; a brane
 * never sees another's configuration.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { cli, ROOT, get } from './helpers.ts'

const MANIFEST = `
[brane.cfg]
image = "config.wasm"
lifecycle = "pooled"
trigger = { http = "/..." }

[brane.cfg.config]
greeting = "hello, world"
"db.url" = "postgres://db.internal/app"

[brane.other]
image = "config.wasm"
trigger = { http = { route = "/...", host = "other.test" } }

[brane.other.config]
secret = "only for other"

[brane.kv]
image = "kv.wasm"
lifecycle = "pooled"
trigger = { http = { route = "/...", host = "kv.test" } }

[brane.kv.capability]
state = true
`

describe('standard interfaces: wasi:config, wasi:logging and wasi:keyvalue', () => {
  let dir = ''
  let node: LocalNode | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-standard-'))
    await cp(join(ROOT, 'build/fixtures/config.wasm'), join(dir, 'config.wasm'))
    await cp(join(ROOT, 'build/fixtures/kv.wasm'), join(dir, 'kv.wasm'))
    await writeFile(join(dir, 'omega.toml'), MANIFEST)
    node = await LocalNode.start(join(dir, 'omega.toml'), { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
  })

  after(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('answers wasi:config/store from the brane\'s own [brane.X.config] table', async () => {
    const base = node?.url ?? ''
    assert.deepEqual(await get(base, '/greeting'), { status: 200, body: 'greeting=hello, world\n' })
    assert.deepEqual(await get(base, '/db.url'), { status: 200, body: 'db.url=postgres://db.internal/app\n' })
    assert.deepEqual(await get(base, '/missing'), { status: 200, body: 'missing is not set\n' })
    // another brane's table is not this one's
    assert.deepEqual(await get(base, '/secret'), { status: 200, body: 'secret is not set\n' })
    assert.deepEqual(await get(base, '/secret', 'other.test'), { status: 200, body: 'secret=only for other\n' })
  })

  it('writes wasi:logging records to the brane\'s log as "context: message" at their level', async () => {
    await get(node?.url ?? '', '/greeting')
    const records = node?.logBook.query({ brane: 'cfg', limit: 1000 }).filter((r) => r.kind !== 'request') ?? []
    const record = records.find((r) => r.message === 'greeting: asked')
    assert.ok(record !== undefined, JSON.stringify(records))
    assert.equal(record.level, 'info')
  })

  it('links both without a grant, and validate --link agrees', async () => {
    const run = await cli(['validate', '--link', join(dir, 'omega.toml')])
    assert.equal(run.code, 0, run.err + run.out)
  })

  it('keeps wasi:keyvalue in the brane\'s replicated state: increment, then get, in bucket "default"', async () => {
    const base = node?.url ?? ''
    for (let i = 1; i <= 3; i++) {
      assert.deepEqual(await get(base, '/hits', 'kv.test'), { status: 200, body: `hits=${i}\n` })
    }
    assert.deepEqual(await get(base, '/other', 'kv.test'), { status: 200, body: 'other=1\n' })
    // the same map omega:brane/state and "omega state" see
    const value = node?.state.call('kv', { method: 'get', key: 'hits' }) as Uint8Array
    assert.equal(Buffer.from(value).toString(), '3')
  })

  it('grants wasi:keyvalue with state, and refuses it without', async () => {
    await writeFile(join(dir, 'nostate.toml'), '[brane.kv]\nimage = "kv.wasm"\n')
    const run = await cli(['validate', '--link', join(dir, 'nostate.toml')])
    assert.equal(run.code, 3, run.out)
    assert.match(run.err, /imports "wasi:keyvalue\/(store|atomics)@0\.2\.0-draft2", which needs \[brane\.kv\.capability\] "state"/)
  })
})
