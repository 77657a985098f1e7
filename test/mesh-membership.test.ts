/**
 * Membership, broadcast and partitions of in-process meshes on 127.0.0.1 (many nodes in
 * one process, fast protocol settings; every wait is bounded).
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { MeshNode, MAX_BROADCAST_BYTES, peerIdOfDid } from '../src/mesh/index.ts'
import type { MemberState } from '../src/mesh/index.ts'
import { allSee, startMesh, startNode, stopAll, waitFor } from '../src/mesh/testing.ts'
import { generateNodeKey } from '../src/identity/index.ts'

const N = 6

describe('mesh membership', () => {
  let nodes: MeshNode[] = []
  const extra: MeshNode[] = []

  before(async () => {
    nodes = await startMesh(N, { meta: { role: 'worker' } })
  })
  after(async () => {
    await stopAll([...nodes, ...extra])
  })

  it('joins via static bootstrap and everyone learns everyone', async () => {
    await waitFor(() => nodes.every((n) => n.members().filter((m) => m.state === 'alive').length === N), 10_000, 'every node to see all alive')
    for (const node of nodes) {
      assert.equal(node.peerId, peerIdOfDid(node.did).toString(), 'peerId and did come from one key')
      for (const other of nodes) {
        const m = node.member(other.did)
        assert.ok(m !== undefined)
        assert.equal(m.state, 'alive')
        assert.equal(m.peerId, other.peerId)
        assert.equal(m.name, other.name)
        assert.equal(m.substrate, 'biome')
        assert.equal(m.frontier, false)
        assert.equal(m.meta.role, 'worker')
        assert.ok(m.addrs.length > 0 && m.addrs.every((a) => a.endsWith(`/p2p/${other.peerId}`)), `addrs of ${other.name}: ${m.addrs.join(' ')}`)
      }
    }
    const self = nodes[0]?.member(nodes[0].did)
    assert.equal(self?.state, 'alive', 'members() includes self, alive')
  })

  it('measures round trips of probed members', async () => {
    const node = nodes[1] as MeshNode
    await waitFor(() => node.members().some((m) => m.did !== node.did && m.rttMs !== undefined), 10_000, 'a probed rtt')
    const probed = node.members().filter((m) => m.rttMs !== undefined)
    assert.ok(probed.every((m) => (m.rttMs as number) >= 0))
  })

  it('gossips meta and load', async () => {
    const source = nodes[2] as MeshNode
    source.setMeta('zone', 'rack-7')
    source.setLoad(0.75)
    await waitFor(() => nodes.every((n) => n.member(source.did)?.meta.zone === 'rack-7' && n.member(source.did)?.load === 0.75), 10_000, 'meta and load at all nodes')
    assert.throws(() => { source.setLoad(Number.NaN) }, RangeError)
  })

  it('broadcast reaches every other member once, with the origin did', async () => {
    const got = new Map<string, Array<{ data: string, from: string }>>()
    const unsubscribes = nodes.map((n) => n.onBroadcast('manifests', (data, from) => {
      const list = got.get(n.did) ?? []
      list.push({ data: Buffer.from(data).toString(), from })
      got.set(n.did, list)
    }))
    const origin = nodes[3] as MeshNode
    origin.broadcast('manifests', Buffer.from('manifest v1'))
    origin.broadcast('other-topic', Buffer.from('not for manifests'))
    await waitFor(() => nodes.every((n) => n === origin || (got.get(n.did)?.length ?? 0) >= 1), 10_000, 'broadcast at all nodes')
    // let retransmissions (piggy-backed on probes) run: they must be deduplicated
    await new Promise((resolve) => setTimeout(resolve, 500))
    for (const n of nodes) {
      if (n === origin) {
        assert.equal(got.get(n.did), undefined, 'the origin does not receive its own broadcast')
        continue
      }
      assert.deepEqual(got.get(n.did), [{ data: 'manifest v1', from: origin.did }])
    }
    for (const u of unsubscribes) {
      u()
    }
    assert.throws(() => { origin.broadcast('big', new Uint8Array(MAX_BROADCAST_BYTES + 1)) }, (err: Error) => err instanceof RangeError && err.message.includes('exceeds the limit'))
    // a large (but allowed) broadcast still arrives
    const big = new Uint8Array(200 * 1024).fill(7)
    let bigAt = 0
    const off = nodes.map((n) => n.onBroadcast('big', (data) => { if (data.byteLength === big.byteLength && data.every((b) => b === 7)) { bigAt++ } }))
    origin.broadcast('big', big)
    await waitFor(() => bigAt === N - 1, 10_000, 'a 200 KiB broadcast at all nodes')
    for (const u of off) {
      u()
    }
  })

  it('a silent node becomes suspect, then dead, at everyone; it refutes and comes back when it speaks again', async () => {
    const silent = nodes[N - 1] as MeshNode
    const others = nodes.filter((n) => n !== silent)
    const transitions = new Map<string, MemberState[]>()
    const offs = others.map((n) => n.onMembers((m) => {
      if (m.did === silent.did) {
        const list = transitions.get(n.did) ?? []
        if (list.at(-1) !== m.state) {
          list.push(m.state)
        }
        transitions.set(n.did, list)
      }
    }))
    const before = others[0]?.member(silent.did)?.incarnation ?? 0
    // one-sided: the silent node refuses everyone; the others notice only through probes
    silent.isolate(others.map((n) => n.did))
    await waitFor(() => allSee(others, silent.did, 'dead'), 15_000, 'the silent node dead at everyone')
    for (const n of others) {
      const states = transitions.get(n.did) ?? []
      assert.ok(states.indexOf('suspect') >= 0 && states.indexOf('suspect') < states.indexOf('dead'), `${n.name} saw ${states.join(' → ')}`)
    }
    silent.isolate([])
    await waitFor(() => allSee(others, silent.did, 'alive'), 15_000, 'the node alive again after healing')
    assert.ok((others[0]?.member(silent.did)?.incarnation ?? 0) > before, 'it refuted with a higher incarnation')
    for (const off of offs) {
      off()
    }
  })

  it('isolate() partitions the mesh in two; each side keeps its own members and broadcasts; healing converges', async () => {
    const left = nodes.slice(0, 3)
    const right = nodes.slice(3)
    for (const n of left) {
      n.isolate(right.map((r) => r.did))
    }
    for (const n of right) {
      n.isolate(left.map((l) => l.did))
    }
    for (const n of left) {
      assert.ok(right.every((r) => n.member(r.did)?.state === 'dead'), 'isolated peers look dead at once')
    }
    await assert.rejects(left[0]?.open(right[0]?.did ?? '', '/omega/test/1') ?? Promise.resolve(), { name: 'MeshDialError' })
    // a broadcast inside the right side stays there
    const heard = new Set<string>()
    const offs = nodes.map((n) => n.onBroadcast('side', (_data, from) => { heard.add(`${n.did}<${from}`) }))
    right[0]?.broadcast('side', Buffer.from('right only'))
    await waitFor(() => right.slice(1).every((n) => heard.has(`${n.did}<${right[0]?.did ?? ''}`)), 10_000, 'the broadcast on the right side')
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.ok(left.every((n) => !heard.has(`${n.did}<${right[0]?.did ?? ''}`)), 'nothing crosses the partition')
    // each side still sees its own side alive
    await new Promise((resolve) => setTimeout(resolve, 1500))
    for (const side of [left, right]) {
      for (const n of side) {
        assert.ok(side.every((m) => n.member(m.did)?.state === 'alive'), `${n.name} sees its side alive`)
      }
    }
    for (const n of nodes) {
      n.isolate([])
    }
    await waitFor(() => nodes.every((n) => nodes.every((m) => n.member(m.did)?.state === 'alive')), 15_000, 'all alive everywhere after healing')
    heard.clear()
    left[0]?.broadcast('side', Buffer.from('everyone'))
    await waitFor(() => nodes.slice(1).every((n) => heard.has(`${n.did}<${left[0]?.did ?? ''}`)), 10_000, 'a broadcast across the healed mesh')
    for (const off of offs) {
      off()
    }
  })

  it('a stopped node is left at everyone; restarted with the same key it is accepted back', async () => {
    const leaving = nodes[4] as MeshNode
    const rest = nodes.filter((n) => n !== leaving)
    const key = generateNodeKey()
    // a fresh node with its own key joins, then leaves and rejoins with that key
    const bootstrap = nodes[0]?.addrs ?? []
    const first = await startNode('lab.lan/rejoiner', { key, bootstrap })
    await waitFor(() => allSee(nodes, first.did, 'alive'), 10_000, 'the newcomer alive at everyone')
    const inc = nodes[0]?.member(first.did)?.incarnation ?? 0
    await first.stop()
    await waitFor(() => allSee(nodes, first.did, 'left'), 10_000, 'the stopped node left at everyone')
    const again = await startNode('lab.lan/rejoiner', { key, bootstrap })
    extra.push(again)
    assert.equal(again.did, first.did)
    await waitFor(() => allSee(nodes, again.did, 'alive'), 10_000, 'the rejoined node alive at everyone')
    assert.ok((nodes[0]?.member(again.did)?.incarnation ?? 0) > inc)
    await leaving.stop()
    await waitFor(() => allSee([...rest, again], leaving.did, 'left'), 10_000, 'a stopped mesh member left at everyone')
  })
})

describe('mesh node lifecycle', () => {
  it('joins and carries frames over QUIC when a /quic-v1 address is listened on', async () => {
    const listen = ['/ip4/127.0.0.1/udp/0/quic-v1']
    const a = await startNode('lab.lan/quic-a', { listen })
    const nodes = [a]
    try {
      assert.ok(a.addrs.every((addr) => addr.includes('/quic-v1/')), a.addrs.join(' '))
      const b = await startNode('lab.lan/quic-b', { listen, bootstrap: a.addrs })
      nodes.push(b)
      await waitFor(() => a.member(b.did)?.state === 'alive' && b.member(a.did)?.state === 'alive', 10_000, 'the QUIC nodes to meet')
      const got = new Promise<string>((resolve, reject) => {
        a.handle('/omega/test/1', (channel) => {
          (async () => {
            const first = await channel.frames()[Symbol.asyncIterator]().next()
            return first.done === true ? '' : Buffer.from(first.value).toString()
          })().then(resolve, reject)
        })
      })
      const channel = await b.open(a.did, '/omega/test/1')
      await channel.send(Buffer.from('over quic'))
      assert.equal(await got, 'over quic')
      assert.ok(b.libp2p.getConnections().every((c) => c.remoteAddr.toString().includes('/quic-v1')))
    } finally {
      await stopAll(nodes)
    }
  })

  it('a node stopped and started again (same instance) is alive again at the others', async () => {
    const nodes = await startMesh(2)
    try {
      const [a, b] = nodes as [MeshNode, MeshNode]
      await waitFor(() => a.member(b.did)?.state === 'alive', 10_000, 'the two nodes to meet')
      await b.stop()
      await waitFor(() => a.member(b.did)?.state === 'left', 10_000, 'b left at a')
      assert.throws(() => { b.broadcast('t', new Uint8Array(1)) }, { name: 'MeshError' })
      await b.start()
      await waitFor(() => a.member(b.did)?.state === 'alive' && b.member(a.did)?.state === 'alive', 10_000, 'b alive again at a')
    } finally {
      await stopAll(nodes)
    }
  })

  it('rejects open() before start and keeps running without any bootstrap peer reachable', async () => {
    const node = await MeshNode.create({ key: generateNodeKey(), name: 'lab.lan/alone', substrate: 'gaia', bootstrap: [`/ip4/127.0.0.1/tcp/9/p2p/${peerIdOfDid(generateNodeKey().did).toString()}`], logger: { debug () {}, info () {}, warn () {}, error () {} }, membership: { dialTimeoutMs: 500 } })
    await assert.rejects(node.open(generateNodeKey().did, '/omega/test/1'), { name: 'MeshError' })
    await node.start()
    try {
      assert.deepEqual(node.members().map((m) => [m.name, m.state, m.substrate]), [['lab.lan/alone', 'alive', 'gaia']])
    } finally {
      await node.stop()
    }
  })
})
