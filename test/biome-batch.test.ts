/**
 * Event batches across two mesh nodes (in one process, libp2p on 127.0.0.1): a brane on
 * the other node that rejects every event. Each batch's first event is refused and
 * dead-lettered, the rest of the batch comes back unstarted and uncharged, and the edge
 * keeps its order.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HybridClock, prepareDeployment } from '../src/biome/index.ts'
import { startNode, type OmegaMeshNode } from '../src/daemon/index.ts'
import { loadOrCreateNodeKey } from '../src/identity/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT, until } from './helpers.ts'

const MANIFEST = `
[brane.web]
substrate = "biome"
image = "http-emit.wasm"
lifecycle = "pooled"
peers = "t/a"

[brane.mid]
substrate = "biome"
image = "reject.wasm"
lifecycle = "pooled"
peers = "t/b"

[graph]
edges = [{ from = "web", to = "mid", on = "hits" }]
`

describe('event batches across nodes', () => {
  let dir = ''
  let a: OmegaMeshNode
  let b: OmegaMeshNode
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-biome-batch-'))
    for (const name of ['http-emit', 'reject']) {
      await cp(join(ROOT, `build/fixtures/${name}.wasm`), join(dir, `${name}.wasm`))
    }
    const logging = silentLogging()
    a = await startNode({ home: join(dir, 'a'), name: 't/a', substrate: 'biome', port: 0, logging, admin: false, frontier: false })
    const key = await loadOrCreateNodeKey(join(dir, 'a'))
    b = await startNode({ home: join(dir, 'b'), name: 't/b', substrate: 'biome', port: 0, logging, admin: false, frontier: false, bootstrap: a.mesh.addrs, trust: [a.did] })
    await writeFile(join(dir, 'mesh.toml'), MANIFEST)
    const { document, blobs } = await prepareDeployment(join(dir, 'mesh.toml'), key, { home: join(dir, 'a'), time: new HybridClock(key.did).now() })
    const encoded: Record<string, string> = {}
    for (const [hash, path] of blobs) {
      encoded[hash] = (await readFile(path)).toString('base64')
    }
    await a.deploy({ document, blobs: encoded })
    await until(() => b.placement.get('mid')?.nodes[0] === b.did && a.placement.get('mid')?.nodes[0] === b.did &&
      b.local?.localEvents('mid') !== undefined, 30_000, 'mid to run on node b, as both nodes agree')
  })
  after(async () => {
    await b?.stop()
    await a?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('dead-letters each refused event once, in order, charging only the events that ran', async () => {
    const local = a.local
    assert.ok(local !== undefined)
    // queued while no delivery can start, so that they leave in batches
    const ids: string[] = []
    for (let i = 0; i < 40; i++) {
      ids.push(await local.emit('web', 'hits', Buffer.from(`event ${i}`)))
    }
    await until(() => local.deadLetters().length === 40, 60_000, 'every event to be dead-lettered')
    const dead = local.deadLetters()
    assert.deepEqual(dead.map((d) => d.eventId), ids, 'dead-lettered in emit order, each once')
    assert.ok(dead.every((d) => d.attempts === 1), `attempts: ${dead.map((d) => d.attempts).join(' ')}`)
    assert.ok(dead.every((d) => /RejectedEventError: .*bad payload/.test(d.lastError)), dead[0]?.lastError)
    assert.equal(local.queueCounts().pending, 0)
  })
})
