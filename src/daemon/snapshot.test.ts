import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateNodeKey } from '../identity/index.ts'
import type { BraneSnapshot } from '../runtime/wasm/index.ts'
import { openSnapshot, sealSnapshot, type SnapshotDocument } from './snapshot.ts'

const PAGE = 65_536
const COMPONENT = `b3:${'ab'.repeat(32)}`

function state (): BraneSnapshot {
  const memory = new Uint8Array(2 * PAGE)
  memory.set([1, 2, 3, 4], 512)
  memory.fill(7, PAGE, PAGE + 100)
  return {
    brane: 'counter',
    componentId: COMPONENT,
    lifecycle: 'pinned',
    memories: [memory, new Uint8Array(PAGE).fill(9)],
    globals: [{ type: 'number', value: '4090000000000000' }, { type: 'bigint', value: '-5' }]
  }
}

/** `doc` with the base64 character at `at` of its payload replaced */
function flipPayload (doc: SnapshotDocument, at: number): SnapshotDocument {
  const char = doc.payload[at] === 'A' ? 'B' : 'A'
  return { ...doc, payload: doc.payload.slice(0, at) + char + doc.payload.slice(at + 1) }
}

describe('snapshot documents', () => {
  const key = generateNodeKey()
  const opts = { did: key.did, brane: 'counter' }

  it('round-trips memories and globals, signed by the node key', async () => {
    const original = state()
    const doc = await sealSnapshot(original, key, { now: new Date('2025-01-02T03:04:05Z') })
    assert.equal(doc.format, 'omega-snapshot')
    assert.equal(doc.version, 1)
    assert.equal(doc.node, key.did)
    assert.equal(doc.component, COMPONENT)
    assert.equal(doc.createdAt, '2025-01-02T03:04:05.000Z')
    assert.deepEqual(doc.memories.map((m) => [m.index, m.byteLength]), [[0, 2 * PAGE], [1, PAGE]])
    // zero pages compress: the document is far smaller than the memory
    assert.ok(doc.payload.length < PAGE / 4, `payload of ${doc.payload.length} characters`)
    // it survives a trip through a file
    const opened = await openSnapshot(JSON.parse(JSON.stringify(doc)), opts)
    assert.equal(opened.createdAt, doc.createdAt)
    assert.equal(opened.componentId, COMPONENT)
    assert.deepEqual(opened.globals, original.globals)
    assert.deepEqual(opened.memories.map((m) => Buffer.from(m)), original.memories.map((m) => Buffer.from(m)))
  })

  it('refuses a payload changed by one byte, naming the signature and the payload', async () => {
    const doc = await sealSnapshot(state(), key)
    await assert.rejects(openSnapshot(flipPayload(doc, Math.floor(doc.payload.length / 2)), opts), {
      name: 'SnapshotError',
      // (deflate may decode a flipped bit to the same bytes: then only the signature fails)
      message: /^Cannot restore snapshot into brane "counter": the signature does not verify against did:key:\S+ \(the document was changed after it was signed\)/
    })
    // one bit of the decompressed bytes: re-compressed, so the gzip is valid but the digest is not
    const memories = state().memories
    const tampered = await sealSnapshot({ ...state(), memories: [memories[0] as Uint8Array, memories[1] as Uint8Array] }, key)
    const other = await sealSnapshot({ ...state(), memories: [Uint8Array.from(memories[0] as Uint8Array, (b, i) => i === 600 ? b ^ 1 : b), memories[1] as Uint8Array] }, key)
    await assert.rejects(openSnapshot({ ...tampered, payload: other.payload }, opts), {
      name: 'SnapshotError',
      message: /the signature does not verify.*; memory 0 does not match its BLAKE3 digest: the payload was changed$/
    })
  })

  it('refuses a changed header field', async () => {
    const doc = await sealSnapshot(state(), key)
    for (const changed of [
      { ...doc, createdAt: '2020-01-01T00:00:00.000Z' },
      { ...doc, component: `b3:${'cd'.repeat(32)}` },
      { ...doc, globals: [{ type: 'number', value: '0000000000000000' }, { type: 'bigint', value: '-5' }] }
    ]) {
      await assert.rejects(openSnapshot(changed, opts), {
        name: 'SnapshotError',
        message: /the signature does not verify against did:key:\S+ \(the document was changed after it was signed\)$/
      })
    }
    // a digest changed to match a changed payload is a header change too
    await assert.rejects(openSnapshot({ ...doc, memories: [{ ...doc.memories[0], blake3: '0'.repeat(64) } as SnapshotDocument['memories'][number], doc.memories[1] as SnapshotDocument['memories'][number]] }, opts), {
      name: 'SnapshotError',
      message: /signature does not verify.*memory 0 does not match its BLAKE3 digest/
    })
  })

  it('refuses a snapshot signed by another key, unless it is this node\'s', async () => {
    const other = generateNodeKey()
    const doc = await sealSnapshot(state(), other)
    await assert.rejects(openSnapshot(doc, opts), {
      name: 'SnapshotError',
      message: new RegExp(`it was signed by ${other.did}, not by this node's key \\(${key.did}\\)`)
    })
    // claiming to be this node does not help: the signature is checked against it
    await assert.rejects(openSnapshot({ ...doc, node: key.did }, opts), { name: 'SnapshotError', message: /signature does not verify/ })
  })

  it('refuses another brane and what is not a snapshot', async () => {
    const doc = await sealSnapshot(state(), key)
    await assert.rejects(openSnapshot(doc, { ...opts, brane: 'other' }), { name: 'SnapshotError', message: /it is a snapshot of brane "counter"/ })
    await assert.rejects(openSnapshot([], opts), { name: 'SnapshotError', message: /not an Omega snapshot document \(expected a JSON object\)/ })
    const { payload: _payload, ...headerOnly } = doc
    await assert.rejects(openSnapshot({ ...headerOnly, version: 2 }, opts), { name: 'SnapshotError', message: /version: expected 1, got 2; payload: expected a string/ })
    await assert.rejects(openSnapshot({ ...doc, memories: [{ index: 0, byteLength: 1000, blake3: doc.memories[0]?.blake3 }] }, opts), { name: 'SnapshotError', message: /memories: expected/ })
  })
})
