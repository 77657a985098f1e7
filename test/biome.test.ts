// Biome end to end: four `omega node` processes on 127.0.0.1 joined by static bootstrap,
// one signed deployment gossiped to all, a pipeline spread over the nodes, kill -9 of a
// node under load (its brane moves, the pipeline keeps flowing, no acknowledged event is
// lost), and a partition that heals (state converges, the registry agrees).
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli, copyFixtures, eventually, json, listItems, ok, peers, post, startNode, stopDaemon as stop, type MeshProcess, type Placement } from './helpers.ts'

describe('biome: four nodes, one deployment, no control plane', { timeout: 240_000 }, () => {
  let dir = ''
  const nodes: MeshProcess[] = []
  let deployer = ''
  let swarm = ''

  const PIPELINE = `
[brane.web]
substrate = "biome"
image = "http-emit.wasm"
lifecycle = "pooled"
trigger = { http = "/e/*" }
peers = "lab/edge-*"

[brane.mid]
substrate = "biome"
image = "forward.wasm"
lifecycle = "pooled"
peers = "lab/pool-*"

[brane.end]
substrate = "biome"
image = "state.wasm"
lifecycle = "pooled"
replicas = 2
peers = "lab/{edge,store}-*"

[brane.end.capability]
state = true

[graph]
edges = [
  { from = "web", to = "mid", on = "hits" },
  { from = "mid", to = "end", on = "out" },
]
`

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-biome-'))
    await copyFixtures(dir, ['http-emit', 'forward', 'state'])
    await writeFile(join(dir, 'omega.toml'), PIPELINE)
    // a private mesh: only nodes with this swarm key can connect
    swarm = join(dir, 'swarm.key')
    assert.equal((await cli(['biome', 'swarm-key', '-o', swarm])).code, 0)
    const first = await startNode(join(dir, 'edge-1'), 'lab/edge-1', ['--swarm-key', swarm])
    nodes.push(first)
    deployer = (await cli(['id'], first.home)).out.trim()
    for (const name of ['pool-a', 'pool-b', 'store-1']) {
      nodes.push(await startNode(join(dir, name), `lab/${name}`, ['--bootstrap', first.addr, '--trust', deployer, '--swarm-key', swarm]))
    }
  })

  after(async () => {
    await Promise.all(nodes.map(async (n) => { await stop(n, 'SIGKILL') }))
    await rm(dir, { recursive: true, force: true })
  })

  it('finds every node by static bootstrap: all four see all four alive', async () => {
    for (const node of nodes) {
      await eventually(async () => (await peers(node.home)).filter((p) => p.status === 'HEAD').length === 4, 20_000, `${node.name} to see 4 live nodes`)
    }
  })

  it('keeps a node without the swarm key out of the private mesh', async () => {
    const otherKey = join(dir, 'other.key')
    assert.equal((await cli(['biome', 'swarm-key', '-o', otherKey])).code, 0)
    const intruder = await startNode(join(dir, 'intruder'), 'lab/intruder', ['--bootstrap', nodes[0]?.addr ?? '', '--swarm-key', otherKey])
    try {
      // it keeps redialling its bootstrap peer; give it a few rounds
      await new Promise((resolve) => setTimeout(resolve, 3_000))
      assert.deepEqual((await peers(intruder.home)).map((p) => p.name), ['lab/intruder'])
      assert.ok(!(await peers(nodes[0]?.home ?? '')).some((p) => p.name === 'lab/intruder'))
    } finally {
      await stop(intruder)
    }
  })

  it('refuses a deployment from an untrusted key, changing nothing', async () => {
    const outsider = join(dir, 'outsider')
    await cli(['id'], outsider)
    // signed by the outsider, handed to pool-a's admin socket with pool-a's admin token:
    // the deployment's own signature is what the nodes check
    const run = await cli(['deploy', join(dir, 'omega.toml'), '--key', join(outsider, 'node.key')], nodes[1]?.home ?? '')
    assert.equal(run.code, 16, run.err)
    assert.match(run.err, /Refusing a deployment signed by did:key:.*trusts deployments from/)
    // a token from a key nobody trusts does not help
    const stranger = join(dir, 'stranger')
    await cli(['id'], stranger)
    const outsiderDid = (await cli(['id'], outsider)).out.trim()
    const foreign = join(dir, 'foreign.token')
    await ok(['token', 'issue', '--to', outsiderDid, '--cap', 'deploy:brane/*', '-o', foreign], stranger)
    const withForeign = await cli(['deploy', join(dir, 'omega.toml'), '--key', join(outsider, 'node.key'), '--token', foreign], nodes[1]?.home ?? '')
    assert.equal(withForeign.code, 16, withForeign.err)
    assert.match(withForeign.err, /its token does not allow deploy on brane\/web/)
    const placement = await json<Placement>(['biome', 'placement'], nodes[1]?.home ?? '')
    assert.equal(placement.deployment, null)
  })

  it('takes a deployment signed by another key that carries a capability token from a trusted key, and gossips revocations', async () => {
    const outsider = join(dir, 'outsider')
    const outsiderDid = (await cli(['id'], outsider)).out.trim()
    const token = join(dir, 'deploy.token')
    // edge-1 (trusted by every node) grants deploy on every brane to the outsider
    await ok(['token', 'issue', '--to', outsiderDid, '--cap', 'deploy:brane/*', '-o', token], nodes[0]?.home ?? '')
    const narrow = join(dir, 'narrow.token')
    await ok(['token', 'issue', '--to', outsiderDid, '--cap', 'deploy:brane/web', '-o', narrow], nodes[0]?.home ?? '')
    const tooNarrow = await cli(['deploy', join(dir, 'omega.toml'), '--key', join(outsider, 'node.key'), '--token', narrow], nodes[2]?.home ?? '')
    assert.equal(tooNarrow.code, 16, tooNarrow.err)
    assert.match(tooNarrow.err, /does not allow deploy on brane\/mid/)
    // a revocation made on one node reaches the others by gossip
    const revoked = join(dir, 'revoked.token')
    await ok(['token', 'issue', '--to', outsiderDid, '--cap', 'deploy:brane/*', '-o', revoked], nodes[0]?.home ?? '')
    await ok(['token', 'revoke', revoked], nodes[0]?.home ?? '')
    await eventually(async () => {
      const run = await cli(['deploy', join(dir, 'omega.toml'), '--key', join(outsider, 'node.key'), '--token', revoked], nodes[3]?.home ?? '')
      return run.code === 16 && /revoked/.test(run.err)
    }, 20_000, 'store-1 to refuse a token revoked on edge-1')
    const run = await cli(['deploy', join(dir, 'omega.toml'), '--key', join(outsider, 'node.key'), '--token', token, '--json'], nodes[2]?.home ?? '')
    assert.equal(run.code, 0, run.err)
    assert.equal((JSON.parse(run.out) as { deployer: string, accepted: boolean }).deployer, outsiderDid)
  })

  it('gossips the deployment to every node; each places the same branes on the same nodes', async () => {
    let views: Placement[] = []
    await eventually(async () => {
      views = await Promise.all(nodes.map(async (n) => json<Placement>(['biome', 'placement'], n.home)))
      return views.every((v) => v.deployment !== null && JSON.stringify(v) === JSON.stringify(views[0]))
    }, 20_000, 'every node to run the deployment with the same placement')
    const where = new Map(views[0]?.placement.map((p) => [p.brane, p.names]))
    assert.deepEqual(where.get('web'), ['lab/edge-1'])
    assert.equal(where.get('mid')?.length, 1)
    assert.match(where.get('mid')?.[0] ?? '', /^lab\/pool-[ab]$/)
    assert.deepEqual([...(where.get('end') ?? [])].sort(), ['lab/edge-1', 'lab/store-1'])
  })

  it('keeps the pipeline flowing through kill -9 of the node running mid: 0 acknowledged events lost', async () => {
    const placement = await json<Placement>(['biome', 'placement'], nodes[0]?.home ?? '')
    const midNode = placement.placement.find((p) => p.brane === 'mid')?.names[0]
    const victim = nodes.find((n) => n.name === midNode)
    const survivor = nodes.find((n) => n.name !== midNode && n.name.startsWith('lab/pool-'))
    assert.ok(victim !== undefined && survivor !== undefined)
    const ingress = nodes[0]?.gateway ?? ''
    const total = 240
    const acknowledged: string[] = []
    for (let i = 0; i < total; i++) {
      if (i === 80) {
        victim.child.kill('SIGKILL')
      }
      // a 200 means web emitted the event and it is durably queued on edge-1
      const status = await post(ingress, `/e/k${i}`)
      assert.equal(status, 200, `request ${i} answered ${status}`)
      acknowledged.push(`/e/k${i}`)
    }
    // mid moved to the other pool node; events kept flowing to end
    await eventually(async () => {
      const view = await json<Placement>(['biome', 'placement'], nodes[0]?.home ?? '')
      return view.placement.find((p) => p.brane === 'mid')?.names[0] === survivor.name
    }, 20_000, 'mid to move to the surviving pool node')
    await eventually(async () => (await peers(nodes[0]?.home ?? '')).find((p) => p.name === victim.name)?.status === 'DEAD', 20_000, 'the killed node to be declared dead')
    // events mid had emitted on the dead node wait in its durable queue: they arrive
    // once it is back (at least once); everything else arrives without it
    await eventually(async () => (await listItems(nodes[0]?.home ?? '', 'end', 'seen')).includes(`/e/k${total - 1}`), 60_000, 'the last event to reach end while a node is dead')
    const restarted = await startNode(victim.home, victim.name, ['--bootstrap', nodes[0]?.addr ?? '', '--trust', deployer, '--swarm-key', swarm])
    nodes.splice(nodes.indexOf(victim), 1, restarted)
    for (const home of [nodes[0]?.home ?? '', nodes[3]?.home ?? '']) {
      await eventually(async () => {
        const seen = new Set(await listItems(home, 'end', 'seen'))
        return acknowledged.every((path) => seen.has(path))
      }, 60_000, `every acknowledged event in end's replicated state on ${home}`)
    }
    for (const node of nodes) {
      const dead = await cli(['dlq', '--json'], node.home)
      assert.deepEqual(JSON.parse(dead.out), [], `${node.name} dead-lettered nothing`)
    }
  })

  it('shows one event\'s hops across hosts with a signed end record', async () => {
    const home = nodes[2]?.home ?? ''
    const reply = await fetch(new URL('/e/traced', nodes[0]?.gateway), { method: 'POST', body: 'x' })
    const id = (await reply.text()).trim()
    assert.match(id, /^hits:b3:/)
    let record: { count: number, hops: Array<{ from: string, to: string, node: string }> } = { count: 0, hops: [] }
    await eventually(async () => {
      record = await json(['biome', 'trace', id], home)
      return record.count === 2
    }, 20_000, 'both hops of the trace')
    assert.deepEqual(record.hops.map((h) => `${h.from}>${h.to}`), ['web>mid', 'mid>end'])
    const file = join(dir, 'trace.json')
    await ok(['biome', 'trace', id, '-o', file], home)
    assert.equal((await cli(['trace', 'verify', file])).code, 0)
  })

  it('heals a partition: both sides serve, then state converges and the registry agrees', async () => {
    const [edge, , , store] = nodes
    assert.ok(edge !== undefined && store !== undefined)
    // the newest deployment wins everywhere: no more peers globs, and every node gets a replica of end
    const open = PIPELINE.replace(/^peers = .*$/gm, '').replace('replicas = 2', 'replicas = 4')
    await writeFile(join(dir, 'omega.toml'), open)
    await ok(['deploy', join(dir, 'omega.toml')], edge.home)
    await eventually(async () => {
      const views = await Promise.all(nodes.map(async (n) => json<Placement>(['biome', 'placement'], n.home)))
      return views.every((v) => v.placement.find((p) => p.brane === 'end')?.names.length === 4)
    }, 20_000, 'end on all four nodes')
    // cut store-1 off from everyone
    const others = nodes.filter((n) => n !== store).map((n) => n.name)
    await ok(['biome', 'isolate', ...others], store.home)
    for (const node of nodes.filter((n) => n !== store)) {
      await ok(['biome', 'isolate', store.name], node.home)
    }
    await eventually(async () => (await peers(store.home)).filter((p) => p.status === 'DEAD').length === 3, 30_000, 'store-1 to see the others dead')
    await eventually(async () => (await peers(edge.home)).find((p) => p.name === store.name)?.status === 'DEAD', 30_000, 'edge-1 to see store-1 dead')
    // both sides keep serving: store-1 alone now runs the whole pipeline
    await eventually(async () => {
      const view = await json<Placement>(['biome', 'placement'], store.home)
      return view.placement.every((p) => p.names.length > 0 && p.names.every((n) => n === store.name))
    }, 20_000, 'store-1 to place everything on itself')
    await eventually(async () => {
      const views = await Promise.all(nodes.filter((n) => n !== store).map(async (n) => json<Placement>(['biome', 'placement'], n.home)))
      return views.every((view) => view.placement.every((p) => p.names.length > 0 && !p.names.includes(store.name)))
    }, 20_000, 'the majority to place everything on its side')
    for (let i = 0; i < 10; i++) {
      assert.equal(await post(edge.gateway, `/e/majority-${i}`), 200)
      assert.equal(await post(store.gateway, `/e/minority-${i}`), 200)
    }
    await eventually(async () => (await listItems(store.home, 'end', 'seen')).includes('/e/minority-9'), 20_000, 'the minority side to handle its events')
    await eventually(async () => (await listItems(edge.home, 'end', 'seen')).includes('/e/majority-9'), 20_000, 'the majority side to handle its events')
    assert.ok(!(await listItems(edge.home, 'end', 'seen')).includes('/e/minority-9'), 'no state crossed the partition')
    // meanwhile the majority deploys again: the newest must win on store-1 after healing
    await writeFile(join(dir, 'omega.toml'), open + '\n# v3\n')
    await ok(['deploy', join(dir, 'omega.toml')], edge.home)
    // heal
    await ok(['biome', 'isolate'], store.home)
    for (const node of nodes.filter((n) => n !== store)) {
      await ok(['biome', 'isolate'], node.home)
    }
    await eventually(async () => {
      const views = await Promise.all(nodes.map(async (n) => json<Placement>(['biome', 'placement'], n.home)))
      return views.every((v) => v.deployment === views[0]?.deployment && JSON.stringify(v) === JSON.stringify(views[0]))
    }, 30_000, 'the registry and placement to agree on every node')
    await eventually(async () => {
      const lists = await Promise.all(nodes.map(async (n) => new Set(await listItems(n.home, 'end', 'seen'))))
      return lists.every((l) => l.has('/e/minority-9') && l.has('/e/majority-9') && l.size === lists[0]?.size)
    }, 30_000, 'the replicated state to converge on every node')
  })
})
