/**
 * End to end: `omega snapshot` and `omega restore` (the CLI's main()) against a node
 * started in this process, with its admin API on a real Unix socket.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode, type SnapshotDocument } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { cli, copyFixtures } from './helpers.ts'

const MANIFEST = `
[brane.counter]
image = "counter.wasm"
lifecycle = "pinned"
trigger = { http = "/c/*" }

[brane.pool]
image = "counter.wasm"
lifecycle = "pooled"
trigger = { http = "/p/*" }
`

/** counter.wat answers "<count> <pages>" */
async function hit (node: LocalNode): Promise<string> {
  const res = await fetch(`${node.url}/c/x`)
  assert.equal(res.status, 200)
  return (await res.text()).trim()
}

describe('omega snapshot / omega restore', () => {
  let dir = ''
  let manifest = ''
  let home = ''
  const start = async (nodeHome: string): Promise<LocalNode> => LocalNode.start(manifest, { home: nodeHome, port: 0, logging: silentLogging() })

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-snap-'))
    home = join(dir, 'home')
    manifest = join(dir, 'omega.toml')
    await writeFile(manifest, MANIFEST)
    await copyFixtures(dir, ['counter'])
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('round-trips a pinned brane through a file, on the same node and on a fresh one', async () => {
    const file = join(dir, 'counter.snap')
    let node = await start(home)
    try {
      assert.equal(await hit(node), '1 2')
      assert.equal(await hit(node), '2 3')
      assert.equal(await hit(node), '3 4')
      const taken = await cli(['snapshot', 'counter', '-o', file], home)
      assert.equal(taken.code, 0, taken.err)
      assert.match(taken.out, /^snapshot of brane "counter" \(b3:[0-9a-f]{64}\) written to .*counter\.snap: [\d.]+ KiB, 256\.0 KiB of memory in 1 memory, b3:[0-9a-f]{64}\n$/)
      const doc = JSON.parse(await readFile(file, 'utf8')) as SnapshotDocument
      assert.equal(doc.node, node.did)
      assert.equal(doc.lifecycle, 'pinned')
      assert.equal(await hit(node), '4 5')
      assert.equal(await hit(node), '5 6')

      const restored = await cli(['restore', 'counter', file], home)
      assert.equal(restored.code, 0, restored.err)
      assert.match(restored.out, /^restored brane "counter" to its snapshot of \S+: 256\.0 KiB of memory\n$/)
      assert.equal(await hit(node), '4 5')
    } finally {
      await node.stop()
    }

    // a new daemon with the same home has the same key: it accepts its own snapshot
    node = await start(home)
    try {
      assert.equal(await hit(node), '1 2')
      const restored = await cli(['restore', 'counter', file], home)
      assert.equal(restored.code, 0, restored.err)
      assert.equal(await hit(node), '4 5')
    } finally {
      await node.stop()
    }

    // another node (another key) refuses it
    const otherHome = join(dir, 'other-home')
    node = await start(otherHome)
    try {
      const refused = await cli(['restore', 'counter', file], otherHome)
      assert.equal(refused.code, 13)
      assert.match(refused.err, /it was signed by did:key:\S+, not by this node's key/)
      assert.equal(await hit(node), '1 2')
    } finally {
      await node.stop()
    }
  })

  it('refuses tampered files, bad files and branes that are not pinned', async () => {
    const file = join(dir, 'tamper.snap')
    const node = await start(home)
    try {
      await hit(node)
      assert.equal((await cli(['snapshot', 'counter', '-o', file], home)).code, 0)
      await hit(node)
      const doc = JSON.parse(await readFile(file, 'utf8')) as SnapshotDocument

      // one byte of the payload
      const at = doc.payload.length - 8
      const payload = doc.payload.slice(0, at) + (doc.payload[at] === 'A' ? 'B' : 'A') + doc.payload.slice(at + 1)
      await writeFile(join(dir, 'payload.snap'), JSON.stringify({ ...doc, payload }))
      const byPayload = await cli(['restore', 'counter', join(dir, 'payload.snap')], home)
      assert.equal(byPayload.code, 13)
      assert.match(byPayload.err, /^omega: Cannot restore snapshot into brane "counter": the signature does not verify against did:key:\S+ \(the document was changed after it was signed\)/)

      // one header field
      await writeFile(join(dir, 'header.snap'), JSON.stringify({ ...doc, createdAt: '2001-01-01T00:00:00.000Z' }))
      const byHeader = await cli(['restore', 'counter', join(dir, 'header.snap')], home)
      assert.equal(byHeader.code, 13)
      assert.match(byHeader.err, /the signature does not verify/)

      // not a snapshot at all
      await writeFile(join(dir, 'junk.snap'), 'not json')
      const junk = await cli(['restore', 'counter', join(dir, 'junk.snap')], home)
      assert.equal(junk.code, 13)
      assert.match(junk.err, /is not a snapshot document/)
      // nothing was touched
      assert.equal(await hit(node), '3 4')

      const pooled = await cli(['snapshot', 'pool', '-o', join(dir, 'pool.snap')], home)
      assert.equal(pooled.code, 13)
      assert.match(pooled.err, /Cannot take a snapshot of brane "pool": its lifecycle is "pooled"/)
      const missing = await cli(['restore', 'nope', file], home)
      assert.equal(missing.code, 13)
      assert.match(missing.err, /no such brane is running \(running: counter, pool\)/)
    } finally {
      await node.stop()
    }
  })
})
