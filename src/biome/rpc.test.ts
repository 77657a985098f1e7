// Biome's RPC over two real mesh nodes (libp2p on 127.0.0.1, in this process)
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { OmegaError } from '../errors.ts'
import { startMesh, stopAll, waitFor } from '../mesh/testing.ts'
import type { MeshNode } from '../mesh/index.ts'
import { silentLogging } from '../observe/index.ts'
import { Rpc } from './rpc.ts'

const MiB = 1024 * 1024

describe('Rpc over the mesh', () => {
  let nodes: MeshNode[] = []
  let a: Rpc
  let b: Rpc
  let release: (() => void) | undefined

  before(async () => {
    nodes = await startMesh(2, { channels: { maxFrameBytes: 17 * MiB } })
    await waitFor(() => nodes.every((n) => n.members().filter((m) => m.state === 'alive').length === 2), 10_000, 'both nodes alive')
    const logger = silentLogging().forComponent('rpc')
    a = new Rpc(nodes[0] as MeshNode, { logger, maxFrameBytes: 17 * MiB, timeoutMs: 10_000 })
    b = new Rpc(nodes[1] as MeshNode, { logger, maxFrameBytes: 17 * MiB, maxConcurrent: 2 })
    b.register('echo', async ({ params, body, from }) => ({ result: { params, from, size: body.byteLength }, body }))
    b.register('fail', async () => {
      const err = new OmegaError('the handler refused')
      err.name = 'RejectedEventError'
      throw err
    })
    b.register('hang', async () => new Promise((resolve) => { release = () => { resolve({}) } }))
  })

  after(async () => {
    release?.()
    a.close()
    b.close()
    await stopAll(nodes)
  })

  it('answers calls with their result and body, naming the calling node', async () => {
    const reply = await a.call(nodes[1]?.did ?? '', 'echo', { n: 1 }, new Uint8Array([1, 2, 3]))
    assert.deepEqual(reply.result, { params: { n: 1 }, from: nodes[0]?.did, size: 3 })
    assert.deepEqual([...reply.body], [1, 2, 3])
  })

  it('keeps many calls in flight on one channel, each answered to its caller', async () => {
    const replies = await Promise.all(Array.from({ length: 50 }, async (_, i) => a.call(nodes[1]?.did ?? '', 'echo', i)))
    assert.deepEqual(replies.map((r) => (r.result as { params: number }).params), Array.from({ length: 50 }, (_, i) => i))
  })

  it('carries a 16 MiB body, and refuses one over the frame limit without harming the channel', async () => {
    const big = new Uint8Array(16 * MiB).fill(7)
    const reply = await a.call(nodes[1]?.did ?? '', 'echo', null, big)
    assert.equal(reply.body.byteLength, 16 * MiB)
    await assert.rejects(a.call(nodes[1]?.did ?? '', 'echo', null, new Uint8Array(18 * MiB)), { name: 'FrameTooLargeError' })
    assert.equal((await a.call(nodes[1]?.did ?? '', 'echo', 'after')).result !== undefined, true)
  })

  it('reports the remote error under its own name, and an unknown method', async () => {
    await assert.rejects(a.call(nodes[1]?.did ?? '', 'fail', null), { name: 'RemoteError', remoteName: 'RejectedEventError', message: 'the handler refused' })
    await assert.rejects(a.call(nodes[1]?.did ?? '', 'nope', null), { name: 'RemoteError', message: /No RPC method "nope"/ })
  })

  it('times out a call with no answer as DeadlineExceededError, and the channel still serves', async () => {
    await assert.rejects(a.call(nodes[1]?.did ?? '', 'hang', null, undefined, { timeoutMs: 300 }), { name: 'DeadlineExceededError' })
    release?.()
    assert.ok((await a.call(nodes[1]?.did ?? '', 'echo', 'still')).result !== undefined)
  })

  it('fails calls to a node that stopped with PeerUnavailableError', async () => {
    await nodes[1]?.stop()
    await assert.rejects(a.call(nodes[1]?.did ?? '', 'echo', null, undefined, { timeoutMs: 5_000 }), (err: Error) => ['PeerUnavailableError', 'DeadlineExceededError'].includes(err.name))
  })
})
