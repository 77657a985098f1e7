/**
 * Trust in the mesh (issue #13): forged member records are not believed, names belong to
 * the first live did that claims them, and `admit` keeps other dids out. In-process
 * meshes on 127.0.0.1, fast protocol settings; every wait is bounded.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { MeshNode } from '../src/mesh/index.ts'
import { signMember } from '../src/mesh/membership.ts'
import type { WireMember } from '../src/mesh/membership.ts'
import { sendRawSwim, startNode, stopAll, waitFor, wireOf } from '../src/mesh/testing.ts'
import { generateNodeKey } from '../src/identity/index.ts'
import type { NodeKey } from '../src/identity/index.ts'
import { peerIdOfDid } from '../src/mesh/index.ts'
import { cli } from './helpers.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

function alive (node: MeshNode): number {
  return node.members().filter((m) => m.state === 'alive').length
}

/**
 * Send `records` to `to` from `from` as a gossip rumor, in a sync message and piggy-backed
 * on a ping, then a broadcast canary on the same stream; resolves once every node in
 * `watchers` has the canary, i.e. once `to` has processed the records (one stream is read
 * in order) and had the time to pass them on.
 */
async function inject (from: MeshNode, to: MeshNode, records: readonly WireMember[], watchers: readonly MeshNode[]): Promise<void> {
  const topic = `canary-${Math.random().toString(36).slice(2)}`
  const got = new Set<string>()
  const offs = watchers.map((w) => w.onBroadcast(topic, () => { got.add(w.did) }))
  try {
    const rumors = records.map((m) => ({ k: 'm', m }))
    await sendRawSwim(from, to.did, [
      { t: 'gossip', r: rumors },
      { t: 'sync', m: records, reply: false },
      { t: 'ping', s: 1e9, r: rumors },
      { t: 'gossip', r: [{ k: 'b', id: topic, o: from.did, topic, d: Buffer.from('canary').toString('base64') }] }
    ])
    await waitFor(() => watchers.every((w) => got.has(w.did)), 5_000, 'the canary to reach every honest node')
    // the forged records, had they been believed, went out before the canary; give the rest of the mesh a moment
    await sleep(300)
  } finally {
    for (const off of offs) {
      off()
    }
  }
}

describe('mesh trust: forged member records', () => {
  const nodes: MeshNode[] = []
  let victim: MeshNode
  let forger: MeshNode
  let honest: MeshNode[]
  let forgerKey: NodeKey
  const victimKey = generateNodeKey()

  before(async () => {
    const seed = await startNode('lab.lan/seed')
    const bootstrap = seed.addrs
    victim = await startNode('lab.lan/victim', { bootstrap, key: victimKey })
    const other = await startNode('lab.lan/other', { bootstrap })
    forgerKey = generateNodeKey()
    forger = await startNode('lab.lan/forger', { bootstrap, key: forgerKey })
    nodes.push(seed, victim, other, forger)
    honest = [seed, victim, other]
    await waitFor(() => nodes.every((n) => alive(n) === nodes.length), 10_000, 'all four nodes alive everywhere')
  })
  after(async () => {
    await stopAll(nodes)
  })

  it('another node\'s record claiming vfio / frontier, unsigned, signed by the forger or with a replayed signature, is not believed', async () => {
    const truth = victim.member(victim.did)
    assert.ok(truth !== undefined)
    const genuine = forger.member(victim.did)
    assert.ok(genuine !== undefined)
    const lie: WireMember = { ...wireOf(genuine), frontier: true, meta: { ...genuine.meta, vfio: '1' }, inc: genuine.incarnation + 1_000 }
    // the victim's real signature of its current claim (Ed25519 is deterministic: the same
    // bytes the forger saw on the wire), replayed on the lie
    const { sig } = signMember(wireOf(genuine), victimKey)
    assert.ok(sig !== undefined)
    const forged: WireMember[] = [
      lie, // unsigned
      signMember({ ...lie, inc: lie.inc + 1 }, forgerKey), // signed by the wrong key
      { ...lie, inc: lie.inc + 2, sig }, // a genuine signature of another claim
      { ...wireOf(genuine), frontier: true, sig }, // the same, at the genuine incarnation
      { ...wireOf(genuine), state: 'dead', inc: lie.inc + 3, sig } // a death notice at an invented incarnation
    ]
    for (const target of [honest[0] as MeshNode, honest[2] as MeshNode]) {
      await inject(forger, target, forged, honest)
    }
    for (const node of nodes) {
      const seen = node.member(victim.did)
      assert.ok(seen !== undefined, `${node.name} knows the victim`)
      assert.equal(seen.frontier, false, `${node.name}: frontier of the victim`)
      assert.equal(seen.meta.vfio, undefined, `${node.name}: vfio of the victim`)
      assert.equal(seen.state, 'alive', `${node.name}: state of the victim`)
      assert.ok(seen.incarnation < lie.inc, `${node.name}: incarnation of the victim ${seen.incarnation}`)
      assert.deepEqual(seen.meta, truth.meta)
    }
  })

  it('a validly signed record of the forger\'s own did (or of a fresh did) claiming a live node\'s name is refused', async () => {
    const mine = forger.member(forger.did)
    assert.ok(mine !== undefined)
    const stolen = signMember({ ...wireOf(mine), name: victim.name, inc: mine.incarnation + 1_000 }, forgerKey)
    const fresh = generateNodeKey()
    const freshPeer = peerIdOfDid(fresh.did).toString()
    const newcomer = signMember({ did: fresh.did, peerId: freshPeer, name: victim.name, substrate: 'biome', frontier: true, addrs: [], state: 'alive', inc: Date.now(), meta: { vfio: '1' } }, fresh)
    await inject(forger, honest[0] as MeshNode, [stolen, newcomer], honest)
    for (const node of honest) {
      const named = node.members().filter((m) => m.name === victim.name)
      assert.deepEqual(named.map((m) => m.did), [victim.did], `${node.name}: members named ${victim.name}`)
      assert.equal(node.member(forger.did)?.name, 'lab.lan/forger', `${node.name}: the forger keeps its own name`)
      assert.equal(node.member(fresh.did), undefined, `${node.name}: the fresh did is not a member`)
    }
  })

  it('a name is free again once its holder has left', async () => {
    const holder = await startNode('lab.lan/transient', { bootstrap: honest[0]?.addrs ?? [] })
    nodes.push(holder)
    await waitFor(() => honest.every((n) => n.member(holder.did)?.state === 'alive'), 10_000, 'the holder alive everywhere')
    await holder.stop()
    await waitFor(() => honest.every((n) => n.member(holder.did)?.state === 'left'), 10_000, 'the holder left everywhere')
    const heir = await startNode('lab.lan/transient', { bootstrap: honest[0]?.addrs ?? [] })
    nodes.push(heir)
    await waitFor(() => honest.every((n) => n.member(heir.did)?.state === 'alive' && n.member(heir.did)?.name === 'lab.lan/transient'), 10_000, 'the heir of the name alive everywhere')
  })
})

