/**
 * FrameChannel between two mesh nodes: order and integrity, back-pressure from a slow
 * reader, frame limits, close.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { MeshNode } from '../src/mesh/index.ts'
import type { FrameChannel } from '../src/mesh/index.ts'
import { startMesh, stopAll, waitFor } from '../src/mesh/testing.ts'

const MAX_BUFFERED = 256 * 1024

function frame (i: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size)
  new DataView(bytes.buffer).setUint32(0, i)
  bytes.fill(i & 0xff, 4)
  return bytes
}

/**
 * Whether `send` is held: still pending while the channel's sender buffer has not moved
 * for a second (at most 10 s); false once it settles (a rejection is thrown)
 */
async function stuck (send: Promise<void>, channel: FrameChannel): Promise<boolean> {
  let done = false
  const settled = send.then(() => { done = true })
  let last = channel.bufferedBytes
  let stillSince = Date.now()
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, 50))])
    if (done) {
      return false
    }
    if (channel.bufferedBytes !== last) {
      last = channel.bufferedBytes
      stillSince = Date.now()
    } else if (Date.now() - stillSince >= 1000) {
      return true
    }
  }
  return true
}

describe('mesh frame channels', () => {
  let a: MeshNode
  let b: MeshNode
  let nodes: MeshNode[] = []
  const incoming: FrameChannel[] = []
  let onIncoming: ((channel: FrameChannel) => void) | undefined

  before(async () => {
    nodes = await startMesh(2, { channels: { maxBufferedBytes: MAX_BUFFERED, maxFrameBytes: 1024 * 1024 } })
    a = nodes[0] as MeshNode
    b = nodes[1] as MeshNode
    b.handle('/omega/test/1', (channel) => {
      incoming.push(channel)
      onIncoming?.(channel)
    })
    await waitFor(() => a.member(b.did)?.state === 'alive', 10_000, 'the two nodes to meet')
  })
  after(async () => {
    await stopAll(nodes)
  })

  it('delivers frames in order and intact, coalesced into few writes', async () => {
    const count = 20_000
    const received: Promise<number> = new Promise((resolve, reject) => {
      onIncoming = (channel) => {
        (async () => {
          let n = 0
          for await (const f of channel.frames()) {
            const i = new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(0)
            assert.equal(i, n, 'frames arrive in order')
            assert.equal(f.byteLength, 4 + (i % 300))
            assert.ok(f.subarray(4).every((x) => x === (i & 0xff)), `frame ${i} intact`)
            n++
          }
          return n
        })().then(resolve, reject)
      }
    })
    const channel = await a.open(b.did, '/omega/test/1')
    assert.equal(channel.peerDid, b.did)
    for (let i = 0; i < count; i++) {
      await channel.send(frame(i, 4 + (i % 300)))
    }
    await channel.close()
    assert.equal(await received, count)
    assert.equal(incoming.at(-1)?.peerDid, a.did, 'the receiver knows who opened the channel')
  })

  it('a slow reader holds the sender: send() stays pending while the buffer is full, memory stays bounded', async () => {
    let channelAtB: FrameChannel | undefined
    onIncoming = (channel) => { channelAtB = channel }
    const channel = await a.open(b.did, '/omega/test/1')
    const size = 1024
    // without back-pressure all of these would be accepted at once (100 MiB)
    const limit = 100_000
    let accepted = 0
    let pending: Promise<void> | undefined
    for (let i = 0; i < limit; i++) {
      const send = channel.send(frame(i, size))
      const settled = await Promise.race([send.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => { resolve(false) }, 200))])
      // a send not settled in 200 ms may only be slow (a loaded machine): blocked is a
      // send still pending while the sender buffer has not moved for a second
      if (!settled && await stuck(send, channel)) {
        pending = send
        break
      }
      accepted++
      assert.ok(channel.bufferedBytes <= MAX_BUFFERED + size + 4, `sender buffer ${channel.bufferedBytes} within its bound`)
    }
    assert.ok(pending !== undefined, `send() never blocked after ${accepted} frames`)
    // what was accepted fits the sender buffer + the stream/yamux windows + the reader's
    // high-water mark (1 MiB) — far below the 100 MiB offered
    assert.ok(accepted * size < 8 * 1024 * 1024, `accepted ${accepted} KiB before blocking`)
    assert.ok(channel.bufferedBytes >= MAX_BUFFERED, 'the sender buffer is full while send() is pending')
    let state = 'pending'
    pending.then(() => { state = 'resolved' }, () => { state = 'rejected' })
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(state, 'pending', 'send() stays pending while nobody reads')
    // now read: the pending send completes and every accepted frame arrives in order
    await waitFor(() => channelAtB !== undefined, 5000, 'the channel at the receiver')
    const reader = (async () => {
      let n = 0
      for await (const f of (channelAtB as FrameChannel).frames()) {
        assert.equal(new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(0), n)
        n++
      }
      return n
    })()
    await pending
    assert.equal(state, 'resolved')
    await channel.close()
    assert.equal(await reader, accepted + 1)
  })

  it('rejects oversized frames and sends after close, and ends the remote on close', async () => {
    const ended: Promise<number> = new Promise((resolve, reject) => {
      onIncoming = (channel) => {
        (async () => {
          let n = 0
          for await (const f of channel.frames()) {
            n += f.byteLength > 0 ? 1 : 0
          }
          return n
        })().then(resolve, reject)
      }
    })
    const channel = await a.open(b.did, '/omega/test/1')
    await assert.rejects(channel.send(new Uint8Array(1024 * 1024 + 1)), { name: 'MeshChannelError' })
    await channel.send(new Uint8Array(10))
    await channel.close()
    await assert.rejects(channel.send(new Uint8Array(1)), { name: 'MeshChannelError' })
    assert.equal(await ended, 1)
    await assert.rejects(a.open(b.did, '/omega/unknown/1'), { name: 'MeshDialError' })
  })

  it('abort() resets the stream: the reader sees an error or an end', async () => {
    const done: Promise<string> = new Promise((resolve) => {
      onIncoming = (channel) => {
        (async () => {
          let bytes = 0
          for await (const f of channel.frames()) {
            bytes += f.byteLength
          }
          return bytes
        })().then(() => { resolve('ended') }, (err: Error) => { resolve(err.name) })
      }
    })
    const channel = await a.open(b.did, '/omega/test/1')
    await channel.send(new Uint8Array(10))
    await new Promise((resolve) => setTimeout(resolve, 50))
    channel.abort(new Error('test abort'))
    assert.ok(['ended', 'MeshChannelError'].includes(await done))
    await assert.rejects(channel.send(new Uint8Array(1)))
  })
})
