/**
 * `[brane.X.execution] deterministic = true`: seeded random and a virtual clock, so the
 * same request gives byte-identical output on every run; without it, random differs.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT, get } from './helpers.ts'

const MANIFEST = `
[brane.replay]
image = "probe.wasm"
trigger = { http = { route = "/...", host = "replay.test" } }
capability = { clock = true, random = true, env = { MODE = "replay" }, "net.http" = { allowlist = [] }, "fs.tmp" = {} }
execution = { deterministic = true, seed = 7 }

[brane.live]
image = "probe.wasm"
trigger = { http = { route = "/...", host = "live.test" } }
capability = { clock = true, random = true, env = {}, "net.http" = { allowlist = [] }, "fs.tmp" = {} }
`

describe('deterministic execution', () => {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-determinism-'))
    await cp(join(ROOT, 'build/fixtures/probe.wasm'), join(dir, 'probe.wasm'))
    await writeFile(join(dir, 'omega.toml'), MANIFEST)
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  /** One run: a fresh node, one request (a fresh instance) per brane */
  async function run (): Promise<{ replay: string, live: string }> {
    const node = await LocalNode.start(join(dir, 'omega.toml'), { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
    try {
      const replay = (await get(node.url, '/all', 'replay.test')).body
      const live = (await get(node.url, '/all', 'live.test')).body
      return { replay, live }
    } finally {
      await node.stop()
    }
  }

  it('gives byte-identical output across runs, and differing output without it', async () => {
    const first = await run()
    const second = await run()
    assert.match(first.replay, /"random":"[0-9a-f]{64}"/)
    assert.equal(second.replay, first.replay)
    assert.notEqual(second.live, first.live)
  })
})
