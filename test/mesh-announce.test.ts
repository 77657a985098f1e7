/**
 * `announce` (`omega node --announce`): a node reached through a relay (or a port forward,
 * a NAT) advertises the relay's address instead of its listen address; peers learn it from
 * its signed member record and dial it there. The relay is test/shaper.ts, unshaped.
 */
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { MeshNode } from '../src/mesh/index.ts'
import { startNode, stopAll, waitFor } from '../src/mesh/testing.ts'
import { Shaper, freePort } from './shaper.ts'

describe('mesh: announce addresses', () => {
  const nodes: MeshNode[] = []
  let shaper: Shaper | undefined
  let dir = ''

  after(async () => {
    await stopAll(nodes)
    await shaper?.close()
    if (dir !== '') {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('advertises the announced address only, and peers reach the node through it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-announce-'))
    shaper = new Shaper(dir)
    shaper.register(process.pid, 'here')
    const port = await freePort()
    const relay = await shaper.relay(port, 'here')
    const a = await startNode('lab.lan/announced', { listen: [`/ip4/127.0.0.1/tcp/${port}`], announce: [relay.addr] })
    nodes.push(a)
    assert.deepEqual(a.addrs, [`${relay.addr}/p2p/${a.peerId}`])
    const b = await startNode('lab.lan/joiner', { bootstrap: a.addrs })
    nodes.push(b)
    await waitFor(() => b.member(a.did)?.state === 'alive' && a.member(b.did)?.state === 'alive', 10_000, 'both nodes to see each other alive')
    // the signed record b holds names the relay, not the listen port
    assert.deepEqual(b.member(a.did)?.addrs, a.addrs)
    assert.ok((relay.accepted.get('here') ?? 0) >= 1, 'b dialled a through the relay')
  })

  it('refuses an announce address that is not a multiaddr', async () => {
    await assert.rejects(startNode('lab.lan/bad', { announce: ['127.0.0.1:4001'] }), { name: 'TypeError', message: /announce: "127\.0\.0\.1:4001" is not a multiaddr/ })
  })
})