describe('mesh trust: admission', () => {
  const nodes: MeshNode[] = []

  after(async () => {
    await stopAll(nodes)
  })

  it('a node not in the admit list cannot join an open mesh; an admitted node does', async () => {
    const aKey = generateNodeKey()
    const bKey = generateNodeKey()
    const admit = [aKey.did, bKey.did]
    const a = await startNode('lab.lan/a', { key: aKey, admit })
    nodes.push(a)
    const b = await startNode('lab.lan/b', { key: bKey, admit, bootstrap: a.addrs })
    nodes.push(b)
    const outsider = await startNode('lab.lan/outsider', { bootstrap: [...a.addrs, ...b.addrs] })
    nodes.push(outsider)
    await waitFor(() => alive(a) === 2 && alive(b) === 2, 10_000, 'the admitted node to join')
    // several reconnect rounds of the outsider (reconnectIntervalMs 300 ms)
    await sleep(1_500)
    assert.equal(a.member(outsider.did), undefined, 'a does not know the outsider')
    assert.equal(b.member(outsider.did), undefined, 'b does not know the outsider')
    assert.deepEqual(outsider.members().map((m) => m.did), [outsider.did], 'the outsider knows only itself')
    assert.equal(a.libp2p.getConnections(peerIdOfDid(outsider.did)).length, 0, 'no connection from the outsider stays open')
  })

  it('records of a non-admitted did are refused even when an admitted (open) peer passes them on', async () => {
    const aKey = generateNodeKey()
    const bKey = generateNodeKey()
    const a = await startNode('lab.lan/strict', { key: aKey, admit: [bKey.did] })
    nodes.push(a)
    const b = await startNode('lab.lan/open', { key: bKey, bootstrap: a.addrs })
    nodes.push(b)
    await waitFor(() => alive(a) === 2 && alive(b) === 2, 10_000, 'the admitted open node to join')
    const outsider = await startNode('lab.lan/guest', { bootstrap: b.addrs })
    nodes.push(outsider)
    await waitFor(() => b.member(outsider.did)?.state === 'alive', 10_000, 'the open node to take the guest')
    // b gossips the guest's record to its links (a) at once, and its whole table on push-pull:
    // a canary broadcast after that, on the same channel, bounds the wait
    let got = false
    a.onBroadcast('canary', () => { got = true })
    b.broadcast('canary', new Uint8Array([1]))
    await waitFor(() => got, 5_000, 'the canary at the strict node')
    await sleep(2_500) // past one push-pull round (pushPullIntervalMs 2000 ms)
    assert.equal(a.member(outsider.did), undefined, 'the strict node does not believe the guest\'s record')
    assert.equal(b.member(outsider.did)?.state, 'alive')
  })
})

describe('mesh trust: omega node --admit', () => {
  it('refuses a value that is not an Ed25519 did:key, before starting anything', async () => {
    const good = generateNodeKey().did
    const home = await mkdtemp(join(tmpdir(), 'omega-admit-'))
    for (const bad of ['did:key:nope', `${good},did:web:example.com`, ',', `${good},`]) {
      // should it start after all, it must not take a fixed port
      const run = await cli(['node', '--admit', good, '--admit', bad, '--port', '0', '--home', home])
      assert.equal(run.code, 2, `exit code for --admit ${bad}: ${run.err}`)
      assert.match(run.err, /Invalid --admit/)
    }
    await rm(home, { recursive: true, force: true })
  })
})
